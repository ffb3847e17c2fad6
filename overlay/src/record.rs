//! Registration records: the value stored in the DHT under `dht_key(Registration, aor)`.
//!
//! Several nodes may serve bindings of one AoR (a desk phone registered at node A, a mobile
//! at node B), and a Kademlia put replaces the whole value, so a record is a set of per-node
//! [`NodeEntry`]s, each signed by the node serving those bindings, merged by every storing
//! node ([`RegistrationRecord::merge`]). Rules:
//!
//! - **Higher seq wins per serving peer.** A publisher numbers its entries with a counter
//!   that only grows; [`next_seq`] derives it from unix milliseconds, so it survives restarts
//!   as long as the last value is persisted or the clock does not step back.
//! - An entry with no bindings is a withdrawal. An entry is kept until its own `expires_at`,
//!   which the publisher sets no earlier than that of any entry it replaces
//!   ([`EntryDraft::outliving`]), so a replay of an older, still unexpired entry stays stale.
//! - Stored entries are never edited: the signature covers every binding, so expired
//!   bindings are skipped when read ([`RegistrationRecord::live_bindings`]) and whole
//!   entries are dropped once expired.
//! - The signing key is the serving node's libp2p Ed25519 key, recovered from its PeerId
//!   (an identity multihash holds the key itself), so no key travels in the entry.

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
pub(crate) mod wire;

use crate::authority::Delegation;
use crate::key::{Aor, KeyError, RecordKind};
use libp2p::identity::{KeyType, Keypair, PublicKey};
use libp2p::{Multiaddr, PeerId};
use sip::message::{Scheme, Uri};
use std::collections::BTreeMap;
use wire::{SignedEntry, WireBinding, WireEntry, WireRecord};

pub use wire::WIRE_VERSION;

/// Largest encoded registration record (bytes).
pub const MAX_RECORD_BYTES: usize = 16 * 1024;
/// Kademlia's default packet limit (16 KiB) is smaller than a full record plus the message
/// around it; the swarm must raise `max_packet_size` to at least this.
pub const KAD_MAX_PACKET_BYTES: usize = 64 * 1024;
pub const MAX_ENTRIES_PER_RECORD: usize = 64;
pub const MAX_BINDINGS_PER_ENTRY: usize = 32;
pub const MAX_ADDRS_PER_ENTRY: usize = 8;
pub const MAX_ADDR_BYTES: usize = 128;
pub const MAX_CONTACT_BYTES: usize = 512;
pub const MAX_INSTANCE_BYTES: usize = 256;
/// Longest span from `issued_at` to `expires_at`; stops an entry (and its seq) from being
/// pinned in the DHT for ever.
pub const MAX_ENTRY_LIFETIME_SECS: u64 = 7 * 24 * 3600;
/// q-values are thousandths: 1000 is q=1.0.
pub const MAX_Q: u16 = 1000;
/// Ed25519 signatures, the only kind accepted.
pub const SIGNATURE_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("value is {len} bytes, more than the limit of {limit}")]
    Oversize { len: usize, limit: usize },
    #[error("{what}: {count} is more than the limit of {limit}")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    #[error("malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("peer {0} has no Ed25519 public key in its id")]
    NotEd25519(PeerId),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("signature does not verify")]
    BadSignature,
}

/// One binding of the AoR, as served by the entry's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBinding {
    /// The phone's Contact URI (sip: or sips:).
    pub contact: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// Thousandths, 0..=1000.
    pub q: u16,
    /// `+sip.instance` (RFC 5626) as the phone sent it, e.g. `<urn:uuid:...>`.
    pub instance: Option<String>,
    /// RFC 5626 reg-id.
    pub reg_id: Option<u32>,
}

/// The bindings one node serves for one AoR, signed by that node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    pub serving_peer: PeerId,
    /// Where the serving node can be dialled; may be empty (found through the DHT).
    pub serving_addrs: Vec<Multiaddr>,
    /// Higher wins per serving peer; see [`next_seq`].
    pub seq: u64,
    /// Unix seconds when signed.
    pub issued_at: u64,
    /// Unix seconds after which the entry is dropped; at least every binding's expiry.
    pub expires_at: u64,
    /// Empty: a withdrawal.
    pub bindings: Vec<RecordBinding>,
    /// The domain authority's certificate for this node, when the domain has one.
    pub delegation: Option<Delegation>,
    pub signature: Vec<u8>,
}

