//! Requests this node answers itself: REGISTER (with digest authentication), OPTIONS, and
//! methods the node does not serve as an endpoint.

use super::SipServer;
use crate::auth::{select_for_realm, AuthOutcome};
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
            let unsupported = msg
                .header_values(HeaderName::Require)
                .collect::<Vec<_>>()
                .join(", ");
            self.respond(
                now,
                tx,
                msg,
                420,
                "Bad Extension",
                &[("Unsupported", unsupported.as_str())],
            );
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
        if !self.config.open && !self.authorize_register(now, tx, from, msg, &to.uri) {
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
        let source = from.remote.ip();
        if self.auth_failures.is_blocked(now, source) {
            self.respond(
                now,
                tx,
                msg,
                403,
                "Forbidden (too many failed attempts)",
                &[],
            );
            return false;
        }
        let realm = to_uri.host_lower();
        let request_uri = msg.request_uri().map_or("", |u| u.raw);
        let value = select_for_realm(
            msg.headers_named(HeaderName::Authorization)
                .map(|h| h.value),
            &realm,
        );
        let outcome = match value {
            Some(value) => self.authenticator.verify(
                now,
                "REGISTER",
                request_uri,
                value,
                &realm,
                &self.credentials,
            ),
            None => AuthOutcome::WrongRealm,
        };
        let (stale, reason) = match outcome {
            AuthOutcome::Authenticated { username } => {
                let matches_to = to_uri.user_unescaped().is_some_and(|user| user == username);
                if !matches_to {
                    self.respond(now, tx, msg, 403, "Forbidden (user does not match To)", &[]);
                    return false;
                }
                self.auth_failures.record_success(now, source);
                return true;
            }
            AuthOutcome::Stale => (true, "Unauthorized"),
            AuthOutcome::WrongRealm => (false, "Unauthorized"),
            AuthOutcome::Failed { reason } => {
                self.stats.auth_failures += 1;
                self.auth_failures.record_failure(now, source);
                debug!(reason, "authentication failed");
                if self.auth_failures.is_blocked(now, source) {
                    self.respond(
                        now,
                        tx,
                        msg,
                        403,
                        "Forbidden (too many failed attempts)",
                        &[],
                    );
                    return false;
                }
                (false, "Unauthorized")
            }
        };
        let challenges = self.authenticator.challenge_values(now, &realm, stale);
        let extra: Vec<(&str, &str)> = challenges
            .iter()
            .map(|value| ("WWW-Authenticate", value.as_str()))
            .collect();
        self.respond(now, tx, msg, 401, reason, &extra);
        false
    }
}
