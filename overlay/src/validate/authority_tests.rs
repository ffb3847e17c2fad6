//! Domain authority records: first-come storing, pinning, and what a pin protects.

use super::tests::{key, reason, record_of};
use super::*;
use crate::authority::TrustAnchors;
use crate::record::testing::{alice, delegation, entry, NOW};
use libp2p::identity::Keypair;

#[test]
fn a_pinned_authority_protects_an_open_domain() {
    let mut validator = RecordValidator::new(AuthorityMode::Open, TrustAnchors::new());
    let authority = Keypair::generate_ed25519();
    let pin = AuthorityRecord::sign(&authority, "example.com", NOW).unwrap();
    assert_eq!(validator.pin_authority(&pin), Ok(PinOutcome::Pinned));

    let node = Keypair::generate_ed25519();
    let result = validator.validate_put(
        &key(),
        &record_of(vec![entry(&node, &alice(), 1, None)]),
        None,
        NOW,
    );
    assert_eq!(reason(result), RefusalReason::Unauthorised);

    let delegated = entry(
        &node,
        &alice(),
        1,
        Some(delegation(
            &authority,
            "example.com",
            node.public().to_peer_id(),
        )),
    );
    validator
        .validate_put(&key(), &record_of(vec![delegated]), None, NOW)
        .unwrap();

    // Another domain is still open.
    let bob = crate::key::Aor::parse("bob@example.org").unwrap();
    let bob_record = RegistrationRecord::with_entry(bob.clone(), entry(&node, &bob, 1, None));
    validator
        .validate_put(
            &bob.dht_key(RecordKind::Registration),
            &bob_record.encode().unwrap(),
            None,
            NOW,
        )
        .unwrap();

    // A second key for the pinned domain is refused.
    let squatter = AuthorityRecord::sign(&Keypair::generate_ed25519(), "example.com", NOW).unwrap();
    assert_eq!(
        reason(validator.pin_authority(&squatter)),
        RefusalReason::AuthorityConflict
    );
}

#[test]
fn authority_records_are_first_come() {
    let mut validator = RecordValidator::new(AuthorityMode::Open, TrustAnchors::new());
    let authority = Keypair::generate_ed25519();
    let first = AuthorityRecord::sign(&authority, "example.com", NOW).unwrap();
    let key = first.dht_key();
    let stored = validator
        .validate_authority_put(&key, &first.encode().unwrap(), None, NOW)
        .unwrap();
    assert_eq!(
        validator
            .validate_authority_fetched(&key, &stored, NOW)
            .unwrap(),
        first
    );

    // Another key for the same domain loses.
    let squatter =
        AuthorityRecord::sign(&Keypair::generate_ed25519(), "example.com", NOW + 1).unwrap();
    let result =
        validator.validate_authority_put(&key, &squatter.encode().unwrap(), Some(&stored), NOW + 1);
    assert_eq!(reason(result), RefusalReason::AuthorityConflict);

    // The owner republishes; an older copy does not roll the stored one back.
    let republished = AuthorityRecord::sign(&authority, "example.com", NOW + 100).unwrap();
    let stored = validator
        .validate_authority_put(
            &key,
            &republished.encode().unwrap(),
            Some(&stored),
            NOW + 100,
        )
        .unwrap();
    let kept = validator
        .validate_authority_put(&key, &first.encode().unwrap(), Some(&stored), NOW + 100)
        .unwrap();
    assert_eq!(AuthorityRecord::decode(&kept).unwrap(), republished);

    // Pinned locally: a different key is refused even where nothing is stored.
    validator.pin_authority(&first).unwrap();
    let result = validator.validate_authority_put(&key, &squatter.encode().unwrap(), None, NOW + 1);
    assert_eq!(reason(result), RefusalReason::AuthorityConflict);
    assert_eq!(
        reason(validator.validate_authority_fetched(&key, &squatter.encode().unwrap(), NOW + 1)),
        RefusalReason::AuthorityConflict
    );
}

