//! Glue between the record model and Kademlia: clocks, expiries, quorums, and which
//! addresses a node advertises in its entries.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::multiaddr::Protocol;
use libp2p::{kad, Multiaddr, PeerId};
use tokio::time::Instant;

use crate::authority::Delegation;
use crate::record::{RegistrationRecord, MAX_ADDRS_PER_ENTRY, MAX_ADDR_BYTES};

/// Once set, unix time is this unix time plus the tokio time elapsed since this instant.
/// Read on every `now_unix`; a `OnceLock` costs a real node one atomic load there.
static UNIX_TIME_FROM_TOKIO_CLOCK: OnceLock<(Instant, Duration)> = OnceLock::new();

/// Makes unix time, as records count it, advance with tokio's clock from the first call on,
/// for the whole process (later calls change nothing: tokio's instants of later runtimes
/// continue from the same base). The simulator calls it from its paused runtime so that
/// registrations expire in its virtual time; nodes of a real deployment never do (they
/// follow the system's wall clock, including its corrections).
pub fn follow_tokio_clock() {
    UNIX_TIME_FROM_TOKIO_CLOCK.get_or_init(|| (Instant::now(), system_unix_time()));
}

/// The current unix time: the system's wall clock, or tokio's clock after
/// [`follow_tokio_clock`]. A wall clock before 1970 reads as 0, which makes every record
/// look fresh rather than crashing the node.
fn unix_time() -> Duration {
    match UNIX_TIME_FROM_TOKIO_CLOCK.get() {
        Some((instant, unix)) => *unix + instant.elapsed(),
        None => system_unix_time(),
    }
}

fn system_unix_time() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// The current time in whole seconds since the Unix epoch, as records carry it.
pub fn now_unix() -> u64 {
    unix_time().as_secs()
}

pub fn now_unix_millis() -> u64 {
    u64::try_from(unix_time().as_millis()).unwrap_or(u64::MAX)
}

/// The monotonic instant at which unix time `expires_at` is reached, seen from `now_unix`.
pub(crate) fn instant_at(expires_at: u64, now_unix: u64) -> Instant {
    let remaining = Duration::from_secs(expires_at.saturating_sub(now_unix));
    let now = Instant::now();
    now.checked_add(remaining).unwrap_or(now)
}

/// Unix time at which the latest entry of a registration record stops counting; `None` when
/// the value does not decode or holds no entry.
pub(crate) fn registration_expiry(value: &[u8]) -> Option<u64> {
    RegistrationRecord::decode(value)
        .ok()
        .filter(|record| !record.entries.is_empty())
        .map(|record| record.expires_at())
}

/// The earlier of two optional expiries; `None` only when both are.
pub(crate) fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// A Kademlia record for the local store, with no publisher: Kademlia's replication job
/// skips records published by the local node (it expects its publication job, which is off,
/// to handle them), and every stored record should be replicated.
pub(crate) fn stored_record(
    key: kad::RecordKey,
    value: Vec<u8>,
    expires: Option<Instant>,
) -> kad::Record {
    kad::Record {
        key,
        value,
        publisher: None,
        expires,
    }
}

/// Write quorum: `min(wanted, known peers)`, at least one.
pub(crate) fn write_quorum(wanted: NonZeroUsize, known_peers: usize) -> NonZeroUsize {
    NonZeroUsize::new(known_peers.min(wanted.get())).unwrap_or(NonZeroUsize::MIN)
}

/// The delegation for `domain` valid at `now`, the one lasting longest when several are.
pub(crate) fn delegation_for<'a>(
    delegations: &'a [Delegation],
    domain: &str,
    now: u64,
) -> Option<&'a Delegation> {
    delegations
        .iter()
        .filter(|d| d.domain == domain && d.not_before <= now && now < d.not_after)
        .max_by_key(|d| d.not_after)
}

/// Addresses to advertise in an entry so that other nodes can dial this one: confirmed
/// external addresses first, then listen addresses, loopback ones only when there is
/// nothing else (a single-host overlay), without `/p2p` suffixes, capped to the entry limit.
pub(crate) fn serving_addrs<'a>(
    external: impl Iterator<Item = &'a Multiaddr>,
    listening: impl Iterator<Item = &'a Multiaddr>,
) -> Vec<Multiaddr> {
    let mut seen = HashSet::new();
    let mut routable = Vec::new();
    let mut loopback = Vec::new();
    for address in external.chain(listening) {
        let address = without_peer_id(address);
        if address.len() > MAX_ADDR_BYTES || !seen.insert(address.clone()) {
            continue;
        }
        if is_loopback(&address) {
            loopback.push(address);
        } else if !is_unspecified(&address) {
            routable.push(address);
        }
    }
    let mut chosen = if routable.is_empty() {
        loopback
    } else {
        routable
    };
    chosen.truncate(MAX_ADDRS_PER_ENTRY);
    chosen
}

/// `address` without a trailing `/p2p/<peer id>`.
pub fn without_peer_id(address: &Multiaddr) -> Multiaddr {
    let mut address = address.clone();
    if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
        address.pop();
    }
    address
}

/// The peer id at the end of a `/p2p/<peer id>` address.
pub fn peer_id_of(address: &Multiaddr) -> Option<PeerId> {
    match address.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

pub(crate) fn is_loopback(address: &Multiaddr) -> bool {
    address.iter().any(|protocol| match protocol {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

fn is_unspecified(address: &Multiaddr) -> bool {
    address.iter().any(|protocol| match protocol {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// Whether an address learnt from a peer is worth adding to the routing table.
pub(crate) fn is_dialable(address: &Multiaddr) -> bool {
    !is_unspecified(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn serving_addrs_prefer_routable_and_strip_peer_ids() {
        let peer = PeerId::random();
        let listening = [
            addr("/ip4/127.0.0.1/tcp/5000"),
            addr(&format!("/ip4/192.0.2.7/tcp/5000/p2p/{peer}")),
            addr("/ip4/0.0.0.0/tcp/5000"),
        ];
        let chosen = serving_addrs(std::iter::empty(), listening.iter());
        assert_eq!(chosen, vec![addr("/ip4/192.0.2.7/tcp/5000")]);

        let loopback_only = [addr("/ip4/127.0.0.1/tcp/5000")];
        let chosen = serving_addrs(std::iter::empty(), loopback_only.iter());
        assert_eq!(chosen, vec![addr("/ip4/127.0.0.1/tcp/5000")]);
    }

    #[test]
    fn quorum_is_bounded_by_known_peers() {
        let three = NonZeroUsize::new(3).unwrap();
        assert_eq!(write_quorum(three, 0).get(), 1);
        assert_eq!(write_quorum(three, 2).get(), 2);
        assert_eq!(write_quorum(three, 10).get(), 3);
    }

    #[test]
    fn earlier_expiry_wins() {
        let now = Instant::now();
        let later = now + std::time::Duration::from_secs(5);
        assert_eq!(earlier(Some(now), Some(later)), Some(now));
        assert_eq!(earlier(None, Some(later)), Some(later));
        assert_eq!(earlier(None, None), None);
    }
}
