//! The transaction layer (RFC 3261 section 17, with the Accepted states of RFC 6026).
//!
//! Sans-IO and independent of the message parser: the caller extracts keys
//! ([`ServerKey`], [`ClientKey`]) and status codes from messages it has parsed, and hands over
//! requests, responses and ACKs already serialized as [`Bytes`]. The layer decides what to
//! send and when: it queues [`Transmit`]s (drain with [`TransactionLayer::poll_transmit`]),
//! schedules retransmissions and timeouts (ask [`TransactionLayer::poll_timeout`], then call
//! [`TransactionLayer::handle_timeout`]), and reports what the caller must act on as
//! [`TransactionEvent`]s (drain with [`TransactionLayer::poll_event`]).
//!
//! Each transaction carries a caller context (`C` for client, `S` for server transactions),
//! reachable by id while the transaction lives and handed back by value in the event that
//! ends it. Every transaction ends with exactly one such event unless the caller removes it
//! with [`TransactionLayer::remove_client`] or [`TransactionLayer::remove_server`].
//!
//! Not done here: sending 100 Trying for an INVITE (the caller sends it through
//! [`TransactionLayer::send_response`]), building ACK and CANCEL messages, proxy Timer C, and
//! retransmitting 2xx responses, which is the UAS core's job (RFC 3261 13.3.1.4).

mod client;
mod key;
mod server;
mod table;
mod timer;

#[cfg(test)]
mod tests;

pub use key::{ClientKey, ServerKey, MAGIC_COOKIE};

use crate::transport::{Peer, Transmit};
use bytes::Bytes;
use client::ClientTx;
use server::ServerTx;
use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use table::{Handle, Table};
use timer::{Side, TimerQueue, TimerRef, TimerSlot};

/// Timer values and the table bound. Values outside sane ranges are clamped by
/// [`TransactionLayer::new`]: T1 to 1 ms..=1 h, T2 to T1..=1 h, T4 to at most 1 h, the
/// capacity to at most `u32::MAX - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionConfig {
    /// RTT estimate; the first retransmission interval (RFC 3261 17.1.1.1).
    pub t1: Duration,
    /// Longest retransmission interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Longest time a message stays in the network.
    pub t4: Duration,
    /// Live transactions, client and server together. Starting one more fails with
    /// [`TransactionError::TableFull`].
    pub capacity: usize,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            capacity: 1_000_000,
        }
    }
}

const MAX_TIMER: Duration = Duration::from_secs(3600);

impl TransactionConfig {
    fn clamped(mut self) -> TransactionConfig {
        self.t1 = self.t1.clamp(Duration::from_millis(1), MAX_TIMER);
        self.t2 = self.t2.clamp(self.t1, MAX_TIMER);
        self.t4 = self.t4.min(MAX_TIMER);
        self.capacity = self.capacity.min(u32::MAX as usize - 1);
        self
    }

    /// 64*T1: Timers B, F, H, L, M, and J on unreliable transports.
    fn timeout_64_t1(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D: at least 32 s on unreliable transports (RFC 3261 17.1.1.2); 64*T1 when that
    /// is longer, so the ACK still answers the server's last retransmission.
    fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.timeout_64_t1().max(Duration::from_secs(32))
        }
    }

    /// Timers I and K: T4 on unreliable transports, zero on reliable ones.
    fn t4_unless_reliable(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64*T1 on unreliable transports, zero on reliable ones.
    fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.timeout_64_t1()
        }
    }
}

/// INVITE transactions have their own state machines; every other method, CANCEL included,
/// uses the non-INVITE ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionKind {
    Invite,
    NonInvite,
}

/// Client transaction states (RFC 3261 17.1, RFC 6026 7.2). Terminated transactions are
/// removed at once, so there is no Terminated state to observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// INVITE sent, no response yet.
    Calling,
    /// Non-INVITE sent, no response yet.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived (non-2xx for INVITE); absorbing its retransmissions.
    Completed,
    /// INVITE answered with 2xx; further 2xx (forked) are still delivered.
    Accepted,
}

/// Server transaction states (RFC 3261 17.2, RFC 6026 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Non-INVITE received, nothing sent yet.
    Trying,
    /// INVITE received, or a provisional response sent.
    Proceeding,
    /// A final response sent (non-2xx for INVITE); answering retransmissions.
    Completed,
    /// INVITE: the ACK for the non-2xx final arrived; absorbing its retransmissions.
    Confirmed,
    /// INVITE answered with 2xx; absorbing INVITE retransmissions.
    Accepted,
}

