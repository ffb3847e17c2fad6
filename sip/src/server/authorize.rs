//! Step 0 of the routing path: may this source make the node send this request where it
//! is going? Also the digest exchange shared by the registrar (401) and the proxy (407).
//!
//! The rules (who may make the node do what):
//! - A trusted source (an overlay node, or an address in `trusted_sources`) may send
//!   anything anywhere, and its P-Asserted-Identity is kept.
//! - Anyone may reach a user of a served domain, unless the request claims (in From or
//!   P-Asserted-Identity) to come from a user of a domain with configured users: then that
//!   user must authenticate (407), so nobody can call or message as someone else.
//! - Only an authenticated local user may make the node send a request anywhere else
//!   (another domain, an IP literal, a next hop from a Route): never an open relay. A node
//!   without users (`--open`) has nobody to authenticate and relays for trusted sources only.
//! - In a closed federation (`require_authenticated_inbound`), an out-of-dialog request
//!   to a local user must come from an inbound peer, a federation member authenticated
//!   by its TLS client certificate, a phone registered here, or a local user who
//!   authenticates; anyone else gets 403.
//! - A mid-dialog request (To tag) reaches elsewhere only along a route set this node
//!   record-routed itself: its Record-Route carries a MAC of the Call-ID that nobody else
//!   can make, so a forged "in-dialog" request cannot turn the node into a relay.
//! - P-Asserted-Identity and P-Preferred-Identity from untrusted sources are removed
//!   (RFC 3325 5), and Proxy-Authorization for this node's realm is consumed (RFC 3261 22.3).

use super::SipServer;
use crate::auth::{select_for_realm, AuthOutcome};
use crate::message::{edit, HeaderName, Message, Method, NameAddr};
use crate::transaction::ServerTxId;
use crate::transport::{Peer, Transport};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::time::Instant;
use tracing::debug;

/// The URI parameter of this node's Record-Route entries that carries the dialog token.
pub(crate) const DIALOG_TOKEN_PARAM: &str = "dlg";
/// Hex digits of a dialog token (64 bits of MAC).
const DIALOG_TOKEN_HEX: usize = 16;
/// Start of the To tags of stateless answers, so that other ACKs skip the MAC.
const LOCAL_REPLY_TAG_PREFIX: &str = "sl";

/// Where a routed request goes, as far as authorisation is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// A user of a domain this node serves (its bindings here or through the overlay).
    ServedUser,
    /// Another overlay node, named by its overlay host.
    Overlay,
    /// Anything else: a foreign domain, an IP literal, a next hop taken from a Route.
    Elsewhere,
}

/// How a request is edited when forwarded, as decided by the authorisation step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ForwardPolicy {
    /// Remove P-Asserted-Identity and P-Preferred-Identity: the source may not assert them.
    pub strip_asserted_identity: bool,
    /// Remove the Proxy-Authorization values for this realm: they were meant for this node.
    pub consumed_credentials: Option<String>,
}

/// Why a request may not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 403 with this fault in the reason phrase.
    Forbidden(&'static str),
    /// 401 or 407 with a fresh challenge for `realm`.
    Challenge { realm: String, stale: bool },
}

/// Which digest exchange a check belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Challenger {
    /// A registrar: `Authorization`, 401 with `WWW-Authenticate`.
    Registrar,
    /// A proxy: `Proxy-Authorization`, 407 with `Proxy-Authenticate`.
    Proxy,
}

impl Challenger {
    fn credentials_header(self) -> HeaderName {
        match self {
            Challenger::Registrar => HeaderName::Authorization,
            Challenger::Proxy => HeaderName::ProxyAuthorization,
        }
    }

    fn challenge_header(self) -> &'static str {
        match self {
            Challenger::Registrar => "WWW-Authenticate",
            Challenger::Proxy => "Proxy-Authenticate",
        }
    }

    fn status(self) -> (u16, &'static str) {
        match self {
            Challenger::Registrar => (401, "Unauthorized"),
            Challenger::Proxy => (407, "Proxy Authentication Required"),
        }
    }
}

/// MACs of Call-IDs for this node's Record-Route entries, keyed from the node's seed (so a
/// restarted node no longer vouches for dialogs it record-routed before).
pub(crate) struct DialogTokens {
    keyed_mac: Hmac<Sha256>,
}

