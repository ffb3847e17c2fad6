//! The stateful proxy (RFC 3261 16.6 to 16.10): forwarding with Via, Max-Forwards and
//! Record-Route, parallel forking, response selection, CANCEL of the other branches.

use super::authorize::{headers_to_drop, with_dialog_token, ForwardPolicy};
use super::response_choice::status_to_forward;
use super::routing::request_loop_hash;
use super::{ClientCtx, SipServer};
use crate::message::{edit, HeaderName, Message, MessageEditor, Method, Via};
use crate::transaction::{
    ClientKey, ClientMatch, ClientState, ClientTxId, ServerTxId, TransactionKind,
};
use crate::transport::{ConnectionId, Peer, Transmit, Transport};
use bytes::Bytes;
pub(crate) use fork::ForkTable;
use fork::{Branch, BranchState, Fork};
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tracing::debug;

mod fork;

/// One place a request is forwarded to.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// New Request-URI (a binding's contact), or `None` to keep it (next hop from Route).
    pub request_uri: Option<String>,
    pub peer: Peer,
    /// Leading Route values that point at us and must be removed.
    pub pop_routes: usize,
}

/// Identifies one branch of a fork, stored in the branch's client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BranchRef {
    pub fork: u64,
    pub index: usize,
}

/// Methods whose forwarding this node Record-Routes so in-dialog requests stay on the node.
fn record_routes(method: &Method<'_>) -> bool {
    matches!(
        method,
        Method::Invite | Method::Subscribe | Method::Refer | Method::Notify | Method::Update
    )
}

