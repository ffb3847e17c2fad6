use super::*;
use crate::record::testing::{Tamper, NOW};
use crate::record::WIRE_VERSION;
use std::fs;

fn node_id() -> PeerId {
    Keypair::generate_ed25519().public().to_peer_id()
}

#[test]
fn public_key_text_round_trips() {
    let key = Keypair::generate_ed25519().public();
    let text = public_key_to_text(&key);
    assert!(text.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(public_key_from_text(&text).unwrap(), key);
    assert_eq!(
        bs58::decode(&text).into_vec().unwrap(),
        key.encode_protobuf()
    );
}

#[test]
fn bad_public_key_text_is_refused() {
    for text in ["", "0OIl", "abc", &"1".repeat(MAX_PUBLIC_KEY_TEXT + 1)] {
        assert!(
            matches!(
                public_key_from_text(text),
                Err(AuthorityError::BadPublicKey { .. })
            ),
            "{text}"
        );
    }
    // Valid base58 of something that is not a key.
    let text = bs58::encode([8u8, 1, 18, 3, 1, 2, 3]).into_string();
    assert!(public_key_from_text(&text).is_err());
}

#[test]
fn authority_key_file_round_trips_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authority.key");
    let key = generate_authority_key();
    save_authority_key(&path, &key).unwrap();
    let loaded = load_authority_key(&path).unwrap();
    assert_eq!(loaded.public(), key.public());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Saving again replaces the key.
    let other = generate_authority_key();
    save_authority_key(&path, &other).unwrap();
    assert_eq!(load_authority_key(&path).unwrap().public(), other.public());
    assert!(!dir.path().join("authority.key.tmp").exists());
}

#[test]
fn authority_key_file_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.key");
    let error = load_authority_key(&missing).unwrap_err();
    assert!(matches!(error, AuthorityFileError::Io { .. }));
    assert!(error.to_string().contains("missing.key"), "{error}");

    let garbage = dir.path().join("garbage.key");
    fs::write(&garbage, b"not a key").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&garbage, fs::Permissions::from_mode(0o600)).unwrap();
    }
    let error = load_authority_key(&garbage).unwrap_err();
    assert!(matches!(error, AuthorityFileError::Decode { .. }));
    assert!(error.to_string().contains("garbage.key"), "{error}");

    let unwritable = dir.path().join("no-such-dir").join("a.key");
    let error = save_authority_key(&unwritable, &generate_authority_key()).unwrap_err();
    assert!(matches!(error, AuthorityFileError::Io { .. }));
    assert!(error.to_string().contains("no-such-dir"), "{error}");
}

#[cfg(unix)]
#[test]
fn a_readable_authority_key_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.key");
    save_authority_key(&path, &generate_authority_key()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let error = load_authority_key(&path).unwrap_err();
    assert!(matches!(
        error,
        AuthorityFileError::Permissions { mode: 0o644, .. }
    ));
    assert!(error.to_string().contains("open.key"), "{error}");
}

#[test]
fn delegation_verifies_for_its_node_domain_and_window() {
    let authority = generate_authority_key();
    let node = node_id();
    let delegation = Delegation::issue(&authority, "Example.COM", node, NOW, NOW + 1000).unwrap();
    assert_eq!(delegation.domain, "example.com");
    let key = authority.public();
    let verify = |d: &Delegation, domain: &str, node: &PeerId, now: u64| {
        d.verify(&key, domain, node, now, 300)
    };

    verify(&delegation, "example.com", &node, NOW).unwrap();
    verify(&delegation, "example.com", &node, NOW + 999).unwrap();
    // Clock skew: a little early is fine, too early is not.
    verify(&delegation, "example.com", &node, NOW - 300).unwrap();
    assert!(matches!(
        verify(&delegation, "example.com", &node, NOW - 301),
        Err(DelegationError::NotYetValid { .. })
    ));
    assert!(matches!(
        verify(&delegation, "example.com", &node, NOW + 1000),
        Err(DelegationError::Expired { .. })
    ));
    assert!(matches!(
        verify(&delegation, "example.org", &node, NOW),
        Err(DelegationError::WrongDomain { .. })
    ));
    assert!(matches!(
        verify(&delegation, "example.com", &node_id(), NOW),
        Err(DelegationError::WrongNode { .. })
    ));
    assert_eq!(
        delegation.verify(
            &generate_authority_key().public(),
            "example.com",
            &node,
            NOW,
            300
        ),
        Err(DelegationError::WrongAuthority)
    );
}

