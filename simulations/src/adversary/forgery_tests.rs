//! Each trick against the overlay's own validator: refused, for the reason it targets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use overlay::authority::{generate_authority_key, TrustAnchors};
use overlay::validate::{AuthorityMode, RecordValidator, RefusalReason};

const NOW: u64 = 1_700_000_000;
const NOW_MILLIS: u64 = NOW * 1000;

struct World {
    aor: Aor,
    honest: Keypair,
    honest_value: Vec<u8>,
    anchored: RecordValidator,
    forger: Forger,
}

fn world() -> World {
    let authority = generate_authority_key();
    let mut anchors = TrustAnchors::new();
    anchors.add("example.com", authority.public()).unwrap();
    let honest = Keypair::generate_ed25519();
    let delegation = Delegation::issue(
        &authority,
        "example.com",
        honest.public().to_peer_id(),
        NOW - 60,
        NOW + 86_400,
    )
    .unwrap();
    let aor = Aor::parse("sip:alice@example.com").unwrap();
    let binding = RecordBinding {
        contact: "sip:alice@192.0.2.7:5060".to_owned(),
        expires_at: NOW + 3600,
        q: 1000,
        instance: None,
        reg_id: Some(1),
    };
    let draft = EntryDraft::new(NOW_MILLIS - 5000, NOW - 5, vec![binding])
        .with_delegation(Some(delegation));
    let entry = NodeEntry::sign(&honest, &aor, draft).unwrap();
    let honest_value = RegistrationRecord::with_entry(aor.clone(), entry)
        .encode()
        .unwrap();
    let targets = Arc::new(vec![aor.clone(), Aor::parse("bob@example.com").unwrap()]);
    let mut forger = Forger::new(Keypair::generate_ed25519(), targets);
    forger.set_addrs(["/ip4/192.0.2.66/tcp/4001".parse().unwrap()]);
    World {
        aor,
        honest,
        honest_value,
        anchored: RecordValidator::new(AuthorityMode::Open, anchors),
        forger,
    }
}

fn decode(value: &[u8]) -> RegistrationRecord {
    RegistrationRecord::decode(value).unwrap()
}

fn key(aor: &Aor) -> Vec<u8> {
    aor.dht_key(RecordKind::Registration)
}

#[test]
fn the_honest_record_is_valid_to_begin_with() {
    let mut w = world();
    let record = w
        .anchored
        .validate_fetched(&key(&w.aor), &w.honest_value, NOW)
        .unwrap();
    assert_eq!(record.entries.len(), 1);
}

#[test]
fn before_learning_only_the_own_key_trick_is_played() {
    let mut w = world();
    assert_eq!(w.forger.target_of(&key(&w.aor)), Some(0));
    for variant in PUT_VARIANTS {
        let value = w.forger.forge(0, variant, NOW, NOW_MILLIS).unwrap();
        let record = decode(&value);
        assert_eq!(record.aor, w.aor);
        assert_eq!(record.entries.len(), 1, "{variant:?}");
        let entry = &record.entries[0];
        assert!(entry.delegation.is_none());
        assert_eq!(entry.bindings[0].contact, "sip:alice@forged.invalid");
        assert!(entry.seq > NOW_MILLIS);
        assert_eq!(entry.serving_addrs.len(), 1);
        // Sound in itself (signature and limits); only authority is missing.
        entry.verify_signature(&w.aor).unwrap();
        let refusal = w
            .anchored
            .validate_put(&key(&w.aor), &value, None, NOW)
            .unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::Unauthorised, "{refusal}");
    }
    assert!(w
        .forger
        .forge(2, Variant::Combined, NOW, NOW_MILLIS)
        .is_none());
}

