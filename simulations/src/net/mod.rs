//! The in-memory network the simulated nodes talk over.
//!
//! Up to ~10,000 real libp2p nodes share one process, so connections are in-memory pipes
//! instead of sockets, shaped by a [`NetworkModel`]:
//!
//! - **latency**: every link (unordered node pair) has a one-way latency drawn once from the
//!   [`LatencyModel`], as a pure function of the seed and the pair;
//! - **jitter**: each write is delayed by the link latency ± a random fraction of it, but never
//!   arrives before an earlier write (links are ordered streams, like TCP);
//! - **loss**: links are reliable, so a "lost" write shows as a retransmission delay;
//! - **flow control**: at most `window_bytes` in flight per direction, then the writer waits;
//! - **NAT**: [`SimNetwork::set_reachable`] makes a node refuse inbound connections while its
//!   own dials still work.
//!
//! Opening a connection takes one round trip (2 × link latency), like TCP's SYN/SYN-ACK; a
//! refused dial (no listener, NAT, full backlog) fails after the same round trip.
//!
//! Node `i` listens on `/memory/<i + 1>` ([`node_address`]); [`SimNetwork::transport`] is the
//! raw transport, [`SimNetwork::authenticated_transport`] the full libp2p stack over it.

mod model;
mod network;
mod pipe;
mod transport;

#[cfg(test)]
mod swarm_tests;
#[cfg(test)]
mod tests;

pub use model::{
    parse_duration, DisplayDuration, LatencyModel, LatencyParseError, NetworkModel,
    MAX_LINK_LATENCY, MIN_RETRANSMIT_DELAY,
};
pub use network::{Security, SimNetError, SimNetwork, Traffic, ACCEPT_BACKLOG, HANDSHAKE_TIMEOUT};
pub use pipe::SimStream;
pub use transport::{SimDial, SimTransport};

use libp2p::{multiaddr::Protocol, Multiaddr};

/// Index of a simulated node: `0..max_nodes` of its [`SimNetwork`].
pub type NodeIndex = u32;

/// `/memory/<index + 1>`: the address node `index` listens on (`/memory/0` means "any port"
/// to libp2p, hence the offset).
pub fn node_address(index: NodeIndex) -> Multiaddr {
    Multiaddr::empty().with(Protocol::Memory(u64::from(index) + 1))
}
