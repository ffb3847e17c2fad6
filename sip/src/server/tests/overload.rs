//! Overload control, sans-IO: shedding new work while calls in progress go on, and the
//! per-source request rate.

use super::*;

#[test]
fn while_overloaded_new_work_gets_503_and_dialogs_and_probes_go_on() {
    let mut h = Harness::open();
    h.register("bob", BOB, BOB);
    let out = h.feed(ALICE, &invite("bob", "ov1"));
    let (_, forwarded) = out.iter().find(|(to, _)| *to == addr(BOB)).unwrap();
    let record_route = header(forwarded, "Record-Route").unwrap().to_owned();
    let fwd = forwarded.replace("\r\n", "\n");
    h.feed(BOB, &respond_to(&fwd, 200, "OK", "b1"));

    h.server.set_overloaded(true);
    let out = h.feed(ALICE, &invite("bob", "ov2"));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(status_of(&out[0].1), 503);
    assert!(header(&out[0].1, "Retry-After").is_some());
    assert_eq!(h.server.stats().overload_rejections, 1);
    let out = h.feed(BOB, &register("bob", BOB, 2, None));
    assert_eq!(status_of(&out[0].1), 503, "REGISTER is new work too");
    let out = h.feed(ALICE, &options("sip:127.0.0.1:5060", "ov3", ""));
    assert_eq!(status_of(&out[0].1), 200, "probes are answered");

    // The call set up before goes on: its BYE is forwarded.
    let bye = format!(
        "BYE sip:bob@{BOB} SIP/2.0\n\
         Via: SIP/2.0/UDP {ALICE};branch=z9hG4bKbyeov;rport\n\
         Route: {record_route}\n\
         Max-Forwards: 70\n\
         From: <sip:alice@example.com>;tag=a1\n\
         To: <sip:bob@example.com>;tag=b1\n\
         Call-ID: call-ov1@alice\n\
         CSeq: 2 BYE\n\
         Content-Length: 0\n\n"
    );
    let out = h.feed(ALICE, &bye);
    assert!(
        out.iter()
            .any(|(to, m)| *to == addr(BOB) && m.starts_with("BYE ")),
        "{out:?}"
    );

    h.server.set_overloaded(false);
    let out = h.feed(ALICE, &invite("bob", "ov4"));
    assert!(
        out.iter().any(|(to, _)| *to == addr(BOB)),
        "admitted again: {out:?}"
    );
}

#[test]
fn a_source_over_its_rate_is_dropped_until_its_window_ends() {
    let mut h = Harness::with_config(true, Vec::new(), |config| {
        config.max_requests_per_source = 5;
    });
    let flooder = udp("192.0.2.66:5060");
    let mut answered = 0;
    for index in 0..20 {
        let out = h.feed_from(
            flooder,
            &options("sip:127.0.0.1:5060", &format!("fl{index}"), ""),
        );
        answered += out.len();
    }
    assert_eq!(answered, 10, "five a second over a two-second window");
    assert_eq!(h.server.stats().rate_limited, 10);
    let out = h.feed(ALICE, &options("sip:127.0.0.1:5060", "other", ""));
    assert_eq!(status_of(&out[0].1), 200, "other sources are not affected");
    h.advance(Duration::from_secs(2));
    let out = h.feed_from(flooder, &options("sip:127.0.0.1:5060", "later", ""));
    assert_eq!(status_of(&out[0].1), 200, "served again after the window");
}
