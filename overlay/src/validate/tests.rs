use super::*;
use crate::authority::{Delegation, TrustAnchors};
use crate::key::dht_key;
use crate::record::testing::{alice, binding, delegation, entry, NOW};
use crate::record::{EntryDraft, MAX_ENTRIES_PER_RECORD, MAX_RECORD_BYTES, WIRE_VERSION};
use libp2p::identity::Keypair;
use std::fmt;

/// A domain with an authority, two delegated nodes and a rogue node.
struct Anchored {
    validator: RecordValidator,
    authority: Keypair,
    node_a: Keypair,
    node_b: Keypair,
    rogue: Keypair,
}

impl Anchored {
    fn new() -> Anchored {
        let authority = Keypair::generate_ed25519();
        let mut anchors = TrustAnchors::new();
        anchors.add("example.com", authority.public()).unwrap();
        Anchored {
            validator: RecordValidator::new(AuthorityMode::Closed, anchors),
            authority,
            node_a: Keypair::generate_ed25519(),
            node_b: Keypair::generate_ed25519(),
            rogue: Keypair::generate_ed25519(),
        }
    }

    fn delegated_entry(&self, node: &Keypair, seq: u64) -> NodeEntry {
        let delegation = delegation(&self.authority, "example.com", node.public().to_peer_id());
        entry(node, &alice(), seq, Some(delegation))
    }
}

pub(super) fn key() -> Vec<u8> {
    alice().dht_key(RecordKind::Registration)
}

pub(super) fn record_of(entries: Vec<NodeEntry>) -> Vec<u8> {
    RegistrationRecord {
        aor: alice(),
        entries,
    }
    .encode()
    .unwrap()
}

fn decode(bytes: &[u8]) -> RegistrationRecord {
    RegistrationRecord::decode(bytes).unwrap()
}

pub(super) fn reason<T: fmt::Debug>(result: Result<T, Refusal>) -> RefusalReason {
    result.unwrap_err().reason
}

/// An entry of `keypair` claiming to be served by `victim`: what a node without the victim's
/// key can produce at best.
fn forged(
    keypair: &Keypair,
    victim: &Keypair,
    seq: u64,
    delegation: Option<Delegation>,
) -> NodeEntry {
    let mut entry = entry(keypair, &alice(), seq, delegation);
    entry.serving_peer = victim.public().to_peer_id();
    entry
}

#[test]
fn a_delegated_node_stores_and_fetches() {
    let mut t = Anchored::new();
    let a1 = t.delegated_entry(&t.node_a, 1);
    let stored = t
        .validator
        .validate_put(&key(), &record_of(vec![a1.clone()]), None, NOW)
        .unwrap();
    assert_eq!(decode(&stored).entries, vec![a1.clone()]);

    let b1 = t.delegated_entry(&t.node_b, 1);
    let stored = t
        .validator
        .validate_put(&key(), &record_of(vec![b1.clone()]), Some(&stored), NOW)
        .unwrap();
    let record = t.validator.validate_fetched(&key(), &stored, NOW).unwrap();
    assert_eq!(record.entries.len(), 2);
    assert_eq!(record.entry(&a1.serving_peer), Some(&a1));
    assert_eq!(record.entry(&b1.serving_peer), Some(&b1));
    assert_eq!(record.live_bindings(NOW).len(), 2);
    assert_eq!(t.validator.counters().accepted_puts(), 2);
    assert_eq!(t.validator.counters().accepted_fetches(), 1);
    assert_eq!(t.validator.counters().total_refused(), 0);
}

