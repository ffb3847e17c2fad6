//! The wire structs, in the exact field order postcard encodes them (see `overlay/WIRE.md`).
//!
//! Public types ([`super::RegistrationRecord`], [`crate::authority::Delegation`], ...) hold
//! libp2p types; these hold only primitive serde types, so the encoding does not depend on
//! how a libp2p release chooses to serialize a `PeerId` or a `Multiaddr`.

use super::RecordError;
use serde::{Deserialize, Serialize};

/// The format version: the first byte of every encoded value and of every signed message.
pub const WIRE_VERSION: u8 = 1;

/// Domain-separation labels: a signature over one kind of message can never verify as
/// another kind, even if the remaining bytes happened to coincide.
pub(crate) const ENTRY_LABEL: &[u8] = b"p2psip registration entry";
pub(crate) const DELEGATION_LABEL: &[u8] = b"p2psip delegation";
pub(crate) const AUTHORITY_LABEL: &[u8] = b"p2psip domain authority";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireRecord {
    pub aor: String,
    pub entries: Vec<WireEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireEntry {
    pub serving_peer: Vec<u8>,
    pub serving_addrs: Vec<Vec<u8>>,
    pub seq: u64,
    pub issued_at: u64,
    pub expires_at: u64,
    pub bindings: Vec<WireBinding>,
    pub delegation: Option<WireDelegation>,
    pub signature: Vec<u8>,
}

/// What an entry's signature covers: the AoR, then every entry field but the signature, in
/// wire order. Encodes exactly like the fields of [`WireEntry`].
#[derive(Serialize)]
pub(crate) struct SignedEntry<'a> {
    pub aor: &'a str,
    pub serving_peer: &'a [u8],
    pub serving_addrs: &'a [Vec<u8>],
    pub seq: u64,
    pub issued_at: u64,
    pub expires_at: u64,
    pub bindings: &'a [WireBinding],
    pub delegation: Option<&'a WireDelegation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireBinding {
    pub contact: String,
    pub expires_at: u64,
    pub q: u16,
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireDelegation {
    pub domain: String,
    pub node: Vec<u8>,
    pub not_before: u64,
    pub not_after: u64,
    pub authority: Vec<u8>,
    pub signature: Vec<u8>,
}

#[derive(Serialize)]
pub(crate) struct SignedDelegation<'a> {
    pub domain: &'a str,
    pub node: &'a [u8],
    pub not_before: u64,
    pub not_after: u64,
    pub authority: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireAuthority {
    pub domain: String,
    pub authority: Vec<u8>,
    pub issued_at: u64,
    pub signature: Vec<u8>,
}

#[derive(Serialize)]
pub(crate) struct SignedAuthority<'a> {
    pub domain: &'a str,
    pub authority: &'a [u8],
    pub issued_at: u64,
}

/// `WIRE_VERSION` followed by the postcard encoding of `value`.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, RecordError> {
    postcard::to_extend(value, vec![WIRE_VERSION])
        .map_err(|e| RecordError::Malformed(format!("cannot encode: {e}")))
}

/// Inverse of [`encode`]: refuses values over `limit` bytes before decoding anything, other
/// versions, and trailing bytes (one value has one encoding length).
pub(crate) fn decode<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    limit: usize,
) -> Result<T, RecordError> {
    if bytes.len() > limit {
        return Err(RecordError::Oversize {
            len: bytes.len(),
            limit,
        });
    }
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| RecordError::Malformed("empty value".into()))?;
    if version != WIRE_VERSION {
        return Err(RecordError::UnsupportedVersion(version));
    }
    let (value, rest) = postcard::take_from_bytes(body)
        .map_err(|e| RecordError::Malformed(format!("cannot decode: {e}")))?;
    if !rest.is_empty() {
        return Err(RecordError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

/// The bytes a signature covers: `label`, a zero byte, `WIRE_VERSION`, then the postcard
/// encoding of `payload`.
pub(crate) fn signing_input<T: Serialize>(
    label: &[u8],
    payload: &T,
) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(label.len() + 2 + 256);
    out.extend_from_slice(label);
    out.push(0);
    out.push(WIRE_VERSION);
    postcard::to_extend(payload, out)
        .map_err(|e| RecordError::Malformed(format!("cannot encode: {e}")))
}
