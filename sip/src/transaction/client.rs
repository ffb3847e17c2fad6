//! Client transactions: INVITE (RFC 3261 17.1.1, RFC 6026 7.2) and non-INVITE (17.1.2).

use super::timer::{Side, TimerRef, TimerSlot};
use super::{
    queue_transmit, ClientKey, ClientMatch, ClientState, ClientTxId, Timers, TransactionError,
    TransactionEvent, TransactionKind, TransactionLayer,
};
use crate::transport::Peer;
use bytes::Bytes;
use std::time::Instant;

pub(super) struct ClientTx<C> {
    kind: TransactionKind,
    state: ClientState,
    peer: Peer,
    request: Bytes,
    /// The ACK for a non-2xx final, once the caller has built it.
    ack: Option<Bytes>,
    /// A CANCEL was sent for this INVITE: it no longer waits indefinitely in Proceeding.
    cancelled: bool,
    pub(super) timers: Timers,
    ctx: C,
}

/// What a response does to a client transaction.
enum ResponseOutcome {
    Deliver,
    Absorb,
    /// Absorbed, and the stored ACK goes out again.
    ResendAck,
}

impl<C, S> TransactionLayer<C, S> {
    /// Starts a client transaction: sends `request` to `peer` at once and arms Timers A and B
    /// (INVITE) or E and F (other methods); A and E only on unreliable transports. The kind
    /// follows the key's method. When the table is full nothing is sent and `ctx` is dropped.
    pub fn start_client(
        &mut self,
        now: Instant,
        key: ClientKey,
        peer: Peer,
        request: Bytes,
        ctx: C,
    ) -> Result<ClientTxId, TransactionError> {
        let kind = key
            .kind()
            .ok_or(TransactionError::AckCreatesNoTransaction)?;
        if self.is_full() {
            return Err(TransactionError::TableFull);
        }
        let hash = key.hash_with(&self.hash_state);
        let state = match kind {
            TransactionKind::Invite => ClientState::Calling,
            TransactionKind::NonInvite => ClientState::Trying,
        };
        let reliable = peer.transport.is_reliable();
        queue_transmit(&mut self.transmits, peer, &request);
        let tx = ClientTx {
            kind,
            state,
            peer,
            request,
            ack: None,
            cancelled: false,
            timers: Timers::IDLE,
            ctx,
        };
        let handle = self.clients.insert(hash, key, tx);
        if let Some(tx) = self.clients.get_mut(handle) {
            if !reliable {
                tx.timers.arm_retransmit(
                    &mut self.timers,
                    Side::Client,
                    handle,
                    now,
                    self.config.t1,
                );
            }
            let timeout = self.config.timeout_64_t1();
            tx.timers
                .arm_timeout(&mut self.timers, Side::Client, handle, now, timeout);
        }
        self.tidy_timers();
        Ok(ClientTxId(handle))
    }

