use super::testing::{addr, alice, binding, delegation, entry, Tamper, NOW};
use super::*;
use libp2p::multiaddr::multihash::Multihash;

fn full_entry(node: &Keypair, authority: &Keypair) -> NodeEntry {
    let bindings = vec![
        RecordBinding {
            contact: "sip:alice@198.51.100.7:5060;transport=tcp".into(),
            expires_at: NOW + 600,
            q: 500,
            instance: Some("<urn:uuid:00000000-0000-1000-8000-000a95a0e128>".into()),
            reg_id: Some(1),
        },
        binding("sips:alice@203.0.113.9", NOW + 3600),
    ];
    let draft = EntryDraft::new(42, NOW, bindings)
        .with_addrs(vec![addr(4001), addr(4002)])
        .with_delegation(Some(delegation(
            authority,
            "example.com",
            node.public().to_peer_id(),
        )));
    NodeEntry::sign(node, &alice(), draft).unwrap()
}

#[test]
fn record_round_trips() {
    let authority = Keypair::generate_ed25519();
    let node_a = Keypair::generate_ed25519();
    let node_b = Keypair::generate_ed25519();
    let record = RegistrationRecord {
        aor: alice(),
        entries: vec![
            full_entry(&node_a, &authority),
            entry(&node_b, &alice(), 1, None),
        ],
    };
    let bytes = record.encode().unwrap();
    assert_eq!(bytes[0], WIRE_VERSION);
    let decoded = RegistrationRecord::decode(&bytes).unwrap();
    for entry in &decoded.entries {
        entry.verify_signature(&decoded.aor).unwrap();
        assert_eq!(record.entry(&entry.serving_peer), Some(entry));
    }
    assert_eq!(decoded.entries.len(), 2);
    // Encoding is canonical: entry order does not matter, re-encoding is identical.
    let mut reversed = record.clone();
    reversed.entries.reverse();
    assert_eq!(reversed.encode().unwrap(), bytes);
    assert_eq!(decoded.encode().unwrap(), bytes);
    assert_eq!(decoded.dht_key(), alice().dht_key(RecordKind::Registration));
}

#[test]
fn entry_expiry_covers_bindings() {
    let node = Keypair::generate_ed25519();
    let entry = full_entry(&node, &Keypair::generate_ed25519());
    assert_eq!(entry.expires_at, NOW + 3600);
    assert_eq!(entry.serving_peer, node.public().to_peer_id());
    assert!(!entry.is_withdrawal());
}

/// Every field the signature covers, changed one at a time, breaks it.
#[test]
fn tampering_with_any_field_breaks_the_signature() {
    let authority = Keypair::generate_ed25519();
    let node = Keypair::generate_ed25519();
    let original = full_entry(&node, &authority);
    original.verify_signature(&alice()).unwrap();

    let other_delegation = delegation(&authority, "example.com", PeerId::random());
    let tampers: Vec<(&str, Tamper<NodeEntry>)> = vec![
        (
            "serving_peer",
            Box::new(|e| e.serving_peer = Keypair::generate_ed25519().public().to_peer_id()),
        ),
        (
            "serving_addrs changed",
            Box::new(|e| e.serving_addrs[0] = addr(9999)),
        ),
        (
            "serving_addrs added",
            Box::new(|e| e.serving_addrs.push(addr(5000))),
        ),
        (
            "serving_addrs removed",
            Box::new(|e| e.serving_addrs.clear()),
        ),
        ("seq", Box::new(|e| e.seq += 1)),
        ("issued_at", Box::new(|e| e.issued_at -= 1)),
        ("expires_at", Box::new(|e| e.expires_at += 1)),
        (
            "contact",
            Box::new(|e| e.bindings[0].contact = "sip:mallory@192.0.2.66".into()),
        ),
        (
            "binding expires_at",
            Box::new(|e| e.bindings[0].expires_at += 1),
        ),
        ("q", Box::new(|e| e.bindings[0].q = 1000)),
        ("instance", Box::new(|e| e.bindings[0].instance = None)),
        ("reg_id", Box::new(|e| e.bindings[0].reg_id = Some(2))),
        (
            "binding removed",
            Box::new(|e| {
                e.bindings.pop();
            }),
        ),
        (
            "binding added",
            Box::new(|e| e.bindings.push(binding("sip:x@192.0.2.5", NOW + 60))),
        ),
        ("withdrawn", Box::new(|e| e.bindings.clear())),
        ("delegation removed", Box::new(|e| e.delegation = None)),
        (
            "delegation replaced",
            Box::new(move |e| e.delegation = Some(other_delegation.clone())),
        ),
        (
            "delegation not_after",
            Box::new(|e| {
                if let Some(d) = &mut e.delegation {
                    d.not_after += 1;
                }
            }),
        ),
        ("signature", Box::new(|e| e.signature[10] ^= 1)),
    ];
    for (field, tamper) in tampers {
        let mut entry = original.clone();
        tamper(&mut entry);
        assert_ne!(entry, original, "{field}");
        assert!(
            entry.verify_signature(&alice()).is_err(),
            "{field} tampered but verifies"
        );
    }
    // The signature binds the AoR: the same entry does not verify for another user.
    let bob = Aor::parse("bob@example.com").unwrap();
    assert_eq!(
        original.verify_signature(&bob),
        Err(RecordError::BadSignature)
    );
}

