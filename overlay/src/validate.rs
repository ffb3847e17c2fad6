//! The checks every node runs on a record before storing it (a Kademlia put, with
//! `StoreInserts::FilterBoth`) and after fetching it (a get), so that nobody can add, replace
//! or withdraw a user's bindings without the serving node's key and, where the domain has an
//! authority, that authority's delegation.
//!
//! Per entry, in order: not expired (its own expiry and its delegation's), `issued_at` not
//! beyond the clock skew in the future, the serving node's signature, then authority:
//!
//! - the domain has keys in [`TrustAnchors`]: the entry must carry a delegation for this
//!   node and domain, valid now, signed by one of them;
//! - otherwise, the domain has a key in [`PinnedAuthorities`]: the same, with that key
//!   (pinned when the node stores the domain's authority record, or, in open mode, when
//!   the network task fetches that record on first meeting the domain; see
//!   [`RecordValidator::wants_authority_of`] and `WIRE.md`, "Learning a pinned key");
//! - otherwise, in [`AuthorityMode::Open`] the node's signature is enough (a delegation, if
//!   present, must still be sound); in [`AuthorityMode::Closed`] the entry is refused.
//!
//! A put must also bring something new: per serving peer, a higher seq than the stored entry
//! ("higher seq wins per serving peer"). The value returned for storing is the merge of the
//! stored record and the new entries, so it never loses a newer entry.

#[cfg(test)]
mod authority_tests;
mod refusal;
#[cfg(test)]
mod tests;

pub use refusal::{Refusal, RefusalReason, ValidationCounters};

use crate::authority::{AuthorityRecord, PinError, PinOutcome, PinnedAuthorities, TrustAnchors};
use crate::key::{parse_dht_key, Aor, RecordKind};
use crate::record::{NodeEntry, RegistrationRecord};

/// How far in the future an `issued_at` or a delegation's `not_before` may be, for clocks
/// that disagree.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 300;

/// What to do with a domain that has no known authority key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityMode {
    /// Accept entries signed by their serving node alone (ad-hoc meshes, tests).
    Open,
    /// Refuse them: every domain needs a trust anchor or a pinned authority.
    Closed,
}

/// A deliberate defect of the validator, compiled only with the `fault-injection` feature:
/// tests use it to show that their invariants catch a broken validator.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationFault {
    /// Accept entries whose domain authority does not check out.
    SkipAuthority,
    /// Accept entries whose signature does not verify.
    SkipSignature,
}

/// The checks [`RecordValidator::check_entry`] runs that a fault can switch off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryCheck {
    Signature,
    Authority,
}

/// The validator a node runs on every record it stores or fetches.
#[derive(Debug, Clone)]
pub struct RecordValidator {
    mode: AuthorityMode,
    anchors: TrustAnchors,
    pinned: PinnedAuthorities,
    clock_skew: u64,
    counters: ValidationCounters,
    #[cfg(feature = "fault-injection")]
    fault: Option<ValidationFault>,
}

impl RecordValidator {
    pub fn new(mode: AuthorityMode, anchors: TrustAnchors) -> RecordValidator {
        RecordValidator {
            mode,
            anchors,
            pinned: PinnedAuthorities::default(),
            clock_skew: DEFAULT_CLOCK_SKEW_SECS,
            counters: ValidationCounters::default(),
            #[cfg(feature = "fault-injection")]
            fault: None,
        }
    }

    /// Breaks this validator on purpose (see [`ValidationFault`]).
    #[cfg(feature = "fault-injection")]
    pub fn with_fault(mut self, fault: ValidationFault) -> RecordValidator {
        self.fault = Some(fault);
        self
    }

    fn skips(&self, check: EntryCheck) -> bool {
        #[cfg(feature = "fault-injection")]
        {
            matches!(
                (self.fault, check),
                (Some(ValidationFault::SkipSignature), EntryCheck::Signature)
                    | (Some(ValidationFault::SkipAuthority), EntryCheck::Authority)
            )
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = check;
            false
        }
    }

    pub fn with_clock_skew(mut self, seconds: u64) -> RecordValidator {
        self.clock_skew = seconds;
        self
    }

    pub fn with_pinned(mut self, pinned: PinnedAuthorities) -> RecordValidator {
        self.pinned = pinned;
        self
    }

