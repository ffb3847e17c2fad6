//! Client transactions: retransmission schedules, response handling, Timers B, D, F, K, M.

use super::*;

const INVITE: &[u8] = b"INVITE";
const REQUEST: &[u8] = b"OPTIONS";

fn invite_key() -> ClientKey {
    ClientKey::new("z9hG4bKinv", "INVITE")
}

fn options_key() -> ClientKey {
    ClientKey::new("z9hG4bKopt", "OPTIONS")
}

fn start_invite(h: &mut Harness, to: Peer) -> ClientTxId {
    let id = h
        .layer
        .start_client(h.now, invite_key(), to, Bytes::from_static(INVITE), 7)
        .unwrap();
    assert_eq!(h.transmits(), vec![Bytes::from_static(INVITE)]);
    id
}

fn start_options(h: &mut Harness, to: Peer) -> ClientTxId {
    let id = h
        .layer
        .start_client(h.now, options_key(), to, Bytes::from_static(REQUEST), 9)
        .unwrap();
    assert_eq!(h.transmits(), vec![Bytes::from_static(REQUEST)]);
    id
}

#[test]
fn timer_a_doubles_until_timer_b() {
    let mut h = Harness::new();
    let id = start_invite(&mut h, udp());
    assert_eq!(h.layer.client_state(id), Some(ClientState::Calling));
    let (sent, events) = h.run_until_ms(60_000);
    assert_eq!(times(&sent), [500, 1_500, 3_500, 7_500, 15_500, 31_500]);
    assert!(sent.iter().all(|(_, payload)| payload == INVITE));
    assert!(matches!(
        events.as_slice(),
        [(32_000, TransactionEvent::ClientTimeout { id: ended, ctx: 7 })] if *ended == id
    ));
    assert!(h.layer.is_empty());
    assert_eq!(h.layer.poll_timeout(), None);
}

#[test]
fn timer_e_doubles_to_t2_until_timer_f() {
    let mut h = Harness::new();
    let id = start_options(&mut h, udp());
    let (sent, events) = h.run_until_ms(60_000);
    assert_eq!(
        times(&sent),
        [500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    assert!(matches!(
        events.as_slice(),
        [(32_000, TransactionEvent::ClientTimeout { id: ended, ctx: 9 })] if *ended == id
    ));
    assert!(h.layer.is_empty());
}

#[test]
fn timer_e_stays_at_t2_after_a_provisional() {
    let mut h = Harness::new();
    let id = start_options(&mut h, udp());
    h.set_ms(100);
    assert_eq!(
        h.layer.on_response(h.now, &options_key(), 100),
        ClientMatch::Deliver(id)
    );
    assert_eq!(h.layer.client_state(id), Some(ClientState::Proceeding));
    let (sent, events) = h.run_until_ms(40_000);
    // Timer E was already due at 500 ms; from then on it is reset to T2.
    assert_eq!(
        times(&sent),
        [500, 4_500, 8_500, 12_500, 16_500, 20_500, 24_500, 28_500]
    );
    assert!(matches!(
        events.as_slice(),
        [(32_000, TransactionEvent::ClientTimeout { ctx: 9, .. })]
    ));
}

#[test]
fn reliable_transports_get_no_retransmissions() {
    let mut h = Harness::new();
    start_invite(&mut h, tcp());
    let (sent, events) = h.run_until_ms(60_000);
    assert!(sent.is_empty());
    assert!(matches!(
        events.as_slice(),
        [(32_000, TransactionEvent::ClientTimeout { ctx: 7, .. })]
    ));

    let mut h = Harness::new();
    start_options(&mut h, tcp());
    let (sent, events) = h.run_until_ms(60_000);
    assert!(sent.is_empty());
    assert!(matches!(
        events.as_slice(),
        [(32_000, TransactionEvent::ClientTimeout { ctx: 9, .. })]
    ));
}

#[test]
fn provisional_stops_timers_a_and_b_then_non2xx_is_acked_until_timer_d() {
    let mut h = Harness::new();
    let id = start_invite(&mut h, udp());
    let (sent, _) = h.run_until_ms(600);
    assert_eq!(times(&sent), [500]);
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 180),
        ClientMatch::Deliver(id)
    );
    assert_eq!(h.layer.client_state(id), Some(ClientState::Proceeding));
    assert_eq!(
        h.layer.poll_timeout(),
        None,
        "A and B stopped in Proceeding"
    );
    let (sent, events) = h.run_until_ms(100_000);
    assert!(sent.is_empty() && events.is_empty());
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 183),
        ClientMatch::Deliver(id)
    );

    // 486 at 100 s: delivered once; the caller builds the ACK.
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 486),
        ClientMatch::Deliver(id)
    );
    assert_eq!(h.layer.client_state(id), Some(ClientState::Completed));
    assert_eq!(h.layer.client_ctx(id), Some(&7));
    assert!(h.transmits().is_empty());
    h.layer.ack_non2xx(id, Bytes::from_static(b"ACK")).unwrap();
    assert_eq!(h.transmits(), vec![Bytes::from_static(b"ACK")]);
    assert_eq!(
        h.layer.ack_non2xx(id, Bytes::from_static(b"ACK")),
        Err(TransactionError::InvalidState)
    );

    // Each retransmitted final is absorbed and answered with the same ACK.
    h.set_ms(101_000);
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 486),
        ClientMatch::Absorbed(id)
    );
    assert_eq!(h.transmits(), vec![Bytes::from_static(b"ACK")]);
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 180),
        ClientMatch::Absorbed(id)
    );
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 200),
        ClientMatch::Absorbed(id)
    );
    assert!(h.transmits().is_empty());

    let (sent, events) = h.run_until_ms(200_000);
    assert!(sent.is_empty());
    assert!(matches!(
        events.as_slice(),
        [(132_000, TransactionEvent::ClientTerminated { ctx: 7, .. })]
    ));
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 486),
        ClientMatch::NoMatch
    );
}