/// A client transaction, valid until the event that ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(Handle);

/// A server transaction, valid until the event that ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(Handle);

/// Why a call on the layer was refused. Nothing is sent or changed when one is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// The table holds `capacity` transactions; a server answers 503 statelessly.
    #[error("transaction table is full")]
    TableFull,
    /// The id belongs to a transaction that has ended.
    #[error("no such transaction")]
    UnknownTransaction,
    /// The call does not fit the transaction's kind or state (for example a response after
    /// a non-2xx final, or an ACK for a non-INVITE).
    #[error("not allowed in the transaction's current state")]
    InvalidState,
    /// Status codes are 100 to 699.
    #[error("status code out of range")]
    InvalidStatus,
    /// ACK never forms a transaction of its own.
    #[error("ACK does not create a transaction")]
    AckCreatesNoTransaction,
}

/// How a received request relates to the server transactions.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMatch {
    /// No transaction has this key. For a request other than ACK the caller creates one with
    /// [`TransactionLayer::create_server`]; an unmatched ACK (the ACK for a 2xx, which has a
    /// branch of its own, or a stray) is the caller's to forward or drop.
    New,
    /// A retransmission of the transaction's request. The layer has already re-sent the last
    /// response or absorbed the request, as the state requires; the caller drops it.
    Retransmission(ServerTxId),
    /// An ACK for the non-2xx final of an INVITE transaction (or a retransmission of it):
    /// absorbed, the transaction moved to Confirmed.
    AckAbsorbed(ServerTxId),
    /// An ACK matching an INVITE transaction that sent a 2xx: RFC 6026 passes it to the
    /// caller, which treats it like an ACK for a 2xx.
    AckAccepted(ServerTxId),
}

/// How a received response relates to the client transactions.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMatch {
    /// No transaction has this key: a stray response (a proxy forwards it statelessly,
    /// RFC 3261 16.7).
    NoMatch,
    /// The caller processes the response for this transaction. After a 300-699 final to an
    /// INVITE the caller must hand the layer the ACK with [`TransactionLayer::ack_non2xx`].
    Deliver(ClientTxId),
    /// A retransmission, or a response the state ignores: absorbed (the ACK re-sent for a
    /// retransmitted non-2xx final of an INVITE). The caller drops it.
    Absorbed(ClientTxId),
}

/// What the caller must act on. Every variant ends its transaction and hands its context
/// back.
#[derive(Debug)]
pub enum TransactionEvent<C, S> {
    /// Timer B or F fired, or no final arrived within 64*T1 of a CANCEL: the caller
    /// synthesises a 408 (RFC 3261 8.1.3.1, 16.7).
    ClientTimeout { id: ClientTxId, ctx: C },
    /// Sending failed ([`TransactionLayer::on_client_transport_error`]): the caller treats it
    /// like a 503 (RFC 3261 8.1.3.1).
    ClientTransportError { id: ClientTxId, ctx: C },
    /// The transaction ended normally (Timer D, K or M).
    ClientTerminated { id: ClientTxId, ctx: C },
    /// Timer H fired: no ACK arrived for the non-2xx final.
    ServerNoAck { id: ServerTxId, ctx: S },
    /// Sending a response failed ([`TransactionLayer::on_server_transport_error`]).
    ServerTransportError { id: ServerTxId, ctx: S },
    /// The transaction ended normally (Timer I, J or L).
    ServerTerminated { id: ServerTxId, ctx: S },
}

/// The deadlines of one transaction's two timers; see [`timer`] for how they stay in step
/// with the heap.
#[derive(Debug, Clone, Copy)]
struct Timers {
    retransmit_at: Option<Instant>,
    retransmit_interval: Duration,
    timeout_at: Option<Instant>,
}

impl Timers {
    const IDLE: Timers = Timers {
        retransmit_at: None,
        retransmit_interval: Duration::ZERO,
        timeout_at: None,
    };

    fn deadline(&self, slot: TimerSlot) -> Option<Instant> {
        match slot {
            TimerSlot::Timeout => self.timeout_at,
            TimerSlot::Retransmit => self.retransmit_at,
        }
    }

    /// Sets a deadline, pushing a heap entry unless one for that instant is already current.
    fn arm(
        &mut self,
        queue: &mut TimerQueue,
        side: Side,
        handle: Handle,
        slot: TimerSlot,
        at: Instant,
    ) {
        let deadline = match slot {
            TimerSlot::Timeout => &mut self.timeout_at,
            TimerSlot::Retransmit => &mut self.retransmit_at,
        };
        if *deadline != Some(at) {
            queue.push(at, TimerRef { side, handle, slot });
            *deadline = Some(at);
        }
    }