/// The content of an entry before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryDraft {
    pub serving_addrs: Vec<Multiaddr>,
    pub seq: u64,
    pub issued_at: u64,
    pub expires_at: u64,
    pub bindings: Vec<RecordBinding>,
    pub delegation: Option<Delegation>,
}

/// A binding that can be routed to, with the node serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveBinding<'a> {
    pub serving_peer: PeerId,
    pub serving_addrs: &'a [Multiaddr],
    pub binding: &'a RecordBinding,
}

/// A registration record: the AoR and one entry per serving node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRecord {
    pub aor: Aor,
    pub entries: Vec<NodeEntry>,
}

/// The next sequence number for a publisher whose last one was `last_seq`: unix
/// milliseconds, or one more than the last if the clock has not moved past it.
pub fn next_seq(last_seq: u64, now_millis: u64) -> u64 {
    now_millis.max(last_seq.saturating_add(1))
}

/// The Ed25519 public key inside `peer` (an identity-multihash PeerId); `None` for hashed
/// ids (RSA and other long keys) and for ids that do not hold a well-formed key.
pub fn peer_public_key(peer: &PeerId) -> Option<PublicKey> {
    const IDENTITY_MULTIHASH: u64 = 0;
    let multihash = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return None;
    }
    let key = PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    // A non-canonical protobuf would decode to a key whose own id differs from `peer`.
    (key.key_type() == KeyType::Ed25519 && key.to_peer_id() == *peer).then_some(key)
}

impl EntryDraft {
    /// A draft serving `bindings`, expiring with the latest of them.
    pub fn new(seq: u64, issued_at: u64, bindings: Vec<RecordBinding>) -> EntryDraft {
        let expires_at = bindings
            .iter()
            .map(|b| b.expires_at)
            .max()
            .unwrap_or(issued_at)
            .max(issued_at);
        EntryDraft {
            serving_addrs: Vec::new(),
            seq,
            issued_at,
            expires_at,
            bindings,
            delegation: None,
        }
    }

    /// A withdrawal of `previous`: no bindings, same addresses and delegation, kept until
    /// `previous` would have expired.
    pub fn withdrawal(seq: u64, issued_at: u64, previous: &NodeEntry) -> EntryDraft {
        EntryDraft {
            serving_addrs: previous.serving_addrs.clone(),
            delegation: previous.delegation.clone(),
            ..EntryDraft::new(seq, issued_at, Vec::new())
        }
        .outliving(previous)
    }

    pub fn with_addrs(mut self, serving_addrs: Vec<Multiaddr>) -> EntryDraft {
        self.serving_addrs = serving_addrs;
        self
    }

    pub fn with_delegation(mut self, delegation: Option<Delegation>) -> EntryDraft {
        self.delegation = delegation;
        self
    }

    /// Keeps this entry at least as long as `previous`, the entry it replaces, so that a
    /// replay of `previous` is refused as stale for as long as it could be accepted.
    pub fn outliving(mut self, previous: &NodeEntry) -> EntryDraft {
        self.expires_at = self.expires_at.max(previous.expires_at);
        self
    }
}

impl NodeEntry {
    /// Signs `draft` for `aor` with the serving node's key; the entry's serving peer is the
    /// key's PeerId. Refuses drafts that break a wire limit, so what is signed can be stored.
    pub fn sign(keypair: &Keypair, aor: &Aor, draft: EntryDraft) -> Result<NodeEntry, RecordError> {
        let serving_peer = keypair.public().to_peer_id();
        if peer_public_key(&serving_peer).is_none() {
            return Err(RecordError::NotEd25519(serving_peer));
        }
        let mut entry = NodeEntry {
            serving_peer,
            serving_addrs: draft.serving_addrs,
            seq: draft.seq,
            issued_at: draft.issued_at,
            expires_at: draft.expires_at,
            bindings: draft.bindings,
            delegation: draft.delegation,
            signature: Vec::new(),
        };
        let unsigned = entry.to_wire();
        check_entry_limits(&unsigned)?;
        let message = entry_signing_input(aor, &unsigned)?;
        entry.signature = keypair
            .sign(&message)
            .map_err(|e| RecordError::Signing(e.to_string()))?;
        Ok(entry)
    }