#[test]
fn signing_refuses_what_could_not_be_stored() {
    let node = Keypair::generate_ed25519();
    let many: Vec<_> = (0..=MAX_BINDINGS_PER_ENTRY)
        .map(|i| binding(&format!("sip:a{i}@192.0.2.1"), NOW + 60))
        .collect();
    assert!(matches!(
        NodeEntry::sign(&node, &alice(), EntryDraft::new(1, NOW, many)),
        Err(RecordError::TooMany {
            what: "bindings",
            ..
        })
    ));

    let addrs = (0..=MAX_ADDRS_PER_ENTRY as u16).map(addr).collect();
    let draft = EntryDraft::new(1, NOW, vec![]).with_addrs(addrs);
    assert!(matches!(
        NodeEntry::sign(&node, &alice(), draft),
        Err(RecordError::TooMany { .. })
    ));

    let mut draft = EntryDraft::new(1, NOW, vec![binding("sip:a@192.0.2.1", NOW + 60)]);
    draft.expires_at = NOW + 30;
    assert!(matches!(
        NodeEntry::sign(&node, &alice(), draft),
        Err(RecordError::Malformed(_))
    ));

    for bad in [
        RecordBinding {
            q: 1001,
            ..binding("sip:a@192.0.2.1", NOW + 60)
        },
        binding("not a uri", NOW + 60),
        binding("tel:+15551234", NOW + 60),
        binding(
            &format!("sip:{}@x.org", "a".repeat(MAX_CONTACT_BYTES)),
            NOW + 60,
        ),
        RecordBinding {
            instance: Some("i".repeat(MAX_INSTANCE_BYTES + 1)),
            ..binding("sip:a@192.0.2.1", NOW + 60)
        },
    ] {
        let draft = EntryDraft::new(1, NOW, vec![bad.clone()]);
        assert!(NodeEntry::sign(&node, &alice(), draft).is_err(), "{bad:?}");
    }

    let draft = EntryDraft::new(
        1,
        NOW,
        vec![binding(
            "sip:a@192.0.2.1",
            NOW + MAX_ENTRY_LIFETIME_SECS + 1,
        )],
    );
    assert!(matches!(
        NodeEntry::sign(&node, &alice(), draft),
        Err(RecordError::Malformed(_))
    ));
}