impl DialogTokens {
    pub(crate) fn new(seed: &[u8]) -> DialogTokens {
        // A key of its own, derived one-way, so tokens reveal nothing about the nonce key.
        let key = Sha256::new()
            .chain_update(b"p2psip dialog tokens")
            .chain_update(seed)
            .finalize();
        // HMAC zero-pads a short key to the hash's block (RFC 2104 2); doing it here keeps
        // construction infallible.
        let mut block = [0u8; 64];
        for (slot, byte) in block.iter_mut().zip(key.iter()) {
            *slot = *byte;
        }
        DialogTokens {
            keyed_mac: <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into()),
        }
    }

    /// The token of the dialog with `call_id`, as lower-case hex.
    pub(crate) fn token(&self, call_id: &str) -> String {
        self.mac_hex(b"dlg\0", call_id)
    }

    /// The To tag of a stateless final answer to an INVITE with `call_id`: the ACK that
    /// comes back carries it and is absorbed. A MAC of its own, so it says nothing about
    /// the dialog token.
    pub(crate) fn local_reply_tag(&self, call_id: &str) -> String {
        let mut tag = String::with_capacity(LOCAL_REPLY_TAG_PREFIX.len() + DIALOG_TOKEN_HEX);
        tag.push_str(LOCAL_REPLY_TAG_PREFIX);
        tag.push_str(&self.mac_hex(b"reply\0", call_id));
        tag
    }

    fn mac_hex(&self, label: &[u8], value: &str) -> String {
        let mut mac = self.keyed_mac.clone();
        mac.update(label);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(DIALOG_TOKEN_HEX);
        for byte in digest.iter().take(DIALOG_TOKEN_HEX / 2) {
            out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
        }
        out
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// A Record-Route value `<sip:...;lr>` with the dialog token added as a URI parameter.
pub(crate) fn with_dialog_token(record_route: &str, token: &str) -> String {
    match record_route.strip_suffix('>') {
        Some(inner) => format!("{inner};{DIALOG_TOKEN_PARAM}={token}>"),
        None => record_route.to_owned(),
    }
}

/// The outcome of a digest check.
pub(crate) enum CredentialCheck {
    Authenticated(String),
    Refused(Refusal),
}

impl SipServer {
    /// True for sources whose requests are not checked: overlay nodes and configured peers.
    pub(super) fn is_trusted_source(&self, from: Peer) -> bool {
        from.transport == Transport::Overlay
            || self
                .config
                .trusted_sources
                .iter()
                .any(|net| net.contains(&from.remote.ip().to_canonical()))
    }

    /// True for sources that may call local users in a closed federation without being
    /// local users: inbound peers by address, connections authenticated by a federation
    /// certificate, and phones with bindings here (their own flows).
    fn is_authenticated_peer(&self, from: Peer) -> bool {
        let ip = from.remote.ip().to_canonical();
        self.config
            .inbound_peers
            .iter()
            .any(|net| net.contains(&ip))
            || from
                .connection
                .is_some_and(|id| self.authenticated_connections.contains(&id))
            || self.location.bindings_from(ip) > 0
    }

    /// Decides whether `msg` from `from` may be forwarded to `destination`, and how it is
    /// edited on the way (see the module documentation for the rules).
    pub(super) fn authorize_forward(
        &mut self,
        now: Instant,
        from: Peer,
        msg: &Message<'_>,
        destination: Destination,
    ) -> Result<ForwardPolicy, Refusal> {
        if self.is_trusted_source(from) {
            return Ok(ForwardPolicy::default());
        }
        let mut policy = ForwardPolicy {
            strip_asserted_identity: true,
            consumed_credentials: None,
        };
        let in_dialog = msg
            .to()
            .and_then(Result::ok)
            .is_some_and(|to| to.tag().is_some());
        if in_dialog {
            if destination == Destination::Elsewhere && !self.carries_dialog_token(msg) {
                return Err(Refusal::Forbidden("not a dialog routed through this node"));
            }
            return Ok(policy);
        }
        // Only a local user may claim to be one; who has no users has none to claim.
        let claimed = if self.credentials.is_empty() {
            None
        } else {
            self.claimed_local_identity(msg)
        };
        if self.config.require_authenticated_inbound
            && destination != Destination::Elsewhere
            && claimed.is_none()
            && !self.is_authenticated_peer(from)
        {
            return Err(Refusal::Forbidden("not an authenticated peer"));
        }
        if self.credentials.is_empty() {
            // No users to authenticate (`--open`): identities cannot be checked, so none
            // is asserted onwards, and nothing is relayed.
            if destination == Destination::Elsewhere {
                return Err(Refusal::Forbidden("relaying not allowed"));
            }
            return Ok(policy);
        }
        if destination != Destination::Elsewhere && claimed.is_none() {
            return Ok(policy);
        }
        let Some((user, realm)) = claimed else {
            return Err(Refusal::Forbidden("relaying not allowed"));
        };
        match self.check_credentials(now, from, msg, &realm, Challenger::Proxy) {
            CredentialCheck::Authenticated(username) if username == user => {
                policy.consumed_credentials = Some(realm);
                Ok(policy)
            }
            CredentialCheck::Authenticated(_) => Err(Refusal::Forbidden(
                "From does not match the authenticated user",
            )),
            CredentialCheck::Refused(refusal) => Err(refusal),
        }
    }

    /// The `(user, domain)` an out-of-dialog request claims to come from, when that domain
    /// is one whose users this node knows: the From URI's, else the P-Asserted-Identity's.
    fn claimed_local_identity(&self, msg: &Message<'_>) -> Option<(String, String)> {
        let from = msg.from().and_then(Result::ok);
        let asserted = msg
            .headers
            .iter()
            .filter(|h| is_asserted_identity(h.name, h.name_raw))
            .flat_map(|h| crate::message::header::split_list(h.value))
            .filter_map(|value| NameAddr::parse(value).ok());
        from.into_iter().chain(asserted).find_map(|name_addr| {
            let domain = name_addr.uri.host_lower();
            let served =
                self.identity.serves_domain_strict(&domain) || self.credentials.has_realm(&domain);
            if !served {
                return None;
            }
            let user = name_addr.uri.user_unescaped()?;
            Some((user.into_owned(), domain.into_owned()))
        })
    }

    /// True when one of the leading Route values that name this node carries the token
    /// this node put in its Record-Route for the request's Call-ID.
    fn carries_dialog_token(&self, msg: &Message<'_>) -> bool {
        let Some(call_id) = msg.call_id() else {
            return false;
        };
        let expected = self.dialog_tokens.token(call_id);
        msg.header_values(HeaderName::Route)
            .map_while(|value| {
                NameAddr::parse(value)
                    .ok()
                    .filter(|route| self.identity.is_own_route(&route.uri))
            })
            .any(|route| {
                route.uri.params.get(DIALOG_TOKEN_PARAM).flatten() == Some(expected.as_str())
            })
    }

    /// Checks the digest credentials of `msg` for `realm` (RFC 3261 22, RFC 8760), with the
    /// per-source and per-account failure limits.
    pub(super) fn check_credentials(
        &mut self,
        now: Instant,
        from: Peer,
        msg: &Message<'_>,
        realm: &str,
        challenger: Challenger,
    ) -> CredentialCheck {
        let source = from.remote.ip().to_canonical();
        if self.auth_failures.is_blocked(now, &source) {
            return CredentialCheck::Refused(Refusal::Forbidden("too many failed attempts"));
        }
        let method = msg.method().map_or("", |m| m.as_str());
        let request_uri = msg.request_uri().map_or("", |u| u.raw);
        let value = select_for_realm(
            msg.headers_named(challenger.credentials_header())
                .map(|h| h.value),
            realm,
        );
        let outcome = match value {
            Some(value) => self.authenticator.verify(
                now,
                method,
                request_uri,
                value,
                realm,
                source,
                &self.credentials,
            ),
            None => AuthOutcome::WrongRealm,
        };
        let challenge = |stale| {
            CredentialCheck::Refused(Refusal::Challenge {
                realm: realm.to_owned(),
                stale,
            })
        };
        match outcome {
            AuthOutcome::Authenticated { username } => {
                if self
                    .account_failures
                    .is_blocked(now, &account_key(&username, realm))
                {
                    return CredentialCheck::Refused(Refusal::Forbidden(
                        "too many failed attempts for this account",
                    ));
                }
                self.auth_failures.record_success(now, &source);
                CredentialCheck::Authenticated(username.into_owned())
            }
            AuthOutcome::Stale => challenge(true),
            AuthOutcome::WrongRealm => challenge(false),
            AuthOutcome::Unverified { reason } => {
                debug!(reason, "credentials not for a nonce of this source");
                challenge(false)
            }
            AuthOutcome::Failed { reason, username } => {
                self.stats.auth_failures += 1;
                debug!(reason, "authentication failed");
                let account = account_key(&username, realm);
                self.auth_failures.record_failure(now, &source);
                self.account_failures.record_failure(now, &account);
                if self.auth_failures.is_blocked(now, &source) {
                    return CredentialCheck::Refused(Refusal::Forbidden(
                        "too many failed attempts",
                    ));
                }
                if self.account_failures.is_blocked(now, &account) {
                    return CredentialCheck::Refused(Refusal::Forbidden(
                        "too many failed attempts for this account",
                    ));
                }
                challenge(false)
            }
        }
    }

    /// Answers a refused request: 403 naming the fault, or a fresh challenge.
    pub(super) fn refuse(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        from: Peer,
        msg: &Message<'_>,
        refusal: Refusal,
        challenger: Challenger,
    ) {
        match refusal {
            Refusal::Forbidden(fault) => {
                debug!(fault, "request refused");
                let reason = format!("Forbidden ({fault})");
                self.respond_error(now, tx, from, msg, 403, &reason, &[]);
            }
            Refusal::Challenge { realm, stale } => {
                let client = from.remote.ip().to_canonical();
                let challenges = self
                    .authenticator
                    .challenge_values(now, &realm, stale, client);
                let name = challenger.challenge_header();
                let extra: Vec<(&str, &str)> = challenges
                    .iter()
                    .map(|value| (name, value.as_str()))
                    .collect();
                let (status, reason) = challenger.status();
                self.respond_error(now, tx, from, msg, status, reason, &extra);
            }
        }
    }
}

impl SipServer {
    /// Answers a request that ends here with a final error. An out-of-dialog INVITE over
    /// UDP is answered statelessly: its server transaction would repeat the answer until
    /// an ACK came (RFC 3261 17.2.1, eleven times in 32 s), to a source address that may
    /// be spoofed. A lost answer is repeated when the INVITE is, and the ACK is absorbed
    /// by its To tag (see [`SipServer::is_ack_of_local_reply`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond_error(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        from: Peer,
        msg: &Message<'_>,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) {
        let out_of_dialog_invite = msg.method() == Some(&Method::Invite)
            && msg
                .to()
                .and_then(Result::ok)
                .is_some_and(|to| to.tag().is_none());
        if from.transport != Transport::Udp || !out_of_dialog_invite {
            self.respond(now, tx, msg, status, reason, extra);
            return;
        }
        self.transactions.remove_server(tx);
        self.respond_stateless(from, msg, status, reason, extra);
    }

    /// A final answer without a transaction (errors, overload). A request without a To tag
    /// gets one that marks the ACK of an INVITE's answer for absorption.
    pub(super) fn respond_stateless(
        &mut self,
        from: Peer,
        msg: &Message<'_>,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) {
        self.stats.requests_answered += 1;
        let has_tag = msg
            .to()
            .and_then(Result::ok)
            .is_some_and(|to| to.tag().is_some());
        let tag = (!has_tag).then(|| {
            self.dialog_tokens
                .local_reply_tag(msg.call_id().unwrap_or(""))
        });
        let response = edit::build_response(msg, status, reason, tag.as_deref(), extra, None);
        self.send_stateless(from, response);
    }

    /// True for the ACK of an answer [`SipServer::respond_error`] sent statelessly.
    pub(super) fn is_ack_of_local_reply(&self, msg: &Message<'_>) -> bool {
        let Some(tag) = msg.to().and_then(Result::ok).and_then(|to| to.tag()) else {
            return false;
        };
        tag.starts_with(LOCAL_REPLY_TAG_PREFIX)
            && tag
                == self
                    .dialog_tokens
                    .local_reply_tag(msg.call_id().unwrap_or(""))
    }
}

