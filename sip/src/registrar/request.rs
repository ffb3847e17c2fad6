//! The parts of a REGISTER the registrar acts on, as plain data borrowed from the message.

use super::binding::parse_qvalue;
use super::RegisterRejection;
use crate::message::{ContactValue, Message, NameAddr, Scheme};
use smallvec::SmallVec;

/// Contact values accepted in one REGISTER. More is refused with 403 before anything else is
/// looked at, which also bounds the work of matching contacts against each other.
pub const MAX_CONTACTS_PER_REQUEST: usize = 64;

/// Longest Contact URI stored. Bindings are kept for hours, so their size is bounded; real
/// Contact URIs, even with push-notification parameters, stay well below this.
pub const MAX_CONTACT_URI_LEN: usize = 1024;
/// Longest Call-ID and `+sip.instance` stored.
pub const MAX_CALL_ID_LEN: usize = 256;
pub const MAX_INSTANCE_LEN: usize = 256;

/// One Contact address of a REGISTER with the parameters the registrar uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactUpdate<'a> {
    /// The URI as written, without `<>`.
    pub uri: &'a str,
    /// The `expires` parameter.
    pub expires: Option<u32>,
    /// The `q` parameter in thousandths.
    pub q: Option<u16>,
    /// The `+sip.instance` value without its surrounding quotes.
    pub instance: Option<&'a str>,
    pub reg_id: Option<u32>,
}

impl<'a> ContactUpdate<'a> {
    /// A contact with no parameters.
    pub fn new(uri: &'a str) -> ContactUpdate<'a> {
        ContactUpdate {
            uri,
            expires: None,
            q: None,
            instance: None,
            reg_id: None,
        }
    }

    /// RFC 5626 flow identity: present only when both `+sip.instance` and `reg-id` are.
    pub fn flow_key(&self) -> Option<(&'a str, u32)> {
        self.instance.zip(self.reg_id)
    }
}

/// A Contact value: `*` or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactSpec<'a> {
    Star,
    Address(ContactUpdate<'a>),
}

/// What the registrar needs from a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRequest<'a> {
    /// Canonical address-of-record ([`crate::message::Uri::aor`] of the To URI).
    pub aor: String,
    pub call_id: &'a str,
    pub cseq: u32,
    /// The Expires header.
    pub expires: Option<u32>,
    /// Contact values in order; empty for a query.
    pub contacts: SmallVec<[ContactSpec<'a>; 4]>,
}

impl<'a> RegisterRequest<'a> {
    /// Extracts the registrar's view of a REGISTER. Faults in To, Call-ID, CSeq, Expires or
    /// Contact give 400 naming the fault; a To URI that is not sip: or sips: gives 404
    /// (RFC 3261 10.3 step 5: not a valid address-of-record).
    pub fn from_message(message: &Message<'a>) -> Result<RegisterRequest<'a>, RegisterRejection> {
        let to = match message.to() {
            None => return Err(RegisterRejection::bad_request("missing To")),
            Some(Err(_)) => return Err(RegisterRejection::bad_request("bad To")),
            Some(Ok(to)) => to,
        };
        if !matches!(to.uri.scheme, Scheme::Sip | Scheme::Sips) {
            return Err(RegisterRejection::new(
                404,
                "Not Found (address-of-record must be a SIP or SIPS URI)",
            ));
        }
        let call_id = message
            .call_id()
            .ok_or_else(|| RegisterRejection::bad_request("missing Call-ID"))?;
        if call_id.is_empty() || call_id.len() > MAX_CALL_ID_LEN {
            return Err(RegisterRejection::bad_request("bad Call-ID"));
        }
        let cseq = match message.cseq() {
            None => return Err(RegisterRejection::bad_request("missing CSeq")),
            Some(Err(_)) => return Err(RegisterRejection::bad_request("bad CSeq")),
            Some(Ok(cseq)) => cseq.seq,
        };
        let expires = message
            .expires()
            .transpose()
            .map_err(|_| RegisterRejection::bad_request("bad Expires"))?;
        let mut contacts = SmallVec::new();
        for contact in message.contacts() {
            if contacts.len() == MAX_CONTACTS_PER_REQUEST {
                return Err(too_many_contacts());
            }
            let contact = contact.map_err(|e| {
                RegisterRejection::bad_request(&format!("malformed Contact: {}", e.what))
            })?;
            contacts.push(match contact {
                ContactValue::Star => ContactSpec::Star,
                ContactValue::Address(address) => ContactSpec::Address(contact_update(&address)?),
            });
        }
        Ok(RegisterRequest {
            aor: to.uri.aor(),
            call_id,
            cseq,
            expires,
            contacts,
        })
    }
}

pub(super) fn too_many_contacts() -> RegisterRejection {
    RegisterRejection::new(403, "Forbidden (too many bindings)")
}

/// Reads the registrar's Contact parameters, refusing values it could not store or echo
/// back safely.
fn contact_update<'a>(address: &NameAddr<'a>) -> Result<ContactUpdate<'a>, RegisterRejection> {
    let uri = address.uri.raw;
    if uri.len() > MAX_CONTACT_URI_LEN {
        return Err(RegisterRejection::bad_request("Contact URI too long"));
    }
    let params = &address.params;
    let expires = match params.get("expires") {
        None => None,
        Some(value) => Some(
            value
                .and_then(parse_delta_seconds)
                .ok_or_else(|| RegisterRejection::bad_request("bad expires in Contact"))?,
        ),
    };
    let q = match params.get("q") {
        None => None,
        Some(value) => Some(
            value
                .and_then(|v| parse_qvalue(v.trim()))
                .ok_or_else(|| RegisterRejection::bad_request("bad q in Contact"))?,
        ),
    };
    let instance = match params.get("+sip.instance") {
        None => None,
        Some(value) => Some(
            value
                .and_then(instance_value)
                .ok_or_else(|| RegisterRejection::bad_request("bad +sip.instance in Contact"))?,
        ),
    };
    let reg_id = match params.get("reg-id") {
        None => None,
        Some(value) => Some(
            value
                .and_then(parse_reg_id)
                .ok_or_else(|| RegisterRejection::bad_request("bad reg-id in Contact"))?,
        ),
    };
    Ok(ContactUpdate {
        uri,
        expires,
        q,
        instance,
        reg_id,
    })
}

