//! Many-node simulator of the p2psip overlay.
//!
//! Every simulated node is a real overlay node (`overlay::network::Overlay`: the same
//! libp2p behaviours, record validation and DHT routing as `p2psip node`), running in this
//! one process over an in-memory network ([`net`]) that adds per-link latency, loss and NAT.
//! A seeded scenario drives registrations, lookups, calls, churn, supernode failures and
//! adversarial nodes ([`adversary`]), and [`report`] writes what was measured.

pub mod adversary;
pub mod cli;
pub mod net;
pub mod node;
pub mod report;
pub mod runner;
pub mod scenario;

/// Locks `mutex`, also after another thread panicked while holding it: every lock in the
/// simulator guards state that each update leaves valid (counters, queues, maps changed in
/// one call), so the data is used as is rather than the panic spread to every node.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
