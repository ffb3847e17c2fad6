//! Many bindings: inserts and purges stay within bounds and leave nothing behind.

#![allow(clippy::unwrap_used)]

use super::*;
use smallvec::smallvec;
use std::time::Duration;

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
