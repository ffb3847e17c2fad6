//! Forwarding a request (RFC 3261 16.6): the branches of a fork, each with its Via,
//! Max-Forwards, Route removal and Record-Route; target sets tried in series; ACKs for 2xx
//! sent on statelessly.

use super::fork::{Branch, BranchState, Fork};
use super::{BranchRef, Target};
use crate::message::{HeaderName, Message, MessageEditor, Method};
use crate::server::authorize::{headers_to_drop, with_dialog_token, ForwardPolicy};
use crate::server::routing::request_loop_hash;
use crate::server::{ClientCtx, SipServer};
use crate::transaction::{ClientKey, ServerTxId};
use crate::transport::{Transmit, Transport};
use bytes::Bytes;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::time::Instant;
use tracing::debug;

/// Methods whose forwarding this node Record-Routes so in-dialog requests stay on the node.
fn record_routes(method: &Method<'_>) -> bool {
    matches!(
        method,
        Method::Invite | Method::Subscribe | Method::Refer | Method::Notify | Method::Update
    )
}

impl SipServer {
    /// Forwards a request to every target in parallel (RFC 3261 16.6, 16.7).
    pub(in crate::server) fn forward(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        msg: &Message<'_>,
        targets: Vec<Target>,
        policy: &ForwardPolicy,
    ) {
        self.forward_in_series(now, tx, msg, VecDeque::from([targets]), policy, false);
    }

    /// Forwards a request to the first target set, in parallel; each later set is tried
    /// when every branch of the one before failed with a transport error, 408 or 503 (RFC
    /// 3263 4.3). `trying_sent`: the caller already had its 100 Trying (while the route
    /// was resolved).
    pub(in crate::server) fn forward_in_series(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        msg: &Message<'_>,
        mut sets: VecDeque<Vec<Target>>,
        policy: &ForwardPolicy,
        trying_sent: bool,
    ) {
        let Some(method) = msg.method().copied() else {
            return;
        };
        let is_invite = method == Method::Invite;
        if is_invite && !trying_sent {
            // Stop the caller's retransmissions while the branches ring (RFC 3261 16.2).
            self.send_trying(now, tx, msg);
        }
        let first = sets.pop_front().unwrap_or_default();
        let fork_id = self.forks.insert(Fork {
            server_tx: tx,
            method_is_invite: is_invite,
            request: Bytes::copy_from_slice(msg.raw),
            branches: SmallVec::new(),
            best: None,
            final_sent: false,
            cancelled: false,
            fallback: sets,
            policy: policy.clone(),
        });
        if let Some(ctx) = self.transactions.server_ctx_mut(tx) {
            ctx.fork = Some(fork_id);
        }
        self.start_branches(now, fork_id, msg, &method, first, policy);
        self.finish_fork_if_done(now, fork_id);
    }

    /// Adds one branch per target to the fork and sends the request on each.
    pub(super) fn start_branches(
        &mut self,
        now: Instant,
        fork_id: u64,
        msg: &Message<'_>,
        method: &Method<'_>,
        targets: Vec<Target>,
        policy: &ForwardPolicy,
    ) {
        let is_invite = *method == Method::Invite;
        let first_index = self.forks.get_mut(fork_id).map_or(0, |f| f.branches.len());
        let loop_hash = request_loop_hash(msg);
        for (offset, target) in targets.iter().enumerate() {
            let index = first_index + offset;
            let branch = self.ids.branch(&loop_hash);
            let payload = self.build_forwarded(msg, target, &branch, method, policy);
            let key = ClientKey::new(&branch, method.as_str());
            let ctx = ClientCtx::Branch(BranchRef {
                fork: fork_id,
                index,
            });
            let started =
                self.transactions
                    .start_client(now, key, target.peer, Bytes::from(payload), ctx);
            let (client, state) = match started {
                Ok(id) => (Some(id), BranchState::Calling),
                Err(err) => {
                    debug!(?err, "branch not started");
                    (None, BranchState::Done)
                }
            };
            if let Some(fork) = self.forks.get_mut(fork_id) {
                fork.branches.push(Branch {
                    client,
                    state,
                    cancel_when_provisional: false,
                    timer_c: None,
                });
                if client.is_none() {
                    fork.consider(503, true, Bytes::new());
                }
            }
            if is_invite && client.is_some() {
                self.forks
                    .arm_timer_c(fork_id, index, now + self.config.timer_c);
            }
            self.stats.requests_forwarded += 1;
        }
    }