#[test]
fn timer_d_is_zero_on_reliable_transports() {
    let mut h = Harness::new();
    let id = start_invite(&mut h, tcp());
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 404),
        ClientMatch::Deliver(id)
    );
    // The context is still there while the caller handles the response and builds the ACK.
    *h.layer.client_ctx_mut(id).unwrap() += 1;
    h.layer.ack_non2xx(id, Bytes::from_static(b"ACK")).unwrap();
    assert_eq!(h.transmits().len(), 1);
    assert_eq!(h.layer.poll_timeout(), Some(h.now));
    h.layer.handle_timeout(h.now);
    assert!(matches!(
        h.events().as_slice(),
        [TransactionEvent::ClientTerminated { ctx: 8, .. }]
    ));
    assert_eq!(h.layer.client_state(id), None);
}

#[test]
fn invite_2xx_enters_accepted_and_delivers_every_2xx_until_timer_m() {
    let mut h = Harness::new();
    let id = start_invite(&mut h, udp());
    h.set_ms(200);
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 200),
        ClientMatch::Deliver(id)
    );
    assert_eq!(h.layer.client_state(id), Some(ClientState::Accepted));
    assert_eq!(
        h.layer.ack_non2xx(id, Bytes::new()),
        Err(TransactionError::InvalidState),
        "the ACK for a 2xx is the caller's own"
    );
    // A forked 2xx and a 2xx retransmission both reach the caller; late 1xx and non-2xx don't.
    h.set_ms(300);
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 200),
        ClientMatch::Deliver(id)
    );
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 180),
        ClientMatch::Absorbed(id)
    );
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 503),
        ClientMatch::Absorbed(id)
    );
    let (sent, events) = h.run_until_ms(60_000);
    assert!(sent.is_empty(), "Timer A stopped by the 2xx");
    assert!(matches!(
        events.as_slice(),
        [(32_200, TransactionEvent::ClientTerminated { ctx: 7, .. })]
    ));
}

#[test]
fn non_invite_final_absorbs_retransmissions_until_timer_k() {
    let mut h = Harness::new();
    let id = start_options(&mut h, udp());
    h.set_ms(50);
    assert_eq!(
        h.layer.on_response(h.now, &options_key(), 200),
        ClientMatch::Deliver(id)
    );
    assert_eq!(h.layer.client_state(id), Some(ClientState::Completed));
    h.set_ms(60);
    assert_eq!(
        h.layer.on_response(h.now, &options_key(), 200),
        ClientMatch::Absorbed(id)
    );
    assert_eq!(
        h.layer.on_response(h.now, &options_key(), 100),
        ClientMatch::Absorbed(id)
    );
    let (sent, events) = h.run_until_ms(60_000);
    assert!(sent.is_empty(), "Timer E stopped by the final response");
    assert!(matches!(
        events.as_slice(),
        [(5_050, TransactionEvent::ClientTerminated { ctx: 9, .. })]
    ));

    let mut h = Harness::new();
    let id = start_options(&mut h, tcp());
    assert_eq!(
        h.layer.on_response(h.now, &options_key(), 404),
        ClientMatch::Deliver(id)
    );
    let (_, events) = h.run_until_ms(0);
    assert!(matches!(
        events.as_slice(),
        [(0, TransactionEvent::ClientTerminated { ctx: 9, .. })]
    ));
}

