//! Domain authority: who may write the registrations of a domain's users.
//!
//! A domain has an Ed25519 authority key. It signs a [`Delegation`] for every node allowed to
//! serve the domain's users, and a node puts that delegation in each entry it signs. A node
//! learns a domain's authority key from configured [`TrustAnchors`], from DNS (a
//! `TXT _p2psip.<domain>` record, [`AuthorityTxt`]), or, in open mode, from a self-signed
//! [`AuthorityRecord`] stored first-come in the DHT and kept in [`PinnedAuthorities`].
//!
//! Public keys are written as text in one form only: base58 (bitcoin alphabet) of the libp2p
//! protobuf encoding of the key, the same encoding a PeerId is built from
//! ([`public_key_to_text`]).

mod delegation_file;
mod key_file;
#[cfg(test)]
mod tests;
mod txt;

pub use delegation_file::{
    parse_delegation_file, read_delegation_file, DelegationFileError, DelegationLine,
    MAX_DELEGATIONS_PER_FILE, MAX_DELEGATION_FILE_BYTES, MAX_DELEGATION_TEXT,
};
pub use key_file::{
    generate_authority_key, load_authority_key, save_authority_key, AuthorityFileError,
};
pub use txt::{AuthorityTxt, TXT_VERSION};

use crate::key::{canonical_domain, dht_key, KeyError, RecordKind};
use crate::record::wire::{
    self, SignedAuthority, SignedDelegation, WireAuthority, WireDelegation, AUTHORITY_LABEL,
    DELEGATION_LABEL,
};
use crate::record::{check_signature_length, RecordError};
use libp2p::identity::{KeyType, Keypair, PublicKey};
use libp2p::PeerId;
use std::collections::{BTreeMap, HashMap};

