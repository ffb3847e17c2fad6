//! Deadlines of all transactions in one binary heap, invalidated lazily.
//!
//! A transaction has at most two armed timers: a retransmission timer (A, E or G) and a
//! timeout timer (B, D, F, H, I, J, K, L or M, by state). Each transaction stores the
//! deadline of each; a heap entry is current only while the slot still holds the same
//! transaction (generation) and its stored deadline equals the entry's instant. Cancelling a
//! timer is just clearing the stored deadline, so every operation is O(log n) with no scans.

use super::table::Handle;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Which side's table a timer refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Side {
    Client,
    Server,
}

/// Which of a transaction's two timers. At equal instants the timeout sorts first, so a
/// transaction that times out does not send one last retransmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerSlot {
    Timeout,
    Retransmit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerRef {
    pub(crate) side: Side,
    pub(crate) handle: Handle,
    pub(crate) slot: TimerSlot,
}

/// The heap holds current entries plus stale ones not yet popped. The layer prunes stale
/// entries at the top after every call and rebuilds the heap once stale entries outnumber
/// current ones by a wide margin, so its size stays proportional to the live transactions.
#[derive(Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, TimerRef)>>,
}

impl TimerQueue {
    pub(crate) fn push(&mut self, at: Instant, timer: TimerRef) {
        self.heap.push(Reverse((at, timer)));
    }

    pub(crate) fn peek(&self) -> Option<(Instant, TimerRef)> {
        self.heap.peek().map(|Reverse(entry)| *entry)
    }

    /// Pops the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerRef)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    pub(crate) fn pop(&mut self) {
        self.heap.pop();
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only entries for which `is_current` holds (O(n), amortised by the caller).
    pub(crate) fn retain(&mut self, mut is_current: impl FnMut(Instant, TimerRef) -> bool) {
        self.heap
            .retain(|Reverse((at, timer))| is_current(*at, *timer));
    }
}
