//! Phones behind NAT, sans-IO: Via received/rport, bindings reached at their flow, UDP
//! keepalives.

use super::*;

const PHONE_PUBLIC: &str = "198.51.100.7:40000";
const PHONE_PRIVATE: &str = "192.168.1.5:5060";

fn register_behind_nat(h: &mut Harness) -> String {
    let register = register("bob", PHONE_PRIVATE, 1, None).replace(
        &format!("Via: SIP/2.0/UDP {ALICE}"),
        &format!("Via: SIP/2.0/UDP {PHONE_PRIVATE}"),
    );
    let out = h.feed(PHONE_PUBLIC, &register);
    assert_eq!(out[0].0, addr(PHONE_PUBLIC), "answered to the source");
    assert_eq!(status_of(&out[0].1), 200, "{}", out[0].1);
    out[0].1.clone()
}

#[test]
fn the_top_via_gets_received_and_rport() {
    let mut h = Harness::open();
    let ok = register_behind_nat(&mut h);
    let via = header(&ok, "Via").unwrap();
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP {PHONE_PRIVATE};branch=")),
        "{via}"
    );
    assert!(via.ends_with(";received=198.51.100.7;rport=40000"), "{via}");
    // Without rport, received is added only where sent-by is not the source.
    let plain = register("carol", ALICE, 1, None).replace(";rport", "");
    let out = h.feed(ALICE, &plain);
    assert!(
        !header(&out[0].1, "Via").unwrap().contains("received"),
        "{}",
        out[0].1
    );
}

#[test]
fn a_phone_behind_nat_is_called_at_its_flow() {
    let mut h = Harness::open();
    register_behind_nat(&mut h);
    let out = h.feed(ALICE, &invite("bob", "nat1"));
    let (to, forwarded) = out
        .iter()
        .find(|(_, m)| m.starts_with("INVITE"))
        .expect("the INVITE was forwarded");
    assert_eq!(*to, addr(PHONE_PUBLIC), "sent through the NAT mapping");
    assert!(
        forwarded.starts_with(&format!("INVITE sip:bob@{PHONE_PRIVATE} SIP/2.0")),
        "the Request-URI stays the contact: {forwarded}"
    );
    // The caller's own Via carries where it was seen, for stateless response routing.
    assert!(
        forwarded.contains(&format!(
            "Via: SIP/2.0/UDP {ALICE};branch=z9hG4bKnat1;received=127.0.0.1;rport=7001\r\n"
        )),
        "{forwarded}"
    );
}

#[test]
fn crlf_keepalives_over_udp_are_taken_quietly() {
    let mut h = Harness::open();
    let out = h.feed(PHONE_PUBLIC, "\r\n\r\n");
    assert!(out.is_empty());
    assert_eq!(h.server.stats().keepalives, 1);
    assert_eq!(h.server.stats().parse_errors, 0);
}