/// Largest encoded delegation or authority record (bytes).
pub const MAX_AUTHORITY_RECORD_BYTES: usize = 1024;
pub const MAX_DELEGATION_BYTES: usize = 1024;
/// Longest protobuf-encoded public key accepted (an Ed25519 key is 36 bytes).
pub const MAX_PUBLIC_KEY_BYTES: usize = 64;
/// Longest public key text accepted, checked before decoding.
pub const MAX_PUBLIC_KEY_TEXT: usize = 128;
pub const MAX_ANCHOR_DOMAINS: usize = 4096;
pub const MAX_KEYS_PER_DOMAIN: usize = 8;
/// Default bound of [`PinnedAuthorities`].
pub const MAX_PINNED_DOMAINS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("public key {text:?}: {reason}")]
    BadPublicKey { text: String, reason: String },
    #[error("trust anchor {entry:?}: {reason}")]
    BadAnchor { entry: String, reason: String },
    #[error("TXT record {text:?}: {reason}")]
    BadTxt { text: String, reason: String },
    #[error("more than {limit} {what}")]
    TooMany { what: &'static str, limit: usize },
    #[error("{0} is not an Ed25519 key")]
    NotEd25519(&'static str),
    #[error("delegation window is empty: not_before {not_before} >= not_after {not_after}")]
    EmptyWindow { not_before: u64, not_after: u64 },
    #[error("signing failed: {0}")]
    Signing(String),
    #[error(transparent)]
    Domain(#[from] KeyError),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Why a delegation does not authorise a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegationError {
    #[error("delegation is signed by another authority key")]
    WrongAuthority,
    #[error("delegation is for domain {found:?}, not {expected:?}")]
    WrongDomain { expected: String, found: String },
    /// Holds the delegated node's id as text (a `PeerId` would make the error large).
    #[error("delegation is for node {delegated}, not this one")]
    WrongNode { delegated: String },
    #[error("delegation is not valid before {not_before}")]
    NotYetValid { not_before: u64 },
    #[error("delegation expired at {not_after}")]
    Expired { not_after: u64 },
    #[error("delegation signature does not verify")]
    BadSignature,
}

/// The text form of a public key: base58 of its protobuf encoding.
pub fn public_key_to_text(key: &PublicKey) -> String {
    bs58::encode(key.encode_protobuf()).into_string()
}

/// Parses [`public_key_to_text`]'s form; only Ed25519 keys are accepted.
pub fn public_key_from_text(text: &str) -> Result<PublicKey, AuthorityError> {
    let bad = |reason: String| AuthorityError::BadPublicKey {
        text: text.chars().take(MAX_PUBLIC_KEY_TEXT).collect(),
        reason,
    };
    if text.len() > MAX_PUBLIC_KEY_TEXT {
        return Err(bad(format!("longer than {MAX_PUBLIC_KEY_TEXT} characters")));
    }
    let bytes = bs58::decode(text)
        .into_vec()
        .map_err(|e| bad(format!("not base58: {e}")))?;
    decode_public_key(&bytes).map_err(|e| bad(e.to_string()))
}

/// A protobuf-encoded Ed25519 public key, as carried in delegations and authority records.
fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, RecordError> {
    if bytes.len() > MAX_PUBLIC_KEY_BYTES {
        return Err(RecordError::TooMany {
            what: "public key bytes",
            count: bytes.len(),
            limit: MAX_PUBLIC_KEY_BYTES,
        });
    }
    let key = PublicKey::try_decode_protobuf(bytes)
        .map_err(|e| RecordError::Malformed(format!("public key: {e}")))?;
    if key.key_type() != KeyType::Ed25519 {
        return Err(RecordError::Malformed("public key is not Ed25519".into()));
    }
    Ok(key)
}

/// A domain that must already be canonical, as on the wire.
fn wire_domain(domain: &str) -> Result<String, RecordError> {
    let canonical = canonical_domain(domain)?;
    if canonical != domain {
        return Err(KeyError::NotCanonical(domain.to_owned()).into());
    }
    Ok(canonical)
}

fn ensure_ed25519(keypair: &Keypair, what: &'static str) -> Result<(), AuthorityError> {
    if keypair.key_type() == KeyType::Ed25519 {
        Ok(())
    } else {
        Err(AuthorityError::NotEd25519(what))
    }
}

// ---------------------------------------------------------------------------------------
// Delegation

/// A domain authority's certificate that `node` may serve the users of `domain` from
/// `not_before` until `not_after` (unix seconds, exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// Canonical domain.
    pub domain: String,
    pub node: PeerId,
    pub not_before: u64,
    pub not_after: u64,
    /// The signing authority key; it must also be known for `domain` to count.
    pub authority: PublicKey,
    pub signature: Vec<u8>,
}

impl Delegation {
    /// Signs a delegation of `domain` (any case) to `node` with the authority key.
    pub fn issue(
        authority: &Keypair,
        domain: &str,
        node: PeerId,
        not_before: u64,
        not_after: u64,
    ) -> Result<Delegation, AuthorityError> {
        ensure_ed25519(authority, "authority key")?;
        if not_before >= not_after {
            return Err(AuthorityError::EmptyWindow {
                not_before,
                not_after,
            });
        }
        let mut delegation = Delegation {
            domain: canonical_domain(domain)?,
            node,
            not_before,
            not_after,
            authority: authority.public(),
            signature: Vec::new(),
        };
        let message = delegation.signing_input()?;
        delegation.signature = authority
            .sign(&message)
            .map_err(|e| AuthorityError::Signing(e.to_string()))?;
        Ok(delegation)
    }

    /// Checks that this delegation, signed by `authority`, lets `node` serve `domain` at
    /// `now`; `not_before` may be up to `skew` seconds ahead of `now`.
    pub fn verify(
        &self,
        authority: &PublicKey,
        domain: &str,
        node: &PeerId,
        now: u64,
        skew: u64,
    ) -> Result<(), DelegationError> {
        if self.authority != *authority {
            return Err(DelegationError::WrongAuthority);
        }
        if self.domain != domain {
            return Err(DelegationError::WrongDomain {
                expected: domain.to_owned(),
                found: self.domain.clone(),
            });
        }
        if self.node != *node {
            return Err(DelegationError::WrongNode {
                delegated: self.node.to_base58(),
            });
        }
        if self.not_before > now.saturating_add(skew) {
            return Err(DelegationError::NotYetValid {
                not_before: self.not_before,
            });
        }
        if now >= self.not_after {
            return Err(DelegationError::Expired {
                not_after: self.not_after,
            });
        }
        let message = self
            .signing_input()
            .map_err(|_| DelegationError::BadSignature)?;
        if authority.verify(&message, &self.signature) {
            Ok(())
        } else {
            Err(DelegationError::BadSignature)
        }
    }

    /// Standalone form, e.g. a file handed to a node operator: version byte then postcard.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        wire::encode(&self.to_wire())
    }

    pub fn decode(bytes: &[u8]) -> Result<Delegation, RecordError> {
        Delegation::from_wire(wire::decode(bytes, MAX_DELEGATION_BYTES)?)
    }

    fn signing_input(&self) -> Result<Vec<u8>, RecordError> {
        wire::signing_input(
            DELEGATION_LABEL,
            &SignedDelegation {
                domain: &self.domain,
                node: &self.node.to_bytes(),
                not_before: self.not_before,
                not_after: self.not_after,
                authority: &self.authority.encode_protobuf(),
            },
        )
    }

    pub(crate) fn to_wire(&self) -> WireDelegation {
        WireDelegation {
            domain: self.domain.clone(),
            node: self.node.to_bytes(),
            not_before: self.not_before,
            not_after: self.not_after,
            authority: self.authority.encode_protobuf(),
            signature: self.signature.clone(),
        }
    }

    pub(crate) fn from_wire(wire: WireDelegation) -> Result<Delegation, RecordError> {
        check_signature_length(&wire.signature)?;
        if wire.not_before >= wire.not_after {
            return Err(RecordError::Malformed("delegation window is empty".into()));
        }
        Ok(Delegation {
            domain: wire_domain(&wire.domain)?,
            node: PeerId::from_bytes(&wire.node)
                .map_err(|e| RecordError::Malformed(format!("delegated node: {e}")))?,
            not_before: wire.not_before,
            not_after: wire.not_after,
            authority: decode_public_key(&wire.authority)?,
            signature: wire.signature,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Trust anchors and pinned authorities

/// Configured authority keys per domain. Bounded: [`MAX_ANCHOR_DOMAINS`] domains,
/// [`MAX_KEYS_PER_DOMAIN`] keys each (several keys allow a rotation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    by_domain: BTreeMap<String, Vec<PublicKey>>,
}

impl TrustAnchors {
    pub fn new() -> TrustAnchors {
        TrustAnchors::default()
    }

    /// Anchors from configuration lines `domain=<public key text>`.
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = &'a str>,
    ) -> Result<TrustAnchors, AuthorityError> {
        let mut anchors = TrustAnchors::new();
        for entry in entries {
            let (domain, key) = TrustAnchors::parse_entry(entry)?;
            anchors
                .add(&domain, key)
                .map_err(|e| AuthorityError::BadAnchor {
                    entry: entry.to_owned(),
                    reason: e.to_string(),
                })?;
        }
        Ok(anchors)
    }

    /// Parses one `domain=<public key text>`; the domain is canonicalized.
    pub fn parse_entry(entry: &str) -> Result<(String, PublicKey), AuthorityError> {
        let bad = |reason: String| AuthorityError::BadAnchor {
            entry: entry.chars().take(MAX_PUBLIC_KEY_TEXT * 3).collect(),
            reason,
        };
        let (domain, key) = entry
            .split_once('=')
            .ok_or_else(|| bad("expected domain=<public key>".into()))?;
        let domain = canonical_domain(domain.trim()).map_err(|e| bad(e.to_string()))?;
        let key = public_key_from_text(key.trim()).map_err(|e| bad(e.to_string()))?;
        Ok((domain, key))
    }

    /// The configuration line for `key` at `domain`.
    pub fn format_entry(domain: &str, key: &PublicKey) -> String {
        format!("{domain}={}", public_key_to_text(key))
    }

    /// Adds `key` for `domain` (any case); adding a key twice is harmless.
    pub fn add(&mut self, domain: &str, key: PublicKey) -> Result<(), AuthorityError> {
        if key.key_type() != KeyType::Ed25519 {
            return Err(AuthorityError::NotEd25519("trust anchor"));
        }
        let domain = canonical_domain(domain)?;
        if !self.by_domain.contains_key(&domain) && self.by_domain.len() >= MAX_ANCHOR_DOMAINS {
            return Err(AuthorityError::TooMany {
                what: "trust anchor domains",
                limit: MAX_ANCHOR_DOMAINS,
            });
        }
        let keys = self.by_domain.entry(domain).or_default();
        if keys.contains(&key) {
            return Ok(());
        }
        if keys.len() >= MAX_KEYS_PER_DOMAIN {
            return Err(AuthorityError::TooMany {
                what: "keys for one domain",
                limit: MAX_KEYS_PER_DOMAIN,
            });
        }
        keys.push(key);
        Ok(())
    }

    /// The keys configured for a canonical domain; empty when none.
    pub fn keys_for(&self, domain: &str) -> &[PublicKey] {
        self.by_domain.get(domain).map_or(&[], Vec::as_slice)
    }

    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.by_domain.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    Pinned,
    AlreadyPinned,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("domain {domain} is already pinned to another authority key")]
    Conflict { domain: String },
    #[error("the pinned authority table is full ({capacity} domains)")]
    Full { capacity: usize },
}

/// Authority keys learnt first-come from the DHT (open mode): once a domain is pinned, a
/// different key for it is refused. Bounded; when full, new domains are not pinned (they
/// stay without a known authority) rather than evicting one, which would let an attacker
/// flush a pin by flooding the table.
#[derive(Debug, Clone)]
pub struct PinnedAuthorities {
    by_domain: HashMap<String, PublicKey>,
    capacity: usize,
}

impl Default for PinnedAuthorities {
    fn default() -> PinnedAuthorities {
        PinnedAuthorities::with_capacity(MAX_PINNED_DOMAINS)
    }
}

impl PinnedAuthorities {
    pub fn with_capacity(capacity: usize) -> PinnedAuthorities {
        PinnedAuthorities {
            by_domain: HashMap::new(),
            capacity,
        }
    }

    /// Pins `key` for a canonical `domain` unless another key holds it.
    pub fn pin(&mut self, domain: &str, key: PublicKey) -> Result<PinOutcome, PinError> {
        match self.by_domain.get(domain) {
            Some(pinned) if *pinned == key => Ok(PinOutcome::AlreadyPinned),
            Some(_) => Err(PinError::Conflict {
                domain: domain.to_owned(),
            }),
            None if self.by_domain.len() >= self.capacity => Err(PinError::Full {
                capacity: self.capacity,
            }),
            None => {
                self.by_domain.insert(domain.to_owned(), key);
                Ok(PinOutcome::Pinned)
            }
        }
    }

    pub fn get(&self, domain: &str) -> Option<&PublicKey> {
        self.by_domain.get(domain)
    }

    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }
}

