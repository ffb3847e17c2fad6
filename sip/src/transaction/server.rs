//! Server transactions: INVITE (RFC 3261 17.2.1, RFC 6026 7.1) and non-INVITE (17.2.2).

use super::timer::{Side, TimerRef, TimerSlot};
use super::{
    queue_transmit, ServerKey, ServerMatch, ServerState, ServerTxId, Timers, TransactionError,
    TransactionEvent, TransactionKind, TransactionLayer,
};
use crate::transport::Peer;
use bytes::Bytes;
use std::time::Instant;

pub(super) struct ServerTx<S> {
    kind: TransactionKind,
    state: ServerState,
    peer: Peer,
    /// The most recent response, re-sent when the request is retransmitted.
    last_response: Option<Bytes>,
    pub(super) timers: Timers,
    ctx: S,
}

impl<C, S> TransactionLayer<C, S> {
    /// Matches a received request (ACK included) against the server transactions and
    /// applies what the state requires: a retransmitted request gets the last response again
    /// or is absorbed, an ACK for a non-2xx final moves the INVITE to Confirmed.
    pub fn on_request(&mut self, now: Instant, key: &ServerKey) -> ServerMatch {
        let hash = key.hash_with(&self.hash_state);
        let Some(handle) = self.servers.find(hash, |candidate| candidate == key) else {
            return ServerMatch::New;
        };
        let Some(tx) = self.servers.get_mut(handle) else {
            return ServerMatch::New;
        };
        let id = ServerTxId(handle);
        if key.is_ack() {
            let result = match tx.state {
                ServerState::Completed => {
                    // Stop Timers G and H; Timer I absorbs further ACKs.
                    tx.state = ServerState::Confirmed;
                    tx.timers.retransmit_at = None;
                    tx.timers.timeout_at = None;
                    let timer_i = self
                        .config
                        .t4_unless_reliable(tx.peer.transport.is_reliable());
                    tx.timers
                        .arm_timeout(&mut self.timers, Side::Server, handle, now, timer_i);
                    ServerMatch::AckAbsorbed(id)
                }
                ServerState::Accepted => ServerMatch::AckAccepted(id),
                // A retransmitted ACK, or one before any final response: nothing to do.
                ServerState::Trying | ServerState::Proceeding | ServerState::Confirmed => {
                    ServerMatch::AckAbsorbed(id)
                }
            };
            self.tidy_timers();
            return result;
        }
        let resend = match tx.state {
            ServerState::Proceeding | ServerState::Completed => tx.last_response.as_ref(),
            // Trying: nothing sent yet. Accepted: the UAS core retransmits 2xx (RFC 6026 7.1).
            // Confirmed: the ACK already arrived.
            ServerState::Trying | ServerState::Accepted | ServerState::Confirmed => None,
        };
        if let Some(response) = resend {
            queue_transmit(&mut self.transmits, tx.peer, response);
        }
        ServerMatch::Retransmission(id)
    }

    /// Creates the server transaction for a new request, after [`TransactionLayer::on_request`]
    /// returned [`ServerMatch::New`]. Responses go to `peer`. The kind follows the key's
    /// method; an ACK key is refused. When the table is full `ctx` is dropped and the caller
    /// answers 503 statelessly.
    pub fn create_server(
        &mut self,
        key: ServerKey,
        peer: Peer,
        ctx: S,
    ) -> Result<ServerTxId, TransactionError> {
        let kind = key
            .kind()
            .ok_or(TransactionError::AckCreatesNoTransaction)?;
        if self.is_full() {
            return Err(TransactionError::TableFull);
        }
        let hash = key.hash_with(&self.hash_state);
        let state = match kind {
            TransactionKind::Invite => ServerState::Proceeding,
            TransactionKind::NonInvite => ServerState::Trying,
        };
        let tx = ServerTx {
            kind,
            state,
            peer,
            last_response: None,
            timers: Timers::IDLE,
            ctx,
        };
        Ok(ServerTxId(self.servers.insert(hash, key, tx)))
    }