#[test]
fn a_rogue_cannot_add_an_entry_to_an_anchored_domain() {
    let mut t = Anchored::new();
    let stored = t
        .validator
        .validate_put(
            &key(),
            &record_of(vec![t.delegated_entry(&t.node_a, 1)]),
            None,
            NOW,
        )
        .unwrap();

    // No delegation at all.
    let plain = entry(&t.rogue, &alice(), 1, None);
    let result = t
        .validator
        .validate_put(&key(), &record_of(vec![plain]), Some(&stored), NOW);
    assert_eq!(reason(result), RefusalReason::Unauthorised);

    // A delegation signed by a key of its own.
    let own_authority = Keypair::generate_ed25519();
    let self_made = delegation(&own_authority, "example.com", t.rogue.public().to_peer_id());
    let result = t.validator.validate_put(
        &key(),
        &record_of(vec![entry(&t.rogue, &alice(), 1, Some(self_made))]),
        Some(&stored),
        NOW,
    );
    assert_eq!(reason(result), RefusalReason::Unauthorised);

    // Node A's delegation, copied.
    let copied = t.delegated_entry(&t.node_a, 1).delegation;
    let result = t.validator.validate_put(
        &key(),
        &record_of(vec![entry(&t.rogue, &alice(), 1, copied)]),
        Some(&stored),
        NOW,
    );
    assert_eq!(reason(result), RefusalReason::Unauthorised);

    // A genuine delegation for another domain.
    let elsewhere = delegation(&t.authority, "example.org", t.rogue.public().to_peer_id());
    let result = t.validator.validate_put(
        &key(),
        &record_of(vec![entry(&t.rogue, &alice(), 1, Some(elsewhere))]),
        Some(&stored),
        NOW,
    );
    assert_eq!(reason(result), RefusalReason::Unauthorised);
    assert_eq!(
        t.validator.counters().refused(RefusalReason::Unauthorised),
        4
    );
}

#[test]
fn a_rogue_cannot_overwrite_or_withdraw_a_delegated_entry() {
    let mut t = Anchored::new();
    let a5 = t.delegated_entry(&t.node_a, 5);
    let stored = t
        .validator
        .validate_put(&key(), &record_of(vec![a5.clone()]), None, NOW)
        .unwrap();

    // Overwrite: a higher seq under node A's id, signed by the rogue, even with A's delegation.
    let overwrite = forged(&t.rogue, &t.node_a, 6, a5.delegation.clone());
    let result = t
        .validator
        .validate_put(&key(), &record_of(vec![overwrite]), Some(&stored), NOW);
    assert_eq!(reason(result), RefusalReason::BadSignature);

    // Withdraw: an empty entry under node A's id.
    let mut withdrawal = forged(&t.rogue, &t.node_a, 6, a5.delegation.clone());
    withdrawal.bindings.clear();
    let result = t
        .validator
        .validate_put(&key(), &record_of(vec![withdrawal]), Some(&stored), NOW);
    assert_eq!(reason(result), RefusalReason::BadSignature);

    // Delete: a record without node A's entry; the rogue's own entry is refused, and a
    // record with no entry at all is malformed.
    let result = t.validator.validate_put(
        &key(),
        &record_of(vec![entry(&t.rogue, &alice(), 9, None)]),
        Some(&stored),
        NOW,
    );
    assert_eq!(reason(result), RefusalReason::Unauthorised);
    let result = t
        .validator
        .validate_put(&key(), &record_of(vec![]), Some(&stored), NOW);
    assert_eq!(reason(result), RefusalReason::Malformed);

    // Replaying node A's own older entry after an update does not roll it back.
    let a6 = t.delegated_entry(&t.node_a, 6);
    let stored = t
        .validator
        .validate_put(&key(), &record_of(vec![a6.clone()]), Some(&stored), NOW)
        .unwrap();
    let result = t
        .validator
        .validate_put(&key(), &record_of(vec![a5]), Some(&stored), NOW);
    assert_eq!(reason(result), RefusalReason::StaleSequence);
    assert_eq!(decode(&stored).entries, vec![a6]);
}

#[test]
fn closed_mode_refuses_a_domain_without_authority() {
    let mut validator = RecordValidator::new(AuthorityMode::Closed, TrustAnchors::new());
    let node = Keypair::generate_ed25519();
    let result = validator.validate_put(
        &key(),
        &record_of(vec![entry(&node, &alice(), 1, None)]),
        None,
        NOW,
    );
    assert_eq!(reason(result), RefusalReason::Unauthorised);
}

