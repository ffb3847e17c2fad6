//! One registered contact and the kinds of change the overlay is told about.

use crate::transport::Peer;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// q in thousandths when a Contact carries no `q` parameter (RFC 3261 20.10: 1.0 is the
/// highest preference and is what an absent q means for ordering).
pub const DEFAULT_Q: u16 = 1000;

/// One contact address bound to an address-of-record.
///
/// Fields are public for reading; a binding is only created and changed by the
/// [`LocationTable`](super::LocationTable), which keeps its indexes in step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI exactly as the phone wrote it (without the enclosing `<>`).
    pub uri: Box<str>,
    /// Preference in thousandths, 0..=1000.
    pub q: u16,
    pub expires_at: Instant,
    /// Call-ID and CSeq of the REGISTER that last created or refreshed this binding; they
    /// order later requests from the same phone (RFC 3261 10.3 step 7).
    pub call_id: Box<str>,
    pub cseq: u32,
    /// `+sip.instance` value without its surrounding quotes, e.g. `<urn:uuid:...>`.
    pub instance: Option<Box<str>>,
    /// RFC 5626 `reg-id`.
    pub reg_id: Option<u32>,
    /// Where the REGISTER came from. Requests to this contact go back over the same
    /// connection or to the same NAT mapping; see
    /// [`LocationTable::remove_connection`](super::LocationTable::remove_connection).
    pub source: Peer,
    /// When the binding was first created.
    pub registered_at: Instant,
    /// When the binding was last created or refreshed.
    pub updated_at: Instant,
    /// Table-wide identity; stable across refreshes. Keys the expiry and connection indexes.
    pub(super) id: u64,
    /// Increases on every refresh; orders bindings of equal q, most recent first.
    pub(super) recency: u64,
}

impl Binding {
    /// RFC 5626 flow identity: present only when both `+sip.instance` and `reg-id` are.
    pub fn flow_key(&self) -> Option<(&str, u32)> {
        match (&self.instance, self.reg_id) {
            (Some(instance), Some(reg_id)) => Some((instance, reg_id)),
            _ => None,
        }
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at <= now
    }

    /// Seconds left, rounded up so a live binding never reports 0 (which a phone would read
    /// as "removed"); 0 once expired.
    pub fn expires_in(&self, now: Instant) -> u32 {
        let left = self.expires_at.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        u32::try_from(secs).unwrap_or(u32::MAX)
    }
}

/// What happened to an address-of-record since the overlay last looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Only expiry times (and per-phone state such as Call-ID, CSeq or source address)
    /// moved; the published contact set is the same. The overlay may just extend a TTL.
    Refreshed,
    /// Contacts were added or removed, or a contact's URI, q, instance or reg-id changed.
    Changed,
    /// The address-of-record has no bindings left.
    Removed,
}

impl ChangeKind {
    /// Combines a pending change with a newer one so the consumer sees the strongest.
    pub(super) fn merge(self, newer: ChangeKind) -> ChangeKind {
        match (self, newer) {
            (_, ChangeKind::Removed) => ChangeKind::Removed,
            (ChangeKind::Refreshed, ChangeKind::Refreshed) => ChangeKind::Refreshed,
            _ => ChangeKind::Changed,
        }
    }
}

/// Writes one Contact value for a 200 OK to REGISTER (RFC 3261 10.3 step 8):
/// `<uri>;expires=N`, then `;q=` when not 1, `;+sip.instance="..."` and `;reg-id=` when
/// present.
pub fn contact_header_value(binding: &Binding, now: Instant, out: &mut String) {
    out.push('<');
    out.push_str(&binding.uri);
    out.push('>');
    // Writing into a String cannot fail.
    let _ = write!(out, ";expires={}", binding.expires_in(now));
    if binding.q != DEFAULT_Q {
        out.push_str(";q=");
        write_qvalue(binding.q, out);
    }
    if let Some(instance) = &binding.instance {
        out.push_str(";+sip.instance=\"");
        out.push_str(instance);
        out.push('"');
    }
    if let Some(reg_id) = binding.reg_id {
        let _ = write!(out, ";reg-id={reg_id}");
    }
}

/// Formats thousandths as a qvalue with no trailing zeros: `1`, `0`, `0.5`, `0.125`.
pub fn write_qvalue(thousandths: u16, out: &mut String) {
    if thousandths >= 1000 {
        out.push('1');
        return;
    }
    if thousandths == 0 {
        out.push('0');
        return;
    }
    let all_digits = [
        b'0' + (thousandths / 100) as u8,
        b'0' + (thousandths / 10 % 10) as u8,
        b'0' + (thousandths % 10) as u8,
    ];
    let mut digits = all_digits.as_slice();
    while let [rest @ .., b'0'] = digits {
        digits = rest;
    }
    out.push_str("0.");
    for &d in digits {
        out.push(char::from(d));
    }
}

/// Parses a qvalue (`"0" ["." 0*3DIGIT] / "1" ["." 0*3("0")]`, RFC 3261 25.1) into
/// thousandths.
pub fn parse_qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let whole = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let Some(fraction) = fraction else {
        return Some(whole);
    };
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths = 0u16;
    let mut scale = 100u16;
    for digit in fraction.bytes() {
        thousandths += u16::from(digit - b'0') * scale;
        scale /= 10;
    }
    if whole == 1000 && thousandths != 0 {
        return None;
    }
    Some(whole + thousandths)
}

/// `now + secs`, saturating far in the future instead of panicking on overflow.
pub(super) fn deadline(now: Instant, secs: u32) -> Instant {
    let mut span = Duration::from_secs(u64::from(secs));
    loop {
        if let Some(at) = now.checked_add(span) {
            return at;
        }
        span /= 2;
    }
}