    /// Checks the signature against the serving peer's key. Says nothing about expiry or
    /// authority; see [`crate::validate`].
    pub fn verify_signature(&self, aor: &Aor) -> Result<(), RecordError> {
        let key = peer_public_key(&self.serving_peer)
            .ok_or(RecordError::NotEd25519(self.serving_peer))?;
        let message = entry_signing_input(aor, &self.to_wire())?;
        if key.verify(&message, &self.signature) {
            Ok(())
        } else {
            Err(RecordError::BadSignature)
        }
    }

    /// When the entry stops counting: its own expiry, or its delegation's if earlier.
    pub fn effective_expiry(&self) -> u64 {
        match &self.delegation {
            Some(delegation) => self.expires_at.min(delegation.not_after),
            None => self.expires_at,
        }
    }

    pub fn is_expired(&self, now: u64) -> bool {
        self.effective_expiry() <= now
    }

    pub fn is_withdrawal(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Bindings not yet expired at `now`.
    pub fn live_bindings(&self, now: u64) -> impl Iterator<Item = &RecordBinding> + '_ {
        let entry_live = !self.is_expired(now);
        self.bindings
            .iter()
            .filter(move |b| entry_live && b.expires_at > now)
    }

    fn to_wire(&self) -> WireEntry {
        WireEntry {
            serving_peer: self.serving_peer.to_bytes(),
            serving_addrs: self.serving_addrs.iter().map(|a| a.to_vec()).collect(),
            seq: self.seq,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            bindings: self.bindings.iter().map(RecordBinding::to_wire).collect(),
            delegation: self.delegation.as_ref().map(Delegation::to_wire),
            signature: self.signature.clone(),
        }
    }

