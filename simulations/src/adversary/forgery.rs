//! Forged registration records: every trick a validator must refuse, built from what the
//! forger has learnt about the targets' honest records.
//!
//! 1. [`Trick::OwnKey`]: an entry for the target signed with the forger's own key, no
//!    delegation, a seq above any honest one (milliseconds a day ahead) and `issued_at` now.
//!    Refused where the domain has an authority (`unauthorised`: no delegation).
//! 2. [`Trick::CopiedDelegation`]: the same, carrying a delegation copied from an honest
//!    entry of the domain. The delegation names the honest node, not the signer, so it is
//!    refused (`unauthorised`), in open mode too.
//! 3. [`Trick::Tampered`]: the target's latest honest entry with every contact replaced by
//!    one at [`FORGED_CONTACT_HOST`] and its seq raised, signature left as it was
//!    (`bad_signature`). A validator that skipped the signature would take it as the honest
//!    node's newer entry and replace the real one.
//!
//! Tricks 1 and 2 are signed by two keys of the forger (the node key and a second one), so
//! that both fit in one record: a record holds at most one entry per serving peer.
//! Everything stays within the wire limits and lifetimes, so a refusal is for the trick,
//! never for size or expiry.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use overlay::authority::Delegation;
use overlay::key::{Aor, RecordKind};
use overlay::record::{
    EntryDraft, NodeEntry, RecordBinding, RegistrationRecord, MAX_ADDRS_PER_ENTRY, MAX_ADDR_BYTES,
    MAX_CONTACT_BYTES, MAX_Q,
};

use super::FORGED_CONTACT_HOST;

/// Targets whose latest honest entry is remembered at most.
pub(crate) const MAX_REMEMBERED_TARGETS: usize = 4096;
/// Domains whose honest delegation is remembered at most.
pub(crate) const MAX_REMEMBERED_DOMAINS: usize = 1024;
/// Lifetime of a made-up entry: long, well within the wire limit of 7 days.
const FORGED_LIFETIME_SECS: u64 = 24 * 3600;
/// How far above the clock a made-up seq is, so it beats any honest publisher's.
const SEQ_LEAD_MILLIS: u64 = 24 * 3600 * 1000;

/// One way of forging an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trick {
    OwnKey,
    CopiedDelegation,
    Tampered,
}

/// What a forged record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// Every trick the forger can play for the target.
    Combined,
    /// One trick alone (when it cannot be played, [`Variant::Combined`] instead). An honest
    /// storing node refuses a put at its first bad entry, so puts of single tricks make
    /// sure each one meets the put validation on its own.
    Only(Trick),
}

/// Puts cycle through these, one per put.
pub(crate) const PUT_VARIANTS: [Variant; 4] = [
    Variant::Combined,
    Variant::Only(Trick::OwnKey),
    Variant::Only(Trick::CopiedDelegation),
    Variant::Only(Trick::Tampered),
];

/// The forger's keys, its targets and what it learnt of their honest records.
pub(crate) struct Forger {
    own: Keypair,
    /// Signs trick 2, so that it can share a record with trick 1.
    second: Keypair,
    targets: Arc<Vec<Aor>>,
    /// Registration DHT key of each target, to its index in `targets`.
    by_key: HashMap<Vec<u8>, usize>,
    /// Advertised in made-up entries, so that calls routed by them would reach the forger.
    addrs: Vec<Multiaddr>,
    /// Latest honest entry per target index.
    honest: Bounded<usize, NodeEntry>,
    /// An honest delegation per domain.
    delegations: Bounded<String, Delegation>,
    /// Last seq used, so made-up entries of one signer never repeat a seq.
    last_seq: AtomicU64,
}