    /// Sends a response built by the caller and moves the state. INVITE: 1xx stays in
    /// Proceeding; 2xx moves to Accepted (Timer L), after which only further 2xx may be sent;
    /// 300-699 moves to Completed (Timer G on unreliable transports, Timer H). Non-INVITE: 1xx
    /// moves to Proceeding; a final to Completed (Timer J). Nothing may be sent after a
    /// non-2xx final.
    pub fn send_response(
        &mut self,
        now: Instant,
        id: ServerTxId,
        status: u16,
        payload: Bytes,
    ) -> Result<(), TransactionError> {
        if !(100..=699).contains(&status) {
            return Err(TransactionError::InvalidStatus);
        }
        let handle = id.0;
        let tx = self
            .servers
            .get_mut(handle)
            .ok_or(TransactionError::UnknownTransaction)?;
        let config = &self.config;
        let queue = &mut self.timers;
        let reliable = tx.peer.transport.is_reliable();
        let provisional = status < 200;
        let success = (200..300).contains(&status);
        match (tx.kind, tx.state) {
            (TransactionKind::Invite, ServerState::Proceeding) => {
                if provisional {
                    tx.last_response = Some(payload.clone());
                } else if success {
                    tx.state = ServerState::Accepted;
                    tx.last_response = None;
                    let timer_l = config.timeout_64_t1();
                    tx.timers
                        .arm_timeout(queue, Side::Server, handle, now, timer_l);
                } else {
                    tx.state = ServerState::Completed;
                    tx.last_response = Some(payload.clone());
                    if !reliable {
                        tx.timers
                            .arm_retransmit(queue, Side::Server, handle, now, config.t1);
                    }
                    let timer_h = config.timeout_64_t1();
                    tx.timers
                        .arm_timeout(queue, Side::Server, handle, now, timer_h);
                }
            }
            // RFC 6026 7.1: 2xx retransmissions from the UAS core pass through.
            (TransactionKind::Invite, ServerState::Accepted) if success => {}
            (TransactionKind::NonInvite, ServerState::Trying | ServerState::Proceeding) => {
                tx.last_response = Some(payload.clone());
                if provisional {
                    tx.state = ServerState::Proceeding;
                } else {
                    tx.state = ServerState::Completed;
                    let timer_j = config.timer_j(reliable);
                    tx.timers
                        .arm_timeout(queue, Side::Server, handle, now, timer_j);
                }
            }
            _ => return Err(TransactionError::InvalidState),
        }
        queue_transmit(&mut self.transmits, tx.peer, &payload);
        self.tidy_timers();
        Ok(())
    }

    /// The INVITE transaction a CANCEL targets: same key fields, method INVITE (RFC 3261
    /// 9.2). `None` if `cancel` is not a CANCEL key or no such INVITE is live.
    pub fn find_invite_for_cancel(&self, cancel: &ServerKey) -> Option<ServerTxId> {
        if !cancel.is_cancel() {
            return None;
        }
        let hash = cancel.invite_hash_with(&self.hash_state);
        self.servers
            .find(hash, |candidate| candidate.is_invite_for(cancel))
            .map(ServerTxId)
    }

    /// A response of this transaction could not be sent: the transaction ends with
    /// [`TransactionEvent::ServerTransportError`] (RFC 3261 17.2.4).
    pub fn on_server_transport_error(&mut self, id: ServerTxId) -> Result<(), TransactionError> {
        let (_, tx) = self
            .servers
            .remove(id.0)
            .ok_or(TransactionError::UnknownTransaction)?;
        self.events
            .push_back(TransactionEvent::ServerTransportError { id, ctx: tx.ctx });
        self.tidy_timers();
        Ok(())
    }

    /// Ends the transaction at once, without an event, and returns its context.
    pub fn remove_server(&mut self, id: ServerTxId) -> Option<S> {
        let (_, tx) = self.servers.remove(id.0)?;
        self.tidy_timers();
        Some(tx.ctx)
    }

    pub fn server_state(&self, id: ServerTxId) -> Option<ServerState> {
        self.servers.get(id.0).map(|tx| tx.state)
    }

    pub fn server_kind(&self, id: ServerTxId) -> Option<TransactionKind> {
        self.servers.get(id.0).map(|tx| tx.kind)
    }

    pub fn server_peer(&self, id: ServerTxId) -> Option<&Peer> {
        self.servers.get(id.0).map(|tx| &tx.peer)
    }

    pub fn server_ctx(&self, id: ServerTxId) -> Option<&S> {
        self.servers.get(id.0).map(|tx| &tx.ctx)
    }

    pub fn server_ctx_mut(&mut self, id: ServerTxId) -> Option<&mut S> {
        self.servers.get_mut(id.0).map(|tx| &mut tx.ctx)
    }

    pub(super) fn fire_server_timer(&mut self, now: Instant, at: Instant, timer: TimerRef) {
        let handle = timer.handle;
        let Some(tx) = self.servers.get_mut(handle) else {
            return;
        };
        if tx.timers.deadline(timer.slot) != Some(at) {
            return;
        }
        match timer.slot {
            TimerSlot::Retransmit => {
                // Timer G: only a non-2xx final in Completed is retransmitted, doubling to T2.
                match (&tx.last_response, tx.state) {
                    (Some(response), ServerState::Completed) => {
                        queue_transmit(&mut self.transmits, tx.peer, response);
                        let next = tx
                            .timers
                            .retransmit_interval
                            .saturating_mul(2)
                            .min(self.config.t2);
                        tx.timers
                            .arm_retransmit(&mut self.timers, Side::Server, handle, now, next);
                    }
                    _ => tx.timers.retransmit_at = None,
                }
            }
            TimerSlot::Timeout => {
                let Some((_, tx)) = self.servers.remove(handle) else {
                    return;
                };
                let id = ServerTxId(handle);
                let event = match (tx.kind, tx.state) {
                    (TransactionKind::Invite, ServerState::Completed) => {
                        TransactionEvent::ServerNoAck { id, ctx: tx.ctx }
                    }
                    // Timer I, J or L.
                    _ => TransactionEvent::ServerTerminated { id, ctx: tx.ctx },
                };
                self.events.push_back(event);
            }
        }
    }
}
