//! Blocks sources (or accounts) that keep failing authentication (password guessing).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct FailureWindow {
    started: Instant,
    failures: u32,
    /// Matches the entry in the creation queue that belongs to this window.
    sequence: u64,
}

/// Counts failed authentications per key (a source address, or an account) in fixed windows: a window opens at
/// the first failure, and once it holds `max_failures` the source is blocked until the
/// window ends.
///
/// The table holds at most `capacity` sources. When it is full, windows that have ended are
/// dropped first, then the oldest window is evicted; an evicted source starts again from
/// zero (so a flood of spoofed sources can free a blocked one, but memory stays bounded).
#[derive(Debug)]
pub struct FailureLimiter<K = IpAddr> {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    windows: HashMap<K, FailureWindow>,
    /// `(sequence, source)` in window creation order, which is also start-time order.
    /// Entries whose window was removed or restarted are skipped lazily.
    created: VecDeque<(u64, K)>,
    next_sequence: u64,
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    pub const DEFAULT_MAX_FAILURES: u32 = 10;
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// A limiter blocking a source after `max_failures` (at least 1) failures within
    /// `window`, tracking at most `capacity` (at least 1) sources.
    pub fn new(max_failures: u32, window: Duration, capacity: usize) -> FailureLimiter<K> {
        FailureLimiter {
            max_failures: max_failures.max(1),
            window,
            capacity: capacity.max(1),
            windows: HashMap::new(),
            created: VecDeque::new(),
            next_sequence: 0,
        }
    }

    /// True while `source` has used up its failures in a window that has not ended.
    pub fn is_blocked(&self, now: Instant, source: &K) -> bool {
        self.windows.get(source).is_some_and(|window| {
            window.failures >= self.max_failures && !self.has_ended(window, now)
        })
    }

    /// Counts a failed authentication from `source`.
    pub fn record_failure(&mut self, now: Instant, source: &K) {
        let length = self.window;
        if let Some(window) = self.windows.get_mut(source) {
            if !window_ended(window.started, length, now) {
                window.failures = window.failures.saturating_add(1);
                return;
            }
        }
        self.open_window(now, source);
    }

    /// A successful authentication clears the failures of a source that is not blocked,
    /// so a user who mistyped a password once does not carry it. A blocked source stays
    /// blocked until its window ends. The trade-off: a client holding one valid account
    /// can keep its count low while guessing others, at the rate of one success per
    /// `max_failures - 1` guesses.
    pub fn record_success(&mut self, now: Instant, source: &K) {
        if !self.is_blocked(now, source) {
            self.windows.remove(source);
        }
    }

