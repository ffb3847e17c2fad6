//! The authorisation step, sans-IO: who may make the node forward what.

use super::*;

pub(super) fn users() -> Vec<Credential> {
    ["alice", "bob"]
        .into_iter()
        .map(|name| Credential {
            username: name.into(),
            realm: "example.com".into(),
            secret: Secret::Password(format!("{name}-pw")),
        })
        .collect()
}

/// The first supported challenge of `header` in a response.
pub(super) fn challenge_in<'t>(
    response: &'t str,
    header: &str,
) -> crate::auth::DigestChallenge<'t> {
    let prefix = format!("{header}: ");
    first_supported_challenge(
        response
            .lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str())),
    )
    .unwrap()
}

/// Registers `user` at `contact` with digest authentication.
fn register_with_password(h: &mut Harness, user: &str, contact: &str) {
    let out = h.feed(contact, &register(user, contact, 1, None));
    assert_eq!(status_of(&out[0].1), 401);
    let challenge = challenge_in(&out[0].1, "WWW-Authenticate");
    let password = format!("{user}-pw");
    let value = authorization_value(
        &challenge,
        user,
        &password,
        "REGISTER",
        "sip:example.com",
        "c",
        1,
    )
    .unwrap();
    let out = h.feed(contact, &register(user, contact, 2, Some(&value)));
    assert_eq!(status_of(&out[0].1), 200, "{}", out[0].1);
}

#[test]
fn a_local_caller_is_challenged_and_its_credentials_stay_here() {
    let mut h = Harness::new(false, users());
    register_with_password(&mut h, "bob", BOB);
    let call = invite("bob", "pa1").replace(
        "Content-Type",
        "P-Asserted-Identity: <sip:ceo@example.com>\nContent-Type",
    );
    let out = h.feed(ALICE, &call);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(status_of(&out[0].1), 407);
    assert!(out.iter().all(|(to, _)| *to != addr(BOB)));
    let challenge = challenge_in(&out[0].1, "Proxy-Authenticate");
    let value = authorization_value(
        &challenge,
        "alice",
        "alice-pw",
        "INVITE",
        "sip:bob@example.com",
        "c",
        1,
    )
    .unwrap();
    let answered = call
        .replace("z9hG4bKpa1", "z9hG4bKpa2")
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace(
            "Content-Type",
            &format!("Proxy-Authorization: {value}\nContent-Type"),
        );
    let out = h.feed(ALICE, &answered);
    let (_, forwarded) = out.iter().find(|(to, _)| *to == addr(BOB)).unwrap();
    assert!(header(forwarded, "Proxy-Authorization").is_none());
    assert!(header(forwarded, "P-Asserted-Identity").is_none());

    // bob's password does not make anyone alice.
    let as_bob = authorization_value(
        &challenge,
        "bob",
        "bob-pw",
        "INVITE",
        "sip:bob@example.com",
        "c",
        2,
    )
    .unwrap();
    let impostor = invite("bob", "pa3").replace(
        "Content-Type",
        &format!("Proxy-Authorization: {as_bob}\nContent-Type"),
    );
    let out = h.feed(ALICE, &impostor);
    assert_eq!(status_of(&out[0].1), 403, "{}", out[0].1);
    assert!(out[0].1.contains("From does not match"));
}

