//! Server transactions: request retransmissions, ACK matching, CANCEL lookup, Timers G, H,
//! I, J, L.

use super::*;

fn key(method: &str) -> ServerKey {
    ServerKey::rfc3261("z9hG4bKsrv", "phone.example", Some(5060), method)
}

/// The RFC 2543 key of the INVITE, its ACK or its CANCEL (all carry the same CSeq number).
fn key_2543(method: &str) -> ServerKey {
    ServerKey::rfc2543(
        "sip:bob@example.com",
        Some("from-tag"),
        "call-1@phone",
        42,
        method,
        "SIP/2.0/UDP phone.example:5060",
    )
}

fn create(h: &mut Harness, key: ServerKey, to: Peer) -> ServerTxId {
    assert_eq!(h.layer.on_request(h.now, &key), ServerMatch::New);
    h.layer.create_server(key, to, 3).unwrap()
}

fn respond(h: &mut Harness, id: ServerTxId, status: u16) -> Bytes {
    let payload = Bytes::from(status.to_string());
    h.layer
        .send_response(h.now, id, status, payload.clone())
        .unwrap();
    assert_eq!(h.transmits(), vec![payload.clone()]);
    payload
}

#[test]
fn timer_g_doubles_to_t2_until_timer_h() {
    let mut h = Harness::new();
    let id = create(&mut h, key("INVITE"), udp());
    assert_eq!(h.layer.server_state(id), Some(ServerState::Proceeding));
    respond(&mut h, id, 486);
    assert_eq!(h.layer.server_state(id), Some(ServerState::Completed));
    let (sent, events) = h.run_until_ms(60_000);
    assert_eq!(
        times(&sent),
        [500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    assert!(sent.iter().all(|(_, payload)| payload == "486"));
    assert!(matches!(
        events.as_slice(),
        [(32_000, TransactionEvent::ServerNoAck { id: ended, ctx: 3 })] if *ended == id
    ));
    assert!(h.layer.is_empty());
}

#[test]
fn retransmitted_invite_gets_the_last_response() {
    let mut h = Harness::new();
    let id = create(&mut h, key("INVITE"), udp());
    // Nothing sent yet: the retransmission is absorbed.
    assert_eq!(
        h.layer.on_request(h.now, &key("INVITE")),
        ServerMatch::Retransmission(id)
    );
    assert!(h.transmits().is_empty());
    respond(&mut h, id, 100);
    respond(&mut h, id, 180);
    assert_eq!(
        h.layer.on_request(h.now, &key("INVITE")),
        ServerMatch::Retransmission(id)
    );
    assert_eq!(h.transmits(), vec![Bytes::from_static(b"180")]);
    respond(&mut h, id, 603);
    assert_eq!(
        h.layer.on_request(h.now, &key("INVITE")),
        ServerMatch::Retransmission(id)
    );
    assert_eq!(h.transmits(), vec![Bytes::from_static(b"603")]);
    // No response after a non-2xx final.
    assert_eq!(
        h.layer.send_response(h.now, id, 200, Bytes::new()),
        Err(TransactionError::InvalidState)
    );
    assert_eq!(
        h.layer.send_response(h.now, id, 180, Bytes::new()),
        Err(TransactionError::InvalidState)
    );
    assert!(h.transmits().is_empty());
}

#[test]
fn ack_for_non2xx_confirms_and_stops_timer_g_until_timer_i() {
    let mut h = Harness::new();
    let id = create(&mut h, key("INVITE"), udp());
    respond(&mut h, id, 404);
    let (sent, _) = h.run_until_ms(1_000);
    assert_eq!(times(&sent), [500]);
    assert_eq!(
        h.layer.on_request(h.now, &key("ACK")),
        ServerMatch::AckAbsorbed(id)
    );
    assert_eq!(h.layer.server_state(id), Some(ServerState::Confirmed));
    // Confirmed absorbs ACK and INVITE retransmissions without sending anything.
    h.set_ms(2_000);
    assert_eq!(
        h.layer.on_request(h.now, &key("ACK")),
        ServerMatch::AckAbsorbed(id)
    );
    assert_eq!(
        h.layer.on_request(h.now, &key("INVITE")),
        ServerMatch::Retransmission(id)
    );
    assert!(h.transmits().is_empty());
    let (sent, events) = h.run_until_ms(60_000);
    assert!(sent.is_empty(), "Timer G stopped by the ACK");
    assert!(matches!(
        events.as_slice(),
        [(6_000, TransactionEvent::ServerTerminated { ctx: 3, .. })]
    ));
    assert_eq!(h.layer.on_request(h.now, &key("ACK")), ServerMatch::New);
}

#[test]
fn rfc2543_ack_matches_without_the_to_tag() {
    let mut h = Harness::new();
    let id = create(&mut h, key_2543("INVITE"), udp());
    respond(&mut h, id, 486);
    // An ACK with a different CSeq number or Via belongs elsewhere.
    let other = ServerKey::rfc2543(
        "sip:bob@example.com",
        Some("from-tag"),
        "call-1@phone",
        43,
        "ACK",
        "SIP/2.0/UDP phone.example:5060",
    );
    assert_eq!(h.layer.on_request(h.now, &other), ServerMatch::New);
    // An RFC 3261 key never matches an RFC 2543 one.
    assert_eq!(h.layer.on_request(h.now, &key("ACK")), ServerMatch::New);
    assert_eq!(
        h.layer.on_request(h.now, &key_2543("ACK")),
        ServerMatch::AckAbsorbed(id)
    );
    assert_eq!(h.layer.server_state(id), Some(ServerState::Confirmed));
}

#[test]
fn reliable_invite_server_has_no_timer_g_and_zero_timer_i() {
    let mut h = Harness::new();
    let id = create(&mut h, key("INVITE"), tcp());
    respond(&mut h, id, 480);
    let (sent, _) = h.run_until_ms(10_000);
    assert!(sent.is_empty());
    assert_eq!(
        h.layer.on_request(h.now, &key("ACK")),
        ServerMatch::AckAbsorbed(id)
    );
    let (_, events) = h.run_until_ms(10_000);
    assert!(matches!(
        events.as_slice(),
        [(10_000, TransactionEvent::ServerTerminated { ctx: 3, .. })]
    ));
}

#[test]
fn accepted_absorbs_invite_retransmissions_and_passes_2xx_and_ack() {
    let mut h = Harness::new();
    let id = create(&mut h, key("INVITE"), udp());
    respond(&mut h, id, 180);
    h.set_ms(1_000);
    respond(&mut h, id, 200);
    assert_eq!(h.layer.server_state(id), Some(ServerState::Accepted));
    assert_eq!(
        h.layer.on_request(h.now, &key("INVITE")),
        ServerMatch::Retransmission(id)
    );
    assert!(
        h.transmits().is_empty(),
        "neither the 180 nor the 200 is re-sent"
    );
    // The UAS core's 2xx retransmissions go through; nothing else may be sent.
    h.set_ms(1_500);
    respond(&mut h, id, 200);
    assert_eq!(
        h.layer.send_response(h.now, id, 486, Bytes::new()),
        Err(TransactionError::InvalidState)
    );
    assert_eq!(
        h.layer.send_response(h.now, id, 183, Bytes::new()),
        Err(TransactionError::InvalidState)
    );
    assert_eq!(
        h.layer.on_request(h.now, &key("ACK")),
        ServerMatch::AckAccepted(id)
    );
    assert_eq!(h.layer.server_state(id), Some(ServerState::Accepted));
    let (sent, events) = h.run_until_ms(60_000);
    assert!(sent.is_empty(), "the layer never retransmits 2xx itself");
    assert!(matches!(
        events.as_slice(),
        [(33_000, TransactionEvent::ServerTerminated { ctx: 3, .. })]
    ));
}

#[test]
fn non_invite_server_answers_retransmissions_until_timer_j() {
    let mut h = Harness::new();
    let id = create(&mut h, key("REGISTER"), udp());
    assert_eq!(h.layer.server_state(id), Some(ServerState::Trying));
    assert_eq!(h.layer.server_kind(id), Some(TransactionKind::NonInvite));
    assert_eq!(
        h.layer.on_request(h.now, &key("REGISTER")),
        ServerMatch::Retransmission(id)
    );
    assert!(h.transmits().is_empty(), "Trying absorbs retransmissions");
    respond(&mut h, id, 100);
    assert_eq!(h.layer.server_state(id), Some(ServerState::Proceeding));
    assert_eq!(
        h.layer.on_request(h.now, &key("REGISTER")),
        ServerMatch::Retransmission(id)
    );
    assert_eq!(h.transmits(), vec![Bytes::from_static(b"100")]);
    h.set_ms(100);
    respond(&mut h, id, 200);
    assert_eq!(h.layer.server_state(id), Some(ServerState::Completed));
    h.set_ms(5_000);
    assert_eq!(
        h.layer.on_request(h.now, &key("REGISTER")),
        ServerMatch::Retransmission(id)
    );
    assert_eq!(h.transmits(), vec![Bytes::from_static(b"200")]);
    assert_eq!(
        h.layer.send_response(h.now, id, 200, Bytes::new()),
        Err(TransactionError::InvalidState)
    );
    let (sent, events) = h.run_until_ms(60_000);
    assert!(
        sent.is_empty(),
        "non-INVITE responses are never retransmitted on a timer"
    );
    assert!(matches!(
        events.as_slice(),
        [(32_100, TransactionEvent::ServerTerminated { ctx: 3, .. })]
    ));

    let mut h = Harness::new();
    let id = create(&mut h, key("MESSAGE"), tcp());
    respond(&mut h, id, 202);
    let (_, events) = h.run_until_ms(0);
    assert!(matches!(
        events.as_slice(),
        [(0, TransactionEvent::ServerTerminated { ctx: 3, .. })]
    ));
}

#[test]
fn cancel_is_its_own_transaction_and_finds_its_invite() {
    let mut h = Harness::new();
    let invite = create(&mut h, key("INVITE"), udp());
    respond(&mut h, invite, 180);
    assert_eq!(
        h.layer.find_invite_for_cancel(&key("INVITE")),
        None,
        "not a CANCEL key"
    );
    let cancel = create(&mut h, key("CANCEL"), udp());
    assert_ne!(cancel, invite);
    assert_eq!(
        h.layer.server_kind(cancel),
        Some(TransactionKind::NonInvite)
    );
    assert_eq!(h.layer.find_invite_for_cancel(&key("CANCEL")), Some(invite));
    let elsewhere = ServerKey::rfc3261("z9hG4bKsrv", "other.example", Some(5060), "CANCEL");
    assert_eq!(h.layer.find_invite_for_cancel(&elsewhere), None);
    // Both transactions answer their own retransmissions.
    respond(&mut h, cancel, 200);
    assert_eq!(
        h.layer.on_request(h.now, &key("CANCEL")),
        ServerMatch::Retransmission(cancel)
    );
    assert_eq!(h.transmits(), vec![Bytes::from_static(b"200")]);
    assert_eq!(
        h.layer.on_request(h.now, &key("INVITE")),
        ServerMatch::Retransmission(invite)
    );
    assert_eq!(h.transmits(), vec![Bytes::from_static(b"180")]);

    let mut h = Harness::new();
    let invite = create(&mut h, key_2543("INVITE"), udp());
    create(&mut h, key_2543("CANCEL"), udp());
    assert_eq!(
        h.layer.find_invite_for_cancel(&key_2543("CANCEL")),
        Some(invite)
    );
    respond(&mut h, invite, 487);
    assert_eq!(
        h.layer.on_request(h.now, &key_2543("ACK")),
        ServerMatch::AckAbsorbed(invite)
    );
}

#[test]
fn errors_leave_the_transaction_alone() {
    let mut h = Harness::new();
    let id = create(&mut h, key("INVITE"), udp());
    assert_eq!(
        h.layer.send_response(h.now, id, 99, Bytes::new()),
        Err(TransactionError::InvalidStatus)
    );
    assert_eq!(
        h.layer.send_response(h.now, id, 700, Bytes::new()),
        Err(TransactionError::InvalidStatus)
    );
    assert_eq!(h.layer.server_state(id), Some(ServerState::Proceeding));
    assert_eq!(h.layer.server_peer(id), Some(&udp()));
    *h.layer.server_ctx_mut(id).unwrap() = 4;
    assert_eq!(h.layer.server_ctx(id), Some(&4));
    h.layer.on_server_transport_error(id).unwrap();
    assert!(matches!(
        h.events().as_slice(),
        [TransactionEvent::ServerTransportError { ctx: 4, .. }]
    ));
    assert_eq!(
        h.layer.send_response(h.now, id, 200, Bytes::new()),
        Err(TransactionError::UnknownTransaction)
    );
    assert_eq!(h.layer.server_ctx(id), None);

    let id = create(&mut h, key("INVITE"), udp());
    respond(&mut h, id, 500);
    assert_eq!(h.layer.remove_server(id), Some(3));
    assert_eq!(
        h.layer.poll_timeout(),
        None,
        "the removed transaction's timers are gone"
    );
    assert!(h.events().is_empty());
}
