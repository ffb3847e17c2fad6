//! REGISTER rules of RFC 3261 10.3 (and RFC 5626 flow identity) on plain data.

#![allow(clippy::unwrap_used)]

use super::*;
use std::time::Duration;

#[test]
fn register_then_lookup() {
    let (p, mut t, now) = setup();
    let out = apply(
        &mut t,
        now,
        request(ALICE, "c1", 1, None, &[contact("sip:alice@192.0.2.1:5060")]),
        udp(5060),
        &p,
    )
    .unwrap();
    assert_eq!(out.aor, ALICE);
    assert_eq!(out.change, Some(ChangeKind::Changed));
    let bound: Vec<&Binding> = out.bindings(&t, now).collect();
    assert_eq!(bound.len(), 1);
    let b = bound[0];
    assert_eq!(&*b.uri, "sip:alice@192.0.2.1:5060");
    assert_eq!(b.q, 1000);
    assert_eq!(b.expires_at, now + Duration::from_secs(3600));
    assert_eq!(&*b.call_id, "c1");
    assert_eq!(b.cseq, 1);
    assert_eq!(b.source, udp(5060));
    assert_eq!(b.registered_at, now);
    assert_eq!(t.len(), 1);
    assert_eq!(t.aor_count(), 1);
    assert_eq!(uris(&t, now, ALICE), ["sip:alice@192.0.2.1:5060"]);
    assert_eq!(t.lookup(now, "bob@example.com").count(), 0);
}

