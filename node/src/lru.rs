//! A map with a hard size bound that forgets its least recently used entry to make room.
//! Used for the overlay tables of the core (peer addresses, per-peer senders, publication
//! times), which must not grow with the number of peers or users seen.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

#[derive(Debug)]
pub struct LruMap<K, V> {
    entries: HashMap<K, (V, u64)>,
    /// Use stamp → key, oldest first.
    order: BTreeMap<u64, K>,
    clock: u64,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V> LruMap<K, V> {
    /// A map of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> LruMap<K, V> {
        LruMap {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
            capacity: capacity.max(1),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value of `key`, without counting as a use.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(value, _)| value)
    }

    /// The value of `key`, marked as the most recently used.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let (value, stamp) = self.entries.get_mut(key)?;
        self.clock += 1;
        if let Some(key) = self.order.remove(stamp) {
            self.order.insert(self.clock, key);
        }
        *stamp = self.clock;
        Some(value)
    }

    /// Inserts or replaces `key`, as the most recently used. Returns the entry evicted to
    /// make room, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        self.clock += 1;
        if let Some((old_value, stamp)) = self.entries.get_mut(&key) {
            *old_value = value;
            self.order.remove(stamp);
            *stamp = self.clock;
            self.order.insert(self.clock, key);
            return None;
        }
        let evicted = if self.entries.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        self.order.insert(self.clock, key.clone());
        self.entries.insert(key, (value, self.clock));
        evicted
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (value, stamp) = self.entries.remove(key)?;
        self.order.remove(&stamp);
        Some(value)
    }

    /// Removes and returns the least recently used entry.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.order.pop_first()?;
        let (value, _) = self.entries.remove(&key)?;
        Some((key, value))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.entries.keys()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut map = LruMap::new(2);
        assert!(map.insert("a", 1).is_none());
        assert!(map.insert("b", 2).is_none());
        // Using "a" makes "b" the oldest.
        *map.get_mut(&"a").unwrap() += 10;
        assert_eq!(map.insert("c", 3), Some(("b", 2)));
        assert_eq!(map.len(), 2);
        assert_eq!(map.peek(&"a"), Some(&11));
        assert_eq!(map.peek(&"b"), None);
        // Replacing a key evicts nothing.
        assert!(map.insert("c", 4).is_none());
        assert_eq!(map.remove(&"a"), Some(11));
        assert_eq!(map.pop_oldest(), Some(("c", 4)));
        assert_eq!(map.pop_oldest(), None);
    }

    #[test]
    fn capacity_is_at_least_one() {
        let mut map = LruMap::new(0);
        map.insert(1, ());
        assert_eq!(map.insert(2, ()), Some((1, ())));
        assert_eq!(map.len(), 1);
    }
}
