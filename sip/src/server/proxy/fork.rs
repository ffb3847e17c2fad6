//! The state of proxied requests: one fork per server transaction, its branches, the best
//! final response so far, and the Timer C deadlines.

use crate::transaction::{ClientTxId, ServerTxId};
use bytes::Bytes;
use smallvec::SmallVec;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

use super::super::authorize::ForwardPolicy;
use super::super::response_choice::is_better_final;
use super::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BranchState {
    /// Sent, nothing heard yet.
    Calling,
    /// A provisional response arrived: a CANCEL may be sent now.
    Provisional,
    /// A final response arrived, or the branch failed.
    Done,
}

#[derive(Debug)]
pub(super) struct Branch {
    pub(super) client: Option<ClientTxId>,
    pub(super) state: BranchState,
    /// A CANCEL is owed as soon as a provisional arrives (RFC 3261 9.1).
    pub(super) cancel_when_provisional: bool,
    /// Proxy Timer C (RFC 3261 16.6 step 11, 16.8): an INVITE branch that rings longer
    /// than this without a final response is cancelled.
    pub(super) timer_c: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct BestResponse {
    pub(super) status: u16,
    pub(super) synthesised: bool,
    /// The response with our Via removed, ready to forward; empty when synthesised.
    pub(super) stripped: Bytes,
}

/// The state of one proxied request: its server transaction and its branches.
#[derive(Debug)]
pub(crate) struct Fork {
    pub(super) server_tx: ServerTxId,
    pub(super) method_is_invite: bool,
    /// The request as received, for responses this node generates on the fork's behalf.
    pub(super) request: Bytes,
    pub(super) branches: SmallVec<[Branch; 2]>,
    pub(super) best: Option<BestResponse>,
    /// A final response went upstream; later 2xx are still relayed, nothing else.
    pub(super) final_sent: bool,
    pub(super) cancelled: bool,
    /// Target sets still to try, in order, when every branch so far failed with a
    /// transport error, 408 or 503.
    pub(super) fallback: VecDeque<Vec<Target>>,
    /// How the request is edited on every branch, the later sets' too.
    pub(super) policy: ForwardPolicy,
}

/// Live forks by id. Each fork belongs to exactly one server transaction and is removed when
/// that transaction terminates, so the transaction table's bound also bounds this table.
#[derive(Debug, Default)]
pub(crate) struct ForkTable {
    pub(super) forks: HashMap<u64, Fork>,
    pub(super) next_id: u64,
    /// Timer C deadlines `(when, fork, branch)`; stale entries (branch done, deadline moved)
    /// are skipped when they fire. Rebuilt when it outgrows the live branches, so it stays
    /// bounded by a small multiple of the fork table.
    pub(super) timer_c: BinaryHeap<Reverse<(Instant, u64, usize)>>,
}

impl ForkTable {
    pub(super) fn arm_timer_c(&mut self, fork_id: u64, index: usize, deadline: Instant) {
        let Some(branch) = self
            .forks
            .get_mut(&fork_id)
            .and_then(|f| f.branches.get_mut(index))
        else {
            return;
        };
        branch.timer_c = Some(deadline);
        self.timer_c.push(Reverse((deadline, fork_id, index)));
        if self.timer_c.len() > 4 * self.forks.len() + 1024 {
            let forks = &self.forks;
            self.timer_c.retain(|Reverse((when, fork, index))| {
                forks
                    .get(fork)
                    .and_then(|f| f.branches.get(*index))
                    .is_some_and(|b| b.timer_c == Some(*when) && b.state != BranchState::Done)
            });
        }
    }

    pub fn next_timer_c(&self) -> Option<Instant> {
        self.timer_c.peek().map(|Reverse((when, _, _))| *when)
    }

    /// Pops every Timer C that fired by `now` and is still current.
    pub(super) fn expired_timer_c(&mut self, now: Instant) -> SmallVec<[(u64, usize); 4]> {
        let mut fired = SmallVec::new();
        while let Some(Reverse((when, fork, index))) = self.timer_c.peek().copied() {
            if when > now {
                break;
            }
            self.timer_c.pop();
            let current = self
                .forks
                .get(&fork)
                .and_then(|f| f.branches.get(index))
                .is_some_and(|b| b.timer_c == Some(when) && b.state != BranchState::Done);
            if current {
                fired.push((fork, index));
            }
        }
        fired
    }

    pub(super) fn insert(&mut self, fork: Fork) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        self.forks.insert(id, fork);
        id
    }

    pub fn remove(&mut self, id: u64) {
        self.forks.remove(&id);
    }

    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut Fork> {
        self.forks.get_mut(&id)
    }

    pub fn len(&self) -> usize {
        self.forks.len()
    }
}

impl Fork {
    /// Keeps the better of the stored and the new final response.
    pub(super) fn consider(&mut self, status: u16, synthesised: bool, stripped: Bytes) {
        let replace = match &self.best {
            None => true,
            Some(best) => is_better_final(status, synthesised, best.status, best.synthesised),
        };
        if replace {
            self.best = Some(BestResponse {
                status,
                synthesised,
                stripped,
            });
        }
    }

    /// Client transactions of branches still waiting for a final response.
    pub(super) fn pending_clients(&self) -> SmallVec<[ClientTxId; 4]> {
        self.branches
            .iter()
            .filter(|b| b.state != BranchState::Done)
            .filter_map(|b| b.client)
            .collect()
    }
}