#[test]
fn tampered_delegations_do_not_verify() {
    let authority = generate_authority_key();
    let node = node_id();
    let original = Delegation::issue(&authority, "example.com", node, NOW, NOW + 1000).unwrap();
    let tampers: Vec<Tamper<Delegation>> = vec![
        Box::new(|d| d.not_before -= 1),
        Box::new(|d| d.not_after += 1),
        Box::new(|d| d.signature[0] ^= 1),
    ];
    for tamper in tampers {
        let mut delegation = original.clone();
        tamper(&mut delegation);
        assert_eq!(
            delegation.verify(&authority.public(), "example.com", &node, NOW, 0),
            Err(DelegationError::BadSignature)
        );
    }
    // Claiming another node or domain is caught before the signature, but is caught.
    let mut other_node = original.clone();
    other_node.node = node_id();
    assert!(other_node
        .verify(&authority.public(), "example.com", &other_node.node, NOW, 0)
        .is_err());
    let mut other_domain = original;
    other_domain.domain = "example.org".into();
    assert!(other_domain
        .verify(&authority.public(), "example.org", &node, NOW, 0)
        .is_err());
}

#[test]
fn delegation_round_trips_and_refuses_an_empty_window() {
    let authority = generate_authority_key();
    let delegation = Delegation::issue(&authority, "example.com", node_id(), NOW, NOW + 1).unwrap();
    let bytes = delegation.encode().unwrap();
    assert_eq!(Delegation::decode(&bytes).unwrap(), delegation);
    assert!(matches!(
        Delegation::issue(&authority, "example.com", node_id(), NOW, NOW),
        Err(AuthorityError::EmptyWindow { .. })
    ));
    assert!(Delegation::issue(&authority, "example.com:5060", node_id(), NOW, NOW + 1).is_err());

    let mut wire = delegation.to_wire();
    wire.domain = "Example.com".into();
    assert!(matches!(
        Delegation::decode(&wire::encode(&wire).unwrap()),
        Err(RecordError::Key(_))
    ));
    let mut wire = delegation.to_wire();
    wire.authority = vec![1, 2, 3];
    assert!(matches!(
        Delegation::decode(&wire::encode(&wire).unwrap()),
        Err(RecordError::Malformed(_))
    ));
}

#[test]
fn trust_anchors_parse_from_configuration_lines() {
    let key_a = generate_authority_key().public();
    let key_b = generate_authority_key().public();
    let line_a = TrustAnchors::format_entry("example.com", &key_a);
    let line_b = format!(" Example.COM = {} ", public_key_to_text(&key_b));
    let line_c = TrustAnchors::format_entry("example.org", &key_a);
    let anchors = TrustAnchors::parse([
        line_a.as_str(),
        line_b.as_str(),
        line_c.as_str(),
        line_a.as_str(),
    ])
    .unwrap();
    assert_eq!(anchors.keys_for("example.com"), &[key_a.clone(), key_b]);
    assert_eq!(anchors.keys_for("example.org"), &[key_a]);
    assert!(anchors.keys_for("example.net").is_empty());
    assert_eq!(
        anchors.domains().collect::<Vec<_>>(),
        ["example.com", "example.org"]
    );
    assert_eq!(anchors.len(), 2);

    for bad in [
        "example.com",
        "=abc",
        "example.com=",
        "example.com=notbase58!",
        "a b=x",
    ] {
        let error = TrustAnchors::parse([bad]).unwrap_err();
        assert!(
            matches!(error, AuthorityError::BadAnchor { .. }),
            "{bad}: {error}"
        );
    }
}

#[test]
fn trust_anchors_are_bounded() {
    let mut anchors = TrustAnchors::new();
    for _ in 0..MAX_KEYS_PER_DOMAIN {
        anchors
            .add("example.com", generate_authority_key().public())
            .unwrap();
    }
    assert!(matches!(
        anchors.add("example.com", generate_authority_key().public()),
        Err(AuthorityError::TooMany { .. })
    ));
    let key = generate_authority_key().public();
    for i in 1..MAX_ANCHOR_DOMAINS {
        anchors.add(&format!("d{i}.example"), key.clone()).unwrap();
    }
    assert!(matches!(
        anchors.add("one-too-many.example", key),
        Err(AuthorityError::TooMany { .. })
    ));
}

#[test]
fn pinned_authorities_are_first_come_and_bounded() {
    let mut pinned = PinnedAuthorities::with_capacity(2);
    let key_a = generate_authority_key().public();
    let key_b = generate_authority_key().public();
    assert_eq!(
        pinned.pin("example.com", key_a.clone()),
        Ok(PinOutcome::Pinned)
    );
    assert_eq!(
        pinned.pin("example.com", key_a.clone()),
        Ok(PinOutcome::AlreadyPinned)
    );
    assert!(matches!(
        pinned.pin("example.com", key_b.clone()),
        Err(PinError::Conflict { .. })
    ));
    assert_eq!(pinned.get("example.com"), Some(&key_a));
    assert_eq!(
        pinned.pin("example.org", key_b.clone()),
        Ok(PinOutcome::Pinned)
    );
    assert_eq!(
        pinned.pin("example.net", key_b),
        Err(PinError::Full { capacity: 2 })
    );
    assert_eq!(pinned.len(), 2);
}

