//! A bounded cache of overlay lookup results, so that a call to a user on another node does
//! not cost a DHT query every time. Positive entries live until the earliest of the cache
//! lifetime and the record's own expiry; negative entries ("no such user") only briefly, so
//! a user who registers elsewhere becomes reachable soon. Entries naming a peer that could
//! not be reached are dropped at once.

use crate::lru::LruMap;
use libp2p::{Multiaddr, PeerId};
use std::time::{Duration, Instant};

/// The nodes serving a user, best binding first, with their addresses.
pub type ServingPeers = Vec<(PeerId, Vec<Multiaddr>)>;

/// What the cache knows about an address-of-record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedRoute {
    Found(ServingPeers),
    NotFound,
}

#[derive(Debug)]
struct Entry {
    route: CachedRoute,
    until: Instant,
}

/// Bounded by `capacity` AoRs; when full the least recently used AoR is forgotten (its next
/// call does a DHT lookup again).
#[derive(Debug)]
pub struct RouteCache {
    entries: LruMap<String, Entry>,
    positive_ttl: Duration,
    negative_ttl: Duration,
}

impl RouteCache {
    pub fn new(capacity: usize, positive_ttl: Duration, negative_ttl: Duration) -> RouteCache {
        RouteCache {
            entries: LruMap::new(capacity),
            positive_ttl,
            negative_ttl,
        }
    }

    /// The cached route of `aor`, if still valid.
    pub fn get(&mut self, now: Instant, aor: &str) -> Option<CachedRoute> {
        let key = aor.to_string();
        match self.entries.get_mut(&key) {
            Some(entry) if entry.until > now => Some(entry.route.clone()),
            Some(_) => {
                self.entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers a lookup result; `valid_for` is how long the record's bindings stay live.
    pub fn store_found(
        &mut self,
        now: Instant,
        aor: &str,
        peers: ServingPeers,
        valid_for: Duration,
    ) {
        let until = now + self.positive_ttl.min(valid_for);
        let entry = Entry {
            route: CachedRoute::Found(peers),
            until,
        };
        self.entries.insert(aor.to_string(), entry);
    }

    pub fn store_not_found(&mut self, now: Instant, aor: &str) {
        let entry = Entry {
            route: CachedRoute::NotFound,
            until: now + self.negative_ttl,
        };
        self.entries.insert(aor.to_string(), entry);
    }

    /// Forgets every route through `peer` (it could not be reached). A scan: rare, bounded.
    pub fn forget_peer(&mut self, peer: &PeerId) {
        let stale: Vec<String> = self
            .entries
            .keys()
            .filter(|aor| {
                self.entries
                    .peek(aor)
                    .is_some_and(|entry| match &entry.route {
                        CachedRoute::Found(peers) => peers.iter().any(|(p, _)| p == peer),
                        CachedRoute::NotFound => false,
                    })
            })
            .cloned()
            .collect();
        for aor in stale {
            self.entries.remove(&aor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    fn peer() -> PeerId {
        Keypair::generate_ed25519().public().to_peer_id()
    }

    #[test]
    fn positive_entries_honour_the_shorter_of_ttl_and_record_expiry() {
        let now = Instant::now();
        let mut cache = RouteCache::new(8, Duration::from_secs(30), Duration::from_secs(5));
        let p = peer();
        cache.store_found(
            now,
            "bob@example.com",
            vec![(p, vec![])],
            Duration::from_secs(10),
        );
        assert_eq!(
            cache.get(now + Duration::from_secs(9), "bob@example.com"),
            Some(CachedRoute::Found(vec![(p, vec![])]))
        );
        assert_eq!(
            cache.get(now + Duration::from_secs(10), "bob@example.com"),
            None
        );
        cache.store_found(
            now,
            "bob@example.com",
            vec![(p, vec![])],
            Duration::from_secs(3600),
        );
        assert!(cache
            .get(now + Duration::from_secs(29), "bob@example.com")
            .is_some());
        assert!(cache
            .get(now + Duration::from_secs(30), "bob@example.com")
            .is_none());
    }

    #[test]
    fn negative_entries_are_short_and_unreachable_peers_forgotten() {
        let now = Instant::now();
        let mut cache = RouteCache::new(8, Duration::from_secs(30), Duration::from_secs(5));
        cache.store_not_found(now, "nobody@example.com");
        assert_eq!(
            cache.get(now, "nobody@example.com"),
            Some(CachedRoute::NotFound)
        );
        assert_eq!(
            cache.get(now + Duration::from_secs(5), "nobody@example.com"),
            None
        );
        let (a, b) = (peer(), peer());
        cache.store_found(
            now,
            "x@example.com",
            vec![(a, vec![])],
            Duration::from_secs(60),
        );
        cache.store_found(
            now,
            "y@example.com",
            vec![(b, vec![])],
            Duration::from_secs(60),
        );
        cache.forget_peer(&a);
        assert!(cache.get(now, "x@example.com").is_none());
        assert!(cache.get(now, "y@example.com").is_some());
    }

    #[test]
    fn bounded() {
        let now = Instant::now();
        let mut cache = RouteCache::new(2, Duration::from_secs(30), Duration::from_secs(5));
        for user in ["a", "b", "c"] {
            cache.store_not_found(now, &format!("{user}@example.com"));
        }
        assert!(cache.get(now, "a@example.com").is_none());
        assert!(cache.get(now, "c@example.com").is_some());
    }
}
