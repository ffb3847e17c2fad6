//! The location table: address-of-record → bindings, with an expiry index, a connection
//! index and a bounded log of changed addresses-of-record for the overlay.

use super::binding::{Binding, ChangeKind};
use super::RegistrarPolicy;
use crate::transport::ConnectionId;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

/// Changes kept for the overlay when the table is built from a [`RegistrarPolicy`], at most
/// this many (fewer when `max_aors` is smaller).
pub const DEFAULT_MAX_PENDING_CHANGES: usize = 65_536;

/// Hard bounds of a [`LocationTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    /// Addresses-of-record with at least one binding. A REGISTER that would add another is
    /// refused with 503 and Retry-After.
    pub max_aors: usize,
    /// Bindings per address-of-record. A REGISTER that would exceed it is refused with 403.
    pub max_bindings_per_aor: usize,
    /// Distinct addresses-of-record waiting in the change log. When it is full, changes to
    /// addresses-of-record not already waiting are dropped and the overflow flag is set
    /// (see [`LocationTable::take_change_overflow`]); entries already waiting still merge.
    pub max_pending_changes: usize,
}

impl From<&RegistrarPolicy> for TableLimits {
    fn from(policy: &RegistrarPolicy) -> TableLimits {
        TableLimits {
            max_aors: policy.max_aors,
            max_bindings_per_aor: policy.max_bindings_per_aor,
            max_pending_changes: policy.max_aors.clamp(1, DEFAULT_MAX_PENDING_CHANGES),
        }
    }
}

/// Position of a binding in the indexes: (slot of its address-of-record, binding id).
pub(super) type BindingRef = (u32, u64);

/// Bindings of one address-of-record. An entry with no bindings survives only while its
/// `Removed` change waits in the change log, so the log can name it.
#[derive(Debug)]
pub(super) struct AorEntry {
    pub(super) aor: Box<str>,
    /// Sorted by q descending, then most recently refreshed first, so lookups need no sort.
    pub(super) bindings: Vec<Binding>,
    /// Set while this entry waits in the change log.
    pub(super) pending: Option<ChangeKind>,
}

impl AorEntry {
    pub(super) fn sort(&mut self) {
        self.bindings
            .sort_unstable_by(|a, b| b.q.cmp(&a.q).then(b.recency.cmp(&a.recency)));
    }
}

/// Where each binding sits by expiry time and by stream connection, kept exactly in step
/// with the bindings so that nothing is ever scanned or lazily skipped.
#[derive(Debug, Default)]
pub(super) struct Indexes {
    pub(super) by_expiry: BTreeSet<(Instant, u32, u64)>,
    pub(super) by_connection: BTreeSet<(ConnectionId, u32, u64)>,
    /// Bindings per source address (of the REGISTER that made or last refreshed them);
    /// an address appears only while it holds bindings, so the map is bounded by the table.
    pub(super) by_source: HashMap<IpAddr, usize>,
}

impl Indexes {
    pub(super) fn insert(&mut self, slot: u32, binding: &Binding) {
        self.by_expiry
            .insert((binding.expires_at, slot, binding.id));
        if let Some(connection) = binding.source.connection {
            self.by_connection.insert((connection, slot, binding.id));
        }
        *self
            .by_source
            .entry(binding.source.remote.ip().to_canonical())
            .or_default() += 1;
    }

    pub(super) fn remove(&mut self, slot: u32, binding: &Binding) {
        self.by_expiry
            .remove(&(binding.expires_at, slot, binding.id));
        if let Some(connection) = binding.source.connection {
            self.by_connection.remove(&(connection, slot, binding.id));
        }
        let source = binding.source.remote.ip().to_canonical();
        if let Some(count) = self.by_source.get_mut(&source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.by_source.remove(&source);
            }
        }
    }
}

/// Address-of-record → bindings, bounded by [`TableLimits`].
///
/// Costs: a REGISTER or lookup is one hash lookup plus work on that address-of-record's
/// bindings (at most `max_bindings_per_aor`); expiry and connection loss are O(log n) per
/// binding affected.
#[derive(Debug)]
pub struct LocationTable {
    pub(super) limits: TableLimits,
    /// AoR → slot in `slots`.
    pub(super) index: HashMap<Box<str>, u32>,
    pub(super) slots: Vec<Option<AorEntry>>,
    pub(super) free_slots: Vec<u32>,
    pub(super) indexes: Indexes,
    /// Slots whose entry has `pending` set, oldest first.
    pub(super) changes: VecDeque<u32>,
    pub(super) changes_overflowed: bool,
    pub(super) live_aors: usize,
    pub(super) binding_count: usize,
    pub(super) next_binding_id: u64,
}