/// True for the identity headers only trusted sources may send (RFC 3325).
pub(crate) fn is_asserted_identity(name: HeaderName, name_raw: &str) -> bool {
    name == HeaderName::Other
        && (name_raw.eq_ignore_ascii_case("P-Asserted-Identity")
            || name_raw.eq_ignore_ascii_case("P-Preferred-Identity"))
}

/// The failure limiter's key of an account: the username as sent and the lower-cased realm.
fn account_key(username: &str, realm: &str) -> String {
    let mut key = String::with_capacity(username.len() + realm.len() + 1);
    key.push_str(username);
    key.push('@');
    key.extend(realm.chars().map(|c| c.to_ascii_lowercase()));
    key
}

/// Header indexes a forwarded request drops under `policy`, without allocating: this runs
/// for every request forwarded for an untrusted source.
pub(crate) fn headers_to_drop<'p>(
    msg: &'p Message<'_>,
    policy: &'p ForwardPolicy,
) -> impl Iterator<Item = usize> + 'p {
    msg.headers
        .iter()
        .enumerate()
        .filter(|(_, header)| {
            (policy.strip_asserted_identity && is_asserted_identity(header.name, header.name_raw))
                || (header.name == HeaderName::ProxyAuthorization
                    && policy
                        .consumed_credentials
                        .as_deref()
                        .is_some_and(|realm| select_for_realm([header.value], realm).is_some()))
        })
        .map(|(index, _)| index)
}