    pub fn mode(&self) -> AuthorityMode {
        self.mode
    }

    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// For keys learnt later, e.g. from a DNS TXT lookup.
    pub fn anchors_mut(&mut self) -> &mut TrustAnchors {
        &mut self.anchors
    }

    pub fn pinned(&self) -> &PinnedAuthorities {
        &self.pinned
    }

    pub fn counters(&self) -> ValidationCounters {
        self.counters
    }

    /// Whether a node should look `domain`'s authority record up in the DHT before
    /// trusting entries of it on their serving node's signature alone: in open mode, for
    /// a canonical domain with neither a trust anchor nor a pinned key. (In closed mode
    /// such entries are refused anyway, and first-come pins are not learnt on demand.)
    pub fn wants_authority_of(&self, domain: &str) -> bool {
        self.mode == AuthorityMode::Open
            && self.anchors.keys_for(domain).is_empty()
            && self.pinned.get(domain).is_none()
    }

    /// Validates a registration put of `value` under `key`, given the value this node
    /// already stores there, and returns the value to store: the stored record merged with
    /// the new entries, expired entries dropped.
    pub fn validate_put(
        &mut self,
        key: &[u8],
        value: &[u8],
        existing: Option<&[u8]>,
        now: u64,
    ) -> Result<Vec<u8>, Refusal> {
        let result = self.registration_put(key, value, existing, now);
        self.tally(&result, |c| &mut c.accepted_puts);
        result
    }

