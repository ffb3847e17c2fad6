//! Whether the core is behind on its input: the signal for load shedding
//! ([`sip::server::SipServer::set_overloaded`]).
//!
//! The core reads at most a batch of datagrams per socket each turn. A turn that finds a
//! full batch waiting means datagrams were queued in the kernel. Bursts do that for a few
//! milliseconds at any load; only when every turn for [`ENTER_AFTER`] has found a full batch
//! has the node been saturated for that long, with requests waiting in the queue, and it
//! starts shedding new work. It stops as soon as a turn finds the queue drained: shedding
//! makes requests cheap, the queue empties, new work is admitted again, and the node
//! settles near its capacity with a queueing delay of about [`ENTER_AFTER`] at most.

use std::time::{Duration, Instant};

/// How long the input must stay backed up before new work is shed. Well under SIP's
/// retransmission interval (T1, 500 ms), so a request admitted is answered before its
/// sender repeats it.
pub const ENTER_AFTER: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
pub struct OverloadDetector {
    /// Since when every turn has found a full batch.
    backed_up_since: Option<Instant>,
    overloaded: bool,
}

impl OverloadDetector {
    /// Records one turn; returns the new state when it changed.
    pub fn turn(&mut self, now: Instant, found_full_batch: bool) -> Option<bool> {
        let next = if found_full_batch {
            let since = *self.backed_up_since.get_or_insert(now);
            self.overloaded || now.saturating_duration_since(since) >= ENTER_AFTER
        } else {
            self.backed_up_since = None;
            false
        };
        if next == self.overloaded {
            return None;
        }
        self.overloaded = next;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_pass_a_sustained_backlog_sheds_until_drained() {
        let start = Instant::now();
        let mut detector = OverloadDetector::default();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // Full batches for 90 ms, then a drained queue: a burst.
        for ms in 0..90 {
            assert_eq!(detector.turn(at(ms), true), None);
        }
        assert_eq!(detector.turn(at(90), false), None);
        // Backed up for 100 ms: overloaded, and it stays so while the queue stays full.
        for ms in 100..200 {
            assert_eq!(detector.turn(at(ms), true), None);
        }
        assert_eq!(detector.turn(at(200), true), Some(true));
        assert_eq!(detector.turn(at(250), true), None);
        assert_eq!(detector.turn(at(251), false), Some(false));
    }
}
