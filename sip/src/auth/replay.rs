//! The highest nonce count seen per nonce, which rejects replayed qop=auth requests.

use std::collections::{HashMap, VecDeque};

use super::nonce::NonceKey;

/// What the nonce count of an authenticated request means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CountCheck {
    /// Higher than any count seen for this nonce; now recorded.
    Accepted,
    /// Not higher than a count already seen: a replay.
    Replayed,
    /// The nonce may have been evicted from the table, so its history is lost; the client
    /// must get a new nonce (a stale challenge).
    Forgotten,
}

/// Highest nonce count per nonce, for at most `capacity` nonces.
///
/// Entries are kept in first-use order. When the table is full the oldest entry is evicted
/// and its issue time raised into a watermark: from then on a nonce that is not in the
/// table but was issued no later than the watermark might be an evicted one, so it is
/// answered [`CountCheck::Forgotten`] (a stale challenge) rather than trusted. Entries of
/// expired nonces are dropped from the front as they are met.
pub(crate) struct NonceCountTable {
    counts: HashMap<NonceKey, u32>,
    first_use: VecDeque<NonceKey>,
    capacity: usize,
    /// Latest issue time of an evicted entry.
    evicted_through: Option<u32>,
}

impl NonceCountTable {
    /// A table for `capacity` nonces (at least one).
    pub(crate) fn new(capacity: usize) -> NonceCountTable {
        NonceCountTable {
            counts: HashMap::new(),
            first_use: VecDeque::new(),
            capacity: capacity.max(1),
            evicted_through: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.counts.len()
    }

    /// Checks `nc` for a nonce whose response was already verified, recording it when
    /// accepted. `expired_through` is the latest issue time (seconds since the epoch) of
    /// nonces that have already expired, if any.
    pub(crate) fn check(
        &mut self,
        key: NonceKey,
        nc: u32,
        expired_through: Option<u32>,
    ) -> CountCheck {
        if let Some(limit) = expired_through {
            self.drop_expired(limit);
        }
        if let Some(seen) = self.counts.get_mut(&key) {
            if nc <= *seen {
                return CountCheck::Replayed;
            }
            *seen = nc;
            return CountCheck::Accepted;
        }
        if self
            .evicted_through
            .is_some_and(|watermark| key.issued <= watermark)
        {
            return CountCheck::Forgotten;
        }
        // Counts start at 1 (RFC 7616 3.4).
        if nc == 0 {
            return CountCheck::Replayed;
        }
        if self.counts.len() >= self.capacity {
            self.evict_oldest();
        }
        self.counts.insert(key, nc);
        self.first_use.push_back(key);
        CountCheck::Accepted
    }

    fn drop_expired(&mut self, expired_through: u32) {
        while let Some(oldest) = self.first_use.front().copied() {
            if oldest.issued > expired_through {
                break;
            }
            self.first_use.pop_front();
            self.counts.remove(&oldest);
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(oldest) = self.first_use.pop_front() {
            self.counts.remove(&oldest);
            let watermark = self
                .evicted_through
                .map_or(oldest.issued, |w| w.max(oldest.issued));
            self.evicted_through = Some(watermark);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key(issued: u32, salt: u64) -> NonceKey {
        NonceKey { issued, salt }
    }

    #[test]
    fn counts_must_increase() {
        let mut table = NonceCountTable::new(4);
        assert_eq!(table.check(key(1, 1), 1, None), CountCheck::Accepted);
        assert_eq!(table.check(key(1, 1), 1, None), CountCheck::Replayed);
        assert_eq!(table.check(key(1, 1), 3, None), CountCheck::Accepted);
        assert_eq!(table.check(key(1, 1), 2, None), CountCheck::Replayed);
        assert_eq!(table.check(key(1, 2), 1, None), CountCheck::Accepted);
        assert_eq!(table.check(key(1, 3), 0, None), CountCheck::Replayed);
    }

    #[test]
    fn eviction_forgets_conservatively() {
        let mut table = NonceCountTable::new(2);
        assert_eq!(table.check(key(5, 1), 1, None), CountCheck::Accepted);
        assert_eq!(table.check(key(6, 2), 1, None), CountCheck::Accepted);
        // Full: the nonce issued at 5 is evicted.
        assert_eq!(table.check(key(7, 3), 1, None), CountCheck::Accepted);
        assert_eq!(table.len(), 2);
        assert_eq!(table.check(key(5, 1), 2, None), CountCheck::Forgotten);
        // Never seen, but issued no later than the evicted one: cannot be told apart.
        assert_eq!(table.check(key(4, 9), 1, None), CountCheck::Forgotten);
        assert_eq!(table.check(key(6, 2), 2, None), CountCheck::Accepted);
    }

    #[test]
    fn expired_entries_leave_without_raising_the_watermark() {
        let mut table = NonceCountTable::new(2);
        table.check(key(1, 1), 1, None);
        table.check(key(2, 2), 1, None);
        assert_eq!(table.check(key(9, 3), 1, Some(1)), CountCheck::Accepted);
        assert_eq!(table.len(), 2);
        assert_eq!(table.check(key(3, 4), 1, Some(1)), CountCheck::Accepted);
        assert_eq!(table.len(), 2);
    }
}
