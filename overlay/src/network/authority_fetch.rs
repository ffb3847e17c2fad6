//! Learning a domain's authority key from the DHT on demand (open mode).
//!
//! The rule: when a node meets a domain that has neither a trust anchor nor a pinned key
//! (a registration put, its own publication or a lookup of one of the domain's users), it
//! gets the domain's authority record from the DHT, validates it and pins its key. Puts
//! arriving while that fetch runs are judged by what is known at that moment (in open
//! mode: accepted on their serving node's signature); a lookup instead waits for the fetch
//! (bounded by [`FETCH_TIMEOUT`] and its own timeout) before getting the registration, and
//! so does the publication of an authority record (so that a second key is refused by the
//! publisher itself, not only, silently, by the storing nodes). A
//! fetch that finds no valid record is remembered for [`NEGATIVE_TTL`], during which the
//! domain stays open without asking again. Once pinned, the key counts for every later put
//! and fetch. Entries accepted before the pin stay in the store until they expire or are
//! replaced, but every fetch validates what it finds, so they are no longer served as valid.
//!
//! Bounded: at most [`MAX_FETCHES`] fetches run at a time (a domain met while all are busy
//! is asked about the next time it is met), at most [`MAX_WAITING_LOOKUPS`] lookups wait on
//! one fetch (the rest go ahead at once), and at most [`MAX_NEGATIVE_DOMAINS`] domains are
//! remembered as having no record.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::kad;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{LookupAnswer, LookupError, PublishError, PublishReport};
use crate::authority::AuthorityRecord;
use crate::key::Aor;

/// Authority fetches running at the same time.
pub(crate) const MAX_FETCHES: usize = 4;
/// Bound on one authority fetch.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a domain without an authority record is not asked about again.
pub(crate) const NEGATIVE_TTL: Duration = Duration::from_secs(5 * 60);
/// Domains remembered as having no authority record.
pub(crate) const MAX_NEGATIVE_DOMAINS: usize = 1024;
/// Lookups (and authority publications) waiting on one fetch.
pub(crate) const MAX_WAITING_LOOKUPS: usize = 64;

/// A lookup waiting for its domain's authority to be fetched.
pub(crate) struct WaitingLookup {
    pub(crate) aor: Aor,
    pub(crate) reply: oneshot::Sender<Result<LookupAnswer, LookupError>>,
    /// When the lookup must be answered.
    pub(crate) deadline: Instant,
}

/// Something waiting for a domain's authority to be fetched.
pub(crate) enum Waiting {
    Lookup(WaitingLookup),
    PublishAuthority {
        record: Box<AuthorityRecord>,
        reply: oneshot::Sender<Result<PublishReport, PublishError>>,
    },
}

/// One running fetch of a domain's authority record.
pub(crate) struct Fetch {
    /// Canonical domain.
    pub(crate) domain: String,
    /// The DHT key of its authority record.
    pub(crate) key: Vec<u8>,
    /// A valid record was found and pinned.
    pub(crate) pinned: bool,
    pub(crate) waiting: Vec<Waiting>,
}

/// The running fetches and the domains known to have no authority record.
#[derive(Default)]
pub(crate) struct AuthorityFetches {
    running: HashMap<kad::QueryId, Fetch>,
    /// Domain → until when it is not asked about again.
    negative: HashMap<String, Instant>,
}

/// What to do about a domain met without a known authority key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Start a fetch.
    Fetch,
    /// A fetch of it is running.
    Running(kad::QueryId),
    /// Known to have no record recently, or no fetch slot is free: go on without one.
    Skip,
}

impl AuthorityFetches {
    /// What to do about `domain` at `now`.
    pub(crate) fn need(&mut self, domain: &str, now: Instant) -> Need {
        if let Some(query) = self.running_for(domain) {
            return Need::Running(query);
        }
        match self.negative.get(domain) {
            Some(until) if *until > now => return Need::Skip,
            Some(_) => {
                self.negative.remove(domain);
            }
            None => {}
        }
        if self.running.len() >= MAX_FETCHES {
            Need::Skip
        } else {
            Need::Fetch
        }
    }

    fn running_for(&self, domain: &str) -> Option<kad::QueryId> {
        self.running
            .iter()
            .find(|(_, fetch)| fetch.domain == domain)
            .map(|(query, _)| *query)
    }

    pub(crate) fn start(&mut self, query: kad::QueryId, domain: String, key: Vec<u8>) {
        self.running.insert(
            query,
            Fetch {
                domain,
                key,
                pinned: false,
                waiting: Vec::new(),
            },
        );
    }

    pub(crate) fn get_mut(&mut self, query: &kad::QueryId) -> Option<&mut Fetch> {
        self.running.get_mut(query)
    }

    /// Makes `waiting` wait for the fetch `query`; gives it back when it cannot wait.
    pub(crate) fn wait(&mut self, query: &kad::QueryId, waiting: Waiting) -> Result<(), Waiting> {
        match self.running.get_mut(query) {
            Some(fetch) if fetch.waiting.len() < MAX_WAITING_LOOKUPS => {
                fetch.waiting.push(waiting);
                Ok(())
            }
            _ => Err(waiting),
        }
    }

