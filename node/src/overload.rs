//! Whether the core is behind on its input: the signal for load shedding
//! ([`sip::server::SipServer::set_overloaded`]).
//!
//! The core reads at most a batch of datagrams per socket each turn. A turn that finds a
//! full batch waiting means datagrams queue up in the kernel faster than the core takes
//! them. The share of such turns is smoothed (a moving average over about 16 turns, a few
//! milliseconds under load), with hysteresis so that the state does not flap: overloaded
//! above three quarters, clear again below one quarter. Shedding makes requests cheap, the
//! queue drains and new work is admitted again, so the node settles near its capacity.

/// Smoothing: each turn weighs 1/16.
const WEIGHT_SHIFT: u32 = 4;
/// Fixed-point one.
const ONE: u32 = 1 << 16;
const ENTER: u32 = ONE / 4 * 3;
const LEAVE: u32 = ONE / 4;

#[derive(Debug, Default)]
pub struct OverloadDetector {
    /// Smoothed share of turns that found a full batch, in 1/65536.
    level: u32,
    overloaded: bool,
}

impl OverloadDetector {
    /// Records one turn; returns the new state when it changed.
    pub fn turn(&mut self, found_full_batch: bool) -> Option<bool> {
        let sample = if found_full_batch { ONE } else { 0 };
        self.level = self.level - (self.level >> WEIGHT_SHIFT) + (sample >> WEIGHT_SHIFT);
        let next = if self.overloaded {
            self.level >= LEAVE
        } else {
            self.level > ENTER
        };
        (next != self.overloaded).then(|| {
            self.overloaded = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sustained_backlog_enters_and_a_drained_queue_leaves() {
        let mut detector = OverloadDetector::default();
        // Occasional full batches (bursts) are not overload.
        for turn in 0..1_000 {
            assert_eq!(detector.turn(turn % 4 == 0), None);
        }
        let entered = (1..=100).find(|_| detector.turn(true) == Some(true));
        assert!(entered.is_some_and(|turns| turns < 40), "{entered:?}");
        // Half full turns keep it overloaded (hysteresis).
        for turn in 0..1_000 {
            assert_eq!(detector.turn(turn % 2 == 0), None);
        }
        let left = (1..=100).find(|_| detector.turn(false) == Some(false));
        assert!(left.is_some_and(|turns| turns < 40), "{left:?}");
    }
}