    /// Builds the request for one branch: new Via, Max-Forwards, Route removal, Record-Route
    /// (with this dialog's token), Request-URI, and the headers the authorisation step
    /// drops; every other header is copied verbatim.
    fn build_forwarded(
        &self,
        msg: &Message<'_>,
        target: &Target,
        branch: &str,
        method: &Method<'_>,
        policy: &ForwardPolicy,
    ) -> Vec<u8> {
        let mut editor = MessageEditor::new(msg);
        for index in headers_to_drop(msg, policy) {
            editor.remove_header(index);
        }
        if let Some(uri) = &target.request_uri {
            editor.set_request_uri(uri);
        }
        let out_transport = target.peer.transport;
        if let Some(sent_by) = self.identity.sent_by(out_transport) {
            let via = format!(
                "SIP/2.0/{} {sent_by};branch={branch}",
                out_transport.via_token()
            );
            editor.prepend_header("Via", &via);
        }
        match msg
            .headers
            .iter()
            .position(|h| h.name == HeaderName::MaxForwards)
        {
            Some(index) => {
                let hops = msg.max_forwards().and_then(Result::ok).unwrap_or(70);
                let remaining = hops.saturating_sub(1).to_string();
                editor.replace_header(index, &remaining);
            }
            None => {
                editor.append_header("Max-Forwards", "70");
            }
        }
        // The leading Route values that point at this node; values kept on a partly
        // consumed line are copied as written.
        for _ in 0..target.pop_routes {
            editor.remove_first_value(HeaderName::Route);
        }
        if record_routes(method) {
            // Double Record-Route when the legs use different transports (RFC 5658): each
            // side of the dialog then sees an entry it can reach.
            let in_transport = self.transport_of_top_via(msg);
            let token = self.dialog_tokens.token(msg.call_id().unwrap_or(""));
            let outer = self
                .identity
                .record_route(out_transport)
                .map(|rr| with_dialog_token(&rr, &token));
            let inner = in_transport
                .filter(|t| *t != out_transport)
                .and_then(|t| self.identity.record_route(t))
                .map(|rr| with_dialog_token(&rr, &token));
            // The editor puts the latest prepended header on top; the entry facing the next
            // hop must be topmost, so it is prepended last.
            if let Some(inner) = inner {
                editor.prepend_header("Record-Route", &inner);
            }
            if let Some(outer) = outer {
                editor.prepend_header("Record-Route", &outer);
            }
        }
        editor.finish()
    }

    fn transport_of_top_via(&self, msg: &Message<'_>) -> Option<Transport> {
        msg.top_via()
            .and_then(Result::ok)
            .and_then(|via| Transport::from_token(via.transport))
    }

    /// Forwards a request without a transaction (ACK for 2xx, RFC 3261 16.11). The branch is
    /// derived from the request so a retransmitted ACK gets the same one.
    pub(in crate::server) fn forward_stateless(
        &mut self,
        msg: &Message<'_>,
        target: Target,
        policy: &ForwardPolicy,
    ) {
        let Some(method) = msg.method().copied() else {
            return;
        };
        let hash = request_loop_hash(msg);
        let upstream_branch = msg
            .top_via()
            .and_then(Result::ok)
            .and_then(|v| v.branch())
            .unwrap_or("");
        let branch = format!(
            "z9hG4bK{hash}.{}",
            crate::server::ids::loop_hash(&[upstream_branch, "stateless"])
        );
        let payload = self.build_forwarded(msg, &target, &branch, &method, policy);
        self.stats.requests_forwarded += 1;
        self.outbox.push_back(Transmit {
            to: target.peer,
            payload: Bytes::from(payload),
        });
    }
}