#[test]
fn authority_record_round_trips_and_verifies() {
    let authority = generate_authority_key();
    let record = AuthorityRecord::sign(&authority, "Example.com", NOW).unwrap();
    assert_eq!(record.domain, "example.com");
    assert_eq!(
        record.dht_key(),
        dht_key(RecordKind::DomainAuthority, "example.com")
    );
    let decoded = AuthorityRecord::decode(&record.encode().unwrap()).unwrap();
    assert_eq!(decoded, record);
    decoded.verify().unwrap();

    let tampers: Vec<Tamper<AuthorityRecord>> = vec![
        Box::new(|r| r.domain = "example.org".into()),
        Box::new(|r| r.issued_at += 1),
        Box::new(|r| r.authority = generate_authority_key().public()),
        Box::new(|r| r.signature[5] ^= 1),
    ];
    for tamper in tampers {
        let mut tampered = record.clone();
        tamper(&mut tampered);
        assert_eq!(tampered.verify(), Err(RecordError::BadSignature));
    }
    assert!(matches!(
        AuthorityRecord::decode(&vec![WIRE_VERSION; MAX_AUTHORITY_RECORD_BYTES + 1]),
        Err(RecordError::Oversize { .. })
    ));
}

#[test]
fn txt_record_round_trips() {
    let key = generate_authority_key().public();
    let txt = AuthorityTxt { key: key.clone() };
    let text = txt.to_text();
    assert!(text.starts_with("v=p2psip1; k="));
    assert_eq!(AuthorityTxt::parse(&text).unwrap(), txt);
    let spaced = format!(
        "  v = p2psip1 ;x=later-extension;  k = {} ; ",
        public_key_to_text(&key)
    );
    assert_eq!(AuthorityTxt::parse(&spaced).unwrap().key, key);
    assert_eq!(
        AuthorityTxt::name("Example.COM").unwrap(),
        "_p2psip.example.com"
    );
    assert!(AuthorityTxt::name("example.com:5060").is_err());
}

#[test]
fn bad_txt_records_are_refused() {
    let key = public_key_to_text(&generate_authority_key().public());
    for text in [
        String::new(),
        format!("k={key}"),
        format!("k={key}; v=p2psip1"),
        format!("v=p2psip2; k={key}"),
        "v=p2psip1".to_owned(),
        format!("v=p2psip1; k={key}; k={key}"),
        "v=p2psip1; k=notakey".to_owned(),
        format!("v=p2psip1; junk; k={key}"),
        "spf1 -all".to_owned(),
    ] {
        assert!(
            matches!(
                AuthorityTxt::parse(&text),
                Err(AuthorityError::BadTxt { .. })
            ),
            "{text}"
        );
    }
}

/// Fixed-key vectors for `overlay/WIRE.md`: the authority record, its key and text forms.
#[test]
fn authority_wire_format_is_stable() {
    let authority = Keypair::ed25519_from_bytes([2u8; 32]).unwrap();
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let record = AuthorityRecord::sign(&authority, "example.com", 1_700_000_000).unwrap();
    assert_eq!(
        hex(&record.encode().unwrap()),
        concat!(
            "01",
            "0b6578616d706c652e636f6d",
            "24080112208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
            "80e2cfaa06",
            "4065602df7ed2e6ecef6c75c07fc2ac08d9625186d6de8833f2dcb16fe80f7882371ef5f4e2dfdc8",
            "6ffd9be57e54e81c7c146224d0c80283d9ae3c2f8601c85405",
        )
    );
    assert_eq!(
        hex(&record.dht_key()),
        "020caaf24ab1a0c33440c06afe99df986365b0781f"
    );
    let text = "4XTTM9qVEgiAJCAMuuMhXYiuRy8oUBPghqDDjpqVuP5du8Dgw";
    assert_eq!(public_key_to_text(&authority.public()), text);
    assert_eq!(
        AuthorityTxt {
            key: authority.public()
        }
        .to_text(),
        format!("v=p2psip1; k={text}")
    );
}