#[test]
fn bad_authority_records_are_refused() {
    let configured = Keypair::generate_ed25519();
    let mut anchors = TrustAnchors::new();
    anchors.add("example.com", configured.public()).unwrap();
    let mut validator = RecordValidator::new(AuthorityMode::Open, anchors);

    let other = AuthorityRecord::sign(&Keypair::generate_ed25519(), "example.com", NOW).unwrap();
    let result =
        validator.validate_authority_put(&other.dht_key(), &other.encode().unwrap(), None, NOW);
    assert_eq!(reason(result), RefusalReason::Unauthorised);
    assert_eq!(
        reason(validator.pin_authority(&other)),
        RefusalReason::Unauthorised
    );
    let matching = AuthorityRecord::sign(&configured, "example.com", NOW).unwrap();
    validator
        .validate_authority_put(&matching.dht_key(), &matching.encode().unwrap(), None, NOW)
        .unwrap();

    let open = AuthorityRecord::sign(&Keypair::generate_ed25519(), "example.org", NOW).unwrap();
    let mut forged = open.clone();
    forged.issued_at += 1;
    let result =
        validator.validate_authority_put(&open.dht_key(), &forged.encode().unwrap(), None, NOW);
    assert_eq!(reason(result), RefusalReason::BadSignature);
    assert_eq!(
        reason(validator.pin_authority(&forged)),
        RefusalReason::BadSignature
    );
    let result =
        validator.validate_authority_put(&matching.dht_key(), &open.encode().unwrap(), None, NOW);
    assert_eq!(reason(result), RefusalReason::WrongKey);
    let result = validator.validate_authority_put(&key(), &open.encode().unwrap(), None, NOW);
    assert_eq!(reason(result), RefusalReason::WrongKey);
    let future =
        AuthorityRecord::sign(&Keypair::generate_ed25519(), "example.org", NOW + 301).unwrap();
    let result =
        validator.validate_authority_fetched(&future.dht_key(), &future.encode().unwrap(), NOW);
    assert_eq!(reason(result), RefusalReason::NotYetValid);
    // A registration record under an authority key is not an authority record.
    let registration = record_of(vec![entry(&Keypair::generate_ed25519(), &alice(), 1, None)]);
    let result = validator.validate_authority_put(&open.dht_key(), &registration, None, NOW);
    assert_eq!(reason(result), RefusalReason::Malformed);
}

#[test]
fn a_full_pin_table_refuses_new_domains() {
    let pinned = crate::authority::PinnedAuthorities::with_capacity(1);
    let mut validator =
        RecordValidator::new(AuthorityMode::Open, TrustAnchors::new()).with_pinned(pinned);
    let first = AuthorityRecord::sign(&Keypair::generate_ed25519(), "example.com", NOW).unwrap();
    let second = AuthorityRecord::sign(&Keypair::generate_ed25519(), "example.org", NOW).unwrap();
    validator.pin_authority(&first).unwrap();
    assert_eq!(
        validator.pin_authority(&first),
        Ok(PinOutcome::AlreadyPinned)
    );
    assert_eq!(
        reason(validator.pin_authority(&second)),
        RefusalReason::TableFull
    );
    assert_eq!(validator.pinned().len(), 1);
}

#[test]
fn only_open_domains_without_a_known_key_want_their_authority_fetched() {
    let authority = Keypair::generate_ed25519();
    let mut anchors = TrustAnchors::new();
    anchors.add("anchored.example", authority.public()).unwrap();
    let mut open = RecordValidator::new(AuthorityMode::Open, anchors.clone());
    assert!(open.wants_authority_of("example.com"));
    assert!(!open.wants_authority_of("anchored.example"));
    let record = AuthorityRecord::sign(&authority, "example.com", NOW).unwrap();
    open.pin_authority(&record).unwrap();
    assert!(!open.wants_authority_of("example.com"));
    let closed = RecordValidator::new(AuthorityMode::Closed, anchors);
    assert!(!closed.wants_authority_of("example.com"));
}
