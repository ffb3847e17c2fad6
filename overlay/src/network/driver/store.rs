//! The local record store: records put by other nodes, the purge of expired records, and
//! the hand-off of stored records to other nodes.

use std::num::NonZeroUsize;
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::kad::store::RecordStore as _;
use libp2p::{kad, PeerId};
use tokio::time::Instant;

use super::Driver;
use crate::authority::AuthorityRecord;
use crate::key::{key_hash_hex, RecordKind};
use crate::network::records::{earlier, instant_at, now_unix, registration_expiry, stored_record};
use crate::network::{OverlayEvent, STORE_LOG_TARGET};
use crate::record::RegistrationRecord;
use crate::validate::{Refusal, RefusalReason};

/// Bound on handing the stored records over to other nodes when leaving.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(2);
/// Records handed over at most at a time (hand-off puts in flight).
pub(super) const MAX_HANDOFF_RECORDS: usize = 512;

impl Driver {
    /// Graceful leave: puts every record of the local store (its own and those it stores for
    /// others) to the closest other DHT servers for its key, so that the records survive
    /// even if replication has not run since they arrived. Bounded by [`HANDOFF_TIMEOUT`]
    /// and [`MAX_HANDOFF_RECORDS`]; swarm events are handled meanwhile.
    pub(super) async fn hand_off_before_leaving(&mut self) {
        let started = self.hand_off_stored_records();
        if self.handoff_queries.is_empty() {
            return;
        }
        let handed_before = self.handed_over;
        let deadline = Instant::now() + HANDOFF_TIMEOUT;
        while !self.handoff_queries.is_empty() {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(event) => self.on_swarm_event(event),
                Err(_) => break,
            }
        }
        tracing::info!(
            records = started,
            handed_over = self.handed_over.saturating_sub(handed_before),
            unanswered = self.handoff_queries.len(),
            "handed stored records to the closest nodes before leaving"
        );
    }

    /// Starts a put of every unexpired record of the local store to the closest DHT servers
    /// of the routing table for its key (up to the replication factor of them), as far as
    /// [`MAX_HANDOFF_RECORDS`] allows. Returns how many puts started.
    pub(super) fn hand_off_stored_records(&mut self) -> usize {
        let room = MAX_HANDOFF_RECORDS.saturating_sub(self.handoff_queries.len());
        let fanout = self.config.replication_factor.get();
        let now = Instant::now();
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        let records: Vec<kad::Record> = kademlia
            .store_mut()
            .records()
            .filter(|record| !record.is_expired(now))
            .take(room)
            .map(|record| record.into_owned())
            .collect();
        let mut started = 0;
        for record in records {
            let target = kad::KBucketKey::new(record.key.clone());
            let peers: Vec<PeerId> = kademlia
                .get_closest_local_peers(&target)
                .take(fanout)
                .map(|key| *key.preimage())
                .collect();
            let Some(copies) = NonZeroUsize::new(peers.len()) else {
                // No other DHT server is known: there is nobody to hand anything to.
                break;
            };
            let query = kademlia.put_record_to(record, peers.into_iter(), kad::Quorum::N(copies));
            self.handoff_queries.insert(query);
            started += 1;
        }
        if started > 0 {
            tracing::debug!(records = started, "handing stored records over");
        }
        started
    }

    /// A record put by `source`: stored only as the validator's merged value.
    pub(super) fn on_inbound_put(&mut self, source: PeerId, record: kad::Record) {
        let now = now_unix();
        let key_bytes = record.key.to_vec();
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        let existing = kademlia
            .store_mut()
            .get(&record.key)
            .map(|r| r.value.clone());
        let kind = key_bytes.first().copied().and_then(RecordKind::from_byte);
        if kind == Some(RecordKind::Registration) {
            // Judged below by what is known now; the domain's authority is learnt for later.
            if let Ok(incoming) = RegistrationRecord::decode(&record.value) {
                self.learn_authority(incoming.aor.domain());
            }
        }
        let result = match kind {
            Some(RecordKind::Registration) => {
                self.validator
                    .validate_put(&key_bytes, &record.value, existing.as_deref(), now)
            }
            Some(RecordKind::DomainAuthority) => self.validator.validate_authority_put(
                &key_bytes,
                &record.value,
                existing.as_deref(),
                now,
            ),
            Some(RecordKind::Mailbox) | None => {
                self.refused_unsupported_kind = self.refused_unsupported_kind.saturating_add(1);
                Err(Refusal::new(
                    RefusalReason::WrongKey,
                    "this node does not store records of this kind",
                ))
            }
        };
        match result {
            Ok(merged) => {
                let own_expiry = match kind {
                    Some(RecordKind::Registration) => {
                        registration_expiry(&merged).map(|at| instant_at(at, now))
                    }
                    _ => None,
                };
                if kind == Some(RecordKind::DomainAuthority) {
                    // First-come: the key stored is the key pinned.
                    if let Ok(authority) = AuthorityRecord::decode(&merged) {
                        self.pin(&authority);
                    }
                }
                let expires = earlier(record.expires, own_expiry);
                let stored = stored_record(record.key.clone(), merged, expires);
                match self.swarm.behaviour_mut().kademlia.store_mut().put(stored) {
                    // Puts from publishers, replication and hand-offs all arrive here.
                    Ok(()) => tracing::debug!(
                        target: STORE_LOG_TARGET,
                        kind = %KindName(kind),
                        key = %key_hash_hex(&key_bytes),
                        from = %source,
                        publishers = %EntryPublishers { kind, value: &record.value },
                        "record stored"
                    ),
                    Err(error) => {
                        tracing::warn!(from = %source, %error, "cannot store accepted record");
                    }
                }
            }
            Err(refusal) => {
                tracing::info!(from = %source, %refusal, "record refused");
                self.emit(OverlayEvent::RecordRefused {
                    from: source,
                    refusal,
                });
            }
        }
    }

    /// Removes records whose bindings have all expired from the local store.
    pub(super) fn purge_expired(&mut self) {
        let now = Instant::now();
        let store = self.swarm.behaviour_mut().kademlia.store_mut();
        let expired: Vec<kad::RecordKey> = store
            .records()
            .filter(|record| record.is_expired(now))
            .map(|record| record.key.clone())
            .collect();
        for key in &expired {
            store.remove(key);
        }
        if !expired.is_empty() {
            tracing::debug!(count = expired.len(), "purged expired records");
        }
    }
}

/// A record kind as the `record stored` event names it.
struct KindName(Option<RecordKind>);

impl std::fmt::Display for KindName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(RecordKind::Registration) => "registration",
            Some(RecordKind::DomainAuthority) => "domain-authority",
            Some(RecordKind::Mailbox) => "mailbox",
            None => "unknown",
        })
    }
}

/// The serving peers of a registration value's entries, comma-separated (`-` for none or
/// another kind); decoded only when the event is written.
struct EntryPublishers<'a> {
    kind: Option<RecordKind>,
    value: &'a [u8],
}

impl std::fmt::Display for EntryPublishers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let record = match self.kind {
            Some(RecordKind::Registration) => RegistrationRecord::decode(self.value).ok(),
            _ => None,
        };
        let Some(record) = record.filter(|r| !r.entries.is_empty()) else {
            return f.write_str("-");
        };
        for (i, entry) in record.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", entry.serving_peer)?;
        }
        Ok(())
    }
}
