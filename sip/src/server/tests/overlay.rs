//! Two servers joined by the overlay, sans-IO: the test plays the DHT (answering lookups)
//! and the libp2p streams (carrying overlay transmits between the servers).

use super::*;

const HOST_A: &str = "a.p2p.invalid";
const HOST_B: &str = "b.p2p.invalid";
const NODE_A: &str = "127.0.0.1:5060";
const NODE_B: &str = "127.0.0.2:5060";
const CALLER: &str = "127.0.0.1:7001";
const CALLEE: &str = "127.0.0.2:7002";

fn node(listen: &str, overlay_host: &str, now: Instant) -> SipServer {
    let config = ServerConfig {
        listeners: vec![Listener {
            transport: Transport::Udp,
            addr: addr(listen),
            advertised_host: addr(listen).ip().to_string(),
        }],
        domains: vec!["example.com".into()],
        open: true,
        overlay_host: Some(overlay_host.into()),
        resolves_routes: true,
        random_seed: [3; 32],
        ..ServerConfig::default()
    };
    SipServer::new(config, now).unwrap()
}

fn peer(remote: &str, local: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        remote: addr(remote),
        local: addr(local),
        connection: None,
    }
}

/// What left the two nodes towards phones, after overlay traffic settled.
struct Net {
    a: SipServer,
    b: SipServer,
    now: Instant,
}

impl Net {
    fn new() -> Net {
        let now = Instant::now();
        Net {
            a: node(NODE_A, HOST_A, now),
            b: node(NODE_B, HOST_B, now),
            now,
        }
    }

    /// Delivers overlay transmits between the nodes until none are left; returns the
    /// messages for phones as (destination, text).
    fn settle(&mut self) -> Vec<(SocketAddr, String)> {
        let mut to_phones = Vec::new();
        for _ in 0..100 {
            let mut moved = false;
            for from_a in [true, false] {
                let (src, dst, src_host) = if from_a {
                    (&mut self.a, &mut self.b, HOST_A)
                } else {
                    (&mut self.b, &mut self.a, HOST_B)
                };
                let mut overlay = Vec::new();
                while let Some(t) = src.poll_transmit() {
                    if t.to.transport == Transport::Overlay {
                        let target = t.to.connection.and_then(|c| src.overlay_host_of(c));
                        assert_eq!(target, Some(if from_a { HOST_B } else { HOST_A }));
                        overlay.push(t.payload);
                    } else {
                        to_phones
                            .push((t.to.remote, String::from_utf8(t.payload.to_vec()).unwrap()));
                    }
                }
                for payload in overlay {
                    moved = true;
                    let from = dst.overlay_peer(src_host);
                    dst.handle_input(self.now, from, &payload);
                }
            }
            if !moved {
                return to_phones;
            }
        }
        panic!("overlay traffic did not settle");
    }
}

fn register_at_b(net: &mut Net) {
    let reg = register("bob", CALLEE, 1, None).replace('\n', "\r\n");
    net.b
        .handle_input(net.now, peer(CALLEE, NODE_B), reg.as_bytes());
    let out = net.settle();
    assert_eq!(status_of(&out[0].1), 200);
}

/// The overlay step's answer: the user is served by the node `host`.
fn found_at(host: &str) -> Resolution {
    Resolution::Found(vec![TargetSet {
        hops: vec![Hop::Overlay { host: host.into() }],
        request_uri: None,
        leaves_overlay: false,
    }])
}

fn invite_at_a(net: &mut Net, branch: &str) -> ResolveId {
    let inv = invite("bob", branch).replace('\n', "\r\n");
    net.a
        .handle_input(net.now, peer(CALLER, NODE_A), inv.as_bytes());
    let out = net.settle();
    assert_eq!(
        out.len(),
        1,
        "only 100 Trying while the lookup runs: {out:?}"
    );
    assert_eq!(status_of(&out[0].1), 100);
    match net.a.poll_event() {
        Some(ServerEvent::Resolve {
            id, aor, purpose, ..
        }) => {
            assert_eq!(aor.as_deref(), Some("bob@example.com"));
            assert_eq!(purpose, RoutePurpose::ServedUser);
            id
        }
        other => panic!("expected a lookup, got {other:?}"),
    }
}