    /// Matches a received response by the branch of its top Via and its `CSeq` method, and
    /// moves the transaction's state. `status` is the response's status code (anything
    /// below 200 counts as provisional).
    pub fn on_response(&mut self, now: Instant, key: &ClientKey, status: u16) -> ClientMatch {
        let hash = key.hash_with(&self.hash_state);
        let Some(handle) = self.clients.find(hash, |candidate| candidate == key) else {
            return ClientMatch::NoMatch;
        };
        let Some(tx) = self.clients.get_mut(handle) else {
            return ClientMatch::NoMatch;
        };
        let config = &self.config;
        let queue = &mut self.timers;
        let reliable = tx.peer.transport.is_reliable();
        let outcome = match (tx.kind, tx.state) {
            (TransactionKind::Invite, ClientState::Calling | ClientState::Proceeding) => {
                // Any response stops Timer A; Timer B only runs in Calling, but a CANCEL's
                // 64*T1 deadline outlives a provisional response (RFC 3261 9.1).
                tx.timers.retransmit_at = None;
                if status < 200 {
                    tx.state = ClientState::Proceeding;
                    if !tx.cancelled {
                        tx.timers.timeout_at = None;
                    }
                } else if status < 300 {
                    tx.state = ClientState::Accepted;
                    tx.timers.timeout_at = None;
                    let timer_m = config.timeout_64_t1();
                    tx.timers
                        .arm_timeout(queue, Side::Client, handle, now, timer_m);
                } else {
                    tx.state = ClientState::Completed;
                    tx.timers.timeout_at = None;
                    let timer_d = config.timer_d(reliable);
                    tx.timers
                        .arm_timeout(queue, Side::Client, handle, now, timer_d);
                }
                ResponseOutcome::Deliver
            }
            (TransactionKind::Invite, ClientState::Completed) if status >= 300 => {
                ResponseOutcome::ResendAck
            }
            // RFC 6026 7.2: every 2xx is passed up (forking gives several).
            (TransactionKind::Invite, ClientState::Accepted) if (200..300).contains(&status) => {
                ResponseOutcome::Deliver
            }
            (TransactionKind::NonInvite, ClientState::Trying | ClientState::Proceeding) => {
                if status < 200 {
                    tx.state = ClientState::Proceeding;
                } else {
                    tx.state = ClientState::Completed;
                    tx.timers.retransmit_at = None;
                    tx.timers.timeout_at = None;
                    let timer_k = config.t4_unless_reliable(reliable);
                    tx.timers
                        .arm_timeout(queue, Side::Client, handle, now, timer_k);
                }
                ResponseOutcome::Deliver
            }
            _ => ResponseOutcome::Absorb,
        };
        let id = ClientTxId(handle);
        let result = match outcome {
            ResponseOutcome::Deliver => ClientMatch::Deliver(id),
            ResponseOutcome::Absorb => ClientMatch::Absorbed(id),
            ResponseOutcome::ResendAck => {
                if let Some(ack) = &tx.ack {
                    queue_transmit(&mut self.transmits, tx.peer, ack);
                }
                ClientMatch::Absorbed(id)
            }
        };
        self.tidy_timers();
        result
    }

    /// Hands over the ACK for the 300-699 final just delivered for this INVITE (RFC 3261
    /// 17.1.1.3). The layer sends it now and again for each retransmission of the final until
    /// Timer D fires. Allowed once per transaction.
    pub fn ack_non2xx(&mut self, id: ClientTxId, ack: Bytes) -> Result<(), TransactionError> {
        let tx = self
            .clients
            .get_mut(id.0)
            .ok_or(TransactionError::UnknownTransaction)?;
        if tx.kind != TransactionKind::Invite
            || tx.state != ClientState::Completed
            || tx.ack.is_some()
        {
            return Err(TransactionError::InvalidState);
        }
        queue_transmit(&mut self.transmits, tx.peer, &ack);
        tx.ack = Some(ack);
        Ok(())
    }

    /// Tells the layer the caller sent a CANCEL (as its own non-INVITE client transaction)
    /// for this INVITE. If no final response arrives within 64*T1, the transaction ends with
    /// [`TransactionEvent::ClientTimeout`] (RFC 3261 9.1) instead of waiting in Proceeding.
    pub fn on_cancel_sent(&mut self, now: Instant, id: ClientTxId) -> Result<(), TransactionError> {
        let tx = self
            .clients
            .get_mut(id.0)
            .ok_or(TransactionError::UnknownTransaction)?;
        if tx.kind != TransactionKind::Invite {
            return Err(TransactionError::InvalidState);
        }
        match tx.state {
            ClientState::Proceeding if !tx.cancelled => {
                let timeout = self.config.timeout_64_t1();
                tx.timers
                    .arm_timeout(&mut self.timers, Side::Client, id.0, now, timeout);
            }
            // Timer B already ends Calling no later than 64*T1 from now.
            ClientState::Calling | ClientState::Proceeding => {}
            ClientState::Trying | ClientState::Completed | ClientState::Accepted => {
                return Err(TransactionError::InvalidState)
            }
        }
        tx.cancelled = true;
        Ok(())
    }

