//! Registrar (RFC 3261 section 10) and location table, sans-IO.
//!
//! [`apply_register`] runs steps 5 to 8 of RFC 3261 10.3 on an authenticated, validated
//! REGISTER against a [`LocationTable`]: it either changes the table and returns a
//! [`RegisterOutcome`] from which the 200 OK is built (one [`contact_header_value`] per
//! binding), or changes nothing and returns a [`RegisterRejection`]. Steps 1 to 4 (domain,
//! Require, authentication, authorization) belong to the caller.
//!
//! Bindings are identified by Contact URI equivalence (RFC 3261 19.1.4) or, when a Contact
//! carries both `+sip.instance` and `reg-id`, by that pair (RFC 5626 section 6); GRUU
//! (RFC 5627) instance ids are kept on the binding for later use.
//!
//! The message is turned into plain data first ([`RegisterRequest::from_message`]) so that
//! the rules themselves ([`LocationTable::apply`]) do not depend on the parser.

mod apply;
mod binding;
mod request;
mod table;

#[cfg(test)]
mod tests;

pub use binding::{
    contact_header_value, parse_qvalue, write_qvalue, Binding, ChangeKind, DEFAULT_Q,
};
pub use request::{ContactSpec, ContactUpdate, RegisterRequest, MAX_CONTACTS_PER_REQUEST};
pub use table::{LocationTable, TableLimits, DEFAULT_MAX_PENDING_CHANGES};

use crate::message::Message;
use crate::server::ServerConfig;
use crate::transport::Peer;
use std::fmt;
use std::time::Instant;

/// Registration intervals in seconds and table bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarPolicy {
    /// Shortest interval granted; a shorter non-zero request below one hour gets 423 with
    /// this value in Min-Expires.
    pub min_expires: u32,
    /// Longest interval granted; longer requests are shortened to it. At least 1.
    pub max_expires: u32,
    /// Interval used when neither the Contact nor the request carries one. At least 1.
    pub default_expires: u32,
    /// Table bounds, applied when the table is built ([`LocationTable::for_policy`]); the
    /// table enforces them.
    pub max_aors: usize,
    pub max_bindings_per_aor: usize,
    /// Retry-After (seconds) sent with 503 when the table has no room for another
    /// address-of-record.
    pub table_full_retry_after: u32,
}

impl RegistrarPolicy {
    /// Makes the intervals consistent: `1 <= max`, `min <= max`, `min <= default <= max`,
    /// `default >= 1`.
    pub fn normalized(mut self) -> RegistrarPolicy {
        self.max_expires = self.max_expires.max(1);
        self.min_expires = self.min_expires.min(self.max_expires);
        self.default_expires = self
            .default_expires
            .clamp(self.min_expires.max(1), self.max_expires);
        self
    }
}

impl Default for RegistrarPolicy {
    fn default() -> Self {
        RegistrarPolicy::from(&ServerConfig::default())
    }
}

impl From<&ServerConfig> for RegistrarPolicy {
    fn from(config: &ServerConfig) -> RegistrarPolicy {
        RegistrarPolicy {
            min_expires: config.min_expires,
            max_expires: config.max_expires,
            default_expires: config.default_expires,
            max_aors: config.max_aors,
            max_bindings_per_aor: config.max_bindings_per_aor,
            table_full_retry_after: 60,
        }
        .normalized()
    }
}

/// Why a REGISTER was refused; the table is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRejection {
    pub status: u16,
    /// Full reason phrase naming the fault, e.g. `Bad Request (bad q in Contact)`.
    pub reason: String,
    /// For 423: the Min-Expires header value.
    pub min_expires: Option<u32>,
    /// For 503: the Retry-After header value.
    pub retry_after: Option<u32>,
}

impl RegisterRejection {
    pub(crate) fn new(status: u16, reason: impl Into<String>) -> RegisterRejection {
        RegisterRejection {
            status,
            reason: reason.into(),
            min_expires: None,
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(fault: &str) -> RegisterRejection {
        RegisterRejection::new(400, format!("Bad Request ({fault})"))
    }
}

impl fmt::Display for RegisterRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for RegisterRejection {}

/// A REGISTER that was accepted (or a query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// Canonical address-of-record from the To header.
    pub aor: String,
    /// What the request did to the binding set; `None` for a query or a request that
    /// changed nothing (e.g. removing a contact that was not bound).
    pub change: Option<ChangeKind>,
    /// Where the address-of-record sits in the table, so building the response needs no
    /// second hash lookup.
    pub(crate) slot: Option<u32>,
}

impl RegisterOutcome {
    /// The bindings to list in the 200 OK (all current bindings of the address-of-record,
    /// RFC 3261 10.3 step 8), in lookup order. Call before the table changes again.
    pub fn bindings<'t>(
        &self,
        table: &'t LocationTable,
        now: Instant,
    ) -> impl Iterator<Item = &'t Binding> + 't {
        // The slot is checked against the AoR in case the table changed since.
        let entry = match self.slot.and_then(|slot| table.entry(slot)) {
            Some(entry) if *entry.aor == *self.aor => Some(entry),
            _ => table
                .index
                .get(self.aor.as_str())
                .and_then(|&slot| table.entry(slot)),
        };
        table::live_bindings(entry, now)
    }
}

/// Processes a REGISTER (RFC 3261 10.3 steps 5 to 8) that the caller has already validated
/// ([`Message::validate`]), authenticated and authorized. All-or-nothing: on `Err` the table
/// is unchanged.
pub fn apply_register(
    table: &mut LocationTable,
    now: Instant,
    request: &Message<'_>,
    source: Peer,
    policy: &RegistrarPolicy,
) -> Result<RegisterOutcome, RegisterRejection> {
    let request = RegisterRequest::from_message(request)?;
    table.apply(now, request, source, policy)
}