    /// Validates a fetched registration record. Entries that fail are dropped (and counted);
    /// the record is refused when none is left, with the first entry's reason.
    pub fn validate_fetched(
        &mut self,
        key: &[u8],
        value: &[u8],
        now: u64,
    ) -> Result<RegistrationRecord, Refusal> {
        let mut record = match self.decode_registration(key, value) {
            Ok(record) => record,
            Err(refusal) => {
                self.counters.count(refusal.reason);
                return Err(refusal);
            }
        };
        let mut first_refusal = None;
        let mut kept = Vec::with_capacity(record.entries.len());
        for entry in std::mem::take(&mut record.entries) {
            match self.check_entry(&record.aor, &entry, now) {
                Ok(()) => kept.push(entry),
                Err(refusal) => {
                    self.counters.count(refusal.reason);
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        if kept.is_empty() {
            // Already counted per entry.
            return Err(first_refusal.unwrap_or_else(|| {
                Refusal::new(RefusalReason::Malformed, "record has no entries")
            }));
        }
        record.entries = kept;
        self.counters.accepted_fetches = self.counters.accepted_fetches.saturating_add(1);
        Ok(record)
    }

    /// Checks one entry of `aor` at `now`: expiry, clock skew, signature and authority. A
    /// publisher can run it on its own entry before putting it.
    pub fn check_entry(&self, aor: &Aor, entry: &NodeEntry, now: u64) -> Result<(), Refusal> {
        if entry.is_expired(now) {
            return Err(Refusal::new(
                RefusalReason::Expired,
                format!(
                    "entry of {} expired at {}",
                    entry.serving_peer,
                    entry.effective_expiry()
                ),
            ));
        }
        if entry.issued_at > now.saturating_add(self.clock_skew) {
            return Err(Refusal::new(
                RefusalReason::NotYetValid,
                format!(
                    "entry of {} issued at {}, in the future",
                    entry.serving_peer, entry.issued_at
                ),
            ));
        }
        if !self.skips(EntryCheck::Signature) {
            entry.verify_signature(aor)?;
        }
        if self.skips(EntryCheck::Authority) {
            return Ok(());
        }
        self.check_authority(aor, entry, now)
    }

    fn check_authority(&self, aor: &Aor, entry: &NodeEntry, now: u64) -> Result<(), Refusal> {
        let domain = aor.domain();
        let anchored = self.anchors.keys_for(domain);
        let known: Vec<_> = if anchored.is_empty() {
            self.pinned.get(domain).into_iter().collect()
        } else {
            anchored.iter().collect()
        };
        if known.is_empty() {
            return match (self.mode, &entry.delegation) {
                (AuthorityMode::Closed, _) => Err(Refusal::new(
                    RefusalReason::Unauthorised,
                    format!("no authority is known for {domain}"),
                )),
                (AuthorityMode::Open, None) => Ok(()),
                // Nothing requires it, but a delegation that is there must be sound.
                (AuthorityMode::Open, Some(delegation)) => Ok(delegation.verify(
                    &delegation.authority,
                    domain,
                    &entry.serving_peer,
                    now,
                    self.clock_skew,
                )?),
            };
        }
        let delegation = entry.delegation.as_ref().ok_or_else(|| {
            Refusal::new(
                RefusalReason::Unauthorised,
                format!("{} has no delegation for {domain}", entry.serving_peer),
            )
        })?;
        let authority = known
            .into_iter()
            .find(|key| **key == delegation.authority)
            .ok_or_else(|| {
                Refusal::new(
                    RefusalReason::Unauthorised,
                    format!(
                        "delegation of {} is signed by a key not known for {domain}",
                        entry.serving_peer
                    ),
                )
            })?;
        Ok(delegation.verify(authority, domain, &entry.serving_peer, now, self.clock_skew)?)
    }

    fn registration_put(
        &self,
        key: &[u8],
        value: &[u8],
        existing: Option<&[u8]>,
        now: u64,
    ) -> Result<Vec<u8>, Refusal> {
        let incoming = self.decode_registration(key, value)?;
        let stored = existing.and_then(|bytes| match RegistrationRecord::decode(bytes) {
            Ok(record) if record.aor == incoming.aor => Some(record),
            Ok(record) => {
                tracing::warn!(
                    stored = %record.aor,
                    incoming = %incoming.aor,
                    "stored record has another AoR; replacing it"
                );
                None
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    aor = %incoming.aor,
                    "stored record does not decode; replacing it"
                );
                None
            }
        });
        let mut newer = Vec::new();
        let mut stale = None;
        let mut duplicates = 0usize;
        for entry in &incoming.entries {
            match self.check_entry(&incoming.aor, entry, now) {
                Ok(()) => {}
                // Lapsed in flight or in a replica's store: nothing to merge, no offence.
                Err(refusal) if refusal.reason == RefusalReason::Expired => continue,
                Err(refusal) => return Err(refusal),
            }
            let current = stored
                .as_ref()
                .and_then(|record| record.entry(&entry.serving_peer))
                .filter(|current| !current.is_expired(now));
            match current {
                None => newer.push(entry.clone()),
                Some(current) if entry.seq > current.seq => newer.push(entry.clone()),
                Some(current) if entry.seq == current.seq && entry == current => duplicates += 1,
                Some(current) if entry.seq == current.seq => {
                    return Err(Refusal::new(
                        RefusalReason::StaleSequence,
                        format!(
                            "{} signed two different entries with seq {}",
                            entry.serving_peer, entry.seq
                        ),
                    ))
                }
                Some(current) => {
                    stale.get_or_insert_with(|| {
                        format!(
                            "entry of {} has seq {}, stored has {}",
                            entry.serving_peer, entry.seq, current.seq
                        )
                    });
                }
            }
        }
        if newer.is_empty() {
            if let Some(detail) = stale {
                return Err(Refusal::new(RefusalReason::StaleSequence, detail));
            }
            if duplicates == 0 {
                return Err(Refusal::new(
                    RefusalReason::Expired,
                    "every entry has expired",
                ));
            }
            // A republication of what is stored: accepted, nothing changes.
        }
        let base = stored.unwrap_or_else(|| RegistrationRecord::new(incoming.aor.clone()));
        let additions = RegistrationRecord {
            aor: incoming.aor,
            entries: newer,
        };
        Ok(RegistrationRecord::merge(&base, &additions, now).encode()?)
    }

    /// Kind, key and structure of a registration record; no entry checks.
    fn decode_registration(&self, key: &[u8], value: &[u8]) -> Result<RegistrationRecord, Refusal> {
        expect_kind(key, RecordKind::Registration)?;
        let record = RegistrationRecord::decode(value)?;
        if record.dht_key() != key {
            return Err(Refusal::new(
                RefusalReason::WrongKey,
                format!("key is not the key of {}", record.aor),
            ));
        }
        if record.entries.is_empty() {
            return Err(Refusal::new(
                RefusalReason::Malformed,
                "record has no entries",
            ));
        }
        Ok(record)
    }

    /// Validates a domain authority put and returns the value to store: first-come, so a
    /// different key than the stored or pinned one is refused; the same key republished
    /// keeps the latest `issued_at`.
    pub fn validate_authority_put(
        &mut self,
        key: &[u8],
        value: &[u8],
        existing: Option<&[u8]>,
        now: u64,
    ) -> Result<Vec<u8>, Refusal> {
        let result = self.authority_put(key, value, existing, now);
        self.tally(&result, |c| &mut c.accepted_puts);
        result
    }

    fn authority_put(
        &self,
        key: &[u8],
        value: &[u8],
        existing: Option<&[u8]>,
        now: u64,
    ) -> Result<Vec<u8>, Refusal> {
        let record = self.check_authority_record(key, value, now)?;
        let stored = existing.and_then(|bytes| AuthorityRecord::decode(bytes).ok());
        match stored {
            Some(stored) if stored.authority != record.authority => Err(Refusal::new(
                RefusalReason::AuthorityConflict,
                format!("{} already has another authority key", record.domain),
            )),
            Some(stored) if stored.issued_at > record.issued_at => Ok(stored.encode()?),
            _ => Ok(record.encode()?),
        }
    }

    /// Validates a fetched domain authority record; the caller may then pin it.
    pub fn validate_authority_fetched(
        &mut self,
        key: &[u8],
        value: &[u8],
        now: u64,
    ) -> Result<AuthorityRecord, Refusal> {
        let result = self.check_authority_record(key, value, now);
        self.tally(&result, |c| &mut c.accepted_fetches);
        result
    }

    /// Pins a domain's authority key first-come (open mode). The record's signature is
    /// checked again, so any record may be passed.
    pub fn pin_authority(&mut self, record: &AuthorityRecord) -> Result<PinOutcome, Refusal> {
        let result = self.pin(record);
        if let Err(refusal) = &result {
            self.counters.count(refusal.reason);
        }
        result
    }

    fn pin(&mut self, record: &AuthorityRecord) -> Result<PinOutcome, Refusal> {
        record.verify()?;
        self.check_against_anchors(record)?;
        self.pinned
            .pin(&record.domain, record.authority.clone())
            .map_err(|error| {
                let reason = match error {
                    PinError::Conflict { .. } => RefusalReason::AuthorityConflict,
                    PinError::Full { .. } => RefusalReason::TableFull,
                };
                Refusal::new(reason, error.to_string())
            })
    }

    fn check_authority_record(
        &self,
        key: &[u8],
        value: &[u8],
        now: u64,
    ) -> Result<AuthorityRecord, Refusal> {
        expect_kind(key, RecordKind::DomainAuthority)?;
        let record = AuthorityRecord::decode(value)?;
        if record.dht_key() != key {
            return Err(Refusal::new(
                RefusalReason::WrongKey,
                format!("key is not the key of domain {}", record.domain),
            ));
        }
        if record.issued_at > now.saturating_add(self.clock_skew) {
            return Err(Refusal::new(
                RefusalReason::NotYetValid,
                format!(
                    "authority record issued at {}, in the future",
                    record.issued_at
                ),
            ));
        }
        record.verify()?;
        self.check_against_anchors(&record)?;
        match self.pinned.get(&record.domain) {
            Some(pinned) if *pinned != record.authority => Err(Refusal::new(
                RefusalReason::AuthorityConflict,
                format!("{} is pinned to another authority key", record.domain),
            )),
            _ => Ok(record),
        }
    }

    /// A configured domain's authority record must carry one of its configured keys.
    fn check_against_anchors(&self, record: &AuthorityRecord) -> Result<(), Refusal> {
        let anchored = self.anchors.keys_for(&record.domain);
        if anchored.is_empty() || anchored.contains(&record.authority) {
            Ok(())
        } else {
            Err(Refusal::new(
                RefusalReason::Unauthorised,
                format!(
                    "{} has configured authority keys and this is not one",
                    record.domain
                ),
            ))
        }
    }

    fn tally<T>(
        &mut self,
        result: &Result<T, Refusal>,
        accepted: fn(&mut ValidationCounters) -> &mut u64,
    ) {
        match result {
            Ok(_) => {
                let slot = accepted(&mut self.counters);
                *slot = slot.saturating_add(1);
            }
            Err(refusal) => self.counters.count(refusal.reason),
        }
    }
}

fn expect_kind(key: &[u8], kind: RecordKind) -> Result<(), Refusal> {
    match parse_dht_key(key) {
        Ok((found, _)) if found == kind => Ok(()),
        Ok((found, _)) => Err(Refusal::new(
            RefusalReason::WrongKey,
            format!("key of kind {found:?}, expected {kind:?}"),
        )),
        Err(error) => Err(Refusal::new(RefusalReason::WrongKey, error.to_string())),
    }
}