impl Forger {
    pub(crate) fn new(own: Keypair, targets: Arc<Vec<Aor>>) -> Forger {
        let mut by_key = HashMap::with_capacity(targets.len());
        for (index, aor) in targets.iter().enumerate() {
            by_key
                .entry(aor.dht_key(RecordKind::Registration))
                .or_insert(index);
        }
        Forger {
            own,
            second: Keypair::generate_ed25519(),
            targets,
            by_key,
            addrs: Vec::new(),
            honest: Bounded::new(MAX_REMEMBERED_TARGETS),
            delegations: Bounded::new(MAX_REMEMBERED_DOMAINS),
            last_seq: AtomicU64::new(0),
        }
    }

    #[cfg(test)]
    pub(crate) fn targets(&self) -> &Arc<Vec<Aor>> {
        &self.targets
    }

    /// The target whose registration is stored under `key`.
    pub(crate) fn target_of(&self, key: &[u8]) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    pub(crate) fn set_addrs(&mut self, addrs: impl IntoIterator<Item = Multiaddr>) {
        self.addrs = addrs
            .into_iter()
            .filter(|address| address.len() <= MAX_ADDR_BYTES)
            .take(MAX_ADDRS_PER_ENTRY)
            .collect();
    }

    fn is_own(&self, peer: &PeerId) -> bool {
        *peer == self.own.public().to_peer_id() || *peer == self.second.public().to_peer_id()
    }

    /// Learns from a value fetched for target `index`: its latest honest entry, and an
    /// honest delegation of its domain. Only entries whose signature verifies and that are
    /// not forgeries themselves (of this or another forger) count.
    pub(crate) fn learn(&mut self, index: usize, value: &[u8], now: u64) {
        let Some(aor) = self.targets.get(index).cloned() else {
            return;
        };
        let Ok(record) = RegistrationRecord::decode(value) else {
            return;
        };
        if record.aor != aor {
            return;
        }
        for entry in record.entries {
            let forged = entry
                .bindings
                .iter()
                .any(|b| b.contact.contains(FORGED_CONTACT_HOST));
            if self.is_own(&entry.serving_peer)
                || forged
                || entry.is_expired(now)
                || entry.verify_signature(&aor).is_err()
            {
                continue;
            }
            if let Some(delegation) = &entry.delegation {
                if delegation.node == entry.serving_peer
                    && delegation.domain == aor.domain()
                    && delegation_usable(delegation, now)
                {
                    self.delegations
                        .insert(aor.domain().to_owned(), delegation.clone());
                }
            }
            let newer = match self.honest.get(&index) {
                Some(known) => {
                    known.is_expired(now)
                        || (entry.issued_at, entry.seq) > (known.issued_at, known.seq)
                }
                None => true,
            };
            if newer {
                self.honest.insert(index, entry);
            }
        }
    }

    /// The encoded forged record of target `index`, or `None` for an unknown index (or if
    /// not even trick 1 can be signed, which does not happen with an Ed25519 key).
    pub(crate) fn forge(
        &self,
        index: usize,
        variant: Variant,
        now: u64,
        now_millis: u64,
    ) -> Option<Vec<u8>> {
        const EVERY: [Trick; 3] = [Trick::OwnKey, Trick::CopiedDelegation, Trick::Tampered];
        let aor = self.targets.get(index)?;
        let play_all = |tricks: &[Trick]| -> Vec<NodeEntry> {
            tricks
                .iter()
                .filter_map(|trick| self.play(*trick, index, aor, now, now_millis))
                .collect()
        };
        let mut entries = match variant {
            Variant::Combined => play_all(&EVERY),
            Variant::Only(trick) => play_all(&[trick]),
        };
        if entries.is_empty() {
            // That trick cannot be played yet: everything that can.
            entries = play_all(&EVERY);
        }
        // Richest first: the tampered copy of a large honest entry may not fit with the rest.
        while !entries.is_empty() {
            let record = RegistrationRecord {
                aor: aor.clone(),
                entries: entries.clone(),
            };
            match record.encode() {
                Ok(value) => return Some(value),
                Err(_) => {
                    entries.pop();
                }
            }
        }
        None
    }

