//! Resolution through the node's routing chain, sans-IO: the test plays the chain.

use super::authorize::users;
use super::*;

const PROVIDER_1: &str = "192.0.2.10:5060";
const PROVIDER_2: &str = "192.0.2.11:5060";

/// A node on an overlay whose routing chain the test plays.
fn resolving(open: bool, users: Vec<Credential>) -> Harness {
    Harness::with_config(open, users, |config| {
        config.resolves_routes = true;
        config.overlay_host = Some("a.p2p.invalid".into());
    })
}

/// An open node whose callers (127.0.0.0/8) are trusted: they may be routed anywhere.
fn resolving_for_trusted_callers() -> Harness {
    let mut h = resolving(true, Vec::new());
    h.server.config.trusted_sources = vec!["127.0.0.0/8".parse().unwrap()];
    h
}

fn call_to(uri: &str, branch: &str) -> String {
    invite("bob", branch).replace("INVITE sip:bob@example.com", &format!("INVITE {uri}"))
}

fn next_resolution(h: &mut Harness) -> (ResolveId, String, RoutePurpose) {
    match h.server.poll_event() {
        Some(ServerEvent::Resolve {
            id, uri, purpose, ..
        }) => (id, uri, purpose),
        other => panic!("expected a resolution, got {other:?}"),
    }
}

fn provider(addr_text: &str) -> Hop {
    Hop::Address {
        transport: Transport::Udp,
        addr: addr(addr_text),
        tls_name: None,
    }
}

fn external(hops: Vec<Hop>) -> TargetSet {
    TargetSet {
        hops,
        request_uri: None,
        leaves_overlay: true,
    }
}

#[test]
fn a_failed_target_set_falls_over_to_the_next() {
    let mut h = resolving_for_trusted_callers();
    let out = h.feed(ALICE, &call_to("sip:+4312345@itsp.example", "fo1"));
    assert_eq!(status_of(&out[0].1), 100);
    let (id, uri, purpose) = next_resolution(&mut h);
    assert_eq!(uri, "sip:+4312345@itsp.example");
    assert_eq!(purpose, RoutePurpose::Foreign);
    h.server.resolve_route(
        h.now,
        id,
        Resolution::Found(vec![
            external(vec![provider(PROVIDER_1)]),
            external(vec![provider(PROVIDER_2)]),
        ]),
    );
    let out = h.drain();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, addr(PROVIDER_1));
    // The first provider is overloaded: the second gets the call, the caller sees nothing.
    let first = out[0].1.replace("\r\n", "\n");
    let busy = respond_to(&first, 503, "Service Unavailable", "p1");
    let out = h.feed(PROVIDER_1, &busy);
    let forwarded: Vec<_> = out
        .iter()
        .filter(|(to, _)| *to == addr(PROVIDER_2))
        .collect();
    assert_eq!(forwarded.len(), 1, "{out:?}");
    assert!(out.iter().all(|(to, _)| *to != addr(ALICE)), "{out:?}");
    let second = forwarded[0].1.replace("\r\n", "\n");
    let ok = respond_to(&second, 200, "OK", "p2");
    let out = h.feed(PROVIDER_2, &ok);
    let (_, answer) = out.iter().find(|(to, _)| *to == addr(ALICE)).unwrap();
    assert_eq!(status_of(answer), 200);
}

#[test]
fn the_last_set_failing_answers_the_caller() {
    let mut h = resolving_for_trusted_callers();
    h.feed(ALICE, &call_to("sip:carol@itsp.example", "fo2"));
    let (id, ..) = next_resolution(&mut h);
    h.server.resolve_route(
        h.now,
        id,
        Resolution::Found(vec![external(vec![provider(PROVIDER_1)])]),
    );
    let out = h.drain();
    let (_, sent) = out.iter().find(|(to, _)| *to == addr(PROVIDER_1)).unwrap();
    let busy = respond_to(&sent.replace("\r\n", "\n"), 486, "Busy Here", "p1");
    let out = h.feed(PROVIDER_1, &busy);
    let (_, answer) = out.iter().find(|(to, _)| *to == addr(ALICE)).unwrap();
    assert_eq!(
        status_of(answer),
        486,
        "a busy callee is not retried elsewhere"
    );
}

