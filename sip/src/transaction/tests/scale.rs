//! Many transactions: the table stays bounded, timers fire in deadline order, and stale
//! heap entries do not pile up.

use super::*;

const COUNT: u32 = 100_000;

fn server_key(i: u32) -> ServerKey {
    ServerKey::rfc3261(
        &format!("z9hG4bK{i}"),
        "198.51.100.7",
        Some(5060),
        "REGISTER",
    )
}

fn client_key(i: u32) -> ClientKey {
    ClientKey::new(&format!("z9hG4bKc{i}"), "OPTIONS")
}

#[test]
fn hundred_thousand_transactions_stay_bounded_and_end_in_order() {
    let mut h = Harness::with_config(TransactionConfig {
        capacity: COUNT as usize,
        ..TransactionConfig::default()
    });
    // One server transaction per microsecond, each answered at once: Timer J is 64*T1 later,
    // so deadlines are distinct and follow creation order.
    for i in 0..COUNT {
        h.now = h.base + Duration::from_micros(u64::from(i));
        let key = server_key(i);
        assert_eq!(h.layer.on_request(h.now, &key), ServerMatch::New);
        let id = h.layer.create_server(key, udp(), i).unwrap();
        h.layer
            .send_response(h.now, id, 200, Bytes::from_static(b"200"))
            .unwrap();
    }
    assert_eq!(h.transmits().len(), COUNT as usize);
    assert_eq!(h.layer.len(), COUNT as usize);
    assert!(h.layer.timer_entries() <= COUNT as usize);
    assert_eq!(
        h.layer.create_server(server_key(COUNT), udp(), COUNT),
        Err(TransactionError::TableFull)
    );
    // Every transaction is still found, and answers its retransmission.
    assert!(matches!(
        h.layer.on_request(h.now, &server_key(COUNT / 2)),
        ServerMatch::Retransmission(_)
    ));
    assert_eq!(h.transmits().len(), 1);

    // Advance in coarse steps; events come out in deadline (= creation) order.
    let mut next_expected = 0u32;
    let mut step = h.base + Duration::from_secs(32);
    while !h.layer.is_empty() {
        step += ms(7);
        h.now = step;
        h.layer.handle_timeout(step);
        for event in h.events() {
            match event {
                TransactionEvent::ServerTerminated { ctx, .. } => {
                    assert_eq!(ctx, next_expected);
                    next_expected += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(h.layer.poll_timeout().is_none_or(|at| at > step));
    }
    assert_eq!(next_expected, COUNT);
    assert_eq!(h.layer.timer_entries(), 0);
    assert_eq!(h.layer.on_request(h.now, &server_key(0)), ServerMatch::New);
}

#[test]
fn churn_keeps_the_timer_heap_proportional_to_live_transactions() {
    let mut h = Harness::with_config(TransactionConfig {
        capacity: 30_000,
        ..TransactionConfig::default()
    });
    // Five client transactions a millisecond, each answered at once: its Timer E and F
    // entries go stale and Timer K ends it 5 s later, so about 25,000 are live. Without
    // pruning, stale Timer F entries would pile up for 32 s (160,000 of them).
    let mut started = 0u32;
    let mut ended = 0u32;
    let mut peak_entries = 0;
    let mut peak_live = 0;
    for tick in 0..60_000u64 {
        h.now = h.base + ms(tick);
        h.layer.handle_timeout(h.now);
        ended += h.events().len() as u32;
        for _ in 0..5 {
            let key = client_key(started);
            let id = h
                .layer
                .start_client(
                    h.now,
                    key.clone(),
                    udp(),
                    Bytes::from_static(b"OPTIONS"),
                    started,
                )
                .unwrap();
            assert_eq!(
                h.layer.on_response(h.now, &key, 200),
                ClientMatch::Deliver(id)
            );
            started += 1;
        }
        h.transmits();
        peak_entries = peak_entries.max(h.layer.timer_entries());
        peak_live = peak_live.max(h.layer.len());
    }
    assert_eq!(started - ended, h.layer.len() as u32);
    assert!(
        peak_live <= 25_005,
        "Timer K ends transactions: {peak_live} live"
    );
    // At most two current entries per transaction, as many stale ones again, and slack.
    assert!(
        peak_entries <= 4 * peak_live + 1024 + 1,
        "heap grew to {peak_entries} entries for {peak_live} transactions"
    );
}