#[test]
fn call_across_two_nodes_through_the_overlay() {
    let mut net = Net::new();
    register_at_b(&mut net);
    assert!(net.b.poll_event().is_none(), "local users need no lookup");

    let id = invite_at_a(&mut net, "ov1");
    net.a.resolve_route(net.now, id, found_at(HOST_B));
    let out = net.settle();
    let (to, fwd) = out.iter().find(|(to, _)| *to == addr(CALLEE)).unwrap();
    assert_eq!(*to, addr(CALLEE));
    assert!(fwd.starts_with(&format!("INVITE sip:bob@{CALLEE} SIP/2.0")));
    let vias: Vec<&str> = fwd.lines().filter(|l| l.starts_with("Via:")).collect();
    assert_eq!(
        vias.len(),
        3,
        "caller, node A over the overlay, node B: {vias:?}"
    );
    assert!(vias[1].contains("SIP/2.0/P2P a.p2p.invalid;branch="));
    let rr: Vec<String> = fwd
        .lines()
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .map(super::without_dialog_token)
        .collect();
    assert_eq!(
        rr,
        [
            "<sip:127.0.0.2:5060;lr>",
            "<sip:b.p2p.invalid;transport=p2p;lr>",
            "<sip:a.p2p.invalid;transport=p2p;lr>",
            "<sip:127.0.0.1:5060;lr>",
        ]
    );

    // The callee answers; the answer retraces the path to the caller.
    let fwd = fwd.replace("\r\n", "\n");
    let ok = respond_to(&fwd, 200, "OK", "b9").replace('\n', "\r\n");
    net.b
        .handle_input(net.now, peer(CALLEE, NODE_B), ok.as_bytes());
    let out = net.settle();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, addr(CALLER));
    assert_eq!(status_of(&out[0].1), 200);
    assert_eq!(out[0].1.matches("Via:").count(), 1);

    // BYE from the caller follows the recorded route: A, the overlay, B, the callee.
    let bye = format!(
        "BYE sip:bob@{CALLEE} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {CALLER};branch=z9hG4bKbyeov1\r\n\
         Route: <sip:127.0.0.1:5060;lr>, <sip:a.p2p.invalid;transport=p2p;lr>, <sip:b.p2p.invalid;transport=p2p;lr>, <sip:127.0.0.2:5060;lr>\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>;tag=b9\r\n\
         Call-ID: call-ov1@alice\r\n\
         CSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    net.a
        .handle_input(net.now, peer(CALLER, NODE_A), bye.as_bytes());
    let out = net.settle();
    let (to, fwd_bye) = &out[0];
    assert_eq!(*to, addr(CALLEE));
    assert!(fwd_bye.starts_with("BYE sip:bob@"));
    assert!(header(fwd_bye, "Route").is_none(), "every Route consumed");
    let fwd_bye = fwd_bye.replace("\r\n", "\n");
    let ok = respond_to(&fwd_bye, 200, "OK", "b9").replace('\n', "\r\n");
    net.b
        .handle_input(net.now, peer(CALLEE, NODE_B), ok.as_bytes());
    let out = net.settle();
    assert_eq!(out[0].0, addr(CALLER));
    assert_eq!(status_of(&out[0].1), 200);
}

#[test]
fn lookup_outcomes_answer_the_caller() {
    let mut net = Net::new();
    let id = invite_at_a(&mut net, "ov2");
    net.a
        .resolve_route(net.now, id, Resolution::failed(404, "Not Found"));
    let out = net.settle();
    assert_eq!(status_of(&out[0].1), 404);

    let id = invite_at_a(&mut net, "ov3");
    net.a.resolve_route(
        net.now,
        id,
        Resolution::failed(480, "Temporarily Unavailable (lookup failed)"),
    );
    let out = net.settle();
    assert_eq!(status_of(&out[0].1), 480);

    // A record that names only this node is no route (the binding here is gone).
    let id = invite_at_a(&mut net, "ov4");
    net.a.resolve_route(net.now, id, found_at(HOST_A));
    let out = net.settle();
    assert_eq!(status_of(&out[0].1), 404);
}

#[test]
fn a_lookup_that_never_returns_times_out_with_480() {
    let mut net = Net::new();
    let id = invite_at_a(&mut net, "ov5");
    let deadline = net.a.poll_timeout().unwrap();
    assert!(deadline <= net.now + Duration::from_secs(8));
    net.now = deadline;
    net.a.handle_timeout(net.now);
    let out = net.settle();
    assert_eq!(status_of(&out[0].1), 480);
    // A late answer is ignored.
    net.a.resolve_route(net.now, id, found_at(HOST_B));
    assert!(net.settle().is_empty());
}

#[test]
fn cancel_while_the_lookup_runs_ends_the_call() {
    let mut net = Net::new();
    let id = invite_at_a(&mut net, "ov6");
    let cancel = invite("bob", "ov6")
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        .replace("Content-Type: application/sdp\n", "")
        .replace("Content-Length: 5\n\nv=0\n", "Content-Length: 0\n\n")
        .replace('\n', "\r\n");
    net.a
        .handle_input(net.now, peer(CALLER, NODE_A), cancel.as_bytes());
    let out = net.settle();
    let statuses: Vec<u16> = out.iter().map(|(_, m)| status_of(m)).collect();
    assert!(
        statuses.contains(&200) && statuses.contains(&487),
        "{statuses:?}"
    );
    net.a.resolve_route(net.now, id, found_at(HOST_B));
    assert!(
        net.settle().is_empty(),
        "nothing forwarded after the CANCEL"
    );
}

#[test]
fn requests_from_the_overlay_are_not_looked_up_again() {
    let mut net = Net::new();
    let inv = invite("nobody", "ov7").replace('\n', "\r\n");
    let from = net.b.overlay_peer(HOST_A);
    net.b.handle_input(net.now, from, inv.as_bytes());
    assert!(net.b.poll_event().is_none());
    let mut statuses = Vec::new();
    while let Some(t) = net.b.poll_transmit() {
        assert_eq!(t.to.transport, Transport::Overlay);
        statuses.push(status_of(std::str::from_utf8(&t.payload).unwrap()));
    }
    assert!(statuses.contains(&404), "{statuses:?}");
}

#[test]
fn an_unreachable_serving_node_fails_the_call_at_once() {
    let mut net = Net::new();
    let id = invite_at_a(&mut net, "ov8");
    net.a.resolve_route(net.now, id, found_at(HOST_B));
    // The node could not open a stream to B: drop what A sent and report it.
    while net.a.poll_transmit().is_some() {}
    net.a.overlay_peer_unreachable(net.now, HOST_B);
    let mut statuses = Vec::new();
    while let Some(t) = net.a.poll_transmit() {
        statuses.push(status_of(std::str::from_utf8(&t.payload).unwrap()));
    }
    assert_eq!(statuses, [503]);
}