#[test]
fn open_mode_lets_a_rogue_add_but_not_replace_or_withdraw() {
    let mut validator = RecordValidator::new(AuthorityMode::Open, TrustAnchors::new());
    let owner = Keypair::generate_ed25519();
    let rogue = Keypair::generate_ed25519();
    let owner_entry = entry(&owner, &alice(), 3, None);
    let stored = validator
        .validate_put(&key(), &record_of(vec![owner_entry.clone()]), None, NOW)
        .unwrap();

    // Its own entry is accepted beside the owner's.
    let rogue_entry = entry(&rogue, &alice(), 1, None);
    let stored = validator
        .validate_put(
            &key(),
            &record_of(vec![rogue_entry.clone()]),
            Some(&stored),
            NOW,
        )
        .unwrap();
    let record = decode(&stored);
    assert_eq!(record.entry(&owner_entry.serving_peer), Some(&owner_entry));
    assert_eq!(record.entry(&rogue_entry.serving_peer), Some(&rogue_entry));

    // Replacing or withdrawing the owner's entry needs the owner's key.
    let result = validator.validate_put(
        &key(),
        &record_of(vec![forged(&rogue, &owner, 4, None)]),
        Some(&stored),
        NOW,
    );
    assert_eq!(reason(result), RefusalReason::BadSignature);
    let mut withdrawal = forged(&rogue, &owner, 4, None);
    withdrawal.bindings.clear();
    let result = validator.validate_put(&key(), &record_of(vec![withdrawal]), Some(&stored), NOW);
    assert_eq!(reason(result), RefusalReason::BadSignature);

    // A put carrying only its own entry leaves the owner's in place.
    let rogue_again = entry(&rogue, &alice(), 2, None);
    let stored = validator
        .validate_put(&key(), &record_of(vec![rogue_again]), Some(&stored), NOW)
        .unwrap();
    assert_eq!(
        decode(&stored).entry(&owner_entry.serving_peer),
        Some(&owner_entry)
    );
    assert_eq!(validator.counters().refused(RefusalReason::BadSignature), 2);
}

#[test]
fn the_owner_withdraws_and_the_withdrawal_holds() {
    let mut validator = RecordValidator::new(AuthorityMode::Open, TrustAnchors::new());
    let owner = Keypair::generate_ed25519();
    let registered = entry(&owner, &alice(), 1, None);
    let stored = validator
        .validate_put(&key(), &record_of(vec![registered.clone()]), None, NOW)
        .unwrap();

    let draft = EntryDraft::withdrawal(2, NOW + 10, &registered);
    let withdrawal = NodeEntry::sign(&owner, &alice(), draft).unwrap();
    let stored = validator
        .validate_put(
            &key(),
            &record_of(vec![withdrawal.clone()]),
            Some(&stored),
            NOW + 10,
        )
        .unwrap();
    let record = validator
        .validate_fetched(&key(), &stored, NOW + 20)
        .unwrap();
    assert_eq!(record.entries, vec![withdrawal]);
    assert!(record.live_bindings(NOW + 20).is_empty());

    // Until the old entry would have expired, its replay is stale.
    let result = validator.validate_put(
        &key(),
        &record_of(vec![registered.clone()]),
        Some(&stored),
        NOW + 3599,
    );
    assert_eq!(reason(result), RefusalReason::StaleSequence);
    // After that, it is merely expired.
    let result = validator.validate_put(
        &key(),
        &record_of(vec![registered]),
        Some(&stored),
        NOW + 3600,
    );
    assert_eq!(reason(result), RefusalReason::Expired);
}

#[test]
fn open_mode_still_checks_a_delegation_that_is_present() {
    let mut validator = RecordValidator::new(AuthorityMode::Open, TrustAnchors::new());
    let node = Keypair::generate_ed25519();
    let authority = Keypair::generate_ed25519();
    let for_someone_else = delegation(
        &authority,
        "example.com",
        Keypair::generate_ed25519().public().to_peer_id(),
    );
    let result = validator.validate_put(
        &key(),
        &record_of(vec![entry(&node, &alice(), 1, Some(for_someone_else))]),
        None,
        NOW,
    );
    assert_eq!(reason(result), RefusalReason::Unauthorised);
}