    fn from_wire(wire: WireEntry) -> Result<NodeEntry, RecordError> {
        check_entry_limits(&wire)?;
        check_signature_length(&wire.signature)?;
        let serving_peer = PeerId::from_bytes(&wire.serving_peer)
            .map_err(|e| RecordError::Malformed(format!("serving peer: {e}")))?;
        let serving_addrs = wire
            .serving_addrs
            .into_iter()
            .map(|bytes| {
                Multiaddr::try_from(bytes)
                    .map_err(|e| RecordError::Malformed(format!("serving address: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let delegation = wire.delegation.map(Delegation::from_wire).transpose()?;
        Ok(NodeEntry {
            serving_peer,
            serving_addrs,
            seq: wire.seq,
            issued_at: wire.issued_at,
            expires_at: wire.expires_at,
            bindings: wire
                .bindings
                .into_iter()
                .map(RecordBinding::from_wire)
                .collect(),
            delegation,
            signature: wire.signature,
        })
    }
}

impl RecordBinding {
    fn to_wire(&self) -> WireBinding {
        WireBinding {
            contact: self.contact.clone(),
            expires_at: self.expires_at,
            q: self.q,
            instance: self.instance.clone(),
            reg_id: self.reg_id,
        }
    }

    fn from_wire(wire: WireBinding) -> RecordBinding {
        RecordBinding {
            contact: wire.contact,
            expires_at: wire.expires_at,
            q: wire.q,
            instance: wire.instance,
            reg_id: wire.reg_id,
        }
    }
}

impl RegistrationRecord {
    pub fn new(aor: Aor) -> RegistrationRecord {
        RegistrationRecord {
            aor,
            entries: Vec::new(),
        }
    }

    /// A record holding one entry, as a publisher puts it.
    pub fn with_entry(aor: Aor, entry: NodeEntry) -> RegistrationRecord {
        RegistrationRecord {
            aor,
            entries: vec![entry],
        }
    }

    pub fn dht_key(&self) -> Vec<u8> {
        self.aor.dht_key(RecordKind::Registration)
    }

    /// The stored form: version byte then postcard, entries ordered by serving peer bytes so
    /// equal records encode equally. Refuses what [`RegistrationRecord::decode`] would.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        if self.entries.len() > MAX_ENTRIES_PER_RECORD {
            return Err(RecordError::TooMany {
                what: "entries",
                count: self.entries.len(),
                limit: MAX_ENTRIES_PER_RECORD,
            });
        }
        let mut entries: Vec<WireEntry> = self.entries.iter().map(NodeEntry::to_wire).collect();
        for entry in &entries {
            check_entry_limits(entry)?;
            check_signature_length(&entry.signature)?;
        }
        entries.sort_by(|a, b| a.serving_peer.cmp(&b.serving_peer));
        if entries
            .windows(2)
            .any(|pair| pair[0].serving_peer == pair[1].serving_peer)
        {
            return Err(RecordError::Malformed(
                "two entries for one serving peer".into(),
            ));
        }
        let bytes = wire::encode(&WireRecord {
            aor: self.aor.as_str().to_owned(),
            entries,
        })?;
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::Oversize {
                len: bytes.len(),
                limit: MAX_RECORD_BYTES,
            });
        }
        Ok(bytes)
    }

    /// Parses a stored record and checks its limits and canonical AoR. Signatures, expiry and
    /// authority are not checked here; see [`crate::validate::RecordValidator`].
    pub fn decode(bytes: &[u8]) -> Result<RegistrationRecord, RecordError> {
        let wire: WireRecord = wire::decode(bytes, MAX_RECORD_BYTES)?;
        if wire.entries.len() > MAX_ENTRIES_PER_RECORD {
            return Err(RecordError::TooMany {
                what: "entries",
                count: wire.entries.len(),
                limit: MAX_ENTRIES_PER_RECORD,
            });
        }
        let aor = Aor::from_canonical(&wire.aor)?;
        let entries = wire
            .entries
            .into_iter()
            .map(NodeEntry::from_wire)
            .collect::<Result<Vec<_>, _>>()?;
        let mut peers: Vec<&PeerId> = entries.iter().map(|e| &e.serving_peer).collect();
        peers.sort();
        if peers.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(RecordError::Malformed(
                "two entries for one serving peer".into(),
            ));
        }
        Ok(RegistrationRecord { aor, entries })
    }

    /// When the last entry stops counting (0 with no entries): a storing node can drop the
    /// whole value then, e.g. as the Kademlia record's expiry.
    pub fn expires_at(&self) -> u64 {
        self.entries
            .iter()
            .map(NodeEntry::effective_expiry)
            .max()
            .unwrap_or(0)
    }

    pub fn entry(&self, serving_peer: &PeerId) -> Option<&NodeEntry> {
        self.entries
            .iter()
            .find(|e| e.serving_peer == *serving_peer)
    }

    /// Merges two records of the same AoR: per serving peer the entry with the higher seq
    /// (the existing one on a tie), without entries expired at `now`. Entries are not
    /// re-verified: both sides are expected to have been validated. If the AoRs differ the
    /// incoming entries are ignored, since their signatures cover the other AoR.
    pub fn merge(
        existing: &RegistrationRecord,
        incoming: &RegistrationRecord,
        now: u64,
    ) -> RegistrationRecord {
        let mut by_peer: BTreeMap<Vec<u8>, &NodeEntry> = BTreeMap::new();
        let same_aor = existing.aor == incoming.aor;
        let incoming_entries = incoming.entries.iter().filter(|_| same_aor);
        for entry in existing.entries.iter().chain(incoming_entries) {
            if entry.is_expired(now) {
                continue;
            }
            let slot = by_peer
                .entry(entry.serving_peer.to_bytes())
                .or_insert(entry);
            if entry.seq > slot.seq {
                *slot = entry;
            }
        }
        RegistrationRecord {
            aor: existing.aor.clone(),
            entries: by_peer.into_values().cloned().collect(),
        }
    }