    /// A message of this transaction could not be sent: the transaction ends with
    /// [`TransactionEvent::ClientTransportError`] (RFC 3261 17.1.4).
    pub fn on_client_transport_error(&mut self, id: ClientTxId) -> Result<(), TransactionError> {
        let (_, tx) = self
            .clients
            .remove(id.0)
            .ok_or(TransactionError::UnknownTransaction)?;
        self.events
            .push_back(TransactionEvent::ClientTransportError { id, ctx: tx.ctx });
        self.tidy_timers();
        Ok(())
    }

    /// Ends the transaction at once, without an event, and returns its context.
    pub fn remove_client(&mut self, id: ClientTxId) -> Option<C> {
        let (_, tx) = self.clients.remove(id.0)?;
        self.tidy_timers();
        Some(tx.ctx)
    }

    pub fn client_state(&self, id: ClientTxId) -> Option<ClientState> {
        self.clients.get(id.0).map(|tx| tx.state)
    }

    pub fn client_kind(&self, id: ClientTxId) -> Option<TransactionKind> {
        self.clients.get(id.0).map(|tx| tx.kind)
    }

    pub fn client_peer(&self, id: ClientTxId) -> Option<&Peer> {
        self.clients.get(id.0).map(|tx| &tx.peer)
    }

    /// The request as sent, for building the CANCEL or the ACK.
    pub fn client_request(&self, id: ClientTxId) -> Option<&Bytes> {
        self.clients.get(id.0).map(|tx| &tx.request)
    }

    pub fn client_ctx(&self, id: ClientTxId) -> Option<&C> {
        self.clients.get(id.0).map(|tx| &tx.ctx)
    }

    pub fn client_ctx_mut(&mut self, id: ClientTxId) -> Option<&mut C> {
        self.clients.get_mut(id.0).map(|tx| &mut tx.ctx)
    }

    pub(super) fn fire_client_timer(&mut self, now: Instant, at: Instant, timer: TimerRef) {
        let handle = timer.handle;
        let Some(tx) = self.clients.get_mut(handle) else {
            return;
        };
        if tx.timers.deadline(timer.slot) != Some(at) {
            return;
        }
        match timer.slot {
            TimerSlot::Retransmit => {
                let config = &self.config;
                let interval = tx.timers.retransmit_interval;
                let next = match (tx.kind, tx.state) {
                    // Timer A doubles without a cap; Timer B ends Calling first.
                    (TransactionKind::Invite, ClientState::Calling) => {
                        Some(interval.saturating_mul(2).min(config.timeout_64_t1()))
                    }
                    // Timer E doubles up to T2, and stays at T2 once a provisional arrived.
                    (TransactionKind::NonInvite, ClientState::Trying) => {
                        Some(interval.saturating_mul(2).min(config.t2))
                    }
                    (TransactionKind::NonInvite, ClientState::Proceeding) => Some(config.t2),
                    _ => None,
                };
                match next {
                    Some(next) => {
                        queue_transmit(&mut self.transmits, tx.peer, &tx.request);
                        tx.timers
                            .arm_retransmit(&mut self.timers, Side::Client, handle, now, next);
                    }
                    None => tx.timers.retransmit_at = None,
                }
            }
            TimerSlot::Timeout => {
                let Some((_, tx)) = self.clients.remove(handle) else {
                    return;
                };
                let id = ClientTxId(handle);
                let event = match tx.state {
                    // Timer B, Timer F, or the deadline after a CANCEL.
                    ClientState::Calling | ClientState::Trying | ClientState::Proceeding => {
                        TransactionEvent::ClientTimeout { id, ctx: tx.ctx }
                    }
                    // Timer D, K or M.
                    ClientState::Completed | ClientState::Accepted => {
                        TransactionEvent::ClientTerminated { id, ctx: tx.ctx }
                    }
                };
                self.events.push_back(event);
            }
        }
    }
}