// ---------------------------------------------------------------------------------------
// Authority record (open mode, DHT)

/// A domain's authority key, self-signed, stored first-come under
/// `dht_key(DomainAuthority, domain)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityRecord {
    /// Canonical domain.
    pub domain: String,
    pub authority: PublicKey,
    /// Unix seconds; a republication with the same key carries a later one.
    pub issued_at: u64,
    pub signature: Vec<u8>,
}

impl AuthorityRecord {
    pub fn sign(
        authority: &Keypair,
        domain: &str,
        issued_at: u64,
    ) -> Result<AuthorityRecord, AuthorityError> {
        ensure_ed25519(authority, "authority key")?;
        let mut record = AuthorityRecord {
            domain: canonical_domain(domain)?,
            authority: authority.public(),
            issued_at,
            signature: Vec::new(),
        };
        let message = record.signing_input()?;
        record.signature = authority
            .sign(&message)
            .map_err(|e| AuthorityError::Signing(e.to_string()))?;
        Ok(record)
    }

    /// Checks the self-signature.
    pub fn verify(&self) -> Result<(), RecordError> {
        let message = self.signing_input()?;
        if self.authority.verify(&message, &self.signature) {
            Ok(())
        } else {
            Err(RecordError::BadSignature)
        }
    }

    pub fn dht_key(&self) -> Vec<u8> {
        dht_key(RecordKind::DomainAuthority, &self.domain)
    }

    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        wire::encode(&WireAuthority {
            domain: self.domain.clone(),
            authority: self.authority.encode_protobuf(),
            issued_at: self.issued_at,
            signature: self.signature.clone(),
        })
    }

    /// Parses and checks limits; the signature is checked by [`AuthorityRecord::verify`].
    pub fn decode(bytes: &[u8]) -> Result<AuthorityRecord, RecordError> {
        let wire: WireAuthority = wire::decode(bytes, MAX_AUTHORITY_RECORD_BYTES)?;
        check_signature_length(&wire.signature)?;
        Ok(AuthorityRecord {
            domain: wire_domain(&wire.domain)?,
            authority: decode_public_key(&wire.authority)?,
            issued_at: wire.issued_at,
            signature: wire.signature,
        })
    }

    fn signing_input(&self) -> Result<Vec<u8>, RecordError> {
        wire::signing_input(
            AUTHORITY_LABEL,
            &SignedAuthority {
                domain: &self.domain,
                authority: &self.authority.encode_protobuf(),
                issued_at: self.issued_at,
            },
        )
    }
}
