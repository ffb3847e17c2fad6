//! Requests this node answers itself: REGISTER (with digest authentication), OPTIONS, and
//! methods the node does not serve as an endpoint.

use super::authorize::{Challenger, CredentialCheck};
use super::SipServer;
use crate::message::{HeaderName, Message, Method};
use crate::registrar::{apply_register, contact_header_value};
use crate::transaction::ServerTxId;
use crate::transport::Peer;
use std::time::Instant;
use tracing::debug;

/// Methods this node handles, as registrar or by relaying them to users; the same list in
/// OPTIONS answers and 405s.
pub(super) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE, PRACK, SUBSCRIBE, NOTIFY, REFER";

impl SipServer {
    pub(super) fn handle_local(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        from: Peer,
        msg: &Message<'_>,
        method: &Method<'_>,
    ) {
        // This node implements no SIP extension that a Require could ask for (RFC 3261 8.2.2.3).
        if msg.header(HeaderName::Require).is_some() {
            self.respond_bad_extension(now, tx, from, msg, HeaderName::Require);
            return;
        }
        match method {
            Method::Register => self.handle_register(now, tx, from, msg),
            Method::Options => self.respond(
                now,
                tx,
                msg,
                200,
                "OK",
                &[("Allow", ALLOW), ("Accept", "application/sdp, text/plain")],
            ),
            // In-dialog methods addressed to the node itself: it holds no dialogs.
            Method::Bye | Method::Info | Method::Update | Method::Prack | Method::Notify => {
                self.respond(now, tx, msg, 481, "Call/Transaction Does Not Exist", &[]);
            }
            // Methods the node relays to users but does not serve itself.
            Method::Invite
            | Method::Message
            | Method::Subscribe
            | Method::Refer
            | Method::Publish => {
                self.respond(now, tx, msg, 404, "Not Found (no user in Request-URI)", &[]);
            }
            _ => self.respond(now, tx, msg, 405, "Method Not Allowed", &[("Allow", ALLOW)]),
        }
    }

    fn handle_register(&mut self, now: Instant, tx: ServerTxId, from: Peer, msg: &Message<'_>) {
        let Some(Ok(to)) = msg.to() else {
            self.respond(now, tx, msg, 400, "Bad Request (bad To)", &[]);
            return;
        };
        let domain = to.uri.host_lower();
        if !self.identity.is_local_user_domain(&domain, to.uri.port) {
            self.respond(now, tx, msg, 403, "Forbidden (domain not served here)", &[]);
            return;
        }
        if self.config.open {
            let aor = to.uri.aor();
            if let Some((status, reason)) = self.open_registration_refusal(now, from, msg, &aor) {
                let retry_after = self.registrar_policy.table_full_retry_after.to_string();
                let extra: &[(&str, &str)] = if status == 503 {
                    &[("Retry-After", retry_after.as_str())]
                } else {
                    &[]
                };
                self.respond(now, tx, msg, status, reason, extra);
                return;
            }
        } else if !self.authorize_register(now, tx, from, msg, &to.uri) {
            return;
        }
        match apply_register(&mut self.location, now, msg, from, &self.registrar_policy) {
            Ok(outcome) => {
                self.stats.registrations += 1;
                let contacts: Vec<String> = outcome
                    .bindings(&self.location, now)
                    .map(|binding| {
                        let mut value = String::with_capacity(binding.uri.len() + 24);
                        contact_header_value(binding, now, &mut value);
                        value
                    })
                    .collect();
                let extra: Vec<(&str, &str)> =
                    contacts.iter().map(|c| ("Contact", c.as_str())).collect();
                self.respond(now, tx, msg, 200, "OK", &extra);
            }
            Err(rejection) => {
                debug!(status = rejection.status, reason = %rejection.reason, "REGISTER refused");
                let min_expires = rejection.min_expires.map(|v| v.to_string());
                let retry_after = rejection.retry_after.map(|v| v.to_string());
                let mut extra = Vec::new();
                if let Some(v) = &min_expires {
                    extra.push(("Min-Expires", v.as_str()));
                }
                if let Some(v) = &retry_after {
                    extra.push(("Retry-After", v.as_str()));
                }
                self.respond(now, tx, msg, rejection.status, &rejection.reason, &extra);
            }
        }
    }

    /// 420 listing every option tag of `header` (Require or Proxy-Require) in Unsupported:
    /// this node supports no extension (RFC 3261 8.2.2.3, 16.3 step 5).
    pub(super) fn respond_bad_extension(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        from: Peer,
        msg: &Message<'_>,
        header: HeaderName,
    ) {
        let unsupported = msg.header_values(header).collect::<Vec<_>>().join(", ");
        debug!(%unsupported, "unsupported extension required");
        self.respond_error(
            now,
            tx,
            from,
            msg,
            420,
            "Bad Extension",
            &[("Unsupported", unsupported.as_str())],
        );
    }

    /// Digest authentication of a REGISTER (RFC 3261 22, RFC 8760) and authorization of
    /// the authenticated user for the To AoR. Answers the request itself and returns false
    /// when it may not proceed.
    fn authorize_register(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        from: Peer,
        msg: &Message<'_>,
        to_uri: &crate::message::Uri<'_>,
    ) -> bool {
        let realm = to_uri.host_lower();
        match self.check_credentials(now, from, msg, &realm, Challenger::Registrar) {
            CredentialCheck::Authenticated(username) => {
                let matches_to = to_uri.user_unescaped().is_some_and(|user| user == username);
                if !matches_to {
                    self.respond(now, tx, msg, 403, "Forbidden (user does not match To)", &[]);
                    return false;
                }
                true
            }
            CredentialCheck::Refused(refusal) => {
                self.refuse(now, tx, from, msg, refusal, Challenger::Registrar);
                false
            }
        }
    }

    /// `--open` has no passwords, so an address-of-record belongs to the source address
    /// that holds its live bindings: another address may neither add to, replace nor remove
    /// them until they expire. A source also holds at most `max_bindings_per_source`
    /// bindings in all. Returns the refusal, if any.
    fn open_registration_refusal(
        &self,
        now: Instant,
        from: Peer,
        msg: &Message<'_>,
        aor: &str,
    ) -> Option<(u16, &'static str)> {
        if msg.header(HeaderName::Contact).is_none() || self.is_trusted_source(from) {
            // A query changes nothing.
            return None;
        }
        let source = from.remote.ip().to_canonical();
        let mut holds_binding = false;
        for binding in self.location.lookup(now, aor) {
            if binding.source.remote.ip().to_canonical() != source {
                return Some((
                    403,
                    "Forbidden (address-of-record registered from another address)",
                ));
            }
            holds_binding = true;
        }
        if !holds_binding
            && self.location.bindings_from(source) >= self.config.max_bindings_per_source
        {
            return Some((
                503,
                "Service Unavailable (too many registrations from this address)",
            ));
        }
        None
    }
}
