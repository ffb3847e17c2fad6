//! A slab of transactions indexed by key hash.
//!
//! The key lives only in its slot; the index maps the key's 64-bit keyed hash to the first
//! slot with that hash, and slots sharing a hash form an intrusive chain. So a key is
//! allocated once, hashed once per lookup, and removal needs no copy of it. Slots are reused
//! through a free list; each reuse bumps the slot's generation so stale handles miss.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// End of a chain or of the free list.
const NONE: u32 = u32::MAX;

/// A slot index plus the generation it had when the handle was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Handle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// Passes an already keyed hash through unchanged.
#[derive(Default)]
pub(crate) struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the index; fold anything else in for completeness.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Entry<K, T> {
    hash: u64,
    next_same_hash: u32,
    key: K,
    value: T,
}

enum Content<K, T> {
    Vacant { next_free: u32 },
    Occupied(Entry<K, T>),
}

struct Slot<K, T> {
    generation: u32,
    content: Content<K, T>,
}

/// Transactions of one side. The table itself does not enforce a capacity: the layer checks
/// its configured bound before inserting, so the slot vector never grows past that bound.
pub(crate) struct Table<K, T> {
    slots: Vec<Slot<K, T>>,
    free_head: u32,
    index: HashMap<u64, u32, BuildHasherDefault<PrehashedHasher>>,
    len: usize,
}

impl<K, T> Table<K, T> {
    pub(crate) fn new() -> Table<K, T> {
        Table {
            slots: Vec::new(),
            free_head: NONE,
            index: HashMap::default(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first live entry with `hash` whose key satisfies `matches`.
    pub(crate) fn find(&self, hash: u64, mut matches: impl FnMut(&K) -> bool) -> Option<Handle> {
        let mut index = *self.index.get(&hash)?;
        while let Some(slot) = self.slots.get(index as usize) {
            let Content::Occupied(entry) = &slot.content else {
                return None;
            };
            if matches(&entry.key) {
                return Some(Handle {
                    index,
                    generation: slot.generation,
                });
            }
            index = entry.next_same_hash;
        }
        None
    }

    /// Inserts a new entry. A key equal to a live one shadows it for [`Table::find`] until
    /// the newer entry is removed.
    pub(crate) fn insert(&mut self, hash: u64, key: K, value: T) -> Handle {
        let next_same_hash = self.index.get(&hash).copied().unwrap_or(NONE);
        let entry = Entry {
            hash,
            next_same_hash,
            key,
            value,
        };
        let index = match self.slots.get_mut(self.free_head as usize) {
            Some(slot) => {
                let index = self.free_head;
                if let Content::Vacant { next_free } = slot.content {
                    self.free_head = next_free;
                }
                slot.content = Content::Occupied(entry);
                index
            }
            None => {
                // The layer bounds the live count well below u32::MAX, so indices fit.
                let index = u32::try_from(self.slots.len()).unwrap_or(NONE);
                self.slots.push(Slot {
                    generation: 0,
                    content: Content::Occupied(entry),
                });
                index
            }
        };
        self.index.insert(hash, index);
        self.len += 1;
        Handle {
            index,
            generation: self.slot_generation(index),
        }
    }

    fn slot_generation(&self, index: u32) -> u32 {
        self.slots
            .get(index as usize)
            .map_or(0, |slot| slot.generation)
    }

    fn entry(&self, handle: Handle) -> Option<&Entry<K, T>> {
        let slot = self.slots.get(handle.index as usize)?;
        match &slot.content {
            Content::Occupied(entry) if slot.generation == handle.generation => Some(entry),
            _ => None,
        }
    }

    pub(crate) fn get(&self, handle: Handle) -> Option<&T> {
        self.entry(handle).map(|entry| &entry.value)
    }

    pub(crate) fn get_mut(&mut self, handle: Handle) -> Option<&mut T> {
        let slot = self.slots.get_mut(handle.index as usize)?;
        match &mut slot.content {
            Content::Occupied(entry) if slot.generation == handle.generation => {
                Some(&mut entry.value)
            }
            _ => None,
        }
    }

    /// Removes the entry, unlinking it from its hash chain; `None` for a stale handle.
    pub(crate) fn remove(&mut self, handle: Handle) -> Option<(K, T)> {
        let (hash, next) = {
            let entry = self.entry(handle)?;
            (entry.hash, entry.next_same_hash)
        };
        self.unlink(hash, handle.index, next);
        let slot = self.slots.get_mut(handle.index as usize)?;
        let content = std::mem::replace(
            &mut slot.content,
            Content::Vacant {
                next_free: self.free_head,
            },
        );
        slot.generation = slot.generation.wrapping_add(1);
        self.free_head = handle.index;
        self.len -= 1;
        match content {
            Content::Occupied(entry) => Some((entry.key, entry.value)),
            Content::Vacant { .. } => None,
        }
    }

    /// Removes slot `index` from the chain of `hash`; `next` is the slot after it.
    fn unlink(&mut self, hash: u64, index: u32, next: u32) {
        let Some(&head) = self.index.get(&hash) else {
            return;
        };
        if head == index {
            if next == NONE {
                self.index.remove(&hash);
            } else {
                self.index.insert(hash, next);
            }
            return;
        }
        let mut current = head;
        while let Some(slot) = self.slots.get_mut(current as usize) {
            let Content::Occupied(entry) = &mut slot.content else {
                return;
            };
            if entry.next_same_hash == index {
                entry.next_same_hash = next;
                return;
            }
            current = entry.next_same_hash;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_survive_removal_in_any_order() {
        let mut table: Table<u32, &str> = Table::new();
        let a = table.insert(7, 1, "a");
        let b = table.insert(7, 2, "b");
        let c = table.insert(7, 3, "c");
        assert_eq!(table.find(7, |k| *k == 1), Some(a));
        assert_eq!(table.remove(b), Some((2, "b")));
        assert_eq!(table.find(7, |k| *k == 1), Some(a));
        assert_eq!(table.find(7, |k| *k == 3), Some(c));
        assert_eq!(table.find(7, |k| *k == 2), None);
        assert_eq!(table.remove(c).map(|(k, _)| k), Some(3));
        assert_eq!(table.find(7, |k| *k == 1), Some(a));
        assert_eq!(table.remove(a).map(|(k, _)| k), Some(1));
        assert_eq!(table.find(7, |_| true), None);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn reused_slots_reject_stale_handles() {
        let mut table: Table<u32, u32> = Table::new();
        let first = table.insert(1, 1, 10);
        assert!(table.remove(first).is_some());
        let second = table.insert(2, 2, 20);
        assert_eq!(second.index, first.index);
        assert_eq!(table.get(first), None);
        assert_eq!(table.remove(first), None);
        assert_eq!(table.get(second), Some(&20));
        if let Some(value) = table.get_mut(second) {
            *value = 21;
        }
        assert_eq!(table.get(second), Some(&21));
    }
}