#[test]
fn a_resolved_provider_is_reached_only_by_an_authenticated_user() {
    let mut h = resolving(false, users());
    // A served user whose number the chain finds in ENUM: the set leaves the overlay, so
    // the anonymous caller is challenged and nothing is sent to the provider.
    let stranger = |call: String| {
        call.replace(
            "From: <sip:alice@example.com>",
            "From: <sip:mallory@elsewhere.example>",
        )
    };
    h.feed(ALICE, &stranger(invite("+4312345", "au1")));
    let (id, _, purpose) = next_resolution(&mut h);
    assert_eq!(purpose, RoutePurpose::ServedUser);
    h.server.resolve_route(
        h.now,
        id,
        Resolution::Found(vec![TargetSet {
            hops: vec![provider(PROVIDER_1)],
            request_uri: Some("sip:+4312345@itsp.example".into()),
            leaves_overlay: true,
        }]),
    );
    let out = h.drain();
    assert!(out.iter().all(|(to, _)| *to != addr(PROVIDER_1)), "{out:?}");
    let statuses: Vec<u16> = out.iter().map(|(_, m)| status_of(m)).collect();
    assert_eq!(statuses, [403], "{out:?}");
    assert!(out[0].1.contains("relaying not allowed"));

    // A tel: URI or a foreign domain is refused before anything is resolved: a caller
    // claiming to be a local user is challenged, anyone else refused.
    for (uri, branch) in [("tel:+4312345", "au2"), ("sip:carol@itsp.example", "au3")] {
        let out = h.feed(BOB, &call_to(uri, branch));
        assert_eq!(status_of(&out[0].1), 407, "{uri}: {}", out[0].1);
        let out = h.feed(BOB, &stranger(call_to(uri, &format!("{branch}x"))));
        assert_eq!(status_of(&out[0].1), 403, "{uri}: {}", out[0].1);
        assert!(
            h.server.poll_event().is_none(),
            "{uri} resolved for a stranger"
        );
    }

    // alice, authenticated, reaches the provider the chain found for a served number.
    let out = h.feed(ALICE, &invite("+4312345", "au4"));
    let challenge = super::authorize::challenge_in(&out[0].1, "Proxy-Authenticate");
    let value = authorization_value(
        &challenge,
        "alice",
        "alice-pw",
        "INVITE",
        "sip:+4312345@example.com",
        "c",
        1,
    )
    .unwrap();
    let answered = invite("+4312345", "au5")
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace(
            "Content-Type",
            &format!("Proxy-Authorization: {value}\nContent-Type"),
        );
    h.feed(ALICE, &answered);
    let (id, ..) = next_resolution(&mut h);
    h.server.resolve_route(
        h.now,
        id,
        Resolution::Found(vec![external(vec![provider(PROVIDER_1)])]),
    );
    let out = h.drain();
    assert!(out.iter().any(|(to, _)| *to == addr(PROVIDER_1)), "{out:?}");
}

#[test]
fn an_enum_result_becomes_the_request_uri() {
    let mut h = resolving_for_trusted_callers();
    h.feed(ALICE, &call_to("tel:+4312345", "en1"));
    let (id, uri, purpose) = next_resolution(&mut h);
    assert_eq!(
        (uri.as_str(), purpose),
        ("tel:+4312345", RoutePurpose::Foreign)
    );
    h.server.resolve_route(
        h.now,
        id,
        Resolution::Found(vec![TargetSet {
            hops: vec![provider(PROVIDER_1)],
            request_uri: Some("sip:+4312345@itsp.example".into()),
            leaves_overlay: true,
        }]),
    );
    let out = h.drain();
    let (_, forwarded) = out.iter().find(|(to, _)| *to == addr(PROVIDER_1)).unwrap();
    assert!(
        forwarded.starts_with("INVITE sip:+4312345@itsp.example SIP/2.0"),
        "{forwarded}"
    );
}

