//! Deadlines of publishes, lookups and authority fetches: whatever is still running when
//! its time is up is answered with what is known so far.

use std::time::Duration;

use libp2p::kad;
use tokio::time::Instant;

use super::Driver;
use crate::network::{LookupAnswer, LookupError, PublishError, PublishReport};

impl Driver {
    pub(super) fn add_deadline(&mut self, query: kad::QueryId, after: Duration) {
        self.add_deadline_at(query, Instant::now() + after);
    }

    pub(super) fn add_deadline_at(&mut self, query: kad::QueryId, at: Instant) {
        self.deadline_counter = self.deadline_counter.wrapping_add(1);
        self.deadlines.insert((at, self.deadline_counter), query);
    }

    /// Answers publishes and lookups whose time is up with what is known so far.
    pub(super) fn on_deadlines(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let query = entry.remove();
            if self.authority_fetches.get_mut(&query).is_some() {
                if let Some(mut running) = self.swarm.behaviour_mut().kademlia.query_mut(&query) {
                    running.finish();
                }
                self.end_authority_fetch(query);
            }
            if let Some(pending) = self.pending_lookups.remove(&query) {
                let dht_requests = self
                    .swarm
                    .behaviour_mut()
                    .kademlia
                    .query(&query)
                    .map_or(0, |running| running.stats().num_requests());
                let answer = match pending.merged {
                    Some(record) => Ok(LookupAnswer {
                        record: Some(record),
                        answered_by: pending.answered_by,
                        dht_requests,
                    }),
                    None => Err(LookupError::Timeout),
                };
                let _ = pending.reply.send(answer);
                if let Some(mut running) = self.swarm.behaviour_mut().kademlia.query_mut(&query) {
                    running.finish();
                }
            }
            if let Some(pending) = self.pending_publishes.remove(&query) {
                let kademlia = &mut self.swarm.behaviour_mut().kademlia;
                let acknowledged = kademlia.query_mut(&query).map_or(0, |mut running| {
                    let acknowledged = match running.info() {
                        kad::QueryInfo::PutRecord {
                            phase: kad::PutRecordPhase::PutRecord { success, .. },
                            ..
                        } => success.len(),
                        _ => 0,
                    };
                    running.finish();
                    acknowledged
                });
                if let Some(reply) = pending.reply {
                    let outcome = if acknowledged > 0 {
                        Ok(PublishReport {
                            seq: pending.seq,
                            remote_copies: acknowledged,
                            quorum_met: acknowledged >= pending.quorum.get(),
                        })
                    } else {
                        Err(PublishError::NoCopies {
                            needed: pending.quorum.get(),
                        })
                    };
                    let _ = reply.send(outcome);
                }
            }
        }
    }
}