#[test]
fn nothing_is_relayed_outside_the_served_domains_without_trust() {
    let gateway = "192.0.2.99:5060";
    let to_gateway = |text: String| {
        text.replace(
            "INVITE sip:bob@example.com",
            &format!("INVITE sip:+4312345@{gateway}"),
        )
    };
    let mut open = Harness::open();
    let out = open.feed(ALICE, &to_gateway(invite("bob", "r1")));
    assert_eq!(status_of(&out[0].1), 403);
    assert!(out[0].1.contains("relaying not allowed"));
    assert!(out.iter().all(|(to, _)| *to != addr(gateway)));

    let mut trusting = Harness::with_config(true, Vec::new(), |config| {
        config.trusted_sources = vec!["127.0.0.0/8".parse().unwrap()];
    });
    let call = to_gateway(invite("bob", "r2")).replace(
        "Content-Type",
        "P-Asserted-Identity: <sip:alice@example.com>\nContent-Type",
    );
    let out = trusting.feed(ALICE, &call);
    let (_, forwarded) = out.iter().find(|(to, _)| *to == addr(gateway)).unwrap();
    assert_eq!(
        header(forwarded, "P-Asserted-Identity"),
        Some("<sip:alice@example.com>"),
        "a trusted source's asserted identity is kept"
    );
}

#[test]
fn guesses_from_many_addresses_lock_the_account() {
    let mut h = Harness::with_config(false, users(), |config| {
        config.max_failures_per_account = 5;
    });
    let mut last = String::new();
    for index in 0..6u8 {
        // Each guess from an address of its own, on a nonce issued to that address.
        let source = udp(&format!("10.0.0.{}:5060", index + 1));
        // A branch of its own, so that no request looks like another's retransmission.
        let fresh = |text: String| text.replace("z9hG4bKreg", &format!("z9hG4bK{index}reg"));
        let out = h.feed_from(source, &fresh(register("alice", BOB, 1, None)));
        let challenge_text = out[0].1.clone();
        let challenge = challenge_in(&challenge_text, "WWW-Authenticate");
        let guess = authorization_value(
            &challenge,
            "alice",
            "guess",
            "REGISTER",
            "sip:example.com",
            "c",
            1,
        )
        .unwrap();
        let out = h.feed_from(source, &fresh(register("alice", BOB, 2, Some(&guess))));
        last = out[0].1.clone();
    }
    assert_eq!(status_of(&last), 403, "{last}");
    assert!(last.contains("for this account"));
}

#[test]
fn open_registrations_belong_to_the_registering_address() {
    let mut h = Harness::with_config(true, Vec::new(), |config| {
        config.max_bindings_per_source = 2;
    });
    let phone = udp("10.0.0.1:5060");
    let other = udp("10.0.0.2:5060");
    let out = h.feed_from(phone, &register("alice", "10.0.0.1:5060", 1, None));
    assert_eq!(status_of(&out[0].1), 200);
    let out = h.feed_from(other, &register("alice", "10.0.0.2:5060", 1, None));
    assert_eq!(status_of(&out[0].1), 403, "{}", out[0].1);
    let out = h.feed_from(phone, &register("bob", "10.0.0.1:5060", 1, None));
    assert_eq!(status_of(&out[0].1), 200);
    let out = h.feed_from(phone, &register("carol", "10.0.0.1:5060", 1, None));
    assert_eq!(status_of(&out[0].1), 503, "{}", out[0].1);
    assert_eq!(
        h.server.location().bindings_from(addr("10.0.0.1:1").ip()),
        2
    );
}

#[test]
fn an_invite_refused_over_udp_is_answered_once_and_its_ack_absorbed() {
    let mut h = Harness::open();
    let out = h.feed(ALICE, &invite("nobody", "sl1"));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(status_of(&out[0].1), 404);
    let to = header(&out[0].1, "To").unwrap().to_owned();
    // No transaction repeats the answer to a source that never acknowledges it.
    assert!(h.advance(Duration::from_secs(40)).is_empty());
    assert_eq!(h.server.transactions_in_progress(), 0);
    let ack = invite("nobody", "sl1")
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("To: <sip:nobody@example.com>", &format!("To: {to}"));
    assert!(h.feed(ALICE, &ack).is_empty(), "the ACK ends here");
    // A repeated INVITE (the answer was lost) is answered again.
    let again = h.feed(ALICE, &invite("nobody", "sl1"));
    assert_eq!(status_of(&again[0].1), 404);
}