    /// Number of sources currently tracked.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    fn has_ended(&self, window: &FailureWindow, now: Instant) -> bool {
        window_ended(window.started, self.window, now)
    }

    fn open_window(&mut self, now: Instant, source: &K) {
        self.windows.remove(source);
        self.drop_ended(now);
        if self.windows.len() >= self.capacity {
            self.evict_oldest();
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.windows.insert(
            source.clone(),
            FailureWindow {
                started: now,
                failures: 1,
                sequence,
            },
        );
        self.created.push_back((sequence, source.clone()));
        // Removed windows leave queue entries behind; keep the queue within twice the
        // table so it stays bounded.
        if self.created.len() > self.capacity.saturating_mul(2) {
            let windows = &self.windows;
            self.created.retain(|(sequence, source)| {
                windows.get(source).is_some_and(|w| w.sequence == *sequence)
            });
        }
    }

    /// The current window for a queue entry, or `None` if the entry is left over.
    fn live(&self, sequence: u64, source: &K) -> Option<&FailureWindow> {
        self.windows
            .get(source)
            .filter(|window| window.sequence == sequence)
    }

    fn drop_ended(&mut self, now: Instant) {
        while let Some((sequence, source)) = self.created.front() {
            match self.live(*sequence, source) {
                Some(window) if !self.has_ended(window, now) => break,
                Some(_) => {
                    let source = source.clone();
                    self.windows.remove(&source);
                }
                None => {}
            }
            self.created.pop_front();
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((sequence, source)) = self.created.pop_front() {
            if self.live(sequence, &source).is_some() {
                self.windows.remove(&source);
                return;
            }
        }
    }
}

/// A window too long to represent never ends.
fn window_ended(started: Instant, length: Duration, now: Instant) -> bool {
    started.checked_add(length).is_some_and(|end| now >= end)
}

impl<K: Hash + Eq + Clone> Default for FailureLimiter<K> {
    fn default() -> FailureLimiter<K> {
        FailureLimiter::new(
            Self::DEFAULT_MAX_FAILURES,
            Self::DEFAULT_WINDOW,
            Self::DEFAULT_CAPACITY,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn blocks_after_limit_until_window_ends() {
        let start = Instant::now();
        let mut limiter = FailureLimiter::<IpAddr>::new(3, Duration::from_secs(60), 16);
        for second in 0..2 {
            limiter.record_failure(start + Duration::from_secs(second), &ip(1));
        }
        assert!(!limiter.is_blocked(start + Duration::from_secs(2), &ip(1)));
        limiter.record_failure(start + Duration::from_secs(2), &ip(1));
        assert!(limiter.is_blocked(start + Duration::from_secs(2), &ip(1)));
        assert!(!limiter.is_blocked(start + Duration::from_secs(2), &ip(2)));
        // A success does not lift a block.
        limiter.record_success(start + Duration::from_secs(3), &ip(1));
        assert!(limiter.is_blocked(start + Duration::from_secs(59), &ip(1)));
        assert!(!limiter.is_blocked(start + Duration::from_secs(60), &ip(1)));
        // A new window starts from one failure.
        limiter.record_failure(start + Duration::from_secs(61), &ip(1));
        assert!(!limiter.is_blocked(start + Duration::from_secs(61), &ip(1)));
    }

    #[test]
    fn success_clears_failures_before_the_limit() {
        let start = Instant::now();
        let mut limiter = FailureLimiter::<IpAddr>::new(2, Duration::from_secs(60), 16);
        limiter.record_failure(start, &ip(1));
        limiter.record_success(start, &ip(1));
        limiter.record_failure(start, &ip(1));
        assert!(!limiter.is_blocked(start, &ip(1)));
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn full_table_evicts_oldest_window() {
        let start = Instant::now();
        let mut limiter = FailureLimiter::<IpAddr>::new(1, Duration::from_secs(60), 2);
        limiter.record_failure(start, &ip(1));
        limiter.record_failure(start + Duration::from_secs(1), &ip(2));
        limiter.record_failure(start + Duration::from_secs(2), &ip(3));
        assert_eq!(limiter.len(), 2);
        assert!(!limiter.is_blocked(start + Duration::from_secs(2), &ip(1)));
        assert!(limiter.is_blocked(start + Duration::from_secs(2), &ip(2)));
        assert!(limiter.is_blocked(start + Duration::from_secs(2), &ip(3)));
    }

    #[test]
    fn ended_windows_are_dropped_first() {
        let start = Instant::now();
        let mut limiter = FailureLimiter::<IpAddr>::new(1, Duration::from_secs(10), 2);
        limiter.record_failure(start, &ip(1));
        limiter.record_failure(start + Duration::from_secs(5), &ip(2));
        limiter.record_failure(start + Duration::from_secs(11), &ip(3));
        assert!(limiter.is_blocked(start + Duration::from_secs(11), &ip(2)));
        assert!(limiter.is_blocked(start + Duration::from_secs(11), &ip(3)));
    }

    #[test]
    fn queue_stays_bounded_under_churn() {
        let start = Instant::now();
        let mut limiter = FailureLimiter::<IpAddr>::new(5, Duration::from_secs(60), 4);
        for round in 0..1000u32 {
            let source = ip((round % 3) as u8);
            limiter.record_failure(start, &source);
            limiter.record_success(start, &source);
        }
        assert!(limiter.created.len() <= 8);
        assert!(limiter.is_empty());
    }
}