#[test]
fn a_host_name_in_a_route_is_resolved_as_a_next_hop() {
    let mut h = resolving_for_trusted_callers();
    let call = invite("bob", "nh1").replace(
        "Max-Forwards",
        "Route: <sip:edge.itsp.example;lr>\nMax-Forwards",
    );
    h.feed(ALICE, &call);
    let (id, uri, purpose) = next_resolution(&mut h);
    assert_eq!(uri, "sip:edge.itsp.example;lr");
    assert_eq!(purpose, RoutePurpose::NextHop);
    h.server.resolve_route(
        h.now,
        id,
        Resolution::Found(vec![external(vec![provider(PROVIDER_1)])]),
    );
    let out = h.drain();
    let (_, forwarded) = out.iter().find(|(to, _)| *to == addr(PROVIDER_1)).unwrap();
    assert!(forwarded.starts_with("INVITE sip:bob@example.com SIP/2.0"));
}

#[test]
fn a_chain_that_finds_nothing_answers_with_its_reason() {
    let mut h = resolving(true, Vec::new());
    h.feed(ALICE, &invite("nobody", "nf1"));
    let (id, ..) = next_resolution(&mut h);
    h.server.resolve_route(
        h.now,
        id,
        Resolution::failed(404, "Not Found (no ENUM record)"),
    );
    let out = h.drain();
    assert_eq!(
        first_line(&out[0].1),
        "SIP/2.0 404 Not Found (no ENUM record)"
    );
}

#[test]
fn without_an_overlay_a_stranger_is_answered_at_once() {
    let mut h = Harness::with_config(true, Vec::new(), |config| config.resolves_routes = true);
    let out = h.feed(ALICE, &invite("+4312345", "st1"));
    assert_eq!(status_of(&out[0].1), 404, "{out:?}");
    assert!(
        h.server.poll_event().is_none(),
        "nothing the chain could answer"
    );
    // A trusted source may reach a number through ENUM or peering: the chain is asked.
    h.server.config.trusted_sources = vec!["127.0.0.0/8".parse().unwrap()];
    h.feed(ALICE, &invite("+4312345", "st2"));
    match h.server.poll_event() {
        Some(ServerEvent::Resolve { external, .. }) => assert!(external),
        other => panic!("expected a resolution, got {other:?}"),
    }
}

#[test]
fn this_node_s_address_stands_for_its_one_domain() {
    let mut h = Harness::open();
    h.register("bob", BOB, BOB);
    // No port: the node's address, whatever port it listens on.
    let out = h.feed(ALICE, &call_to("sip:bob@127.0.0.1", "my1"));
    assert!(out.iter().any(|(to, _)| *to == addr(BOB)), "{out:?}");
    let out = h.feed(ALICE, &call_to("sip:bob@127.0.0.1:5060", "my2"));
    assert!(out.iter().any(|(to, _)| *to == addr(BOB)), "{out:?}");
    // Another port on the same address is someone else.
    let out = h.feed(ALICE, &call_to("sip:bob@127.0.0.1:5099", "my3"));
    assert!(out.iter().all(|(to, _)| *to != addr(BOB)), "{out:?}");
}

#[test]
fn an_ack_with_a_host_name_in_its_route_is_resolved_then_sent_on() {
    let mut h = resolving_for_trusted_callers();
    let ack = format!(
        "ACK sip:carol@{PROVIDER_1} SIP/2.0\n\
         Via: SIP/2.0/UDP {ALICE};branch=z9hG4bKack1;rport\n\
         Route: <sip:edge.itsp.example;lr>\n\
         Max-Forwards: 70\n\
         From: <sip:alice@example.com>;tag=a1\n\
         To: <sip:carol@itsp.example>;tag=c1\n\
         Call-ID: call-ack1@alice\n\
         CSeq: 1 ACK\n\
         Content-Length: 0\n\n"
    );
    assert!(
        h.feed(ALICE, &ack).is_empty(),
        "nothing sent before the route is known"
    );
    let (id, uri, purpose) = next_resolution(&mut h);
    assert_eq!(
        (uri.as_str(), purpose),
        ("sip:edge.itsp.example;lr", RoutePurpose::NextHop)
    );
    h.server.resolve_route(
        h.now,
        id,
        Resolution::Found(vec![external(vec![provider(PROVIDER_2)])]),
    );
    let out = h.drain();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, addr(PROVIDER_2));
    assert!(out[0]
        .1
        .starts_with(&format!("ACK sip:carol@{PROVIDER_1} SIP/2.0")));
}