#[test]
fn delegation_text_round_trips() {
    let authority = generate_authority_key();
    let delegation =
        Delegation::issue(&authority, "example.com", node_id(), NOW, NOW + 3600).unwrap();
    let text = delegation.to_text().unwrap();
    assert!(text.chars().all(|c| c.is_ascii_alphanumeric()), "{text}");
    assert!(text.len() <= MAX_DELEGATION_TEXT);
    assert_eq!(Delegation::from_text(&text).unwrap(), delegation);
    assert_eq!(
        Delegation::from_text(&format!("  {text}\n")).unwrap(),
        delegation
    );
    for bad in ["", "0OIl", "abc", &"1".repeat(MAX_DELEGATION_TEXT + 1)] {
        assert!(Delegation::from_text(bad).is_err(), "{bad}");
    }
    // The longest possible delegation still fits the text limit.
    let longest = bs58::encode(vec![0xffu8; MAX_DELEGATION_BYTES]).into_string();
    assert!(longest.len() <= MAX_DELEGATION_TEXT, "{}", longest.len());
}

#[test]
fn delegation_files_skip_comments_and_name_bad_lines() {
    let path = std::path::Path::new("/etc/p2psip/node.delegations");
    let authority = generate_authority_key();
    let first = Delegation::issue(&authority, "example.com", node_id(), NOW, NOW + 1).unwrap();
    let second = Delegation::issue(&authority, "example.org", node_id(), NOW, NOW + 1).unwrap();
    let text = format!(
        "# for this node\n\n{}\n   \n{}\n",
        first.to_text().unwrap(),
        second.to_text().unwrap()
    );
    let found = parse_delegation_file(path, &text).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!((found[0].line, &found[0].delegation), (3, &first));
    assert_eq!((found[1].line, &found[1].delegation), (5, &second));

    let text = format!("{}\nnot-a-delegation\n", first.to_text().unwrap());
    let error = parse_delegation_file(path, &text).unwrap_err();
    assert!(
        matches!(error, DelegationFileError::BadLine { line: 2, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("node.delegations, line 2"),
        "{error}"
    );

    let error = parse_delegation_file(path, "# nothing here\n").unwrap_err();
    assert!(
        matches!(error, DelegationFileError::Empty { .. }),
        "{error}"
    );

    let line = first.to_text().unwrap() + "\n";
    let error =
        parse_delegation_file(path, &line.repeat(MAX_DELEGATIONS_PER_FILE + 1)).unwrap_err();
    assert!(
        matches!(error, DelegationFileError::TooMany { .. }),
        "{error}"
    );
    assert_eq!(
        parse_delegation_file(path, &line.repeat(MAX_DELEGATIONS_PER_FILE))
            .unwrap()
            .len(),
        MAX_DELEGATIONS_PER_FILE
    );
}

#[test]
fn delegation_file_reading_is_bounded_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.delegations");
    let error = read_delegation_file(&missing).unwrap_err();
    assert!(matches!(error, DelegationFileError::Io { .. }), "{error}");
    assert!(error.to_string().contains("missing.delegations"), "{error}");

    let large = dir.path().join("large.delegations");
    fs::write(&large, vec![b'#'; MAX_DELEGATION_FILE_BYTES as usize + 1]).unwrap();
    assert!(matches!(
        read_delegation_file(&large),
        Err(DelegationFileError::TooLarge { .. })
    ));

    let binary = dir.path().join("binary.delegations");
    fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    assert!(matches!(
        read_delegation_file(&binary),
        Err(DelegationFileError::NotText { .. })
    ));

    let good = dir.path().join("good.delegations");
    let delegation = Delegation::issue(
        &generate_authority_key(),
        "example.com",
        node_id(),
        NOW,
        NOW + 1,
    )
    .unwrap();
    fs::write(&good, delegation.to_text().unwrap() + "\n").unwrap();
    assert_eq!(
        read_delegation_file(&good).unwrap()[0].delegation,
        delegation
    );
}

/// The text form of the worked example's delegation, for `overlay/WIRE.md`.
#[test]
fn delegation_text_form_is_stable() {
    let node = Keypair::ed25519_from_bytes([1u8; 32]).unwrap();
    let authority = Keypair::ed25519_from_bytes([2u8; 32]).unwrap();
    let delegation = Delegation::issue(
        &authority,
        "example.com",
        node.public().to_peer_id(),
        1_699_990_000,
        1_700_086_400,
    )
    .unwrap();
    let text = concat!(
        "D3wqda3rkwr5RQAEFVueBMtss5BPFhtgVkkvw9JSB8n7ReFKrxPcFQYFXe82ihcWaD5xAY4xESGrjgoMWsaE6",
        "LouFuTM6ovbx6Evd4fXyLMVgzD9cL31oTVPJK6952YikByr4eMVxEqEutHuzgwfjwQ9YfZD9nRbeB5AHxkqQ",
        "WkUUeJMoW6srGz6Hnxqt526VntdEvepxaPUJCV3sx8hpmas4ERbE7g",
    );
    assert_eq!(delegation.to_text().unwrap(), text);
    assert_eq!(Delegation::from_text(text).unwrap(), delegation);
}
