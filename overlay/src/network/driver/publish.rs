//! This node's own entries: signing them, putting them to the closest nodes, putting them
//! again until they expire, and the answers to those puts.

use std::num::NonZeroUsize;
use std::time::Duration;

use libp2p::kad::store::RecordStore as _;
use libp2p::{kad, Multiaddr};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Driver;
use crate::key::{Aor, RecordKind};
use crate::network::records::{
    delegation_for, instant_at, now_unix, now_unix_millis, registration_expiry, serving_addrs,
    stored_record, write_quorum,
};
use crate::network::{PublishError, PublishReport};
use crate::record::{next_seq, EntryDraft, NodeEntry, RecordBinding, RegistrationRecord};

/// A put that reached fewer nodes than its quorum is made again this soon, rather than at
/// the next republication: until then the user may not be found.
const PUT_RETRY_INTERVAL: Duration = Duration::from_secs(15);

/// A put of this node's entry waiting for Kademlia's answer.
pub(super) struct PendingPublish {
    /// The AoR whose own entry is being put; `None` for other records (authorities).
    pub(super) own: Option<Aor>,
    pub(super) seq: u64,
    pub(super) quorum: NonZeroUsize,
    /// `None` for republications, which nobody waits for.
    pub(super) reply: Option<oneshot::Sender<Result<PublishReport, PublishError>>>,
}

/// The latest entry this node signed for an AoR, put again until it expires.
pub(super) struct OwnEntry {
    entry: NodeEntry,
    /// When the entry is put to the DHT again.
    next_put: Instant,
}

impl Driver {
    /// Signs this node's new entry for `aor`, with a sequence number above any it used
    /// before for that AoR (in memory or still in the local store).
    pub(super) fn sign_own_entry(
        &mut self,
        aor: &Aor,
        bindings: Vec<RecordBinding>,
    ) -> Result<NodeEntry, PublishError> {
        let now = now_unix();
        let previous = self.previous_own_entry(aor);
        let last_seq = previous.as_ref().map_or(0, |entry| entry.seq);
        let mut draft = EntryDraft::new(next_seq(last_seq, now_unix_millis()), now, bindings)
            .with_addrs(self.serving_addrs())
            .with_delegation(delegation_for(&self.delegations, aor.domain(), now).cloned());
        if let Some(previous) = &previous {
            draft = draft.outliving(previous);
        }
        Ok(NodeEntry::sign(&self.keypair, aor, draft)?)
    }

    pub(super) fn sign_withdrawal(&mut self, aor: &Aor) -> Result<NodeEntry, PublishError> {
        let previous = self
            .previous_own_entry(aor)
            .ok_or(PublishError::NotPublished)?;
        let now = now_unix();
        let draft =
            EntryDraft::withdrawal(next_seq(previous.seq, now_unix_millis()), now, &previous);
        Ok(NodeEntry::sign(&self.keypair, aor, draft)?)
    }

