//! Builders shared by the unit tests of the record, authority and validation modules.

use super::{EntryDraft, NodeEntry, RecordBinding};
use crate::authority::Delegation;
use crate::key::Aor;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};

/// A fixed "now" (unix seconds) for tests.
pub(crate) const NOW: u64 = 1_700_000_000;

pub(crate) fn alice() -> Aor {
    Aor::parse("alice@example.com").unwrap()
}

pub(crate) fn binding(contact: &str, expires_at: u64) -> RecordBinding {
    RecordBinding {
        contact: contact.to_owned(),
        expires_at,
        q: 1000,
        instance: None,
        reg_id: None,
    }
}

pub(crate) fn addr(port: u16) -> Multiaddr {
    format!("/ip4/192.0.2.1/tcp/{port}").parse().unwrap()
}

/// An entry of `keypair`'s node for `aor`, issued at `NOW`, one binding expiring in an hour.
pub(crate) fn entry(
    keypair: &Keypair,
    aor: &Aor,
    seq: u64,
    delegation: Option<Delegation>,
) -> NodeEntry {
    let draft = EntryDraft::new(
        seq,
        NOW,
        vec![binding("sip:alice@198.51.100.7:5060", NOW + 3600)],
    )
    .with_addrs(vec![addr(4001)])
    .with_delegation(delegation);
    NodeEntry::sign(keypair, aor, draft).unwrap()
}

/// A delegation of `domain` to `node` by `authority`, valid a day around `NOW`.
pub(crate) fn delegation(authority: &Keypair, domain: &str, node: PeerId) -> Delegation {
    Delegation::issue(authority, domain, node, NOW - 3600, NOW + 86_400).unwrap()
}

/// A change to one field of a signed value, for tamper tests.
pub(crate) type Tamper<T> = Box<dyn Fn(&mut T)>;
