//! Location table behaviour: ordering, expiry, connections, the change log.

#![allow(clippy::unwrap_used)]

use super::*;
use std::time::Duration;

#[test]
fn lookup_orders_by_q_then_most_recent() {
    let (p, mut t, now) = setup();
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
    let (p, mut t, now) = setup();
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
fn connection_loss_keeps_binding_but_forgets_connection() {
    let (p, mut t, now) = setup();
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