/// delta-seconds (`1*DIGIT`). Values past 2^32-1 saturate: the registrar caps every
/// interval at its maximum anyway.
pub(super) fn parse_delta_seconds(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value = 0u32;
    for digit in text.bytes() {
        value = value
            .saturating_mul(10)
            .saturating_add(u32::from(digit - b'0'));
    }
    Some(value)
}

/// reg-id is 1 to 2^31-1 (RFC 5626 4.2).
fn parse_reg_id(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u32 = text.parse().ok()?;
    (1..=0x7fff_ffff).contains(&value).then_some(value)
}

/// The `+sip.instance` value without quotes. It is echoed inside quotes in the 200 OK, so
/// quotes, backslashes and control characters are refused rather than unescaped.
fn instance_value(text: &str) -> Option<&str> {
    let text = text.trim();
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let acceptable = !inner.is_empty()
        && inner.len() <= MAX_INSTANCE_LEN
        && inner
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    acceptable.then_some(inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn delta_seconds() {
        assert_eq!(parse_delta_seconds("0"), Some(0));
        assert_eq!(parse_delta_seconds(" 3600 "), Some(3600));
        assert_eq!(parse_delta_seconds("99999999999999"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds(""), None);
        assert_eq!(parse_delta_seconds("-1"), None);
        assert_eq!(parse_delta_seconds("1.5"), None);
    }

    #[test]
    fn reg_id() {
        assert_eq!(parse_reg_id("1"), Some(1));
        assert_eq!(parse_reg_id("2147483647"), Some(0x7fff_ffff));
        assert_eq!(parse_reg_id("0"), None);
        assert_eq!(parse_reg_id("2147483648"), None);
        assert_eq!(parse_reg_id("x"), None);
    }

    #[test]
    fn instance() {
        assert_eq!(
            instance_value("\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\""),
            Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
        );
        assert_eq!(instance_value("\"\""), None);
        assert_eq!(instance_value("\"a\"b\""), None);
        assert_eq!(instance_value("\"a b\""), None);
    }
}