#[test]
fn query_returns_bindings_without_change() {
    let (p, mut t, now) = setup();
    apply(
        &mut t,
        now,
        request(ALICE, "c1", 1, None, &[contact("sip:a@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    let later = now + Duration::from_secs(10);
    let out = apply(&mut t, later, request(ALICE, "q", 1, None, &[]), udp(2), &p).unwrap();
    assert_eq!(out.change, None);
    let listed: Vec<_> = out.bindings(&t, later).collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].expires_in(later), 3590);
    // A query for an unknown AoR lists nothing and creates nothing.
    let out = apply(
        &mut t,
        later,
        request("bob@x", "q", 1, None, &[]),
        udp(2),
        &p,
    )
    .unwrap();
    assert_eq!(out.bindings(&t, later).count(), 0);
    assert_eq!(t.aor_count(), 1);
}

#[test]
fn expiry_precedence_param_then_header_then_default() {
    let (p, mut t, now) = setup();
    let req = request(
        ALICE,
        "c1",
        1,
        Some(300),
        &[
            contact_with("sip:a@h", |c| c.expires = Some(120)),
            contact("sip:b@h"),
        ],
    );
    apply(&mut t, now, req, udp(1), &p).unwrap();
    let mut got: Vec<(String, u32)> = t
        .lookup(now, ALICE)
        .map(|b| (b.uri.to_string(), b.expires_in(now)))
        .collect();
    got.sort();
    assert_eq!(got, [("sip:a@h".into(), 120), ("sip:b@h".into(), 300)]);
    apply(
        &mut t,
        now,
        request("bob@x", "c", 1, None, &[contact("sip:c@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    assert_eq!(t.lookup(now, "bob@x").next().unwrap().expires_in(now), 3600);
}

#[test]
fn expiry_capped_at_max() {
    let (p, mut t, now) = setup();
    let req = request(ALICE, "c1", 1, Some(1_000_000), &[contact("sip:a@h")]);
    apply(&mut t, now, req, udp(1), &p).unwrap();
    assert_eq!(t.lookup(now, ALICE).next().unwrap().expires_in(now), 7200);
}

#[test]
fn too_brief_gets_423_with_min_expires_and_changes_nothing() {
    let (p, mut t, now) = setup();
    let req = request(
        ALICE,
        "c1",
        1,
        None,
        &[
            contact("sip:ok@h"),
            contact_with("sip:brief@h", |c| c.expires = Some(59)),
        ],
    );
    let err = apply(&mut t, now, req, udp(1), &p).unwrap_err();
    assert_eq!(err.status, 423);
    assert_eq!(err.reason, "Interval Too Brief");
    assert_eq!(err.min_expires, Some(60));
    assert!(t.is_empty());
    // Exactly the minimum is fine; 0 is a removal, never too brief.
    let req = request(
        ALICE,
        "c1",
        2,
        None,
        &[
            contact_with("sip:ok@h", |c| c.expires = Some(60)),
            contact_with("sip:gone@h", |c| c.expires = Some(0)),
        ],
    );
    apply(&mut t, now, req, udp(1), &p).unwrap();
    assert_eq!(uris(&t, now, ALICE), ["sip:ok@h"]);
}

#[test]
fn minimum_above_one_hour_only_rejects_below_one_hour() {
    let mut p = policy();
    p.min_expires = 5000;
    p.max_expires = 10_000;
    let mut t = table_with(&p);
    let now = Instant::now();
    let err = apply(
        &mut t,
        now,
        request(ALICE, "c", 1, Some(3599), &[contact("sip:a@h")]),
        udp(1),
        &p,
    )
    .unwrap_err();
    assert_eq!((err.status, err.min_expires), (423, Some(5000)));
    apply(
        &mut t,
        now,
        request(ALICE, "c", 2, Some(3600), &[contact("sip:a@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    assert_eq!(t.lookup(now, ALICE).next().unwrap().expires_in(now), 3600);
}

#[test]
fn refresh_updates_in_place_and_reports_refreshed() {
    let p = policy();
    let mut t = table_with(&p);
    let t0 = Instant::now();
    apply(
        &mut t,
        t0,
        request(ALICE, "c1", 1, None, &[contact("sip:a@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    assert_eq!(
        t.drain_changed(10),
        [(ALICE.to_string(), ChangeKind::Changed)]
    );
    let t1 = t0 + Duration::from_secs(1800);
    let out = apply(
        &mut t,
        t1,
        request(ALICE, "c1", 2, None, &[contact("sip:a@h")]),
        udp(2),
        &p,
    )
    .unwrap();
    assert_eq!(out.change, Some(ChangeKind::Refreshed));
    let b = t.lookup(t1, ALICE).next().unwrap();
    assert_eq!(b.expires_at, t1 + Duration::from_secs(3600));
    assert_eq!(b.cseq, 2);
    assert_eq!(b.registered_at, t0);
    assert_eq!(b.updated_at, t1);
    assert_eq!(b.source, udp(2));
    assert_eq!(t.len(), 1);
    assert_eq!(
        t.drain_changed(10),
        [(ALICE.to_string(), ChangeKind::Refreshed)]
    );
    assert_eq!(t.poll_timeout(), Some(t1 + Duration::from_secs(3600)));
}

#[test]
fn changing_q_is_a_change_not_a_refresh() {
    let (p, mut t, now) = setup();
    apply(
        &mut t,
        now,
        request(ALICE, "c1", 1, None, &[contact("sip:a@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    let req = request(
        ALICE,
        "c1",
        2,
        None,
        &[contact_with("sip:a@h", |c| c.q = Some(500))],
    );
    let out = apply(&mut t, now, req, udp(1), &p).unwrap();
    assert_eq!(out.change, Some(ChangeKind::Changed));
    assert_eq!(t.lookup(now, ALICE).next().unwrap().q, 500);
}

#[test]
fn cseq_not_higher_with_same_call_id_fails_whole_request() {
    let (p, mut t, now) = setup();
    apply(
        &mut t,
        now,
        request(ALICE, "c1", 5, None, &[contact("sip:a@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    for stale in [5, 4] {
        let req = request(
            ALICE,
            "c1",
            stale,
            None,
            &[
                contact("sip:new@h"),
                contact_with("sip:a@h", |c| c.expires = Some(0)),
            ],
        );
        let err = apply(&mut t, now, req, udp(1), &p).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.reason, "Bad Request (CSeq out of order)");
    }
    // Nothing was added by the failed requests.
    assert_eq!(uris(&t, now, ALICE), ["sip:a@h"]);
    // A different Call-ID (e.g. the phone rebooted) may use any CSeq.
    let req = request(
        ALICE,
        "c2",
        1,
        None,
        &[contact_with("sip:a@h", |c| c.expires = Some(0))],
    );
    let out = apply(&mut t, now, req, udp(1), &p).unwrap();
    assert_eq!(out.change, Some(ChangeKind::Removed));
    assert!(t.is_empty());
}

#[test]
fn expires_zero_removes_only_that_contact() {
    let (p, mut t, now) = setup();
    let req = request(
        ALICE,
        "c1",
        1,
        None,
        &[contact("sip:a@h"), contact("sip:b@h")],
    );
    apply(&mut t, now, req, udp(1), &p).unwrap();
    let req = request(ALICE, "c1", 2, Some(0), &[contact("sip:a@h")]);
    let out = apply(&mut t, now, req, udp(1), &p).unwrap();
    assert_eq!(out.change, Some(ChangeKind::Changed));
    assert_eq!(uris(&t, now, ALICE), ["sip:b@h"]);
    // Removing an unknown contact is accepted and changes nothing.
    let req = request(ALICE, "c1", 3, Some(0), &[contact("sip:zzz@h")]);
    assert_eq!(apply(&mut t, now, req, udp(1), &p).unwrap().change, None);
    let req = request("nobody@h", "c1", 3, Some(0), &[contact("sip:zzz@h")]);
    assert_eq!(apply(&mut t, now, req, udp(1), &p).unwrap().change, None);
    assert_eq!(t.aor_count(), 1);
}

#[test]
fn star_removes_all_bindings() {
    let (p, mut t, now) = setup();
    let req = request(
        ALICE,
        "c1",
        1,
        None,
        &[contact("sip:a@h"), contact("sip:b@h")],
    );
    apply(&mut t, now, req, udp(1), &p).unwrap();
    apply(
        &mut t,
        now,
        request(ALICE, "c9", 1, None, &[contact("sip:c@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    t.drain_changed(10);
    let out = apply(
        &mut t,
        now,
        request(ALICE, "c1", 2, Some(0), &[ContactSpec::Star]),
        udp(1),
        &p,
    )
    .unwrap();
    assert_eq!(out.change, Some(ChangeKind::Removed));
    assert_eq!(out.bindings(&t, now).count(), 0);
    assert!(t.is_empty());
    assert_eq!(t.aor_count(), 0);
    assert_eq!(t.poll_timeout(), None);
    assert_eq!(
        t.drain_changed(10),
        [(ALICE.to_string(), ChangeKind::Removed)]
    );
    // Once drained, the empty entry is gone.
    assert!(t.index.is_empty());
    // `*` for an AoR without bindings is accepted.
    let out = apply(
        &mut t,
        now,
        request(ALICE, "c1", 3, Some(0), &[ContactSpec::Star]),
        udp(1),
        &p,
    )
    .unwrap();
    assert_eq!(out.change, None);
}

#[test]
fn star_rules() {
    let (p, mut t, now) = setup();
    apply(
        &mut t,
        now,
        request(ALICE, "c1", 5, None, &[contact("sip:a@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    let cases: [(Option<u32>, &[ContactSpec<'_>], &str); 4] = [
        (
            None,
            &[ContactSpec::Star],
            "Bad Request (Contact * requires Expires: 0)",
        ),
        (
            Some(60),
            &[ContactSpec::Star],
            "Bad Request (Contact * requires Expires: 0)",
        ),
        (
            Some(0),
            &[ContactSpec::Star, contact("sip:b@h")],
            "Bad Request (Contact * must be the only Contact)",
        ),
        (
            Some(0),
            &[ContactSpec::Star, ContactSpec::Star],
            "Bad Request (Contact * must be the only Contact)",
        ),
    ];
    for (expires, contacts, reason) in cases {
        let err = apply(
            &mut t,
            now,
            request(ALICE, "c2", 9, expires, contacts),
            udp(1),
            &p,
        )
        .unwrap_err();
        assert_eq!((err.status, err.reason.as_str()), (400, reason));
    }
    // Same Call-ID with a CSeq that is not higher: the whole `*` request fails.
    let err = apply(
        &mut t,
        now,
        request(ALICE, "c1", 5, Some(0), &[ContactSpec::Star]),
        udp(1),
        &p,
    )
    .unwrap_err();
    assert_eq!(err.reason, "Bad Request (CSeq out of order)");
    assert_eq!(t.len(), 1);
    // Different Call-ID: removed whatever the CSeq.
    apply(
        &mut t,
        now,
        request(ALICE, "c2", 1, Some(0), &[ContactSpec::Star]),
        udp(1),
        &p,
    )
    .unwrap();
    assert!(t.is_empty());
}
