//! The stateful proxy (RFC 3261 16.6 to 16.10): forwarding (in [`forward`]), responses and
//! their selection, failed next hops, CANCEL of the other branches.

use super::response_choice::status_to_forward;
use super::{ClientCtx, SipServer};
use crate::message::{edit, HeaderName, Message, MessageEditor, Via};
use crate::transaction::{
    ClientKey, ClientMatch, ClientState, ClientTxId, ServerTxId, TransactionKind,
};
use crate::transport::{ConnectionId, Peer, Transmit, Transport};
use bytes::Bytes;
use fork::BranchState;
pub(crate) use fork::ForkTable;
use smallvec::SmallVec;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tracing::debug;

mod fork;
mod forward;

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

impl SipServer {
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