#[test]
fn decode_refuses_bad_values() {
    let node = Keypair::generate_ed25519();
    let record = RegistrationRecord::with_entry(alice(), entry(&node, &alice(), 1, None));
    let bytes = record.encode().unwrap();

    assert!(matches!(
        RegistrationRecord::decode(&[]),
        Err(RecordError::Malformed(_))
    ));
    let mut other_version = bytes.clone();
    other_version[0] = 2;
    assert_eq!(
        RegistrationRecord::decode(&other_version),
        Err(RecordError::UnsupportedVersion(2))
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        RegistrationRecord::decode(&trailing),
        Err(RecordError::Malformed(_))
    ));
    assert!(matches!(
        RegistrationRecord::decode(&bytes[..bytes.len() - 1]),
        Err(RecordError::Malformed(_))
    ));
    let huge = vec![WIRE_VERSION; MAX_RECORD_BYTES + 1];
    assert!(matches!(
        RegistrationRecord::decode(&huge),
        Err(RecordError::Oversize { .. })
    ));

    // Structural faults only reachable by hand-built wire values.
    let wire_entry = record.entries[0].to_wire();
    let encode = |aor: &str, entries: Vec<WireEntry>| {
        wire::encode(&WireRecord {
            aor: aor.into(),
            entries,
        })
        .unwrap()
    };
    assert!(matches!(
        RegistrationRecord::decode(&encode("Alice@Example.com", vec![wire_entry.clone()])),
        Err(RecordError::Key(_))
    ));
    assert!(matches!(
        RegistrationRecord::decode(&encode(
            "alice@example.com",
            vec![wire_entry.clone(), wire_entry.clone()]
        )),
        Err(RecordError::Malformed(_))
    ));
    let mut many_bindings = wire_entry.clone();
    many_bindings.bindings = vec![many_bindings.bindings[0].clone(); MAX_BINDINGS_PER_ENTRY + 1];
    assert!(matches!(
        RegistrationRecord::decode(&encode("alice@example.com", vec![many_bindings])),
        Err(RecordError::TooMany { .. })
    ));
    let mut short_signature = wire_entry.clone();
    short_signature.signature.truncate(10);
    assert!(matches!(
        RegistrationRecord::decode(&encode("alice@example.com", vec![short_signature])),
        Err(RecordError::Malformed(_))
    ));
    let mut bad_peer = wire_entry.clone();
    bad_peer.serving_peer = vec![1, 2, 3];
    assert!(matches!(
        RegistrationRecord::decode(&encode("alice@example.com", vec![bad_peer])),
        Err(RecordError::Malformed(_))
    ));
    let mut bad_addr = wire_entry;
    bad_addr.serving_addrs = vec![vec![0xff, 0xff]];
    assert!(matches!(
        RegistrationRecord::decode(&encode("alice@example.com", vec![bad_addr])),
        Err(RecordError::Malformed(_))
    ));
}

#[test]
fn an_unsigned_entry_does_not_encode() {
    let mut unsigned = entry(&Keypair::generate_ed25519(), &alice(), 1, None);
    unsigned.signature.clear();
    let record = RegistrationRecord::with_entry(alice(), unsigned);
    assert!(matches!(record.encode(), Err(RecordError::Malformed(_))));
}

#[test]
fn too_many_entries_do_not_encode() {
    let entries: Vec<_> = (0..=MAX_ENTRIES_PER_RECORD)
        .map(|_| entry(&Keypair::generate_ed25519(), &alice(), 1, None))
        .collect();
    let record = RegistrationRecord {
        aor: alice(),
        entries,
    };
    assert!(matches!(
        record.encode(),
        Err(RecordError::TooMany {
            what: "entries",
            ..
        })
    ));
}

#[test]
fn merge_keeps_the_newest_entry_per_peer() {
    let node_a = Keypair::generate_ed25519();
    let node_b = Keypair::generate_ed25519();
    let a1 = entry(&node_a, &alice(), 1, None);
    let a2 = entry(&node_a, &alice(), 2, None);
    let b1 = entry(&node_b, &alice(), 1, None);

    let existing = RegistrationRecord {
        aor: alice(),
        entries: vec![a2.clone(), b1.clone()],
    };
    let incoming = RegistrationRecord::with_entry(alice(), a1.clone());
    let merged = RegistrationRecord::merge(&existing, &incoming, NOW);
    assert_eq!(merged.entry(&a2.serving_peer), Some(&a2));
    assert_eq!(merged.entry(&b1.serving_peer), Some(&b1));
    assert_eq!(merged.entries.len(), 2);

    let merged = RegistrationRecord::merge(
        &RegistrationRecord::with_entry(alice(), a1),
        &RegistrationRecord::with_entry(alice(), a2.clone()),
        NOW,
    );
    assert_eq!(merged.entries, vec![a2.clone()]);

    // Another AoR's entries are ignored.
    let bob = Aor::parse("bob@example.com").unwrap();
    let merged = RegistrationRecord::merge(
        &existing,
        &RegistrationRecord::with_entry(bob.clone(), entry(&node_a, &bob, 9, None)),
        NOW,
    );
    assert_eq!(merged.entry(&a2.serving_peer), Some(&a2));
}

