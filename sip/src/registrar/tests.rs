//! Registrar rules on plain data with virtual time. URIs are compared byte for byte here
//! (the tests of URI equivalence proper go through the parser in `tests_message`).

use super::*;
use crate::transport::{ConnectionId, Transport};
use smallvec::smallvec;
use std::net::SocketAddr;
use std::time::Duration;

fn policy() -> RegistrarPolicy {
    RegistrarPolicy {
        min_expires: 60,
        max_expires: 7200,
        default_expires: 3600,
        max_aors: 100,
        max_bindings_per_aor: 4,
        table_full_retry_after: 30,
    }
}

fn table_with(policy: &RegistrarPolicy) -> LocationTable {
    LocationTable::for_policy(policy)
}

fn udp(port: u16) -> Peer {
    Peer {
        transport: Transport::Udp,
        remote: SocketAddr::from(([192, 0, 2, 1], port)),
        local: SocketAddr::from(([198, 51, 100, 1], 5060)),
        connection: None,
    }
}

fn tcp(port: u16, connection: u64) -> Peer {
    Peer {
        transport: Transport::Tcp,
        connection: Some(ConnectionId(connection)),
        ..udp(port)
    }
}

fn request<'a>(
    aor: &str,
    call_id: &'a str,
    cseq: u32,
    expires: Option<u32>,
    contacts: &[ContactSpec<'a>],
) -> RegisterRequest<'a> {
    RegisterRequest {
        aor: aor.to_string(),
        call_id,
        cseq,
        expires,
        contacts: contacts.iter().copied().collect(),
    }
}

fn contact(uri: &str) -> ContactSpec<'_> {
    ContactSpec::Address(ContactUpdate::new(uri))
}

