//! Binding identity (expiry, RFC 5626 flows, duplicates), limits, refused input and the
//! 200 OK Contact values.

#![allow(clippy::unwrap_used)]

use super::*;
use std::time::Duration;

#[test]
fn expired_binding_is_replaced_without_cseq_check() {
    let (p, mut t, now) = setup();
    apply(
        &mut t,
        now,
        request(ALICE, "c1", 7, Some(60), &[contact("sip:a@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    let later = now + Duration::from_secs(61);
    // Not purged yet, but logically gone: same Call-ID and a lower CSeq are accepted.
    let out = apply(
        &mut t,
        later,
        request(ALICE, "c1", 1, None, &[contact("sip:a@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    assert_eq!(out.change, Some(ChangeKind::Changed));
    assert_eq!(t.len(), 1);
    let b = t.lookup(later, ALICE).next().unwrap();
    assert_eq!((b.cseq, b.registered_at), (1, later));
}

#[test]
fn instance_and_reg_id_identify_a_flow() {
    let (p, mut t, now) = setup();
    let instance = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";
    let flow = |uri: &'static str, reg_id: u32| {
        contact_with(uri, move |c| {
            c.instance = Some(instance);
            c.reg_id = Some(reg_id);
        })
    };
    apply(
        &mut t,
        now,
        request(ALICE, "c1", 1, None, &[flow("sip:a@192.0.2.1", 1)]),
        udp(1),
        &p,
    )
    .unwrap();
    // Same instance and reg-id from a new address (and a new Call-ID): replaces the binding.
    let out = apply(
        &mut t,
        now,
        request(ALICE, "c2", 1, None, &[flow("sip:a@192.0.2.9", 1)]),
        udp(9),
        &p,
    )
    .unwrap();
    assert_eq!(out.change, Some(ChangeKind::Changed));
    assert_eq!(uris(&t, now, ALICE), ["sip:a@192.0.2.9"]);
    // Instance ids compare case-insensitively.
    let lower = "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>";
    let req = request(
        ALICE,
        "c2",
        2,
        None,
        &[contact_with("sip:a@192.0.2.9", |c| {
            c.instance = Some(lower);
            c.reg_id = Some(1);
        })],
    );
    apply(&mut t, now, req, udp(9), &p).unwrap();
    assert_eq!(t.len(), 1);
    // Another reg-id is another flow, even with the same URI.
    apply(
        &mut t,
        now,
        request(ALICE, "c2", 3, None, &[flow("sip:a@192.0.2.9", 2)]),
        udp(9),
        &p,
    )
    .unwrap();
    assert_eq!(t.len(), 2);
    // A plain contact with the same URI does not match the flows.
    apply(
        &mut t,
        now,
        request(ALICE, "c3", 1, None, &[contact("sip:a@192.0.2.9")]),
        udp(9),
        &p,
    )
    .unwrap();
    assert_eq!(t.len(), 3);
    // The flow key also orders requests: same Call-ID, old CSeq fails.
    let err = apply(
        &mut t,
        now,
        request(ALICE, "c2", 3, None, &[flow("sip:x@h", 2)]),
        udp(9),
        &p,
    )
    .unwrap_err();
    assert_eq!(err.reason, "Bad Request (CSeq out of order)");
}

#[test]
fn instance_without_reg_id_matches_by_uri() {
    let (p, mut t, now) = setup();
    let gruu = |uri: &'static str| contact_with(uri, |c| c.instance = Some("<urn:uuid:1>"));
    apply(
        &mut t,
        now,
        request(ALICE, "c1", 1, None, &[gruu("sip:a@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    apply(
        &mut t,
        now,
        request(ALICE, "c1", 2, None, &[gruu("sip:b@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    assert_eq!(t.len(), 2);
    let out = apply(
        &mut t,
        now,
        request(ALICE, "c1", 3, None, &[gruu("sip:a@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    assert_eq!(out.change, Some(ChangeKind::Refreshed));
    assert_eq!(t.len(), 2);
}

#[test]
fn same_contact_twice_in_one_request_last_wins() {
    let (p, mut t, now) = setup();
    let req = request(
        ALICE,
        "c1",
        1,
        None,
        &[
            contact_with("sip:a@h", |c| c.expires = Some(100)),
            contact_with("sip:a@h", |c| c.expires = Some(200)),
        ],
    );
    apply(&mut t, now, req, udp(1), &p).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t.lookup(now, ALICE).next().unwrap().expires_in(now), 200);
    let req = request(
        ALICE,
        "c1",
        2,
        None,
        &[
            contact("sip:a@h"),
            contact_with("sip:a@h", |c| c.expires = Some(0)),
        ],
    );
    apply(&mut t, now, req, udp(1), &p).unwrap();
    assert!(t.is_empty());
}

#[test]
fn per_aor_limit_gives_403_and_changes_nothing() {
    let (p, mut t, now) = setup();
    let four = [
        contact("sip:1@h"),
        contact("sip:2@h"),
        contact("sip:3@h"),
        contact("sip:4@h"),
    ];
    apply(
        &mut t,
        now,
        request(ALICE, "c1", 1, None, &four),
        udp(1),
        &p,
    )
    .unwrap();
    let err = apply(
        &mut t,
        now,
        request(ALICE, "c1", 2, None, &[contact("sip:5@h")]),
        udp(1),
        &p,
    )
    .unwrap_err();
    assert_eq!(
        (err.status, err.reason.as_str()),
        (403, "Forbidden (too many bindings)")
    );
    assert_eq!(t.len(), 4);
    // Replacing one in the same request stays within the limit.
    let req = request(
        ALICE,
        "c1",
        3,
        None,
        &[
            contact_with("sip:1@h", |c| c.expires = Some(0)),
            contact("sip:5@h"),
        ],
    );
    apply(&mut t, now, req, udp(1), &p).unwrap();
    assert_eq!(t.len(), 4);
    assert!(uris(&t, now, ALICE).contains(&"sip:5@h".to_string()));
    // More contacts than could ever be meaningful are refused outright.
    let many: Vec<ContactSpec<'_>> = (0..9).map(|_| contact("sip:1@h")).collect();
    let err = apply(
        &mut t,
        now,
        request(ALICE, "c1", 4, None, &many),
        udp(1),
        &p,
    )
    .unwrap_err();
    assert_eq!(err.status, 403);
}

#[test]
fn full_table_gives_503_with_retry_after() {
    let mut p = policy();
    p.max_aors = 2;
    let mut t = table_with(&p);
    let now = Instant::now();
    for aor in ["a@h", "b@h"] {
        apply(
            &mut t,
            now,
            request(aor, "c", 1, Some(60), &[contact("sip:x@h")]),
            udp(1),
            &p,
        )
        .unwrap();
    }
    let err = apply(
        &mut t,
        now,
        request("c@h", "c", 1, None, &[contact("sip:x@h")]),
        udp(1),
        &p,
    )
    .unwrap_err();
    assert_eq!(err.status, 503);
    assert_eq!(err.reason, "Service Unavailable (location table full)");
    assert_eq!(err.retry_after, Some(30));
    // Existing AoRs can still add bindings, and queries still work.
    apply(
        &mut t,
        now,
        request("a@h", "c", 2, None, &[contact("sip:y@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    apply(&mut t, now, request("c@h", "c", 1, None, &[]), udp(1), &p).unwrap();
    // Once bindings expire and are purged there is room again.
    let later = now + Duration::from_secs(61);
    t.purge_expired(later);
    apply(
        &mut t,
        later,
        request("c@h", "c", 1, None, &[contact("sip:x@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    assert_eq!(t.aor_count(), 2);
}

#[test]
fn bad_plain_data_is_refused() {
    let (p, mut t, now) = setup();
    let cases: [(ContactSpec<'_>, &str); 3] = [
        (
            contact_with("sip:a@h", |c| c.q = Some(1001)),
            "Bad Request (bad q in Contact)",
        ),
        (contact("sip:a@h>;evil"), "Bad Request (bad Contact URI)"),
        (contact(""), "Bad Request (bad Contact URI)"),
    ];
    for (spec, reason) in cases {
        let err = apply(
            &mut t,
            now,
            request(ALICE, "c", 1, None, &[spec]),
            udp(1),
            &p,
        )
        .unwrap_err();
        assert_eq!((err.status, err.reason.as_str()), (400, reason));
    }
    let err = apply(
        &mut t,
        now,
        request(ALICE, "", 1, None, &[contact("sip:a@h")]),
        udp(1),
        &p,
    )
    .unwrap_err();
    assert_eq!(err.reason, "Bad Request (bad Call-ID)");
    assert!(t.is_empty());
}

#[test]
fn contact_header_values() {
    let (p, mut t, now) = setup();
    let req = request(
        ALICE,
        "c1",
        1,
        Some(600),
        &[
            contact("sip:plain@h"),
            contact_with("sip:full@h;transport=tcp", |c| {
                c.q = Some(250);
                c.instance = Some("<urn:uuid:1>");
                c.reg_id = Some(2);
            }),
        ],
    );
    let out = apply(&mut t, now, req, udp(1), &p).unwrap();
    let later = now + Duration::from_millis(100_500);
    let values: Vec<String> = out
        .bindings(&t, later)
        .map(|b| {
            let mut s = String::new();
            contact_header_value(b, later, &mut s);
            s
        })
        .collect();
    assert_eq!(
        values,
        [
            "<sip:plain@h>;expires=500",
            "<sip:full@h;transport=tcp>;expires=500;q=0.25;+sip.instance=\"<urn:uuid:1>\";reg-id=2",
        ]
    );
}

#[test]
fn qvalues() {
    for (text, q) in [
        ("0", 0),
        ("1", 1000),
        ("1.000", 1000),
        ("0.5", 500),
        ("0.125", 125),
        ("0.", 0),
        ("1.", 1000),
    ] {
        assert_eq!(parse_qvalue(text), Some(q), "{text}");
    }
    for bad in ["", "2", "1.001", "0.1234", ".5", "0.a", "-0", "01"] {
        assert_eq!(parse_qvalue(bad), None, "{bad}");
    }
    for (q, text) in [
        (0, "0"),
        (1000, "1"),
        (500, "0.5"),
        (50, "0.05"),
        (125, "0.125"),
        (7, "0.007"),
    ] {
        let mut s = String::new();
        write_qvalue(q, &mut s);
        assert_eq!(s, text);
    }
}

#[test]
fn policy_from_server_config() {
    let config = crate::server::ServerConfig::default();
    let p = RegistrarPolicy::from(&config);
    assert_eq!(p.min_expires, config.min_expires);
    assert_eq!(p.max_expires, config.max_expires);
    assert_eq!(p.default_expires, config.default_expires);
    assert_eq!(p.max_aors, config.max_aors);
    assert_eq!(p.max_bindings_per_aor, config.max_bindings_per_aor);
    let odd = RegistrarPolicy {
        min_expires: 100,
        max_expires: 0,
        default_expires: 0,
        ..p
    }
    .normalized();
    assert_eq!(
        (odd.min_expires, odd.max_expires, odd.default_expires),
        (1, 1, 1)
    );
}
