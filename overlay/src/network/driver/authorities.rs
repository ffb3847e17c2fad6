//! Domain authority records (open mode): fetching and pinning a domain's key, and
//! publishing authority records.

use libp2p::kad;
use libp2p::kad::store::RecordStore as _;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::publish::{stored_locally_only, PendingPublish};
use super::Driver;
use crate::authority::{AuthorityRecord, PinOutcome};
use crate::key::{dht_key, RecordKind};
use crate::network::authority_fetch::{self, Need, Waiting};
use crate::network::records::{now_unix, stored_record, write_quorum};
use crate::network::{LookupError, PublishError, PublishReport};

impl Driver {
    /// Makes sure `domain`'s authority record is being looked for when the domain has no
    /// known key (see [`authority_fetch`]); the running fetch, if there is one.
    pub(super) fn learn_authority(&mut self, domain: &str) -> Option<kad::QueryId> {
        if !self.validator.wants_authority_of(domain) {
            return None;
        }
        match self.authority_fetches.need(domain, Instant::now()) {
            Need::Running(query) => Some(query),
            Need::Skip => None,
            Need::Fetch => {
                let key = dht_key(RecordKind::DomainAuthority, domain);
                let query = self
                    .swarm
                    .behaviour_mut()
                    .kademlia
                    .get_record(kad::RecordKey::new(&key));
                tracing::debug!(%domain, "looking for the domain's authority record");
                self.authority_fetches.start(query, domain.to_owned(), key);
                let bound = authority_fetch::FETCH_TIMEOUT.min(self.config.lookup_timeout / 2);
                self.add_deadline(query, bound);
                Some(query)
            }
        }
    }

    /// A value found by an authority fetch: validated and pinned; the first valid one ends
    /// the fetch.
    pub(super) fn on_authority_fetched(
        &mut self,
        query: kad::QueryId,
        result: kad::GetRecordResult,
        step: kad::ProgressStep,
    ) {
        let mut done = step.last;
        if let Ok(kad::GetRecordOk::FoundRecord(found)) = result {
            let key = match self.authority_fetches.get_mut(&query) {
                Some(fetch) if !fetch.pinned => Some(fetch.key.clone()),
                _ => None,
            };
            if let Some(key) = key {
                match self.validator.validate_authority_fetched(
                    &key,
                    &found.record.value,
                    now_unix(),
                ) {
                    Ok(record) => {
                        if self.pin(&record) {
                            if let Some(fetch) = self.authority_fetches.get_mut(&query) {
                                fetch.pinned = true;
                            }
                            if let Some(mut running) =
                                self.swarm.behaviour_mut().kademlia.query_mut(&query)
                            {
                                running.finish();
                            }
                            done = true;
                        }
                    }
                    Err(refusal) => {
                        let from = found.peer.map(|peer| peer.to_string());
                        tracing::info!(
                            from = from.as_deref().unwrap_or("local store"),
                            %refusal,
                            "fetched authority record refused"
                        );
                    }
                }
            }
        }
        if done {
            self.end_authority_fetch(query);
        }
    }

    /// Ends an authority fetch and lets the lookups that waited for it go on.
    pub(super) fn end_authority_fetch(&mut self, query: kad::QueryId) {
        let now = Instant::now();
        let Some(fetch) = self.authority_fetches.finish(&query, now) else {
            return;
        };
        if !fetch.pinned {
            tracing::debug!(
                domain = %fetch.domain,
                "no authority record found; the domain stays open for a while"
            );
        }
        for waiting in fetch.waiting {
            self.resume(waiting);
        }
    }

    /// Goes on with what waited for an authority fetch.
    pub(super) fn resume(&mut self, waiting: Waiting) {
        match waiting {
            Waiting::Lookup(lookup) if lookup.deadline <= Instant::now() => {
                let _ = lookup.reply.send(Err(LookupError::Timeout));
            }
            Waiting::Lookup(lookup) => self.get_registration(lookup),
            Waiting::PublishAuthority { record, reply } => self.put_authority(*record, reply),
        }
    }

    /// Pins `record`'s key for its domain, first-come; whether that key is the pinned one.
    pub(super) fn pin(&mut self, record: &AuthorityRecord) -> bool {
        match self.validator.pin_authority(record) {
            Ok(PinOutcome::Pinned) => {
                tracing::info!(
                    domain = %record.domain,
                    key = %crate::authority::public_key_to_text(&record.authority),
                    "domain authority key pinned"
                );
                true
            }
            Ok(PinOutcome::AlreadyPinned) => true,
            Err(refusal) => {
                tracing::info!(domain = %record.domain, %refusal, "authority key not pinned");
                false
            }
        }
    }

    /// Publishes an authority record once the domain's current authority is known here
    /// (fetched first when it is not), so that a second key is refused at once.
    pub(super) fn publish_authority(
        &mut self,
        record: AuthorityRecord,
        reply: oneshot::Sender<Result<PublishReport, PublishError>>,
    ) {
        let domain = record.domain.clone();
        let waiting = Waiting::PublishAuthority {
            record: Box::new(record),
            reply,
        };
        match self.learn_authority(&domain) {
            Some(fetch) => {
                if let Err(waiting) = self.authority_fetches.wait(&fetch, waiting) {
                    self.resume(waiting);
                }
            }
            None => self.resume(waiting),
        }
    }

    /// Validates `record` as a put, stores and pins it locally, and puts it to the closest
    /// nodes with the write quorum. The report's `seq` is the record's `issued_at`.
    fn put_authority(
        &mut self,
        record: AuthorityRecord,
        reply: oneshot::Sender<Result<PublishReport, PublishError>>,
    ) {
        let now = now_unix();
        let key_bytes = record.dht_key();
        let value = match record.encode() {
            Ok(value) => value,
            Err(error) => {
                let _ = reply.send(Err(PublishError::Record(error)));
                return;
            }
        };
        let key = kad::RecordKey::new(&key_bytes);
        let existing = self
            .swarm
            .behaviour_mut()
            .kademlia
            .store_mut()
            .get(&key)
            .map(|r| r.value.clone());
        let merged = match self.validator.validate_authority_put(
            &key_bytes,
            &value,
            existing.as_deref(),
            now,
        ) {
            Ok(merged) => merged,
            Err(refusal) => {
                let _ = reply.send(Err(PublishError::Refused(refusal)));
                return;
            }
        };
        self.pin(&record);
        let known_peers = self.routing_table_size();
        let has_query_slot = self.has_query_slot();
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        let merged = stored_record(key.clone(), merged, None);
        if known_peers == 0 || !has_query_slot {
            let stored = kademlia.store_mut().put(merged);
            let _ = reply.send(stored_locally_only(stored, known_peers, record.issued_at));
            return;
        }
        let quorum = write_quorum(self.config.write_quorum, known_peers);
        let query = match kademlia.put_record(kad::Record::new(key, value), kad::Quorum::N(quorum))
        {
            Ok(query) => query,
            Err(error) => {
                let _ = reply.send(Err(PublishError::Store(error.to_string())));
                return;
            }
        };
        if let Err(error) = kademlia.store_mut().put(merged) {
            tracing::warn!(domain = %record.domain, %error, "cannot store authority record locally");
        }
        tracing::debug!(domain = %record.domain, known_peers, quorum = quorum.get(), "putting authority record");
        self.add_deadline(query, self.config.publish_timeout);
        self.pending_publishes.insert(
            query,
            PendingPublish {
                own: None,
                seq: record.issued_at,
                quorum,
                reply: Some(reply),
            },
        );
    }
}
