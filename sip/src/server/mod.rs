//! The SIP server element of a node: registrar (RFC 3261 10), stateful proxy (16), OPTIONS
//! and error responder, on top of the transaction layer. Sans-IO: the node feeds it whole
//! messages with [`SipServer::handle_input`] and drains [`SipServer::poll_transmit`].

pub mod identity;
pub mod ids;
pub mod response_choice;

use crate::transport::{ConnectionId, Peer, Transmit, Transport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One address the node listens on, and the host it advertises there (in Via and
/// Record-Route). `advertised` is the bound IP unless the socket is bound to a wildcard
/// address, in which case the node picks an interface address or a configured name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub advertised_host: String,
}

/// Server configuration. Every field has a sane default so a node runs with no config file.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listeners: Vec<Listener>,
    /// Domains this node is registrar and proxy for. Empty: accept any domain.
    pub domains: Vec<String>,
    /// Accept REGISTER without authentication (labs, meshes).
    pub open: bool,
    /// Users allowed to register (from `--users`); ignored when `open`.
    pub users: Vec<crate::auth::Credential>,
    /// Bounds of the location table.
    pub max_aors: usize,
    pub max_bindings_per_aor: usize,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    /// Bound of the transaction table; when full, new requests get 503 statelessly.
    pub max_transactions: usize,
    /// RFC 3261 timer T1 (RTT estimate), T2, T4.
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listeners: Vec::new(),
            domains: Vec::new(),
            open: false,
            users: Vec::new(),
            max_aors: 1_000_000,
            max_bindings_per_aor: 16,
            min_expires: 60,
            max_expires: 86_400,
            default_expires: 3_600,
            max_transactions: 1_000_000,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Counters for status output and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub messages_in: u64,
    pub messages_out: u64,
    pub parse_errors: u64,
    pub registrations: u64,
    pub transactions: u64,
}

/// The registrar + proxy state machine of one node.
pub struct SipServer {
    config: ServerConfig,
    outbox: std::collections::VecDeque<Transmit>,
    stats: ServerStats,
}

impl SipServer {
    pub fn new(config: ServerConfig, now: Instant) -> SipServer {
        let _ = now;
        SipServer {
            config,
            outbox: Default::default(),
            stats: ServerStats::default(),
        }
    }

    /// Feeds one complete message (a UDP datagram, or a message framed off a stream by
    /// [`crate::message::frame_stream`]).
    pub fn handle_input(&mut self, now: Instant, from: Peer, bytes: &[u8]) {
        let _ = (now, from, bytes, &self.config);
        self.stats.messages_in += 1;
    }

    /// The next message to send, if any. Drain until `None` after every call that mutates.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The earliest instant at which [`SipServer::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }

    /// A stream connection went away: bindings and transactions that depend on it are
    /// updated (bindings keep their address so a new connection can be opened).
    pub fn connection_closed(&mut self, connection: ConnectionId) {
        let _ = connection;
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
}