    /// This node's latest entry for `aor`: the one in memory, or one still in the local
    /// store from an earlier run (the DHT may have handed it back).
    fn previous_own_entry(&mut self, aor: &Aor) -> Option<NodeEntry> {
        let local_peer = *self.swarm.local_peer_id();
        let key = kad::RecordKey::new(&aor.dht_key(RecordKind::Registration));
        let stored = self
            .swarm
            .behaviour_mut()
            .kademlia
            .store_mut()
            .get(&key)
            .and_then(|record| RegistrationRecord::decode(&record.value).ok())
            .and_then(|record| record.entry(&local_peer).cloned());
        let remembered = self.own_entries.get(aor).map(|own| own.entry.clone());
        match (remembered, stored) {
            (Some(a), Some(b)) => Some(if b.seq > a.seq { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    fn serving_addrs(&self) -> Vec<Multiaddr> {
        serving_addrs(self.swarm.external_addresses(), self.swarm.listeners())
    }

    /// Validates and stores `entry` locally (merged with what is stored), remembers it for
    /// republication, and puts a record holding only this entry to the closest nodes: the
    /// other entries are their publishers' to spread.
    pub(super) fn put_own_entry(
        &mut self,
        aor: Aor,
        entry: NodeEntry,
        reply: Option<oneshot::Sender<Result<PublishReport, PublishError>>>,
    ) {
        // Learnt for the next republication if the domain turns out to have an authority.
        self.learn_authority(aor.domain());
        let seq = entry.seq;
        let answer = |reply: Option<oneshot::Sender<_>>, result| {
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        };
        let now = now_unix();
        let expires_at = entry.effective_expiry();
        let value = match RegistrationRecord::with_entry(aor.clone(), entry.clone()).encode() {
            Ok(value) => value,
            Err(error) => return answer(reply, Err(PublishError::Record(error))),
        };
        let key_bytes = aor.dht_key(RecordKind::Registration);
        let key = kad::RecordKey::new(&key_bytes);
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        let existing = kademlia.store_mut().get(&key).map(|r| r.value.clone());
        let merged = match self
            .validator
            .validate_put(&key_bytes, &value, existing.as_deref(), now)
        {
            Ok(merged) => merged,
            Err(refusal) => return answer(reply, Err(PublishError::Refused(refusal))),
        };
        let merged_expiry = registration_expiry(&merged).map(|at| instant_at(at, now));
        let merged = stored_record(key.clone(), merged, merged_expiry);
        let known_peers = self.routing_table_size();
        let has_query_slot = self.has_query_slot();
        let next_put = if has_query_slot {
            Instant::now() + self.config.republish_interval
        } else {
            // Put as soon as a query slot frees up.
            Instant::now()
        };
        self.own_entries
            .insert(aor.clone(), OwnEntry { entry, next_put });
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        if known_peers == 0 || !has_query_slot {
            // Republished as soon as a peer is known.
            let stored = kademlia.store_mut().put(merged);
            return answer(reply, stored_locally_only(stored, known_peers, seq));
        }
        let quorum = write_quorum(self.config.write_quorum, known_peers);
        let mut outgoing = kad::Record::new(key, value);
        outgoing.expires = Some(instant_at(expires_at, now));
        // `put_record` also stores `outgoing` locally; the merged value replaces it below.
        let query = match kademlia.put_record(outgoing, kad::Quorum::N(quorum)) {
            Ok(query) => query,
            Err(error) => return answer(reply, Err(PublishError::Store(error.to_string()))),
        };
        if let Err(error) = kademlia.store_mut().put(merged) {
            tracing::warn!(%aor, %error, "cannot store merged record locally");
        }
        tracing::debug!(%aor, seq, known_peers, quorum = quorum.get(), "putting own entry");
        // Republications have no deadline of their own: nobody waits for them, and
        // Kademlia's query timeout ends them.
        if reply.is_some() {
            self.add_deadline(query, self.config.publish_timeout);
        }
        self.pending_publishes.insert(
            query,
            PendingPublish {
                own: Some(aor.clone()),
                seq,
                quorum,
                reply,
            },
        );
    }

    /// Puts the own entries that are due again, as far as query slots allow, and forgets
    /// expired ones.
    pub(super) fn republish_due_entries(&mut self) {
        let now_unix = now_unix();
        self.own_entries
            .retain(|_, own| !own.entry.is_expired(now_unix));
        if self.routing_table_size() == 0 {
            return;
        }
        let now = Instant::now();
        let free_slots = self
            .config
            .max_concurrent_queries
            .saturating_sub(self.pending_queries());
        let due: Vec<(Aor, NodeEntry)> = self
            .own_entries
            .iter()
            .filter(|(_, own)| own.next_put <= now)
            .take(free_slots)
            .map(|(aor, own)| (aor.clone(), own.entry.clone()))
            .collect();
        if !due.is_empty() {
            tracing::debug!(count = due.len(), "republishing own entries");
        }
        for (aor, entry) in due {
            self.put_own_entry(aor, entry, None);
        }
    }

    /// Puts the own entry of `aor` again after [`PUT_RETRY_INTERVAL`], unless a newer entry
    /// than `seq` replaced it meanwhile or it is due sooner anyway.
    fn retry_own_entry_soon(&mut self, aor: &Aor, seq: u64) {
        let retry_at = Instant::now() + PUT_RETRY_INTERVAL;
        if let Some(own) = self.own_entries.get_mut(aor) {
            if own.entry.seq == seq && own.next_put > retry_at {
                tracing::debug!(%aor, seq, "put fell short of its quorum; trying again soon");
                own.next_put = retry_at;
            }
        }
    }

    /// Makes every own entry due, e.g. when the first peer appears after publishing alone.
    pub(super) fn make_own_entries_due(&mut self) {
        let now = Instant::now();
        for own in self.own_entries.values_mut() {
            own.next_put = now;
        }
    }

    fn pending_queries(&self) -> usize {
        self.pending_publishes.len()
            + self.pending_lookups.len()
            + self.authority_fetches.waiting_lookups()
    }

    pub(super) fn has_query_slot(&self) -> bool {
        self.pending_queries() < self.config.max_concurrent_queries
    }

    pub(super) fn on_put_result(&mut self, query: kad::QueryId, result: kad::PutRecordResult) {
        if self.handoff_queries.remove(&query) {
            match result {
                Ok(_) => self.handed_over = self.handed_over.saturating_add(1),
                Err(
                    kad::PutRecordError::QuorumFailed { success, .. }
                    | kad::PutRecordError::Timeout { success, .. },
                ) if !success.is_empty() => {
                    self.handed_over = self.handed_over.saturating_add(1);
                }
                Err(error) => tracing::debug!(%error, "handing a record over reached no node"),
            }
            return;
        }
        let Some(pending) = self.pending_publishes.remove(&query) else {
            return;
        };
        let outcome = match result {
            Ok(_) => Ok(PublishReport {
                seq: pending.seq,
                remote_copies: pending.quorum.get(),
                quorum_met: true,
            }),
            Err(
                kad::PutRecordError::QuorumFailed { success, .. }
                | kad::PutRecordError::Timeout { success, .. },
            ) if !success.is_empty() => Ok(PublishReport {
                seq: pending.seq,
                remote_copies: success.len(),
                quorum_met: false,
            }),
            Err(error) => {
                tracing::debug!(%error, "put reached no node");
                Err(PublishError::NoCopies {
                    needed: pending.quorum.get(),
                })
            }
        };
        let quorum_met = matches!(&outcome, Ok(report) if report.quorum_met);
        if !quorum_met {
            if let Some(aor) = &pending.own {
                self.retry_own_entry_soon(aor, pending.seq);
            }
        }
        if let Some(reply) = pending.reply {
            let _ = reply.send(outcome);
        }
    }
}

/// The outcome of a publish that was only stored locally: no other node is known, or no
/// query slot is free.
pub(super) fn stored_locally_only(
    stored: kad::store::Result<()>,
    known_peers: usize,
    seq: u64,
) -> Result<PublishReport, PublishError> {
    match stored {
        Err(error) => Err(PublishError::Store(error.to_string())),
        Ok(()) if known_peers == 0 => Ok(PublishReport {
            seq,
            remote_copies: 0,
            quorum_met: false,
        }),
        Ok(()) => Err(PublishError::Busy),
    }
}
