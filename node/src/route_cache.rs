//! A bounded cache of the routing chain's answers, so that a call does not cost a DHT
//! lookup or a DNS query every time. Each answer lives until the time the chain gave it
//! (the record's expiry or the DNS TTL, capped); "nothing found" only briefly, so a user who
//! registers elsewhere becomes reachable soon. Answers naming an overlay node that could not
//! be reached are dropped at once.

use crate::lru::LruMap;
use libp2p::{Multiaddr, PeerId};
use sip::server::Resolution;
use std::time::Instant;

/// The nodes serving a user, best binding first, with their addresses.
pub type ServingPeers = Vec<(PeerId, Vec<Multiaddr>)>;

/// One remembered answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedRoute {
    pub resolution: Resolution,
    /// The overlay nodes it names, with their addresses for dialling.
    pub serving: ServingPeers,
    /// The federation whose TLS identity its TLS hops are reached with.
    pub federation: Option<String>,
}

#[derive(Debug)]
struct Entry {
    route: CachedRoute,
    until: Instant,
}

/// Bounded by `capacity` keys; when full the least recently used is forgotten (its next
/// request runs the chain again).
#[derive(Debug)]
pub struct RouteCache {
    entries: LruMap<String, Entry>,
}

impl RouteCache {
    pub fn new(capacity: usize) -> RouteCache {
        RouteCache {
            entries: LruMap::new(capacity),
        }
    }

    /// The answer cached under `key`, if still valid.
    pub fn get(&mut self, now: Instant, key: &str) -> Option<CachedRoute> {
        let key = key.to_string();
        match self.entries.get_mut(&key) {
            Some(entry) if entry.until > now => Some(entry.route.clone()),
            Some(_) => {
                self.entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers an answer until `until`.
    pub fn store(&mut self, now: Instant, key: String, route: CachedRoute, until: Instant) {
        if until > now {
            self.entries.insert(key, Entry { route, until });
        }
    }

    /// Forgets every answer through `peer` (it could not be reached). A scan: rare, bounded.
    pub fn forget_peer(&mut self, peer: &PeerId) {
        let stale: Vec<String> = self
            .entries
            .keys()
            .filter(|key| {
                self.entries
                    .peek(key)
                    .is_some_and(|entry| entry.route.serving.iter().any(|(p, _)| p == peer))
            })
            .cloned()
            .collect();
        for key in stale {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;
    use std::time::Duration;

    fn peer() -> PeerId {
        Keypair::generate_ed25519().public().to_peer_id()
    }

    fn through(peer: PeerId) -> CachedRoute {
        CachedRoute {
            resolution: Resolution::failed(404, "Not Found"),
            serving: vec![(peer, vec![])],
            federation: None,
        }
    }

    #[test]
    fn entries_live_until_their_time() {
        let now = Instant::now();
        let mut cache = RouteCache::new(8);
        let p = peer();
        cache.store(now, "bob".into(), through(p), now + Duration::from_secs(10));
        assert_eq!(
            cache.get(now + Duration::from_secs(9), "bob"),
            Some(through(p))
        );
        assert_eq!(cache.get(now + Duration::from_secs(10), "bob"), None);
        cache.store(now, "past".into(), through(p), now);
        assert_eq!(
            cache.get(now, "past"),
            None,
            "an answer already stale is not kept"
        );
    }

    #[test]
    fn an_unreachable_peer_takes_its_routes_along() {
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        let mut cache = RouteCache::new(8);
        let (gone, alive) = (peer(), peer());
        cache.store(now, "a".into(), through(gone), later);
        cache.store(now, "b".into(), through(alive), later);
        cache.forget_peer(&gone);
        assert_eq!(cache.get(now, "a"), None);
        assert!(cache.get(now, "b").is_some());
    }

    #[test]
    fn the_cache_is_bounded() {
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        let mut cache = RouteCache::new(2);
        for key in ["a", "b", "c"] {
            cache.store(now, key.into(), through(peer()), later);
        }
        assert_eq!(cache.get(now, "a"), None, "the least recently used went");
        assert!(cache.get(now, "c").is_some());
    }
}