fn contact_with(uri: &str, f: impl FnOnce(&mut ContactUpdate<'_>)) -> ContactSpec<'_> {
    let mut update = ContactUpdate::new(uri);
    f(&mut update);
    ContactSpec::Address(update)
}

fn apply(
    table: &mut LocationTable,
    now: Instant,
    request: RegisterRequest<'_>,
    source: Peer,
    policy: &RegistrarPolicy,
) -> Result<RegisterOutcome, RegisterRejection> {
    table.apply_with(now, request, source, policy, |a, b| a == b)
}

fn uris(table: &LocationTable, now: Instant, aor: &str) -> Vec<String> {
    table.lookup(now, aor).map(|b| b.uri.to_string()).collect()
}

const ALICE: &str = "alice@example.com";

#[test]
fn register_then_lookup() {
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
    let req = request(ALICE, "c1", 1, Some(1_000_000), &[contact("sip:a@h")]);
    apply(&mut t, now, req, udp(1), &p).unwrap();
    assert_eq!(t.lookup(now, ALICE).next().unwrap().expires_in(now), 7200);
}

#[test]
fn too_brief_gets_423_with_min_expires_and_changes_nothing() {
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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

#[test]
fn lookup_orders_by_q_then_most_recent() {
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
    let req = request(
        ALICE,
        "c1",
        1,
        None,
        &[
            contact_with("sip:low@h", |c| c.q = Some(100)),
            contact_with("sip:mid1@h", |c| c.q = Some(500)),
            contact("sip:top@h"),
        ],
    );
    apply(&mut t, now, req, udp(1), &p).unwrap();
    let later = now + Duration::from_secs(1);
    let req = request(
        ALICE,
        "c2",
        1,
        None,
        &[contact_with("sip:mid2@h", |c| c.q = Some(500))],
    );
    apply(&mut t, later, req, udp(1), &p).unwrap();
    assert_eq!(
        uris(&t, later, ALICE),
        ["sip:top@h", "sip:mid2@h", "sip:mid1@h", "sip:low@h"]
    );
    // Refreshing mid1 makes it the most recent of its q.
    let req = request(
        ALICE,
        "c1",
        2,
        None,
        &[contact_with("sip:mid1@h", |c| c.q = Some(500))],
    );
    apply(&mut t, later, req, udp(1), &p).unwrap();
    assert_eq!(
        uris(&t, later, ALICE),
        ["sip:top@h", "sip:mid1@h", "sip:mid2@h", "sip:low@h"]
    );
}

#[test]
fn lookup_hides_expired_and_purge_removes_them() {
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
    let req = request(
        ALICE,
        "c1",
        1,
        None,
        &[
            contact_with("sip:short@h", |c| c.expires = Some(60)),
            contact_with("sip:long@h", |c| c.expires = Some(120)),
        ],
    );
    apply(&mut t, now, req, udp(1), &p).unwrap();
    apply(
        &mut t,
        now,
        request("bob@h", "c", 1, Some(90), &[contact("sip:bob@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    t.drain_changed(10);
    assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(60)));
    let at60 = now + Duration::from_secs(60);
    assert_eq!(uris(&t, at60, ALICE), ["sip:long@h"]);
    assert_eq!(t.purge_expired(at60 - Duration::from_millis(1)), 0);
    assert_eq!(t.purge_expired(at60), 1);
    assert_eq!(t.len(), 2);
    assert_eq!(
        t.drain_changed(10),
        [(ALICE.to_string(), ChangeKind::Changed)]
    );
    assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(90)));
    assert_eq!(t.purge_expired(now + Duration::from_secs(500)), 2);
    assert!(t.is_empty());
    assert_eq!(t.aor_count(), 0);
    assert_eq!(t.poll_timeout(), None);
    let mut drained = t.drain_changed(10);
    drained.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        drained,
        [
            (ALICE.to_string(), ChangeKind::Removed),
            ("bob@h".to_string(), ChangeKind::Removed)
        ]
    );
    assert!(t.index.is_empty());
    assert!(t.indexes.by_expiry.is_empty());
}

#[test]
fn expired_binding_is_replaced_without_cseq_check() {
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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
fn connection_loss_keeps_binding_but_forgets_connection() {
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
    apply(
        &mut t,
        now,
        request(ALICE, "c1", 1, None, &[contact("sip:a@h")]),
        tcp(4000, 7),
        &p,
    )
    .unwrap();
    apply(
        &mut t,
        now,
        request("bob@h", "c1", 1, None, &[contact("sip:b@h")]),
        tcp(4001, 8),
        &p,
    )
    .unwrap();
    t.drain_changed(10);
    assert_eq!(t.remove_connection(ConnectionId(7)), 1);
    let b = t.lookup(now, ALICE).next().unwrap();
    assert_eq!(b.source.connection, None);
    assert_eq!(b.source.remote, tcp(4000, 7).remote);
    assert_eq!(
        t.lookup(now, "bob@h").next().unwrap().source.connection,
        Some(ConnectionId(8))
    );
    assert_eq!(t.remove_connection(ConnectionId(7)), 0);
    assert_eq!(t.pending_changes(), 0);
    // Re-registering over a new connection indexes it again.
    apply(
        &mut t,
        now,
        request(ALICE, "c1", 2, None, &[contact("sip:a@h")]),
        tcp(4000, 9),
        &p,
    )
    .unwrap();
    assert_eq!(t.remove_connection(ConnectionId(9)), 1);
    // Moving bob to UDP removes him from connection 8's index.
    apply(
        &mut t,
        now,
        request("bob@h", "c1", 2, None, &[contact("sip:b@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    assert_eq!(t.remove_connection(ConnectionId(8)), 0);
    assert!(t.indexes.by_connection.is_empty());
}

#[test]
fn change_log_coalesces_and_overflows() {
    let p = policy();
    let mut t = LocationTable::new(TableLimits {
        max_aors: 100,
        max_bindings_per_aor: 4,
        max_pending_changes: 2,
    });
    let now = Instant::now();
    apply(
        &mut t,
        now,
        request("a@h", "c", 1, None, &[contact("sip:x@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    // A refresh after an unseen change is still a change.
    apply(
        &mut t,
        now,
        request("a@h", "c", 2, None, &[contact("sip:x@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    apply(
        &mut t,
        now,
        request("b@h", "c", 1, None, &[contact("sip:x@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    assert!(!t.take_change_overflow());
    // Third distinct AoR: the log is full, so it is dropped and the overflow flag set.
    apply(
        &mut t,
        now,
        request("c@h", "c", 1, None, &[contact("sip:x@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    // Entries already waiting still merge.
    apply(
        &mut t,
        now,
        request("b@h", "c", 2, Some(0), &[contact("sip:x@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    assert_eq!(t.pending_changes(), 2);
    assert!(t.take_change_overflow());
    assert!(!t.take_change_overflow());
    assert_eq!(
        t.drain_changed(1),
        [("a@h".to_string(), ChangeKind::Changed)]
    );
    assert_eq!(
        t.drain_changed(5),
        [("b@h".to_string(), ChangeKind::Removed)]
    );
    assert!(t.drain_changed(5).is_empty());
    let mut live: Vec<&str> = t.aors().collect();
    live.sort_unstable();
    assert_eq!(live, ["a@h", "c@h"]);
    // Removed then re-added before draining: Changed.
    apply(
        &mut t,
        now,
        request("c@h", "c", 2, Some(0), &[contact("sip:x@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    apply(
        &mut t,
        now,
        request("c@h", "c", 3, None, &[contact("sip:y@h")]),
        udp(1),
        &p,
    )
    .unwrap();
    assert_eq!(
        t.drain_changed(5),
        [("c@h".to_string(), ChangeKind::Changed)]
    );
}

#[test]
fn contact_header_values() {
    let p = policy();
    let mut t = table_with(&p);
    let now = Instant::now();
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

/// Registers `count` AoRs with one binding each (half expiring at 60 s, half at 120 s) and
/// purges them in two steps.
fn bulk_insert_and_purge(count: usize) {
    let mut p = policy();
    p.max_aors = count;
    let mut t = LocationTable::new(TableLimits {
        max_aors: count,
        max_bindings_per_aor: 4,
        max_pending_changes: 1000,
    });
    let now = Instant::now();
    let mut aor = String::new();
    for i in 0..count {
        use std::fmt::Write as _;
        aor.clear();
        let _ = write!(aor, "user{i}@example.com");
        let expires = if i % 2 == 0 { 60 } else { 120 };
        let req = RegisterRequest {
            aor: aor.clone(),
            call_id: "bulk",
            cseq: 1,
            expires: Some(expires),
            contacts: smallvec![ContactSpec::Address(ContactUpdate::new("sip:u@192.0.2.1"))],
        };
        apply(&mut t, now, req, udp(1), &p).unwrap();
    }
    assert_eq!(t.len(), count);
    assert_eq!(t.aor_count(), count);
    assert!(t.take_change_overflow());
    let err = apply(
        &mut t,
        now,
        request("extra@h", "c", 1, None, &[contact("sip:x@h")]),
        udp(1),
        &p,
    )
    .unwrap_err();
    assert_eq!(err.status, 503);
    assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(60)));
    let removed = t.purge_expired(now + Duration::from_secs(90));
    assert_eq!(removed, count.div_ceil(2));
    assert_eq!(t.len(), count / 2);
    assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(120)));
    assert_eq!(t.purge_expired(now + Duration::from_secs(120)), count / 2);
    assert!(t.is_empty());
    assert_eq!(t.aor_count(), 0);
    while !t.drain_changed(4096).is_empty() {}
    assert!(t.index.is_empty());
    assert!(t.indexes.by_expiry.is_empty());
}

#[test]
fn bulk_100k() {
    bulk_insert_and_purge(100_000);
}

#[test]
#[ignore = "slow: one million bindings"]
fn bulk_1m() {
    bulk_insert_and_purge(1_000_000);
}