#[test]
fn stale_and_conflicting_sequences_are_refused() {
    let mut t = Anchored::new();
    let a2 = t.delegated_entry(&t.node_a, 2);
    let stored = t
        .validator
        .validate_put(&key(), &record_of(vec![a2.clone()]), None, NOW)
        .unwrap();

    let a1 = t.delegated_entry(&t.node_a, 1);
    let result = t
        .validator
        .validate_put(&key(), &record_of(vec![a1]), Some(&stored), NOW);
    assert_eq!(reason(result), RefusalReason::StaleSequence);

    // Same seq, other content: the node signed two versions; keep the stored one.
    let delegation = a2.delegation.clone();
    let draft = EntryDraft::new(2, NOW, vec![binding("sip:alice@192.0.2.99", NOW + 60)])
        .with_delegation(delegation);
    let twin = NodeEntry::sign(&t.node_a, &alice(), draft).unwrap();
    let result = t
        .validator
        .validate_put(&key(), &record_of(vec![twin]), Some(&stored), NOW);
    assert_eq!(reason(result), RefusalReason::StaleSequence);

    // The same entry again (a republication or replication) is accepted and changes nothing.
    let again = t
        .validator
        .validate_put(&key(), &record_of(vec![a2]), Some(&stored), NOW)
        .unwrap();
    assert_eq!(again, stored);

    // A put that brings something new may also carry stale copies; the newer stored entry wins.
    let a3 = t.delegated_entry(&t.node_a, 3);
    let stored = t
        .validator
        .validate_put(&key(), &record_of(vec![a3.clone()]), Some(&stored), NOW)
        .unwrap();
    let b1 = t.delegated_entry(&t.node_b, 1);
    let stored = t
        .validator
        .validate_put(
            &key(),
            &record_of(vec![t.delegated_entry(&t.node_a, 2), b1.clone()]),
            Some(&stored),
            NOW,
        )
        .unwrap();
    let record = decode(&stored);
    assert_eq!(record.entry(&a3.serving_peer), Some(&a3));
    assert_eq!(record.entry(&b1.serving_peer), Some(&b1));
    assert_eq!(
        t.validator.counters().refused(RefusalReason::StaleSequence),
        2
    );
}

#[test]
fn expired_and_future_entries() {
    let mut t = Anchored::new();
    let a1 = t.delegated_entry(&t.node_a, 1);
    let result = t
        .validator
        .validate_put(&key(), &record_of(vec![a1.clone()]), None, NOW + 3600);
    assert_eq!(reason(result), RefusalReason::Expired);
    let result = t
        .validator
        .validate_fetched(&key(), &record_of(vec![a1.clone()]), NOW + 3600);
    assert_eq!(reason(result), RefusalReason::Expired);

    // A put may carry an entry that lapsed on the way beside a live one.
    let short = NodeEntry::sign(
        &t.node_b,
        &alice(),
        EntryDraft::new(1, NOW, vec![binding("sip:b@192.0.2.2", NOW + 5)])
            .with_delegation(t.delegated_entry(&t.node_b, 1).delegation),
    )
    .unwrap();
    let stored = t
        .validator
        .validate_put(&key(), &record_of(vec![a1, short]), None, NOW + 5)
        .unwrap();
    assert_eq!(decode(&stored).entries.len(), 1);

    // Issued in the future: within the skew is fine, beyond is not.
    let result = t.validator.validate_put(
        &key(),
        &record_of(vec![t.delegated_entry(&t.node_b, 2)]),
        None,
        NOW - 300,
    );
    assert!(result.is_ok());
    let result = t.validator.validate_put(
        &key(),
        &record_of(vec![t.delegated_entry(&t.node_b, 2)]),
        None,
        NOW - 301,
    );
    assert_eq!(reason(result), RefusalReason::NotYetValid);
    let strict = RecordValidator::new(AuthorityMode::Open, TrustAnchors::new()).with_clock_skew(0);
    let entry = entry(&t.node_a, &alice(), 1, None);
    assert_eq!(
        reason(strict.check_entry(&alice(), &entry, NOW - 1)),
        RefusalReason::NotYetValid
    );
}