#[test]
fn merge_drops_expired_entries() {
    let node_a = Keypair::generate_ed25519();
    let node_b = Keypair::generate_ed25519();
    let short = NodeEntry::sign(
        &node_a,
        &alice(),
        EntryDraft::new(1, NOW, vec![binding("sip:a@192.0.2.1", NOW + 60)]),
    )
    .unwrap();
    let long = entry(&node_b, &alice(), 1, None);
    let existing = RegistrationRecord::with_entry(alice(), short);
    let incoming = RegistrationRecord::with_entry(alice(), long.clone());
    assert_eq!(existing.expires_at(), NOW + 60);
    assert_eq!(RegistrationRecord::new(alice()).expires_at(), 0);
    assert_eq!(
        RegistrationRecord::merge(&existing, &incoming, NOW + 59)
            .entries
            .len(),
        2
    );
    assert_eq!(
        RegistrationRecord::merge(&existing, &incoming, NOW + 60).entries,
        vec![long]
    );
    assert!(RegistrationRecord::merge(&existing, &incoming, NOW + 3600)
        .entries
        .is_empty());
}

#[test]
fn an_entry_expires_with_its_delegation() {
    let authority = Keypair::generate_ed25519();
    let node = Keypair::generate_ed25519();
    let short = Delegation::issue(
        &authority,
        "example.com",
        node.public().to_peer_id(),
        NOW - 10,
        NOW + 100,
    )
    .unwrap();
    let entry = entry(&node, &alice(), 1, Some(short));
    assert_eq!(entry.effective_expiry(), NOW + 100);
    assert!(!entry.is_expired(NOW + 99));
    assert!(entry.is_expired(NOW + 100));
    assert_eq!(entry.live_bindings(NOW + 100).count(), 0);
}

#[test]
fn live_bindings_span_entries_best_q_first() {
    let node_a = Keypair::generate_ed25519();
    let node_b = Keypair::generate_ed25519();
    let desk = NodeEntry::sign(
        &node_a,
        &alice(),
        EntryDraft::new(
            1,
            NOW,
            vec![
                RecordBinding {
                    q: 300,
                    ..binding("sip:desk@192.0.2.10", NOW + 3600)
                },
                binding("sip:old@192.0.2.11", NOW + 10),
            ],
        )
        .with_addrs(vec![addr(4001)]),
    )
    .unwrap();
    let mobile = NodeEntry::sign(
        &node_b,
        &alice(),
        EntryDraft::new(
            1,
            NOW,
            vec![RecordBinding {
                q: 900,
                ..binding("sip:mobile@192.0.2.20", NOW + 600)
            }],
        ),
    )
    .unwrap();
    let record = RegistrationRecord {
        aor: alice(),
        entries: vec![desk, mobile],
    };
    let live = record.live_bindings(NOW + 20);
    let contacts: Vec<_> = live.iter().map(|l| l.binding.contact.as_str()).collect();
    assert_eq!(contacts, ["sip:mobile@192.0.2.20", "sip:desk@192.0.2.10"]);
    assert_eq!(live[0].serving_peer, node_b.public().to_peer_id());
    assert_eq!(live[1].serving_peer, node_a.public().to_peer_id());
    assert_eq!(live[1].serving_addrs, &[addr(4001)]);
    assert_eq!(record.live_bindings(NOW).len(), 3);
    assert!(record.live_bindings(NOW + 3600).is_empty());
}