impl LocationTable {
    pub fn new(limits: TableLimits) -> LocationTable {
        LocationTable {
            limits,
            index: HashMap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            indexes: Indexes::default(),
            changes: VecDeque::new(),
            changes_overflowed: false,
            live_aors: 0,
            binding_count: 0,
            next_binding_id: 0,
        }
    }

    /// A table sized by the policy, with [`DEFAULT_MAX_PENDING_CHANGES`].
    pub fn for_policy(policy: &RegistrarPolicy) -> LocationTable {
        LocationTable::new(TableLimits::from(policy))
    }

    pub fn limits(&self) -> TableLimits {
        self.limits
    }

    /// Bindings stored, including expired ones not yet removed by
    /// [`purge_expired`](Self::purge_expired).
    pub fn len(&self) -> usize {
        self.binding_count
    }

    pub fn is_empty(&self) -> bool {
        self.binding_count == 0
    }

    /// Addresses-of-record with at least one binding.
    pub fn aor_count(&self) -> usize {
        self.live_aors
    }

    /// Every address-of-record with at least one binding (expired or not), in no
    /// particular order; for a full resync after the change log overflowed.
    pub fn aors(&self) -> impl Iterator<Item = &str> + '_ {
        self.slots
            .iter()
            .flatten()
            .filter(|entry| !entry.bindings.is_empty())
            .map(|entry| &*entry.aor)
    }

    /// Unexpired bindings of `aor` (the canonical form from [`crate::message::Uri::aor`]),
    /// q descending, most recently refreshed first within a q.
    pub fn lookup<'t>(&'t self, now: Instant, aor: &str) -> impl Iterator<Item = &'t Binding> + 't {
        let entry = self.index.get(aor).and_then(|&slot| self.entry(slot));
        live_bindings(entry, now)
    }

    /// The earliest instant at which [`purge_expired`](Self::purge_expired) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.indexes.by_expiry.first().map(|&(at, _, _)| at)
    }

    /// Bindings (live or not yet purged) registered from `source`.
    pub fn bindings_from(&self, source: IpAddr) -> usize {
        self.indexes
            .by_source
            .get(&source.to_canonical())
            .copied()
            .unwrap_or(0)
    }

    /// Removes every binding whose expiry is at or before `now`; returns how many.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some(&(at, slot, id)) = self.indexes.by_expiry.first() {
            if at > now {
                break;
            }
            let position = self
                .entry(slot)
                .and_then(|entry| entry.bindings.iter().position(|b| b.id == id));
            match position {
                Some(position) => {
                    self.remove_binding_at(slot, position);
                    self.after_removals(slot);
                    removed += 1;
                }
                // Unreachable while the index is kept in step; drop the stray key rather
                // than loop on it.
                None => {
                    self.indexes.by_expiry.remove(&(at, slot, id));
                }
            }
        }
        removed
    }

    /// A stream connection closed: bindings registered over it keep their address (so the
    /// proxy can open a new connection) but forget the connection id. Returns how many
    /// bindings were touched. Not reported as a change: the published contact set is the same.
    pub fn remove_connection(&mut self, connection: ConnectionId) -> usize {
        let affected: Vec<BindingRef> = self
            .indexes
            .by_connection
            .range((connection, 0, 0)..=(connection, u32::MAX, u64::MAX))
            .map(|&(_, slot, id)| (slot, id))
            .collect();
        for &(slot, id) in &affected {
            self.indexes.by_connection.remove(&(connection, slot, id));
            let binding = self
                .entry_mut(slot)
                .and_then(|entry| entry.bindings.iter_mut().find(|b| b.id == id));
            if let Some(binding) = binding {
                binding.source.connection = None;
            }
        }
        affected.len()
    }

    /// Takes up to `max` addresses-of-record whose bindings changed, oldest first, each with
    /// the strongest change since it was last drained. An address-of-record appears at most
    /// once until drained.
    pub fn drain_changed(&mut self, max: usize) -> Vec<(String, ChangeKind)> {
        let mut drained = Vec::with_capacity(max.min(self.changes.len()));
        while drained.len() < max {
            let Some(slot) = self.changes.pop_front() else {
                break;
            };
            let Some(entry) = self.entry_mut(slot) else {
                continue;
            };
            if let Some(kind) = entry.pending.take() {
                drained.push((entry.aor.to_string(), kind));
            }
            self.release_if_unused(slot);
        }
        drained
    }

    /// Changes waiting in the log.
    pub fn pending_changes(&self) -> usize {
        self.changes.len()
    }

    /// True (once) when changes were dropped because the log was full since the last call;
    /// the consumer should then republish everything from [`aors`](Self::aors).
    pub fn take_change_overflow(&mut self) -> bool {
        std::mem::take(&mut self.changes_overflowed)
    }

    pub(super) fn entry(&self, slot: u32) -> Option<&AorEntry> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    pub(super) fn entry_mut(&mut self, slot: u32) -> Option<&mut AorEntry> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    pub(super) fn next_id(&mut self) -> u64 {
        self.next_binding_id += 1;
        self.next_binding_id
    }

    /// Creates an empty entry for `aor` and indexes it. The caller adds bindings at once.
    pub(super) fn allocate_slot(&mut self, aor: Box<str>) -> u32 {
        let entry = AorEntry {
            aor: aor.clone(),
            bindings: Vec::new(),
            pending: None,
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                if let Some(place) = self.slots.get_mut(slot as usize) {
                    *place = Some(entry);
                }
                slot
            }
            None => {
                // Slots never exceed max_aors + max_pending_changes, far below u32::MAX for
                // any table that fits in memory.
                let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Some(entry));
                slot
            }
        };
        self.index.insert(aor, slot);
        slot
    }

    /// Removes the binding at `position` of `slot` from the entry and the indexes, keeping
    /// counters in step. Change logging and slot release are the caller's.
    pub(super) fn remove_binding_at(&mut self, slot: u32, position: usize) -> Option<Binding> {
        let entry = self.slots.get_mut(slot as usize).and_then(Option::as_mut)?;
        if position >= entry.bindings.len() {
            return None;
        }
        let binding = entry.bindings.remove(position);
        self.indexes.remove(slot, &binding);
        self.binding_count -= 1;
        if entry.bindings.is_empty() {
            self.live_aors -= 1;
        }
        Some(binding)
    }

    /// Logs that bindings were removed from `slot` outside a REGISTER, then frees the
    /// entry if nothing refers to it any more.
    fn after_removals(&mut self, slot: u32) {
        let emptied = self.entry(slot).is_some_and(|e| e.bindings.is_empty());
        let kind = if emptied {
            ChangeKind::Removed
        } else {
            ChangeKind::Changed
        };
        self.note_change(slot, kind);
        self.release_if_unused(slot);
    }

    /// Records a change of `slot` in the bounded change log (see
    /// [`TableLimits::max_pending_changes`] for what happens when full).
    pub(super) fn note_change(&mut self, slot: u32, kind: ChangeKind) {
        let log_full = self.changes.len() >= self.limits.max_pending_changes;
        let Some(entry) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        match entry.pending {
            Some(pending) => entry.pending = Some(pending.merge(kind)),
            None if log_full => self.changes_overflowed = true,
            None => {
                entry.pending = Some(kind);
                self.changes.push_back(slot);
            }
        }
    }

    /// Frees the entry of `slot` when it has no bindings and no pending change.
    pub(super) fn release_if_unused(&mut self, slot: u32) {
        let Some(place) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let unused = place
            .as_ref()
            .is_some_and(|e| e.bindings.is_empty() && e.pending.is_none());
        if !unused {
            return;
        }
        if let Some(entry) = place.take() {
            self.index.remove(&entry.aor);
            self.free_slots.push(slot);
        }
    }
}

/// Unexpired bindings of an optional entry, in stored order.
pub(super) fn live_bindings(
    entry: Option<&AorEntry>,
    now: Instant,
) -> impl Iterator<Item = &Binding> + '_ {
    entry
        .into_iter()
        .flat_map(|entry| entry.bindings.iter())
        .filter(move |binding| !binding.is_expired(now))
}