#[test]
fn delegations_expire() {
    let mut t = Anchored::new();
    let node = t.node_a.public().to_peer_id();
    let short = Delegation::issue(&t.authority, "example.com", node, NOW - 100, NOW + 100).unwrap();
    let a1 = entry(&t.node_a, &alice(), 1, Some(short));
    let stored = t
        .validator
        .validate_put(&key(), &record_of(vec![a1.clone()]), None, NOW)
        .unwrap();
    t.validator
        .validate_fetched(&key(), &stored, NOW + 99)
        .unwrap();
    let result = t.validator.validate_fetched(&key(), &stored, NOW + 100);
    assert_eq!(reason(result), RefusalReason::Expired);
    let result = t
        .validator
        .validate_put(&key(), &record_of(vec![a1]), None, NOW + 100);
    assert_eq!(reason(result), RefusalReason::Expired);

    // Once lapsed, the stored entry is dropped when something else is merged.
    let b1 = t.delegated_entry(&t.node_b, 1);
    let stored = t
        .validator
        .validate_put(
            &key(),
            &record_of(vec![b1.clone()]),
            Some(&stored),
            NOW + 100,
        )
        .unwrap();
    assert_eq!(decode(&stored).entries, vec![b1]);

    let later =
        Delegation::issue(&t.authority, "example.com", node, NOW + 1000, NOW + 2000).unwrap();
    let result = t.validator.validate_put(
        &key(),
        &record_of(vec![entry(&t.node_a, &alice(), 2, Some(later))]),
        None,
        NOW,
    );
    assert_eq!(reason(result), RefusalReason::NotYetValid);
}

#[test]
fn tampered_entries_are_refused_on_put_and_dropped_on_fetch() {
    let mut t = Anchored::new();
    let a1 = t.delegated_entry(&t.node_a, 1);
    let b1 = t.delegated_entry(&t.node_b, 1);
    let mut tampered = b1.clone();
    tampered.bindings[0].contact = "sip:mallory@192.0.2.66".into();

    let result = t.validator.validate_put(
        &key(),
        &record_of(vec![a1.clone(), tampered.clone()]),
        None,
        NOW,
    );
    assert_eq!(reason(result), RefusalReason::BadSignature);

    let record = t
        .validator
        .validate_fetched(&key(), &record_of(vec![a1.clone(), tampered.clone()]), NOW)
        .unwrap();
    assert_eq!(record.entries, vec![a1]);
    let result = t
        .validator
        .validate_fetched(&key(), &record_of(vec![tampered]), NOW);
    assert_eq!(reason(result), RefusalReason::BadSignature);
    assert_eq!(
        t.validator.counters().refused(RefusalReason::BadSignature),
        3
    );
}

#[test]
fn oversize_values_are_refused() {
    let mut validator = RecordValidator::new(AuthorityMode::Open, TrustAnchors::new());
    let mut huge = vec![WIRE_VERSION];
    huge.resize(MAX_RECORD_BYTES + 1, 0);
    assert_eq!(
        reason(validator.validate_put(&key(), &huge, None, NOW)),
        RefusalReason::Oversize
    );
    assert_eq!(
        reason(validator.validate_fetched(&key(), &huge, NOW)),
        RefusalReason::Oversize
    );

    // Each put fits, but the merge would pass the entry limit.
    let full: Vec<_> = (0..MAX_ENTRIES_PER_RECORD)
        .map(|_| entry(&Keypair::generate_ed25519(), &alice(), 1, None))
        .collect();
    let stored = validator
        .validate_put(&key(), &record_of(full), None, NOW)
        .unwrap();
    let one_more = entry(&Keypair::generate_ed25519(), &alice(), 1, None);
    let result = validator.validate_put(&key(), &record_of(vec![one_more]), Some(&stored), NOW);
    assert_eq!(reason(result), RefusalReason::Oversize);
    assert_eq!(validator.counters().refused(RefusalReason::Oversize), 3);
}