#[test]
fn cancel_bounds_the_wait_in_proceeding() {
    let mut h = Harness::new();
    let id = start_invite(&mut h, tcp());
    h.set_ms(1_000);
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 180),
        ClientMatch::Deliver(id)
    );
    h.set_ms(5_000);
    h.layer.on_cancel_sent(h.now, id).unwrap();
    // The CANCEL is its own transaction on the same branch and does not disturb the INVITE.
    let cancel_key = ClientKey::new("z9hG4bKinv", "CANCEL");
    let cancel = h
        .layer
        .start_client(
            h.now,
            cancel_key.clone(),
            tcp(),
            Bytes::from_static(b"CANCEL"),
            8,
        )
        .unwrap();
    assert_eq!(
        h.layer.on_response(h.now, &cancel_key, 200),
        ClientMatch::Deliver(cancel)
    );
    assert_eq!(h.layer.client_state(id), Some(ClientState::Proceeding));
    let (_, events) = h.run_until_ms(60_000);
    let ends: Vec<(u64, u32, bool)> = events
        .iter()
        .map(|(at, event)| match event {
            TransactionEvent::ClientTerminated { ctx, .. } => (*at, *ctx, false),
            TransactionEvent::ClientTimeout { ctx, .. } => (*at, *ctx, true),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(ends, [(5_000, 8, false), (37_000, 7, true)]);
}

#[test]
fn cancel_before_a_provisional_keeps_timer_b() {
    let mut h = Harness::new();
    let id = start_invite(&mut h, tcp());
    h.set_ms(2_000);
    h.layer.on_cancel_sent(h.now, id).unwrap();
    h.set_ms(3_000);
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 100),
        ClientMatch::Deliver(id)
    );
    let (_, events) = h.run_until_ms(60_000);
    assert!(matches!(
        events.as_slice(),
        [(32_000, TransactionEvent::ClientTimeout { ctx: 7, .. })]
    ));
    let options = start_options(&mut h, tcp());
    assert_eq!(
        h.layer.on_cancel_sent(h.now, options),
        Err(TransactionError::InvalidState)
    );
    assert_eq!(
        h.layer.on_cancel_sent(h.now, id),
        Err(TransactionError::UnknownTransaction)
    );
}

#[test]
fn stray_responses_and_transport_errors() {
    let mut h = Harness::new();
    assert_eq!(
        h.layer.on_response(h.now, &invite_key(), 200),
        ClientMatch::NoMatch
    );
    let id = start_invite(&mut h, udp());
    assert_eq!(
        h.layer
            .on_response(h.now, &ClientKey::new("z9hG4bKinv", "CANCEL"), 200),
        ClientMatch::NoMatch
    );
    assert_eq!(
        h.layer.client_request(id),
        Some(&Bytes::from_static(INVITE))
    );
    assert_eq!(h.layer.client_peer(id), Some(&udp()));
    assert_eq!(h.layer.client_kind(id), Some(TransactionKind::Invite));
    h.layer.on_client_transport_error(id).unwrap();
    assert!(matches!(
        h.events().as_slice(),
        [TransactionEvent::ClientTransportError { ctx: 7, .. }]
    ));
    assert_eq!(
        h.layer.on_client_transport_error(id),
        Err(TransactionError::UnknownTransaction)
    );
    let (sent, events) = h.run_until_ms(60_000);
    assert!(
        sent.is_empty() && events.is_empty(),
        "no timer outlives its transaction"
    );
    assert_eq!(h.layer.poll_timeout(), None);

    let id = start_options(&mut h, udp());
    assert_eq!(h.layer.remove_client(id), Some(9));
    assert_eq!(h.layer.remove_client(id), None);
    assert_eq!(h.layer.poll_timeout(), None);
    assert!(h.events().is_empty());
}
