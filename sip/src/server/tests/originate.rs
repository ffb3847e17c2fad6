//! Requests the node originates, sans-IO.

use super::*;

fn options_to(phone: &str) -> OutgoingRequest {
    OutgoingRequest {
        method: "OPTIONS".into(),
        request_uri: format!("sip:bob@{phone}"),
        from: "sip:node@example.com".into(),
        to: "sip:bob@example.com".into(),
        peer: udp(phone),
        headers: vec![],
        body: None,
    }
}

fn done(h: &mut Harness) -> Vec<(RequestId, u16)> {
    std::iter::from_fn(|| h.server.poll_event())
        .filter_map(|event| match event {
            ServerEvent::RequestDone { id, status } => Some((id, status)),
            ServerEvent::Resolve { .. } => None,
        })
        .collect()
}

#[test]
fn an_originated_request_ends_with_its_final_response() {
    let mut h = Harness::open();
    let id = h.server.originate(h.now, options_to(BOB)).unwrap();
    let out = h.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, addr(BOB));
    let sent = out[0].1.replace("\r\n", "\n");
    assert!(
        sent.starts_with("OPTIONS sip:bob@127.0.0.1:7002 SIP/2.0\n"),
        "{sent}"
    );
    assert!(header(&sent, "Via")
        .unwrap()
        .starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"));
    assert!(header(&sent, "From").unwrap().contains(";tag="));
    assert_eq!(header(&sent, "CSeq"), Some("1 OPTIONS"));
    assert!(done(&mut h).is_empty(), "nothing ends before an answer");

    let ok = respond_to(&sent, 200, "OK", "b1");
    assert!(
        h.feed(BOB, &ok).is_empty(),
        "the answer is for the node, not forwarded"
    );
    assert_eq!(done(&mut h), [(id, 200)]);
}

#[test]
fn silence_ends_in_408_once() {
    let mut h = Harness::open();
    let id = h.server.originate(h.now, options_to(BOB)).unwrap();
    let retransmissions = h.advance(Duration::from_secs(40));
    assert!(
        retransmissions.len() >= 5,
        "Timer E retransmits: {}",
        retransmissions.len()
    );
    assert_eq!(done(&mut h), [(id, 408)]);
    h.advance(Duration::from_secs(40));
    assert!(done(&mut h).is_empty());
}

#[test]
fn what_the_node_will_not_send_is_refused() {
    let mut h = Harness::open();
    let mut invite = options_to(BOB);
    invite.method = "INVITE".into();
    assert_eq!(
        h.server.originate(h.now, invite),
        Err(OriginateError::Method)
    );
    let mut bad = options_to(BOB);
    bad.to = "not a uri>".into();
    assert!(matches!(
        h.server.originate(h.now, bad),
        Err(OriginateError::Invalid(_))
    ));
    let mut no_tls = options_to(BOB);
    no_tls.peer.transport = Transport::Tls;
    assert!(matches!(
        h.server.originate(h.now, no_tls),
        Err(OriginateError::NoListener(_))
    ));
    assert!(h.drain().is_empty());
}