#[test]
fn wrong_keys_are_refused() {
    let mut validator = RecordValidator::new(AuthorityMode::Open, TrustAnchors::new());
    let value = record_of(vec![entry(&Keypair::generate_ed25519(), &alice(), 1, None)]);
    let bob_key = dht_key(RecordKind::Registration, "bob@example.com");
    let mailbox_key = alice().dht_key(RecordKind::Mailbox);
    let authority_key = dht_key(RecordKind::DomainAuthority, "example.com");
    for key in [
        bob_key,
        mailbox_key,
        authority_key,
        vec![],
        vec![1; 20],
        vec![7; 21],
    ] {
        assert_eq!(
            reason(validator.validate_put(&key, &value, None, NOW)),
            RefusalReason::WrongKey
        );
        assert_eq!(
            reason(validator.validate_fetched(&key, &value, NOW)),
            RefusalReason::WrongKey
        );
    }
    assert_eq!(validator.counters().refused(RefusalReason::WrongKey), 12);
}

#[test]
fn malformed_and_unknown_versions_are_refused() {
    let mut validator = RecordValidator::new(AuthorityMode::Open, TrustAnchors::new());
    assert_eq!(
        reason(validator.validate_put(&key(), &[], None, NOW)),
        RefusalReason::Malformed
    );
    assert_eq!(
        reason(validator.validate_put(&key(), &[WIRE_VERSION, 0xff], None, NOW)),
        RefusalReason::Malformed
    );
    let mut value = record_of(vec![entry(&Keypair::generate_ed25519(), &alice(), 1, None)]);
    value[0] = WIRE_VERSION + 1;
    assert_eq!(
        reason(validator.validate_put(&key(), &value, None, NOW)),
        RefusalReason::UnsupportedVersion
    );

    // A stored value that no longer decodes is replaced rather than blocking every put.
    let good = record_of(vec![entry(&Keypair::generate_ed25519(), &alice(), 1, None)]);
    validator
        .validate_put(&key(), &good, Some(b"garbage"), NOW)
        .unwrap();
}

#[test]
fn counters_track_every_outcome() {
    let mut t = Anchored::new();
    let a1 = t.delegated_entry(&t.node_a, 1);
    let stored = t
        .validator
        .validate_put(&key(), &record_of(vec![a1.clone()]), None, NOW)
        .unwrap();
    let _ = t
        .validator
        .validate_put(&key(), &record_of(vec![a1.clone()]), Some(&stored), NOW);
    let _ = t.validator.validate_put(
        &key(),
        &record_of(vec![entry(&t.rogue, &alice(), 1, None)]),
        None,
        NOW,
    );
    let _ = t.validator.validate_put(&[0; 3], &stored, None, NOW);
    let _ = t.validator.validate_fetched(&key(), &stored, NOW);
    let _ = t.validator.validate_fetched(&key(), &stored, NOW + 4000);

    let counters = t.validator.counters();
    assert_eq!(counters.accepted_puts(), 2);
    assert_eq!(counters.accepted_fetches(), 1);
    assert_eq!(counters.refused(RefusalReason::Unauthorised), 1);
    assert_eq!(counters.refused(RefusalReason::WrongKey), 1);
    assert_eq!(counters.refused(RefusalReason::Expired), 1);
    assert_eq!(counters.total_refused(), 3);
    let listed: Vec<_> = counters
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, _)| r.as_str())
        .collect();
    assert_eq!(listed, ["wrong_key", "expired", "unauthorised"]);
    assert_eq!(counters.iter().count(), RefusalReason::ALL.len());
    for (index, reason) in RefusalReason::ALL.iter().enumerate() {
        assert_eq!(*reason as usize, index);
    }
}