    fn arm_retransmit(
        &mut self,
        queue: &mut TimerQueue,
        side: Side,
        handle: Handle,
        now: Instant,
        interval: Duration,
    ) {
        self.retransmit_interval = interval;
        self.arm(queue, side, handle, TimerSlot::Retransmit, now + interval);
    }

    fn arm_timeout(
        &mut self,
        queue: &mut TimerQueue,
        side: Side,
        handle: Handle,
        now: Instant,
        after: Duration,
    ) {
        self.arm(queue, side, handle, TimerSlot::Timeout, now + after);
    }
}

/// All client and server transactions of one element.
///
/// Queues: each call adds at most a few transmits and events per transaction it touches, and
/// [`TransactionLayer::handle_timeout`] at most one transmit or one event per due timer, so
/// the queues hold at most about two entries per live transaction (bounded by the capacity).
/// The caller drains both after every call. The timer heap holds at most a constant number
/// of entries per live transaction (stale entries are pruned and compacted).
pub struct TransactionLayer<C, S> {
    config: TransactionConfig,
    hash_state: RandomState,
    clients: Table<ClientKey, ClientTx<C>>,
    servers: Table<ServerKey, ServerTx<S>>,
    timers: TimerQueue,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TransactionEvent<C, S>>,
}

impl<C, S> TransactionLayer<C, S> {
    pub fn new(config: TransactionConfig) -> TransactionLayer<C, S> {
        TransactionLayer {
            config: config.clamped(),
            hash_state: RandomState::new(),
            clients: Table::new(),
            servers: Table::new(),
            timers: TimerQueue::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration in effect, after clamping.
    pub fn config(&self) -> &TransactionConfig {
        &self.config
    }

    /// Live transactions, client and server.
    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether starting or creating a transaction would fail with `TableFull`.
    pub fn is_full(&self) -> bool {
        self.len() >= self.config.capacity
    }

    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    /// The next message to send. Drain until `None` after every call.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event to act on. Drain until `None` after every call.
    pub fn poll_event(&mut self) -> Option<TransactionEvent<C, S>> {
        self.events.pop_front()
    }

    /// The instant at which [`TransactionLayer::handle_timeout`] must next be called; it may
    /// already be past (a zero-length timer on a reliable transport).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|(at, _)| at)
    }

    /// Fires every timer due at `now`: retransmissions are queued, ended transactions are
    /// reported as events.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer.side {
                Side::Client => self.fire_client_timer(now, at, timer),
                Side::Server => self.fire_server_timer(now, at, timer),
            }
        }
        self.tidy_timers();
    }

    /// Drops stale heap entries: those at the top after every call (so `poll_timeout` is
    /// exact), and all of them once they outnumber the current ones, which keeps the heap
    /// within a constant factor of the live transactions at amortised O(1) cost per push.
    fn tidy_timers(&mut self) {
        while let Some((at, timer)) = self.timers.peek() {
            if self.timer_is_current(at, timer) {
                break;
            }
            self.timers.pop();
        }
        // Two current entries at most per transaction; rebuild when the rest dominate.
        let current_bound = 2 * self.len();
        if self.timers.len() > 2 * current_bound + 1024 {
            let clients = &self.clients;
            let servers = &self.servers;
            self.timers
                .retain(|at, timer| timer_deadline(clients, servers, timer) == Some(at));
        }
    }

    fn timer_is_current(&self, at: Instant, timer: TimerRef) -> bool {
        timer_deadline(&self.clients, &self.servers, timer) == Some(at)
    }

    #[cfg(test)]
    fn timer_entries(&self) -> usize {
        self.timers.len()
    }
}

fn timer_deadline<C, S>(
    clients: &Table<ClientKey, ClientTx<C>>,
    servers: &Table<ServerKey, ServerTx<S>>,
    timer: TimerRef,
) -> Option<Instant> {
    let timers = match timer.side {
        Side::Client => clients.get(timer.handle).map(|tx| &tx.timers),
        Side::Server => servers.get(timer.handle).map(|tx| &tx.timers),
    };
    timers.and_then(|timers| timers.deadline(timer.slot))
}

/// Shorthand used by both sides to queue a message.
fn queue_transmit(transmits: &mut VecDeque<Transmit>, to: Peer, payload: &Bytes) {
    transmits.push_back(Transmit {
        to,
        payload: payload.clone(),
    });
}