    fn play(
        &self,
        trick: Trick,
        index: usize,
        aor: &Aor,
        now: u64,
        now_millis: u64,
    ) -> Option<NodeEntry> {
        match trick {
            Trick::OwnKey => self.made_up(&self.own, aor, None, now, now_millis),
            Trick::CopiedDelegation => {
                let delegation = self
                    .delegations
                    .get(aor.domain())
                    .filter(|d| delegation_usable(d, now))?;
                self.made_up(&self.second, aor, Some(delegation.clone()), now, now_millis)
            }
            Trick::Tampered => {
                let honest = self.honest.get(&index).filter(|e| !e.is_expired(now))?;
                Some(tampered(honest, aor))
            }
        }
    }

    /// An entry for `aor` signed by `signer`, with one binding at the forged host.
    fn made_up(
        &self,
        signer: &Keypair,
        aor: &Aor,
        delegation: Option<Delegation>,
        now: u64,
        now_millis: u64,
    ) -> Option<NodeEntry> {
        let expires_at = now.saturating_add(FORGED_LIFETIME_SECS);
        let binding = RecordBinding {
            contact: forged_contact(aor),
            expires_at,
            q: MAX_Q,
            instance: None,
            reg_id: None,
        };
        let draft = EntryDraft::new(self.next_seq(now_millis), now, vec![binding])
            .with_addrs(self.addrs.clone())
            .with_delegation(delegation);
        NodeEntry::sign(signer, aor, draft).ok()
    }

    fn next_seq(&self, now_millis: u64) -> u64 {
        let wanted = now_millis.saturating_add(SEQ_LEAD_MILLIS);
        let previous = self
            .last_seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(wanted.max(last.saturating_add(1)))
            })
            .unwrap_or(0);
        wanted.max(previous.saturating_add(1))
    }
}

/// Usable now: honest validators would not refuse it for its window alone.
fn delegation_usable(delegation: &Delegation, now: u64) -> bool {
    delegation.not_before <= now && now < delegation.not_after
}

/// `honest` with every contact moved to the forged host (one binding added to a withdrawal)
/// and a higher seq; the signature is the honest one, which no longer matches.
fn tampered(honest: &NodeEntry, aor: &Aor) -> NodeEntry {
    let mut entry = honest.clone();
    let contact = forged_contact(aor);
    if entry.bindings.is_empty() {
        entry.bindings.push(RecordBinding {
            contact,
            expires_at: entry.expires_at,
            q: MAX_Q,
            instance: None,
            reg_id: None,
        });
    } else {
        for binding in &mut entry.bindings {
            binding.contact.clone_from(&contact);
        }
    }
    entry.seq = entry.seq.saturating_add(1);
    entry
}

/// `sip:<user>@forged.invalid`, the user `%`-escaped as a SIP URI needs; a fixed user when
/// that would be over the contact limit.
pub(crate) fn forged_contact(aor: &Aor) -> String {
    let mut user = String::with_capacity(aor.user().len());
    for &byte in aor.user().as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'!' | b'~' | b'*') {
            user.push(char::from(byte));
        } else {
            user.push_str(&format!("%{byte:02X}"));
        }
    }
    let contact = format!("sip:{user}@{FORGED_CONTACT_HOST}");
    if contact.len() <= MAX_CONTACT_BYTES {
        contact
    } else {
        format!("sip:forged@{FORGED_CONTACT_HOST}")
    }
}

/// A map that keeps at most `limit` keys, forgetting the oldest inserted first.
struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    limit: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(limit: usize) -> Bounded<K, V> {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key)
    }

    fn insert(&mut self, key: K, value: V) {
        if self.map.insert(key.clone(), value).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.limit {
            if let Some(oldest) = self.order.pop_front() {
                self.map.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
#[path = "forgery_tests.rs"]
mod tests;
