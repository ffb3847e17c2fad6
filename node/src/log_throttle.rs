//! One log line per interval for events that can come by the million (a flood): the line
//! carries how many happened since the previous one, so nothing is hidden and the log stays
//! small.

use std::time::{Duration, Instant};

/// Counts occurrences of one kind of event and says when a line is due.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    since_line: u64,
    last_line: Option<Instant>,
}

impl LogThrottle {
    pub const fn new(interval: Duration) -> LogThrottle {
        LogThrottle {
            interval,
            since_line: 0,
            last_line: None,
        }
    }

    /// Counts one occurrence at `now`; when a line is due (the first occurrence, then at
    /// most one per interval), the number of occurrences it stands for, this one included.
    /// Occurrences after the last line are reported with the next one.
    pub fn occurred(&mut self, now: Instant) -> Option<u64> {
        self.since_line = self.since_line.saturating_add(1);
        let due = self
            .last_line
            .is_none_or(|at| now.saturating_duration_since(at) >= self.interval);
        if !due {
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::take(&mut self.since_line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count() {
        let start = Instant::now();
        let mut throttle = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(throttle.occurred(start), Some(1));
        for second in 1..10 {
            assert_eq!(throttle.occurred(start + Duration::from_secs(second)), None);
        }
        assert_eq!(throttle.occurred(start + Duration::from_secs(10)), Some(10));
        assert_eq!(throttle.occurred(start + Duration::from_secs(11)), None);
        assert_eq!(throttle.occurred(start + Duration::from_secs(30)), Some(2));
    }
}
