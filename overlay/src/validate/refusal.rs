//! Refusal reasons and the counters kept per reason.

use crate::authority::DelegationError;
use crate::record::RecordError;
use std::fmt;

/// Why a record or entry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalReason {
    /// Does not decode, breaks a format rule, or holds no entries.
    Malformed,
    /// A version byte this node does not understand.
    UnsupportedVersion,
    /// The DHT key is not the one the record's AoR or domain gives, or of another kind.
    WrongKey,
    /// Over a size or count limit.
    Oversize,
    /// A node's, authority's or delegation's signature does not verify.
    BadSignature,
    /// Expired, or its delegation has.
    Expired,
    /// Issued (or delegated) further in the future than the clock skew allows.
    NotYetValid,
    /// Not newer than the stored entry of the same serving peer.
    StaleSequence,
    /// No valid delegation from an authority known for the domain.
    Unauthorised,
    /// Another authority key already holds the domain.
    AuthorityConflict,
    /// A bounded table (pinned authorities) is full.
    TableFull,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 11] = [
        RefusalReason::Malformed,
        RefusalReason::UnsupportedVersion,
        RefusalReason::WrongKey,
        RefusalReason::Oversize,
        RefusalReason::BadSignature,
        RefusalReason::Expired,
        RefusalReason::NotYetValid,
        RefusalReason::StaleSequence,
        RefusalReason::Unauthorised,
        RefusalReason::AuthorityConflict,
        RefusalReason::TableFull,
    ];

    /// A stable name for status output and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Malformed => "malformed",
            RefusalReason::UnsupportedVersion => "unsupported_version",
            RefusalReason::WrongKey => "wrong_key",
            RefusalReason::Oversize => "oversize",
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::Expired => "expired",
            RefusalReason::NotYetValid => "not_yet_valid",
            RefusalReason::StaleSequence => "stale_sequence",
            RefusalReason::Unauthorised => "unauthorised",
            RefusalReason::AuthorityConflict => "authority_conflict",
            RefusalReason::TableFull => "table_full",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused record or entry: the reason, and a detail for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Refusal {
    pub reason: RefusalReason,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: RefusalReason, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<RecordError> for Refusal {
    fn from(error: RecordError) -> Refusal {
        let reason = match &error {
            RecordError::Oversize { .. } | RecordError::TooMany { .. } => RefusalReason::Oversize,
            RecordError::UnsupportedVersion(_) => RefusalReason::UnsupportedVersion,
            RecordError::BadSignature => RefusalReason::BadSignature,
            RecordError::Malformed(_)
            | RecordError::Key(_)
            | RecordError::NotEd25519(_)
            | RecordError::Signing(_) => RefusalReason::Malformed,
        };
        Refusal::new(reason, error.to_string())
    }
}

impl From<DelegationError> for Refusal {
    fn from(error: DelegationError) -> Refusal {
        let reason = match &error {
            DelegationError::WrongAuthority
            | DelegationError::WrongDomain { .. }
            | DelegationError::WrongNode { .. } => RefusalReason::Unauthorised,
            DelegationError::NotYetValid { .. } => RefusalReason::NotYetValid,
            DelegationError::Expired { .. } => RefusalReason::Expired,
            DelegationError::BadSignature => RefusalReason::BadSignature,
        };
        Refusal::new(reason, error.to_string())
    }
}

/// Counts of refusals per reason (one per refused value or dropped entry) and of accepted
/// values, for status output and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidationCounters {
    refused: [u64; RefusalReason::ALL.len()],
    pub(super) accepted_puts: u64,
    pub(super) accepted_fetches: u64,
}

impl ValidationCounters {
    pub fn refused(&self, reason: RefusalReason) -> u64 {
        self.refused.get(reason as usize).copied().unwrap_or(0)
    }

    pub fn total_refused(&self) -> u64 {
        self.refused.iter().sum()
    }

    pub fn accepted_puts(&self) -> u64 {
        self.accepted_puts
    }

    pub fn accepted_fetches(&self) -> u64 {
        self.accepted_fetches
    }

    /// Every reason with its count, zeros included, in [`RefusalReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (RefusalReason, u64)> + '_ {
        RefusalReason::ALL
            .iter()
            .map(move |&reason| (reason, self.refused(reason)))
    }

    pub(super) fn count(&mut self, reason: RefusalReason) {
        if let Some(slot) = self.refused.get_mut(reason as usize) {
            *slot = slot.saturating_add(1);
        }
    }
}
