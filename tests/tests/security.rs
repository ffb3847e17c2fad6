//! A node on a public address, attacked over UDP: no open relay, no spoofed callers, an
//! `--open` node that keeps each address-of-record to the address that registered it, and
//! digest authentication that counts the right failures. Other hosts are other loopback
//! addresses (127.0.0.2 and up), which Linux routes to the loopback interface.

use anyhow::{ensure, Context, Result};
use p2psip_tests::requests::{
    challenge, ensure_silent, header_value, invite, message, next_request,
};
use p2psip_tests::{test_dir, Node, NodeConfig, Request, Response, TestUsers, UdpClient, DOMAIN};
use sip::auth::authorization_value;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

const REPLY_LIMIT: Duration = Duration::from_secs(5);
const CNONCE: &str = "5ec0e7c4";

fn host(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A socket on another loopback address standing for a gateway or a phone: it only
/// listens (its target is never used for sending).
fn listener(last: u8) -> Result<UdpClient> {
    UdpClient::bind(host(last), SocketAddr::from((host(last), 9)))
}

fn users_node(dir: &p2psip_tests::TestDir, count: usize) -> Result<(TestUsers, Node)> {
    let users = TestUsers::generate(count, DOMAIN);
    let users_toml = dir.path().join("users.toml");
    users.write_users_toml(&users_toml)?;
    let node = Node::start(&NodeConfig::with_users(&users_toml))?;
    Ok((users, node))
}

/// A REGISTER of `user` from `client` with its own address as Contact.
fn register(client: &UdpClient, user: &str, cseq: u32) -> Request {
    Request::new("REGISTER", &format!("sip:{DOMAIN}"), client)
        .set("From", &format!("<sip:{user}@{DOMAIN}>;tag=r{cseq}"))
        .set("To", &format!("<sip:{user}@{DOMAIN}>"))
        .set("CSeq", &format!("{cseq} REGISTER"))
        .with("Contact", &format!("<sip:{user}@{}>", client.local_addr()))
        .with("Expires", "600")
}

/// Registers `user` with digest authentication; the final response.
fn register_with_password(client: &UdpClient, user: &str, password: &str) -> Result<Response> {
    let first = register(client, user, 1);
    let unauthorized = client.expect_response(&first, REPLY_LIMIT)?;
    ensure!(
        unauthorized.status == 401,
        "expected 401:\n{}",
        unauthorized.raw
    );
    let challenge = challenge(&unauthorized, "WWW-Authenticate")?;
    let authorization = authorization_value(
        &challenge,
        user,
        password,
        "REGISTER",
        &format!("sip:{DOMAIN}"),
        CNONCE,
        1,
    )
    .context("answering the challenge")?;
    let mut second = register(client, user, 2).with("Authorization", &authorization);
    if let Some(call_id) = first.call_id() {
        second = second.set("Call-ID", call_id);
    }
    client.expect_response(&second, REPLY_LIMIT)
}

/// Point 1: an unauthenticated source cannot make the node send anything to a gateway, by
/// Request-URI or by Route; an authenticated user can, and its credentials and asserted
/// identity do not travel on.
#[test]
fn relay_attempts_get_407_or_403_and_nothing_reaches_the_gateway() -> Result<()> {
    let dir = test_dir("security-relay-")?;
    let (users, node) = users_node(&dir, 2)?;
    let gateway = listener(2)?;
    let gateway_uri = format!("sip:+4312345@{}", gateway.local_addr());
    let client = UdpClient::new(node.udp_addr())?;
    let result = (|| -> Result<()> {
        let local_user = format!("sip:tester@{DOMAIN}");
        let outsider = "sip:anon@elsewhere.example";
        for (request, expected) in [
            (invite(&client, &gateway_uri, &local_user), 407),
            (invite(&client, &gateway_uri, outsider), 403),
            (message(&client, &gateway_uri, &local_user), 407),
            (message(&client, &gateway_uri, outsider), 403),
            (
                message(&client, &format!("sip:user0001@{DOMAIN}"), outsider)
                    .with("Route", &format!("<sip:{};lr>", gateway.local_addr())),
                403,
            ),
        ] {
            let response = client.expect_response(&request, REPLY_LIMIT)?;
            ensure!(
                response.status == expected,
                "expected {expected}, got:\n{}",
                response.raw
            );
            if expected == 407 {
                ensure!(
                    response.header("Proxy-Authenticate").is_some(),
                    "407 without a challenge:\n{}",
                    response.raw
                );
            } else {
                ensure!(
                    response.reason.contains("relaying"),
                    "the reason phrase should name the fault:\n{}",
                    response.raw
                );
            }
        }
        ensure_silent(&gateway, "the gateway")?;

        // The same call by an authenticated user goes through, minus what was for the node.
        let (user, password) = &users.users[0];
        let from = format!("sip:{user}@{DOMAIN}");
        let first = invite(&client, &gateway_uri, &from);
        let required = client.expect_response(&first, REPLY_LIMIT)?;
        ensure!(required.status == 407, "expected 407:\n{}", required.raw);
        let challenge = challenge(&required, "Proxy-Authenticate")?;
        let credentials = authorization_value(
            &challenge,
            user,
            password,
            "INVITE",
            &gateway_uri,
            CNONCE,
            1,
        )
        .context("answering the 407")?;
        let mut second = invite(&client, &gateway_uri, &from)
            .set("CSeq", "2 INVITE")
            .with("Proxy-Authorization", &credentials)
            .with("P-Asserted-Identity", "<sip:ceo@example.com>");
        if let Some(call_id) = first.call_id() {
            second = second.set("Call-ID", call_id);
        }
        client.send(&second.to_bytes())?;
        let forwarded = next_request(&gateway, REPLY_LIMIT)?
            .context("the authenticated INVITE did not reach the gateway")?;
        ensure!(forwarded.starts_with("INVITE "), "{forwarded}");
        for removed in ["Proxy-Authorization", "P-Asserted-Identity"] {
            ensure!(
                header_value(&forwarded, removed).is_none(),
                "{removed} was forwarded:\n{forwarded}"
            );
        }
        Ok(())
    })();
    node.context(result)
}

/// Point 2: nobody but alice herself may call or message as alice; a caller from another
/// domain reaches bob, without the identity it asserted.
#[test]
fn spoofed_callers_are_challenged_and_asserted_identities_removed() -> Result<()> {
    let dir = test_dir("security-spoof-")?;
    let (users, node) = users_node(&dir, 2)?;
    let bob = UdpClient::bind(host(3), node.udp_addr())?;
    let attacker = UdpClient::bind(host(4), node.udp_addr())?;
    let result = (|| -> Result<()> {
        let (alice, _) = &users.users[0];
        let (bob_user, bob_password) = &users.users[1];
        let ok = register_with_password(&bob, bob_user, bob_password)?;
        ensure!(ok.status == 200, "bob's REGISTER:\n{}", ok.raw);
        let bob_uri = format!("sip:{bob_user}@{DOMAIN}");
        let alice_uri = format!("sip:{alice}@{DOMAIN}");
        for request in [
            invite(&attacker, &bob_uri, &alice_uri)
                .with("P-Asserted-Identity", &format!("<{alice_uri}>")),
            message(&attacker, &bob_uri, &alice_uri),
            message(&attacker, &bob_uri, "sip:carol@elsewhere.example")
                .with("P-Asserted-Identity", &format!("<{alice_uri}>")),
        ] {
            let response = attacker.expect_response(&request, REPLY_LIMIT)?;
            ensure!(
                response.status == 407 || response.status == 403,
                "a request claiming to be alice: expected 407 or 403, got:\n{}",
                response.raw
            );
        }
        ensure_silent(&bob, "bob's phone")?;

        let outside = message(&attacker, &bob_uri, "sip:carol@elsewhere.example")
            .with("P-Asserted-Identity", "<sip:boss@elsewhere.example>");
        attacker.send(&outside.to_bytes())?;
        let delivered = next_request(&bob, REPLY_LIMIT)?
            .context("a MESSAGE from another domain did not reach bob")?;
        ensure!(delivered.starts_with("MESSAGE "), "{delivered}");
        ensure!(
            header_value(&delivered, "P-Asserted-Identity").is_none(),
            "an untrusted P-Asserted-Identity was forwarded:\n{delivered}"
        );
        Ok(())
    })();
    node.context(result)
}

/// Point 3: on an `--open` node, another address can neither take over nor remove alice's
/// binding, and calls still reach her phone.
#[test]
fn open_node_keeps_alice_binding_against_other_addresses() -> Result<()> {
    let node = Node::start(&NodeConfig::open())?;
    let alice = UdpClient::bind(host(5), node.udp_addr())?;
    let intruder = UdpClient::bind(host(6), node.udp_addr())?;
    let result = (|| -> Result<()> {
        let ok = alice.expect_response(&register(&alice, "alice", 1), REPLY_LIMIT)?;
        ensure!(ok.status == 200, "alice's REGISTER:\n{}", ok.raw);

        let takeover = register(&intruder, "alice", 1);
        let alice_contact = format!("<sip:alice@{}>", alice.local_addr());
        let remove_hers = register(&intruder, "alice", 2)
            .set("Contact", &alice_contact)
            .set("Expires", "0");
        let remove_all = register(&intruder, "alice", 3)
            .set("Contact", "*")
            .set("Expires", "0");
        for attempt in [takeover, remove_hers, remove_all] {
            let response = intruder.expect_response(&attempt, REPLY_LIMIT)?;
            ensure!(
                response.status == 403,
                "another address changing alice's bindings: expected 403, got:\n{}",
                response.raw
            );
        }

        let query = Request::new("REGISTER", &format!("sip:{DOMAIN}"), &alice)
            .set("To", &format!("<sip:alice@{DOMAIN}>"))
            .set("From", &format!("<sip:alice@{DOMAIN}>;tag=q"));
        let bindings = alice.expect_response(&query, REPLY_LIMIT)?;
        let contacts = bindings.header_all("Contact");
        ensure!(
            contacts.len() == 1 && contacts[0].contains(&alice.local_addr().to_string()),
            "alice's binding changed:\n{}",
            bindings.raw
        );

        let hello = message(
            &intruder,
            &format!("sip:alice@{DOMAIN}"),
            "sip:x@elsewhere.example",
        );
        intruder.send(&hello.to_bytes())?;
        let delivered = next_request(&alice, REPLY_LIMIT)?
            .context("a MESSAGE to alice did not reach her phone")?;
        ensure!(delivered.starts_with("MESSAGE "), "{delivered}");
        Ok(())
    })();
    node.context(result)
}

/// Point 3: one address cannot fill the location table of an `--open` node; others still
/// register.
#[test]
fn open_node_caps_bindings_per_source_address() -> Result<()> {
    let dir = test_dir("security-open-cap-")?;
    let config_file = dir.path().join("node.toml");
    std::fs::write(&config_file, "[limits]\nmax_bindings_per_source = 3\n")?;
    let mut config = NodeConfig::open();
    config.extra_args = vec!["--config".into(), config_file.display().to_string()];
    let node = Node::start(&config)?;
    let filler = UdpClient::bind(host(7), node.udp_addr())?;
    let neighbour = UdpClient::bind(host(8), node.udp_addr())?;
    let result = (|| -> Result<()> {
        for index in 0..3 {
            let ok =
                filler.expect_response(&register(&filler, &format!("u{index}"), 1), REPLY_LIMIT)?;
            ensure!(ok.status == 200, "REGISTER {index}:\n{}", ok.raw);
        }
        let refused = filler.expect_response(&register(&filler, "u3", 1), REPLY_LIMIT)?;
        ensure!(
            refused.status == 503 && refused.header("Retry-After").is_some(),
            "the fourth address-of-record from one source: expected 503 with Retry-After, got:\n{}",
            refused.raw
        );
        let refresh = filler.expect_response(&register(&filler, "u0", 2), REPLY_LIMIT)?;
        ensure!(
            refresh.status == 200,
            "a refresh at the cap:\n{}",
            refresh.raw
        );
        let other = neighbour.expect_response(&register(&neighbour, "u3", 1), REPLY_LIMIT)?;
        ensure!(
            other.status == 200,
            "another source at the cap:\n{}",
            other.raw
        );
        Ok(())
    })();
    node.context(result)
}

/// A mid-dialog request the node did not record-route cannot use it as a relay; one along
/// a Record-Route the node made goes through.
#[test]
fn forged_in_dialog_requests_are_refused_real_ones_pass() -> Result<()> {
    let node = Node::start(&NodeConfig::open())?;
    let gateway = listener(9)?;
    let bob = UdpClient::bind(host(10), node.udp_addr())?;
    let caller = UdpClient::bind(host(11), node.udp_addr())?;
    let result = (|| -> Result<()> {
        let node_route = format!("<sip:{};lr>", node.udp_addr());
        let forged = Request::new("BYE", &format!("sip:gw@{}", gateway.local_addr()), &caller)
            .set("To", "<sip:gw@elsewhere.example>;tag=forged")
            .with("Route", &node_route);
        let response = caller.expect_response(&forged, REPLY_LIMIT)?;
        ensure!(response.status == 403, "forged BYE:\n{}", response.raw);
        ensure_silent(&gateway, "the gateway")?;

        let ok = bob.expect_response(&register(&bob, "bob", 1), REPLY_LIMIT)?;
        ensure!(ok.status == 200, "bob's REGISTER:\n{}", ok.raw);
        let call = invite(
            &caller,
            &format!("sip:bob@{DOMAIN}"),
            "sip:carol@elsewhere.example",
        );
        caller.send(&call.to_bytes())?;
        let ringing = next_request(&bob, REPLY_LIMIT)?.context("the INVITE did not reach bob")?;
        let record_route = header_value(&ringing, "Record-Route")
            .context("the node did not record-route")?
            .to_owned();
        let bye = Request::new("BYE", &format!("sip:bob@{}", bob.local_addr()), &caller)
            .set("To", &format!("<sip:bob@{DOMAIN}>;tag=b1"))
            .set("Call-ID", call.call_id().unwrap_or_default())
            .set("CSeq", "2 BYE")
            .with("Route", &record_route);
        caller.send(&bye.to_bytes())?;
        let mut delivered = None;
        for _ in 0..10 {
            match next_request(&bob, REPLY_LIMIT)? {
                Some(text) if text.starts_with("BYE ") => {
                    delivered = Some(text);
                    break;
                }
                Some(_) => continue,
                None => break,
            }
        }
        ensure!(
            delivered.is_some(),
            "the BYE along the Record-Route did not reach bob"
        );
        Ok(())
    })();
    node.context(result)
}

/// Point 6: answers without qop are refused, a captured answer is worthless from another
/// address, guesses spread over many addresses lock the account, and answers on nonces
/// sent to someone else count against no one.
#[test]
fn digest_refuses_rfc2069_replays_and_distributed_guessing() -> Result<()> {
    let dir = test_dir("security-digest-")?;
    let (users, node) = users_node(&dir, 3)?;
    let client = UdpClient::bind(host(12), node.udp_addr())?;
    let result = (|| -> Result<()> {
        let (user, password) = &users.users[0];
        // Without qop.
        let first = register(&client, user, 1);
        let unauthorized = client.expect_response(&first, REPLY_LIMIT)?;
        let mut plain = challenge(&unauthorized, "WWW-Authenticate")?;
        plain.qop = None;
        let value = authorization_value(
            &plain,
            user,
            password,
            "REGISTER",
            &format!("sip:{DOMAIN}"),
            CNONCE,
            1,
        )
        .context("answering without qop")?;
        let without_qop = register(&client, user, 2)
            .set("Call-ID", first.call_id().unwrap_or_default())
            .with("Authorization", &value);
        let refused = client.expect_response(&without_qop, REPLY_LIMIT)?;
        ensure!(
            refused.status == 401,
            "an answer without qop:\n{}",
            refused.raw
        );

        // A captured good answer, replayed from another address with another Contact.
        let first = register(&client, user, 3);
        let unauthorized = client.expect_response(&first, REPLY_LIMIT)?;
        let fresh = challenge(&unauthorized, "WWW-Authenticate")?;
        let value = authorization_value(
            &fresh,
            user,
            password,
            "REGISTER",
            &format!("sip:{DOMAIN}"),
            CNONCE,
            1,
        )
        .context("answering")?;
        let replayer = UdpClient::bind(host(13), node.udp_addr())?;
        let replay = register(&replayer, user, 4)
            .set("Call-ID", first.call_id().unwrap_or_default())
            .with("Authorization", &value);
        let refused = replayer.expect_response(&replay, REPLY_LIMIT)?;
        ensure!(
            refused.status == 401,
            "a replay from another address:\n{}",
            refused.raw
        );

        // Nine wrong guesses from each of three addresses (each under the per-address
        // limit of ten), then the right password from a fourth: the account is locked.
        let (victim, victim_password) = &users.users[1];
        for last in 14..17 {
            let guesser = UdpClient::bind(host(last), node.udp_addr())?;
            for guess in 0..9 {
                let response = register_with_password(&guesser, victim, &format!("guess-{guess}"))?;
                // 403 once the account's limit is reached.
                ensure!(
                    response.status == 401 || response.status == 403,
                    "guess {guess} from {last}:\n{}",
                    response.raw
                );
            }
        }
        let owner = UdpClient::bind(host(17), node.udp_addr())?;
        let locked = register_with_password(&owner, victim, victim_password)?;
        ensure!(
            locked.status == 403 && locked.reason.contains("account"),
            "27 failed guesses on one account: expected 403 naming the account, got:\n{}",
            locked.raw
        );

        // Wrong answers on a nonce issued to another address are not counted against the
        // sender: after fifteen, the sender still registers.
        let (user, password) = &users.users[2];
        let nonce_owner = UdpClient::bind(host(18), node.udp_addr())?;
        let sender = UdpClient::bind(host(19), node.udp_addr())?;
        let first = register(&nonce_owner, user, 1);
        let unauthorized = nonce_owner.expect_response(&first, REPLY_LIMIT)?;
        let foreign = challenge(&unauthorized, "WWW-Authenticate")?;
        for attempt in 0..15u32 {
            let value = authorization_value(
                &foreign,
                user,
                "wrong",
                "REGISTER",
                &format!("sip:{DOMAIN}"),
                CNONCE,
                attempt + 1,
            )
            .context("answering")?;
            let request = register(&sender, user, attempt + 2).with("Authorization", &value);
            let response = sender.expect_response(&request, REPLY_LIMIT)?;
            ensure!(
                response.status == 401,
                "attempt {attempt}:\n{}",
                response.raw
            );
        }
        let ok = register_with_password(&sender, user, password)?;
        ensure!(
            ok.status == 200,
            "the sender was locked out by nonces it never got:\n{}",
            ok.raw
        );
        Ok(())
    })();
    node.context(result)
}

/// Point 8: a 420 lists every unsupported option tag.
#[test]
fn bad_extension_lists_the_unsupported_tags() -> Result<()> {
    let node = Node::start(&NodeConfig::open())?;
    let client = UdpClient::new(node.udp_addr())?;
    let result = (|| -> Result<()> {
        let request = Request::new("OPTIONS", &format!("sip:bob@{DOMAIN}"), &client)
            .with("Proxy-Require", "nothingpossible, alsonot");
        let response = client.expect_response(&request, REPLY_LIMIT)?;
        ensure!(response.status == 420, "{}", response.raw);
        ensure!(
            response.tokens("Unsupported") == ["nothingpossible", "alsonot"],
            "420 without the Unsupported tags:\n{}",
            response.raw
        );
        Ok(())
    })();
    node.context(result)
}

/// Point 7: an INVITE over UDP that the node refuses is answered once, not every time
/// Timer G fires, so a spoofed source gains nothing from the node's answers.
#[test]
fn a_refused_invite_is_answered_once() -> Result<()> {
    let node = Node::start(&NodeConfig::open())?;
    let client = UdpClient::bind(host(20), node.udp_addr())?;
    let result = (|| -> Result<()> {
        let call = invite(
            &client,
            &format!("sip:nobody@{DOMAIN}"),
            "sip:x@elsewhere.example",
        );
        client.send(&call.to_bytes())?;
        let mut answers = 0;
        // Timer G would have repeated the 404 at 0.5, 1.5 and 3.5 s.
        for _ in 0..20 {
            let Some(datagram) = client.recv(Duration::from_secs(5))? else {
                break;
            };
            let response = Response::parse(&datagram).context("not a response")?;
            ensure!(response.status == 404, "{}", response.raw);
            answers += 1;
        }
        ensure!(answers == 1, "the 404 was sent {answers} times");
        Ok(())
    })();
    node.context(result)
}

/// Registers bob from 127.0.0.`phone` with `contact`, calls him from 127.0.0.`caller`
/// and expects the node to answer 503 within the reply limit, long before Timer B's 408.
fn call_to_unreachable_contact_gets_503_at_once(
    contact: &str,
    phone: u8,
    caller: u8,
) -> Result<()> {
    let node = Node::start(&NodeConfig::open())?;
    let phone = UdpClient::bind(host(phone), node.udp_addr())?;
    let caller = UdpClient::bind(host(caller), node.udp_addr())?;
    let result = (|| -> Result<()> {
        let register = register(&phone, "bob", 1).set("Contact", contact);
        let ok = phone.expect_response(&register, REPLY_LIMIT)?;
        ensure!(ok.status == 200, "{}", ok.raw);
        let call = invite(
            &caller,
            &format!("sip:bob@{DOMAIN}"),
            "sip:x@elsewhere.example",
        );
        let response = caller.expect_response(&call, REPLY_LIMIT)?;
        ensure!(
            response.status == 503,
            "expected 503 at once, got:\n{}",
            response.raw
        );
        Ok(())
    })();
    node.context(result)
}

/// Point 8: a contact the node has no socket for (IPv6 on an IPv4-only node) fails the
/// call at once with 503, not with 408 after Timer B.
#[test]
fn an_unreachable_contact_fails_the_call_at_once() -> Result<()> {
    call_to_unreachable_contact_gets_503_at_once("<sip:bob@[::1]:5099>", 21, 22)
}

/// Point 8: a TCP contact that refuses the connection fails the call at once with 503.
#[test]
fn a_refused_tcp_connection_fails_the_call_at_once() -> Result<()> {
    // A port nothing listens on: bound, then closed.
    let closed_port = std::net::TcpListener::bind((host(23), 0))?
        .local_addr()?
        .port();
    let contact = format!("<sip:bob@{}:{closed_port};transport=tcp>", host(23));
    call_to_unreachable_contact_gets_503_at_once(&contact, 23, 24)
}