#[test]
fn a_withdrawal_outlives_the_entry_it_replaces() {
    let node = Keypair::generate_ed25519();
    let previous = entry(&node, &alice(), 5, None);
    let draft = EntryDraft::withdrawal(6, NOW + 10, &previous);
    let withdrawal = NodeEntry::sign(&node, &alice(), draft).unwrap();
    assert!(withdrawal.is_withdrawal());
    assert_eq!(withdrawal.expires_at, previous.expires_at);
    assert_eq!(withdrawal.serving_addrs, previous.serving_addrs);
    withdrawal.verify_signature(&alice()).unwrap();

    // A re-registration with a shorter binding still outlives the previous entry.
    let draft = EntryDraft::new(7, NOW + 20, vec![binding("sip:a@192.0.2.1", NOW + 80)])
        .outliving(&withdrawal);
    assert_eq!(draft.expires_at, previous.expires_at);
}

#[test]
fn seq_is_monotonic_milliseconds() {
    assert_eq!(next_seq(0, 1_700_000_000_000), 1_700_000_000_000);
    assert_eq!(
        next_seq(1_700_000_000_000, 1_700_000_000_000),
        1_700_000_000_001
    );
    // The clock stepped back: still higher than the last.
    assert_eq!(
        next_seq(1_700_000_000_500, 1_699_999_999_000),
        1_700_000_000_501
    );
    assert_eq!(next_seq(u64::MAX, 0), u64::MAX);
}

#[test]
fn public_keys_come_from_identity_peer_ids() {
    let node = Keypair::generate_ed25519();
    let peer = node.public().to_peer_id();
    assert_eq!(peer_public_key(&peer), Some(node.public()));

    let hashed = PeerId::from_multihash(Multihash::<64>::wrap(0x12, &[7; 32]).unwrap()).unwrap();
    assert_eq!(peer_public_key(&hashed), None);
    let garbage = PeerId::from_multihash(Multihash::<64>::wrap(0, &[7; 32]).unwrap()).unwrap();
    assert_eq!(peer_public_key(&garbage), None);
}

/// The encoding of a record built from fixed keys and values; it is the worked example in
/// `overlay/WIRE.md`. If this test fails, the wire format changed: that needs a new version.
#[test]
fn wire_format_is_stable() {
    let node = Keypair::ed25519_from_bytes([1u8; 32]).unwrap();
    let authority = Keypair::ed25519_from_bytes([2u8; 32]).unwrap();
    let aor = Aor::parse("sip:alice@example.com").unwrap();
    let delegation = Delegation::issue(
        &authority,
        "example.com",
        node.public().to_peer_id(),
        1_699_990_000,
        1_700_086_400,
    )
    .unwrap();
    let binding = RecordBinding {
        reg_id: Some(1),
        ..binding("sip:alice@192.0.2.7:5060", 1_700_003_600)
    };
    let draft = EntryDraft::new(1_700_000_000_000, 1_700_000_000, vec![binding])
        .with_addrs(vec!["/ip4/192.0.2.1/tcp/4001".parse().unwrap()])
        .with_delegation(Some(delegation));
    let entry = NodeEntry::sign(&node, &aor, draft).unwrap();
    let bytes = RegistrationRecord::with_entry(aor.clone(), entry)
        .encode()
        .unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let expected = concat!(
        "01",
        "11616c696365406578616d706c652e636f6d",
        "01",
        "260024080112208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
        "010804c0000201060fa1",
        "80d095ffbc31",
        "80e2cfaa06",
        "90fecfaa06",
        "01",
        "187369703a616c696365403139322e302e322e373a35303630",
        "90fecfaa06",
        "e807",
        "00",
        "0101",
        "01",
        "0b6578616d706c652e636f6d",
        "260024080112208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
        "f093cfaa06",
        "8085d5aa06",
        "24080112208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
        "40f4651425d126a296161dbbf1a19e8261e95a141ec243029d5aa10429eeec38649ca02ba79fd07a0e2146",
        "6f7b39e24f1f7afe91083971bfd8053db3f24daafd07",
        "402d7f7d4de587d6c9dc4563b6eafe53163832d122bea700f5122465604818fecdba624c96aa5874decc60",
        "773f7fdbc1de0264b282881b5a9df1c1c5787d144d00",
    );
    assert_eq!(hex, expected);
    let key: String = aor
        .dht_key(RecordKind::Registration)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(key, "01fc2398a73dd54d6237c4fdb58fd7d75347cf5af3");
}
