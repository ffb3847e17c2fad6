//! Lookups of registration records: the DHT get, and the merge of the values it finds.

use libp2p::{kad, PeerId};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Driver;
use crate::key::{Aor, RecordKind};
use crate::network::authority_fetch::{Waiting, WaitingLookup};
use crate::network::records::now_unix;
use crate::network::{LookupAnswer, LookupError};
use crate::record::RegistrationRecord;

/// Sources of a lookup's values kept for the answer.
const MAX_LOOKUP_SOURCES: usize = 32;

/// A lookup collecting the values Kademlia finds.
pub(super) struct PendingLookup {
    key: Vec<u8>,
    pub(super) merged: Option<RegistrationRecord>,
    /// Where the valid values came from (`None`: this node's store); at most
    /// [`MAX_LOOKUP_SOURCES`].
    pub(super) answered_by: Vec<Option<PeerId>>,
    pub(super) reply: oneshot::Sender<Result<LookupAnswer, LookupError>>,
}

impl Driver {
    pub(super) fn start_lookup(
        &mut self,
        aor: &Aor,
        reply: oneshot::Sender<Result<LookupAnswer, LookupError>>,
    ) {
        if !self.has_query_slot() {
            let _ = reply.send(Err(LookupError::Busy));
            return;
        }
        let deadline = Instant::now() + self.config.lookup_timeout;
        let waiting = WaitingLookup {
            aor: aor.clone(),
            reply,
            deadline,
        };
        // A domain whose authority is unknown: its record first, then the registration.
        if let Some(fetch) = self.learn_authority(aor.domain()) {
            match self
                .authority_fetches
                .wait(&fetch, Waiting::Lookup(waiting))
            {
                Ok(()) => {}
                Err(waiting) => self.resume(waiting),
            }
            return;
        }
        self.get_registration(waiting);
    }

    /// Starts the DHT get of a lookup's registration record, answered by `deadline`.
    pub(super) fn get_registration(&mut self, lookup: WaitingLookup) {
        let WaitingLookup {
            aor,
            reply,
            deadline,
        } = lookup;
        let key = aor.dht_key(RecordKind::Registration);
        let query = self
            .swarm
            .behaviour_mut()
            .kademlia
            .get_record(kad::RecordKey::new(&key));
        self.pending_lookups.insert(
            query,
            PendingLookup {
                key,
                merged: None,
                answered_by: Vec::new(),
                reply,
            },
        );
        self.add_deadline_at(query, deadline);
    }

    pub(super) fn on_get_result(
        &mut self,
        query: kad::QueryId,
        result: kad::GetRecordResult,
        step: kad::ProgressStep,
        stats: &kad::QueryStats,
    ) {
        if self.authority_fetches.get_mut(&query).is_some() {
            return self.on_authority_fetched(query, result, step);
        }
        let Some(pending) = self.pending_lookups.get_mut(&query) else {
            return;
        };
        if let Ok(kad::GetRecordOk::FoundRecord(found)) = result {
            let now = now_unix();
            match self
                .validator
                .validate_fetched(&pending.key, &found.record.value, now)
            {
                Ok(record) => {
                    if pending.answered_by.len() < MAX_LOOKUP_SOURCES
                        && !pending.answered_by.contains(&found.peer)
                    {
                        pending.answered_by.push(found.peer);
                    }
                    pending.merged = Some(match pending.merged.take() {
                        Some(merged) => RegistrationRecord::merge(&merged, &record, now),
                        None => record,
                    });
                }
                Err(refusal) => {
                    let from = found.peer.map(|peer| peer.to_string());
                    tracing::info!(from = from.as_deref().unwrap_or("local store"), %refusal, "fetched record refused");
                }
            }
        }
        let enough = pending.answered_by.len() >= self.config.lookup_quorum.get();
        if enough && !step.last {
            if let Some(mut running) = self.swarm.behaviour_mut().kademlia.query_mut(&query) {
                running.finish();
            }
        }
        if step.last || enough {
            if let Some(pending) = self.pending_lookups.remove(&query) {
                let _ = pending.reply.send(Ok(LookupAnswer {
                    record: pending.merged,
                    answered_by: pending.answered_by,
                    dht_requests: stats.num_requests(),
                }));
            }
        }
    }
}