#[test]
fn every_trick_is_refused_for_its_own_reason() {
    let mut w = world();
    w.forger.learn(0, &w.honest_value, NOW);
    let honest_peer = w.honest.public().to_peer_id();

    // Answers: all three tricks in one record, every entry dropped by fetch validation.
    let combined = w
        .forger
        .forge(0, Variant::Combined, NOW, NOW_MILLIS)
        .unwrap();
    let record = decode(&combined);
    assert_eq!(record.entries.len(), 3);
    assert!(record.entries.iter().all(|e| e
        .bindings
        .iter()
        .all(|b| b.contact.ends_with("@forged.invalid"))));
    let before = w.anchored.counters();
    let refusal = w
        .anchored
        .validate_fetched(&key(&w.aor), &combined, NOW)
        .unwrap_err();
    let after = w.anchored.counters();
    assert!(matches!(
        refusal.reason,
        RefusalReason::Unauthorised | RefusalReason::BadSignature
    ));
    let delta = |reason| after.refused(reason) - before.refused(reason);
    assert_eq!(delta(RefusalReason::Unauthorised), 2);
    assert_eq!(delta(RefusalReason::BadSignature), 1);
    assert_eq!(after.total_refused() - before.total_refused(), 3);

    // Puts: each trick alone, refused for its reason, stored value or not.
    let cases = [
        (Trick::OwnKey, RefusalReason::Unauthorised),
        (Trick::CopiedDelegation, RefusalReason::Unauthorised),
        (Trick::Tampered, RefusalReason::BadSignature),
    ];
    for (trick, reason) in cases {
        let value = w
            .forger
            .forge(0, Variant::Only(trick), NOW, NOW_MILLIS)
            .unwrap();
        let record = decode(&value);
        assert_eq!(record.entries.len(), 1, "{trick:?}");
        let entry = &record.entries[0];
        match trick {
            Trick::OwnKey => assert!(entry.delegation.is_none()),
            Trick::CopiedDelegation => {
                let delegation = entry.delegation.as_ref().unwrap();
                assert_eq!(delegation.node, honest_peer);
                assert_ne!(entry.serving_peer, honest_peer);
            }
            Trick::Tampered => {
                assert_eq!(entry.serving_peer, honest_peer);
                assert!(entry.seq > decode(&w.honest_value).entries[0].seq);
            }
        }
        for existing in [None, Some(w.honest_value.as_slice())] {
            let refusal = w
                .anchored
                .validate_put(&key(&w.aor), &value, existing, NOW)
                .unwrap_err();
            assert_eq!(refusal.reason, reason, "{trick:?}: {refusal}");
        }
    }

    // Without any known authority (open mode), the copied delegation still names another
    // node and the tampered entry still fails its signature.
    let mut open = RecordValidator::new(AuthorityMode::Open, TrustAnchors::new());
    for (trick, reason) in &cases[1..] {
        let value = w
            .forger
            .forge(0, Variant::Only(*trick), NOW, NOW_MILLIS)
            .unwrap();
        let refusal = open
            .validate_put(&key(&w.aor), &value, None, NOW)
            .unwrap_err();
        assert_eq!(refusal.reason, *reason, "{trick:?}: {refusal}");
    }
}

#[test]
fn forgeries_are_not_learnt_as_honest() {
    let mut w = world();
    let forged = w
        .forger
        .forge(0, Variant::Combined, NOW, NOW_MILLIS)
        .unwrap();
    w.forger.learn(0, &forged, NOW);
    // A record of another forger, correctly signed by its own key.
    let other = Forger::new(Keypair::generate_ed25519(), Arc::clone(w.forger.targets()));
    w.forger.learn(
        0,
        &other.forge(0, Variant::Combined, NOW, NOW_MILLIS).unwrap(),
        NOW,
    );
    // A value of another AoR, and garbage.
    w.forger.learn(1, &w.honest_value, NOW);
    w.forger.learn(0, b"\x01garbage", NOW);
    assert_eq!(w.forger.honest.len(), 0);
    assert_eq!(w.forger.delegations.len(), 0);
    // An expired honest entry is no use either: it would be refused as expired.
    w.forger.learn(0, &w.honest_value, NOW + 7200);
    assert_eq!(w.forger.honest.len(), 0);
    w.forger.learn(0, &w.honest_value, NOW);
    assert_eq!(w.forger.honest.len(), 1);
    assert_eq!(w.forger.delegations.len(), 1);
    // Once the honest entry has expired, only the own-key trick is left.
    let late = decode(
        &w.forger
            .forge(0, Variant::Combined, NOW + 7200, NOW_MILLIS)
            .unwrap(),
    );
    assert_eq!(late.entries.len(), 2, "own key and copied delegation");
}

#[test]
fn contacts_stay_parseable_and_within_limits() {
    for (user, domain) in [
        ("alice", "example.com"),
        ("a%40b", "example.com"),
        ("Bob%20Smith", "x.org"),
        ("%C3%BCn%C3%AFcode", "x.org"),
    ] {
        let aor = Aor::new(user, domain).unwrap();
        let contact = forged_contact(&aor);
        assert!(contact.ends_with("@forged.invalid"), "{contact}");
        let binding = RecordBinding {
            contact: contact.clone(),
            expires_at: NOW + 60,
            q: 1000,
            instance: None,
            reg_id: None,
        };
        let draft = EntryDraft::new(1, NOW, vec![binding]);
        NodeEntry::sign(&Keypair::generate_ed25519(), &aor, draft)
            .unwrap_or_else(|e| panic!("{contact}: {e}"));
    }
    let huge = Aor::new(&"%C3%BC".repeat(120), "x.org").unwrap();
    assert_eq!(forged_contact(&huge), "sip:forged@forged.invalid");
}

#[test]
fn bounded_map_forgets_the_oldest() {
    let mut map = Bounded::new(2);
    map.insert(1, "a");
    map.insert(2, "b");
    map.insert(1, "c");
    map.insert(3, "d");
    assert_eq!(map.len(), 2);
    assert_eq!(map.get(&1), None);
    assert_eq!(map.get(&2), Some(&"b"));
    assert_eq!(map.get(&3), Some(&"d"));
}