impl SipServer {
    /// Forwards a request to every target in parallel (RFC 3261 16.6, 16.7).
    pub(super) fn forward(
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
    pub(super) fn forward_in_series(
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
    fn start_branches(
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
    pub(super) fn forward_stateless(
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
            super::ids::loop_hash(&[upstream_branch, "stateless"])
        );
        let payload = self.build_forwarded(msg, &target, &branch, &method, policy);
        self.stats.requests_forwarded += 1;
        self.outbox.push_back(Transmit {
            to: target.peer,
            payload: Bytes::from(payload),
        });
    }

    /// A response from downstream (RFC 3261 16.7).
    pub(super) fn handle_response(&mut self, now: Instant, from: Peer, msg: &Message<'_>) {
        let (Some(status), Some(Ok(via)), Some(Ok(cseq))) =
            (msg.status(), msg.top_via(), msg.cseq())
        else {
            return;
        };
        if !self.identity.is_local_address(via.host, via.port) {
            debug!(remote = %from.remote, "response not for us dropped");
            return;
        }
        let Some(branch) = via.branch() else {
            return;
        };
        let key = ClientKey::new(branch, cseq.method.as_str());
        match self.transactions.on_response(now, &key, status) {
            ClientMatch::Deliver(id) => self.on_branch_response(now, id, status, msg),
            ClientMatch::Absorbed(_) => {}
            ClientMatch::NoMatch => self.forward_response_stateless(msg),
        }
    }

    fn on_branch_response(&mut self, now: Instant, id: ClientTxId, status: u16, msg: &Message<'_>) {
        let branch = match self.transactions.client_ctx(id).copied() {
            Some(ClientCtx::Branch(branch)) => branch,
            Some(ClientCtx::Originated(request)) => {
                if status >= 200 {
                    self.originated_done(request, status);
                }
                return;
            }
            // Responses to our CANCELs end here.
            Some(ClientCtx::Cancel) | None => return,
        };
        if status >= 300 && self.transactions.client_kind(id) == Some(TransactionKind::Invite) {
            if let Some(request) = self.transactions.client_request(id).cloned() {
                if let Ok(sent) = Message::parse(&request) {
                    let ack = edit::build_ack_for_non2xx(&sent, msg);
                    if let Err(err) = self.transactions.ack_non2xx(id, Bytes::from(ack)) {
                        debug!(?err, "ACK not sent");
                    }
                }
            }
        }
        let Some(fork) = self.forks.get_mut(branch.fork) else {
            return;
        };
        let server_tx = fork.server_tx;
        if fork.branches.get(branch.index).is_none() {
            return;
        }
        if status < 200 {
            if status == 100 {
                return;
            }
            let owes_cancel = fork.branches.get_mut(branch.index).is_some_and(|b| {
                b.state = BranchState::Provisional;
                b.cancel_when_provisional
            });
            let relay = !fork.final_sent;
            if fork.method_is_invite {
                let deadline = now + self.config.timer_c;
                self.forks.arm_timer_c(branch.fork, branch.index, deadline);
            }
            if owes_cancel {
                self.cancel_branch(now, id);
            }
            if relay {
                self.relay_response(now, server_tx, status, msg);
            }
            return;
        }
        if let Some(b) = fork.branches.get_mut(branch.index) {
            b.state = BranchState::Done;
        }
        if (200..300).contains(&status) {
            // Every 2xx goes upstream, even after another branch's 2xx (RFC 3261 16.7
            // step 5): the caller must see each dialog to ACK and BYE it.
            fork.final_sent = true;
            let others: SmallVec<[ClientTxId; 4]> = if fork.method_is_invite {
                fork.pending_clients()
            } else {
                SmallVec::new()
            };
            self.relay_response(now, server_tx, status, msg);
            for other in others {
                self.cancel_or_defer(now, branch.fork, other);
            }
            return;
        }
        let stripped = strip_top_via(msg);
        let invite_declined = fork.method_is_invite && status >= 600;
        fork.consider(status, false, stripped);
        if invite_declined {
            for other in fork.pending_clients() {
                self.cancel_or_defer(now, branch.fork, other);
            }
        }
        self.finish_fork_if_done(now, branch.fork);
    }

    /// Cancels INVITE branches whose Timer C fired. A branch that does not answer the CANCEL
    /// ends with a timeout 64*T1 later and counts as 408.
    pub(super) fn fire_timer_c(&mut self, now: Instant) {
        for (fork_id, index) in self.forks.expired_timer_c(now) {
            let client = self
                .forks
                .get_mut(fork_id)
                .and_then(|f| f.branches.get(index))
                .and_then(|b| b.client);
            if let Some(client) = client {
                debug!("Timer C fired: cancelling branch");
                self.cancel_or_defer(now, fork_id, client);
            }
        }
    }

    /// Ends, as transport errors, the pending branches sent over `connection` (a stream or
    /// an overlay peer that could not be reached), so callers get an answer now instead of
    /// after Timer B.
    pub fn connection_failed(&mut self, now: Instant, connection: ConnectionId) {
        self.fail_branches(now, |peer| peer.connection == Some(connection));
    }

    /// Nothing could be sent to `remote` over `transport` (no socket for its address
    /// family, a send the operating system refused, a stream connection that could not be
    /// opened or went away): pending branches sent there without a connection of their own
    /// end at once with 503 upstream instead of 408 after Timer B (RFC 3261 8.1.3.1).
    pub fn transport_failed(&mut self, now: Instant, transport: Transport, remote: SocketAddr) {
        self.fail_branches(now, |peer| {
            peer.transport == transport && peer.remote == remote && peer.connection.is_none()
        });
    }

    /// Ends, as transport errors, the pending branches whose next hop `failed_toward`
    /// names. A scan of the live forks: failures are rare, forks are bounded.
    fn fail_branches(&mut self, now: Instant, failed_toward: impl Fn(&Peer) -> bool) {
        let mut failed: SmallVec<[ClientTxId; 8]> = SmallVec::new();
        for fork in self.forks.forks.values() {
            for branch in fork
                .branches
                .iter()
                .filter(|b| b.state != BranchState::Done)
            {
                let Some(client) = branch.client else {
                    continue;
                };
                if self
                    .transactions
                    .client_peer(client)
                    .is_some_and(&failed_toward)
                {
                    failed.push(client);
                }
            }
        }
        for client in failed {
            if let Err(err) = self.transactions.on_client_transport_error(client) {
                debug!(?err, "transport error on a finished branch");
            }
        }
        self.drain_transaction_events(now);
    }

    /// A branch ended without a response: 408 after Timer B/F, 503 when the next hop could
    /// not be reached (RFC 3261 8.1.3.1, 16.7 step 6 turns it into 500 upstream).
    pub(super) fn branch_failed(
        &mut self,
        now: Instant,
        _id: ClientTxId,
        branch: BranchRef,
        status: u16,
    ) {
        let Some(fork) = self.forks.get_mut(branch.fork) else {
            return;
        };
        if let Some(b) = fork.branches.get_mut(branch.index) {
            if b.state == BranchState::Done {
                return;
            }
            b.state = BranchState::Done;
            b.client = None;
        }
        fork.consider(status, true, Bytes::new());
        self.finish_fork_if_done(now, branch.fork);
    }

    /// Sends the best final response once every branch is done (RFC 3261 16.7 step 6).
    fn finish_fork_if_done(&mut self, now: Instant, fork_id: u64) {
        let Some(fork) = self.forks.get_mut(fork_id) else {
            return;
        };
        if fork.final_sent || fork.branches.iter().any(|b| b.state != BranchState::Done) {
            return;
        }
        let fails_over = !fork.cancelled
            && fork
                .best
                .as_ref()
                .is_some_and(|best| matches!(best.status, 408 | 503));
        if fails_over {
            if let Some(next) = fork.fallback.pop_front() {
                fork.best = None;
                let request = fork.request.clone();
                let policy = fork.policy.clone();
                if let Ok(msg) = Message::parse(&request) {
                    if let Some(method) = msg.method().copied() {
                        debug!("target set failed; trying the next one");
                        self.start_branches(now, fork_id, &msg, &method, next, &policy);
                    }
                }
                // Tail call: the new set may have failed at once too.
                return self.finish_fork_if_done(now, fork_id);
            }
        }
        fork.final_sent = true;
        let server_tx = fork.server_tx;
        let cancelled = fork.cancelled;
        let request = fork.request.clone();
        let best = fork.best.take();
        match best {
            Some(best) if !best.synthesised && status_to_forward(best.status) == best.status => {
                self.stats.responses_forwarded += 1;
                if let Err(err) =
                    self.transactions
                        .send_response(now, server_tx, best.status, best.stripped)
                {
                    debug!(?err, "best response not sent");
                }
            }
            best => {
                let (status, reason) = match best {
                    _ if cancelled => (487, "Request Terminated"),
                    // A next hop this node could not reach: 503 now, so the caller can try
                    // elsewhere. A 503 received from downstream becomes 500 (RFC 3261 16.7
                    // step 6): it speaks of that server, not of this one.
                    Some(b) if b.status == 503 && b.synthesised => {
                        (503, "Service Unavailable (next hop unreachable)")
                    }
                    Some(b) if b.status == 503 => {
                        (500, "Server Internal Error (next hop unavailable)")
                    }
                    Some(b) if b.status == 408 => (408, "Request Timeout"),
                    Some(_) | None => (480, "Temporarily Unavailable"),
                };
                if let Ok(original) = Message::parse(&request) {
                    self.respond(now, server_tx, &original, status, reason, &[]);
                }
            }
        }
    }

    /// Forwards a response upstream through the server transaction, without our Via.
    fn relay_response(
        &mut self,
        now: Instant,
        server_tx: ServerTxId,
        status: u16,
        msg: &Message<'_>,
    ) {
        self.stats.responses_forwarded += 1;
        let stripped = strip_top_via(msg);
        if let Err(err) = self
            .transactions
            .send_response(now, server_tx, status, stripped)
        {
            debug!(?err, status, "response not relayed");
        }
    }

    /// A response that matches no transaction (e.g. a 2xx retransmission after the
    /// transaction ended) goes to the next Via statelessly (RFC 3261 16.7, 18.2.2).
    fn forward_response_stateless(&mut self, msg: &Message<'_>) {
        let Some(next) = msg.header_values(HeaderName::Via).nth(1) else {
            return;
        };
        let Ok(via) = Via::parse(next) else {
            return;
        };
        let Some(transport) = Transport::from_token(via.transport) else {
            return;
        };
        let host = via.received().unwrap_or(via.host);
        let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return;
        };
        let port = match via.rport() {
            Some(Some(port)) => port,
            _ => via.port.unwrap_or(transport.default_port()),
        };
        let Some(listener) = self.identity.listener_for(transport) else {
            return;
        };
        let to = Peer {
            transport,
            remote: SocketAddr::new(ip, port),
            local: listener.addr,
            connection: None,
        };
        self.stats.responses_forwarded += 1;
        self.outbox.push_back(Transmit {
            to,
            payload: strip_top_via(msg),
        });
    }

    /// A CANCEL from upstream (RFC 3261 16.10): answer it, then cancel every pending branch.
    pub(super) fn handle_cancel(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        msg: &Message<'_>,
        invite: Option<ServerTxId>,
    ) {
        let Some(invite) = invite else {
            self.respond(now, tx, msg, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        self.respond(now, tx, msg, 200, "OK", &[]);
        let Some(ctx) = self.transactions.server_ctx(invite).copied() else {
            return;
        };
        if self.cancel_resolution(now, ctx) {
            return;
        }
        let Some(fork_id) = ctx.fork else {
            return;
        };
        let Some(fork) = self.forks.get_mut(fork_id) else {
            return;
        };
        if fork.final_sent {
            return;
        }
        fork.cancelled = true;
        for client in fork.pending_clients() {
            self.cancel_or_defer(now, fork_id, client);
        }
    }

    /// Cancels a branch now if it has had a provisional, else as soon as it has one.
    fn cancel_or_defer(&mut self, now: Instant, fork_id: u64, client: ClientTxId) {
        let provisional = matches!(
            self.transactions.client_state(client),
            Some(ClientState::Proceeding)
        );
        if provisional {
            self.cancel_branch(now, client);
        } else if let Some(fork) = self.forks.get_mut(fork_id) {
            for b in fork.branches.iter_mut() {
                if b.client == Some(client) {
                    b.cancel_when_provisional = true;
                }
            }
        }
    }

    fn cancel_branch(&mut self, now: Instant, client: ClientTxId) {
        let (Some(request), Some(peer)) = (
            self.transactions.client_request(client).cloned(),
            self.transactions.client_peer(client).copied(),
        ) else {
            return;
        };
        let Ok(sent) = Message::parse(&request) else {
            return;
        };
        let Some(branch) = sent.top_via().and_then(Result::ok).and_then(|v| v.branch()) else {
            return;
        };
        let cancel = edit::build_cancel(&sent);
        let key = ClientKey::new(branch, "CANCEL");
        match self
            .transactions
            .start_client(now, key, peer, Bytes::from(cancel), ClientCtx::Cancel)
        {
            Ok(_) => {
                if let Err(err) = self.transactions.on_cancel_sent(now, client) {
                    debug!(?err, "CANCEL bookkeeping");
                }
            }
            Err(err) => debug!(?err, "CANCEL not sent"),
        }
    }
}

/// The response without its top Via value, as bytes to forward.
fn strip_top_via(msg: &Message<'_>) -> Bytes {
    let mut editor = MessageEditor::new(msg);
    editor.remove_first_value(HeaderName::Via);
    Bytes::from(editor.finish())
}