    /// Every binding live at `now`, across entries, best q first (then latest expiry), for
    /// routing a request to the nodes that serve them.
    pub fn live_bindings(&self, now: u64) -> Vec<LiveBinding<'_>> {
        let mut live: Vec<LiveBinding<'_>> = self
            .entries
            .iter()
            .flat_map(|entry| {
                entry.live_bindings(now).map(|binding| LiveBinding {
                    serving_peer: entry.serving_peer,
                    serving_addrs: &entry.serving_addrs,
                    binding,
                })
            })
            .collect();
        live.sort_by(|a, b| {
            b.binding
                .q
                .cmp(&a.binding.q)
                .then(b.binding.expires_at.cmp(&a.binding.expires_at))
        });
        live
    }
}

/// The bytes an entry's signature covers (layout in `overlay/WIRE.md`).
fn entry_signing_input(aor: &Aor, entry: &WireEntry) -> Result<Vec<u8>, RecordError> {
    wire::signing_input(
        wire::ENTRY_LABEL,
        &SignedEntry {
            aor: aor.as_str(),
            serving_peer: &entry.serving_peer,
            serving_addrs: &entry.serving_addrs,
            seq: entry.seq,
            issued_at: entry.issued_at,
            expires_at: entry.expires_at,
            bindings: &entry.bindings,
            delegation: entry.delegation.as_ref(),
        },
    )
}

/// Per-entry limits, shared by signing, encoding and decoding; the signature is checked
/// separately since a draft has none yet.
fn check_entry_limits(entry: &WireEntry) -> Result<(), RecordError> {
    let too_many = |what, count, limit| {
        if count > limit {
            Err(RecordError::TooMany { what, count, limit })
        } else {
            Ok(())
        }
    };
    too_many("bindings", entry.bindings.len(), MAX_BINDINGS_PER_ENTRY)?;
    too_many(
        "serving addresses",
        entry.serving_addrs.len(),
        MAX_ADDRS_PER_ENTRY,
    )?;
    for addr in &entry.serving_addrs {
        too_many("serving address bytes", addr.len(), MAX_ADDR_BYTES)?;
    }
    if entry.expires_at < entry.issued_at {
        return Err(RecordError::Malformed(
            "entry expires before it is issued".into(),
        ));
    }
    if entry.expires_at - entry.issued_at > MAX_ENTRY_LIFETIME_SECS {
        return Err(RecordError::Malformed(format!(
            "entry lifetime {} s is over the limit of {MAX_ENTRY_LIFETIME_SECS} s",
            entry.expires_at - entry.issued_at
        )));
    }
    for binding in &entry.bindings {
        check_binding(binding, entry.expires_at)?;
    }
    Ok(())
}

pub(crate) fn check_signature_length(signature: &[u8]) -> Result<(), RecordError> {
    if signature.len() == SIGNATURE_BYTES {
        Ok(())
    } else {
        Err(RecordError::Malformed(format!(
            "signature is {} bytes, not {SIGNATURE_BYTES}",
            signature.len()
        )))
    }
}

fn check_binding(binding: &WireBinding, entry_expires_at: u64) -> Result<(), RecordError> {
    if binding.contact.len() > MAX_CONTACT_BYTES {
        return Err(RecordError::TooMany {
            what: "contact bytes",
            count: binding.contact.len(),
            limit: MAX_CONTACT_BYTES,
        });
    }
    let contact = Uri::parse(&binding.contact)
        .map_err(|e| RecordError::Malformed(format!("contact {:?}: {e}", binding.contact)))?;
    if !matches!(contact.scheme, Scheme::Sip | Scheme::Sips) {
        return Err(RecordError::Malformed(format!(
            "contact {:?} is not a sip: or sips: URI",
            binding.contact
        )));
    }
    if binding.q > MAX_Q {
        return Err(RecordError::Malformed(format!(
            "q {} is over {MAX_Q}",
            binding.q
        )));
    }
    if let Some(instance) = &binding.instance {
        if instance.len() > MAX_INSTANCE_BYTES {
            return Err(RecordError::TooMany {
                what: "instance bytes",
                count: instance.len(),
                limit: MAX_INSTANCE_BYTES,
            });
        }
    }
    if binding.expires_at > entry_expires_at {
        return Err(RecordError::Malformed(
            "a binding outlives its entry".into(),
        ));
    }
    Ok(())
}