#[test]
fn a_binding_set_aimed_at_a_victim_forks_to_few_of_them() {
    let mut h = Harness::open();
    let mut contacts = String::new();
    for port in 0..16 {
        contacts.push_str(&format!("Contact: <sip:bob@192.0.2.50:{}>\n", 6000 + port));
    }
    let reg = register("bob", BOB, 1, None).replace(
        &format!("Contact: <sip:bob@{BOB}>;expires=600\n"),
        &contacts,
    );
    let out = h.feed(BOB, &reg);
    assert_eq!(status_of(&out[0].1), 200, "{}", out[0].1);
    let out = h.feed(ALICE, &invite("bob", "amp1"));
    let forwarded = out
        .iter()
        .filter(|(to, _)| to.ip() == addr("192.0.2.50:1").ip())
        .count();
    assert_eq!(forwarded, 2, "{out:?}");
}

#[test]
fn a_next_hop_that_cannot_be_sent_to_fails_the_call_at_once() {
    let mut h = Harness::open();
    h.register("bob", BOB, BOB);
    h.server.handle_input(
        h.now,
        udp(ALICE),
        invite("bob", "tf1").replace('\n', "\r\n").as_bytes(),
    );
    let mut toward_bob = None;
    while let Some(t) = h.server.poll_transmit() {
        if t.to.remote == addr(BOB) {
            toward_bob = Some(t.to);
        }
    }
    let toward_bob = toward_bob.unwrap();
    h.server
        .transport_failed(h.now, toward_bob.transport, toward_bob.remote);
    let out = h.drain();
    let final_ = out.iter().find(|(to, _)| *to == addr(ALICE)).unwrap();
    assert_eq!(status_of(&final_.1), 503, "{}", final_.1);
}

#[test]
fn a_closed_federation_takes_calls_only_from_authenticated_peers() {
    let mut h = Harness::with_config(true, Vec::new(), |config| {
        config.require_authenticated_inbound = true;
        config.inbound_peers = vec!["192.0.2.7/32".parse().unwrap()];
    });
    h.register("bob", BOB, BOB);
    let out = h.feed("198.51.100.20:5060", &invite("bob", "cf1"));
    assert_eq!(status_of(&out[0].1), 403, "{out:?}");
    assert!(out[0].1.contains("not an authenticated peer"));
    assert!(out.iter().all(|(to, _)| *to != addr(BOB)));

    let out = h.feed("192.0.2.7:5060", &invite("bob", "cf2"));
    assert!(
        out.iter().any(|(to, _)| *to == addr(BOB)),
        "an inbound peer: {out:?}"
    );

    let member = Peer {
        transport: Transport::Tcp,
        remote: addr("198.51.100.9:40000"),
        local: addr(NODE),
        connection: Some(crate::transport::ConnectionId(77)),
    };
    let out = h.feed_from(member, &invite("bob", "cf3"));
    assert_eq!(
        status_of(&out[0].1),
        403,
        "before its certificate counts: {out:?}"
    );
    h.server
        .connection_authenticated(crate::transport::ConnectionId(77));
    let out = h.feed_from(member, &invite("bob", "cf4"));
    assert!(
        out.iter().any(|(to, _)| *to == addr(BOB)),
        "a federation member: {out:?}"
    );
    h.server
        .connection_closed(crate::transport::ConnectionId(77));
    let out = h.feed_from(member, &invite("bob", "cf5"));
    assert_eq!(status_of(&out[0].1), 403, "its connection closed: {out:?}");

    // A phone registered here calls from its own address.
    let out = h.feed(
        BOB,
        &invite("bob", "cf6").replace(
            "Via: SIP/2.0/UDP 127.0.0.1:7001",
            "Via: SIP/2.0/UDP 127.0.0.1:7002",
        ),
    );
    assert!(
        out.iter().any(|(to, _)| *to == addr(BOB)),
        "a local phone: {out:?}"
    );
}