    /// Ends the fetch `query`; a fetch that pinned nothing marks its domain as having no
    /// record until `now + NEGATIVE_TTL`.
    pub(crate) fn finish(&mut self, query: &kad::QueryId, now: Instant) -> Option<Fetch> {
        let fetch = self.running.remove(query)?;
        if !fetch.pinned {
            self.remember_absent(&fetch.domain, now);
        }
        Some(fetch)
    }

    fn remember_absent(&mut self, domain: &str, now: Instant) {
        if !self.negative.contains_key(domain) && self.negative.len() >= MAX_NEGATIVE_DOMAINS {
            self.negative.retain(|_, until| *until > now);
            if self.negative.len() >= MAX_NEGATIVE_DOMAINS {
                // Full of live entries: the domain is simply asked about again next time.
                return;
            }
        }
        self.negative.insert(domain.to_owned(), now + NEGATIVE_TTL);
    }

    /// Lookups and publications waiting on any fetch.
    pub(crate) fn waiting_lookups(&self) -> usize {
        self.running.values().map(|fetch| fetch.waiting.len()).sum()
    }

    /// Ends every fetch, handing back what waited.
    pub(crate) fn drain(&mut self) -> Vec<Waiting> {
        self.running
            .drain()
            .flat_map(|(_, fetch)| fetch.waiting)
            .collect()
    }

    #[cfg(test)]
    fn negative_len(&self) -> usize {
        self.negative.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn query_ids(count: usize) -> Vec<kad::QueryId> {
        // Query ids can only be made by a Kademlia behaviour: start queries on one.
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let peer = keypair.public().to_peer_id();
        let store = kad::store::MemoryStore::new(peer);
        let mut kademlia = kad::Behaviour::new(peer, store);
        (0..count)
            .map(|i| kademlia.get_record(kad::RecordKey::new(&vec![i as u8])))
            .collect()
    }

    #[test]
    fn a_domain_is_fetched_once_at_a_time_and_not_again_while_absent() {
        let mut fetches = AuthorityFetches::default();
        let now = Instant::now();
        let ids = query_ids(1);
        assert_eq!(fetches.need("example.com", now), Need::Fetch);
        fetches.start(ids[0], "example.com".into(), vec![2]);
        assert_eq!(fetches.need("example.com", now), Need::Running(ids[0]));
        assert!(fetches.finish(&ids[0], now).is_some());
        assert_eq!(fetches.need("example.com", now), Need::Skip);
        let later = now + NEGATIVE_TTL + Duration::from_secs(1);
        assert_eq!(fetches.need("example.com", later), Need::Fetch);
        assert_eq!(fetches.negative_len(), 0);
    }

    #[test]
    fn a_pinned_domain_is_not_remembered_as_absent() {
        let mut fetches = AuthorityFetches::default();
        let now = Instant::now();
        let ids = query_ids(1);
        fetches.start(ids[0], "example.com".into(), vec![2]);
        fetches.get_mut(&ids[0]).unwrap().pinned = true;
        fetches.finish(&ids[0], now);
        assert_eq!(fetches.negative_len(), 0);
    }

    #[test]
    fn fetches_and_the_negative_cache_are_bounded() {
        let mut fetches = AuthorityFetches::default();
        let now = Instant::now();
        let ids = query_ids(MAX_FETCHES + 1);
        for (i, id) in ids.iter().take(MAX_FETCHES).enumerate() {
            assert_eq!(fetches.need(&format!("d{i}.example"), now), Need::Fetch);
            fetches.start(*id, format!("d{i}.example"), vec![2]);
        }
        assert_eq!(fetches.need("other.example", now), Need::Skip);
        for i in 0..MAX_NEGATIVE_DOMAINS + 10 {
            fetches.remember_absent(&format!("n{i}.example"), now);
        }
        assert_eq!(fetches.negative_len(), MAX_NEGATIVE_DOMAINS);
        // Expired entries make room.
        fetches.remember_absent("late.example", now + NEGATIVE_TTL + Duration::from_secs(1));
        assert_eq!(fetches.negative_len(), 1);
    }

    #[test]
    fn lookups_waiting_on_a_fetch_are_bounded() {
        let mut fetches = AuthorityFetches::default();
        let ids = query_ids(1);
        fetches.start(ids[0], "example.com".into(), vec![2]);
        let aor = Aor::parse("alice@example.com").unwrap();
        let mut receivers = Vec::new();
        for _ in 0..MAX_WAITING_LOOKUPS {
            let (reply, rx) = oneshot::channel();
            receivers.push(rx);
            let lookup = Waiting::Lookup(WaitingLookup {
                aor: aor.clone(),
                reply,
                deadline: Instant::now(),
            });
            assert!(fetches.wait(&ids[0], lookup).is_ok());
        }
        let (reply, _rx) = oneshot::channel();
        let lookup = Waiting::Lookup(WaitingLookup {
            aor,
            reply,
            deadline: Instant::now(),
        });
        assert!(fetches.wait(&ids[0], lookup).is_err());
        assert_eq!(fetches.waiting_lookups(), MAX_WAITING_LOOKUPS);
        assert_eq!(fetches.drain().len(), MAX_WAITING_LOOKUPS);
    }
}
