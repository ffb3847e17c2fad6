//! REGISTER requests end to end through the message parser and URI equivalence.

#![allow(clippy::unwrap_used)]

use super::super::*;
use crate::transport::Transport;
use std::net::SocketAddr;
use std::time::Duration;

fn peer() -> Peer {
    Peer {
        transport: Transport::Udp,
        remote: SocketAddr::from(([192, 0, 2, 1], 5060)),
        local: SocketAddr::from(([198, 51, 100, 1], 5060)),
        connection: None,
    }
}

/// A REGISTER for `to` with the given extra header lines (each without CRLF).
fn register(to: &str, call_id: &str, cseq: u32, extra: &[&str]) -> String {
    let mut text = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{call_id}{cseq}\r\n\
         Max-Forwards: 70\r\n\
         To: {to}\r\n\
         From: {to};tag=456248\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n"
    );
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    text
}

fn run(
    table: &mut LocationTable,
    now: Instant,
    text: &str,
) -> Result<RegisterOutcome, RegisterRejection> {
    let message = Message::parse(text.as_bytes()).unwrap();
    apply_register(table, now, &message, peer(), &RegistrarPolicy::default())
}

fn table() -> LocationTable {
    LocationTable::for_policy(&RegistrarPolicy::default())
}

const BOB: &str = "<sip:bob@Example.COM>";

#[test]
fn register_with_parameters_and_response_contacts() {
    let mut t = table();
    let now = Instant::now();
    let text = register(
        BOB,
        "843817637684230@998sdasdh09",
        1826,
        &[
            "Contact: <sip:bob@192.0.2.4;transport=tcp>;expires=7200;q=0.7;\
             +sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1",
            "Contact: \"Bob\" <sip:bob@192.0.2.5>, sip:bob@192.0.2.6",
            "Expires: 1200",
        ],
    );
    let out = run(&mut t, now, &text).unwrap();
    assert_eq!(out.aor, "bob@example.com");
    assert_eq!(out.change, Some(ChangeKind::Changed));
    let mut values: Vec<String> = out
        .bindings(&t, now)
        .map(|b| {
            let mut s = String::new();
            contact_header_value(b, now, &mut s);
            s
        })
        .collect();
    let first = values.pop().unwrap();
    values.sort();
    assert_eq!(
        values,
        [
            "<sip:bob@192.0.2.5>;expires=1200",
            "<sip:bob@192.0.2.6>;expires=1200",
        ]
    );
    assert_eq!(
        first,
        "<sip:bob@192.0.2.4;transport=tcp>;expires=7200;q=0.7;\
         +sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1"
    );
    assert_eq!(t.lookup(now, "bob@example.com").count(), 3);
}

#[test]
fn equivalent_contact_uri_refreshes_the_same_binding() {
    let mut t = table();
    let now = Instant::now();
    let first = register(
        BOB,
        "c1",
        1,
        &["Contact: <sip:bob@Host.Example.com:5070;transport=UDP>"],
    );
    run(&mut t, now, &first).unwrap();
    let second = register(
        BOB,
        "c1",
        2,
        &["Contact: <sip:%62ob@host.example.COM:5070;transport=udp>"],
    );
    let out = run(&mut t, now, &second).unwrap();
    // Written differently, so the published text changed, but it is one binding.
    assert_eq!(out.change, Some(ChangeKind::Changed));
    assert_eq!(t.len(), 1);
    // User parts are case-sensitive: another binding.
    let third = register(
        BOB,
        "c1",
        3,
        &["Contact: <sip:BOB@host.example.com:5070;transport=udp>"],
    );
    run(&mut t, now, &third).unwrap();
    assert_eq!(t.len(), 2);
}

#[test]
fn same_aor_from_differently_written_to() {
    let mut t = table();
    let now = Instant::now();
    run(
        &mut t,
        now,
        &register(BOB, "c1", 1, &["Contact: <sip:bob@192.0.2.4>"]),
    )
    .unwrap();
    let out = run(
        &mut t,
        now,
        &register("sip:bob@example.com:5060", "c1", 2, &[]),
    )
    .unwrap();
    assert_eq!(out.aor, "bob@example.com");
    assert_eq!(out.bindings(&t, now).count(), 1);
}

#[test]
fn star_through_the_parser() {
    let mut t = table();
    let now = Instant::now();
    run(
        &mut t,
        now,
        &register(BOB, "c1", 1, &["Contact: <sip:bob@192.0.2.4>"]),
    )
    .unwrap();
    let err = run(&mut t, now, &register(BOB, "c1", 2, &["Contact: *"])).unwrap_err();
    assert_eq!(err.reason, "Bad Request (Contact * requires Expires: 0)");
    let err = run(
        &mut t,
        now,
        &register(
            BOB,
            "c1",
            2,
            &["Contact: *, <sip:bob@192.0.2.4>", "Expires: 0"],
        ),
    )
    .unwrap_err();
    assert_eq!(
        err.reason,
        "Bad Request (Contact * must be the only Contact)"
    );
    let out = run(
        &mut t,
        now,
        &register(BOB, "c1", 2, &["Contact: *", "Expires: 0"]),
    )
    .unwrap();
    assert_eq!(out.change, Some(ChangeKind::Removed));
    assert!(t.is_empty());
}

#[test]
fn faults_are_named() {
    let mut t = table();
    let now = Instant::now();
    let cases: [(&[&str], u16, &str); 6] = [
        (
            &["Contact: <sip:bob@h>;q=2"],
            400,
            "Bad Request (bad q in Contact)",
        ),
        (
            &["Contact: <sip:bob@h>;q"],
            400,
            "Bad Request (bad q in Contact)",
        ),
        (
            &["Contact: <sip:bob@h>;expires=soon"],
            400,
            "Bad Request (bad expires in Contact)",
        ),
        (
            &["Contact: <sip:bob@h>;reg-id=0"],
            400,
            "Bad Request (bad reg-id in Contact)",
        ),
        (
            &["Contact: <sip:bob@h>", "Expires: never"],
            400,
            "Bad Request (bad Expires)",
        ),
        (
            &["Contact: <sip:bob@h>;expires=30"],
            423,
            "Interval Too Brief",
        ),
    ];
    for (extra, status, reason) in cases {
        let err = run(&mut t, now, &register(BOB, "c1", 1, extra)).unwrap_err();
        assert_eq!(
            (err.status, err.reason.as_str()),
            (status, reason),
            "{extra:?}"
        );
    }
    let err = run(
        &mut t,
        now,
        &register(BOB, "c1", 1, &["Contact: <sip:bob@h"]),
    )
    .unwrap_err();
    assert_eq!(err.status, 400);
    assert!(
        err.reason.starts_with("Bad Request (malformed Contact"),
        "{}",
        err.reason
    );
    let err = run(&mut t, now, &register("<tel:+15551234>", "c1", 1, &[])).unwrap_err();
    assert_eq!(err.status, 404);
    assert!(t.is_empty());
}

#[test]
fn expiry_and_purge_through_the_parser() {
    let mut t = table();
    let now = Instant::now();
    run(
        &mut t,
        now,
        &register(BOB, "c1", 1, &["Contact: <sip:bob@h>", "Expires: 60"]),
    )
    .unwrap();
    assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(60)));
    assert_eq!(t.purge_expired(now + Duration::from_secs(60)), 1);
    assert!(t.is_empty());
}
