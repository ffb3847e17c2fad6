//! One node on loopback, driven by SIPp and by hand-written SIP over UDP.
//!
//! Every test starts its own node. SIPp tests fail when SIPp is missing unless
//! `P2PSIP_SKIP_SIPP=1`.

use anyhow::{ensure, Context, Result};
use p2psip_tests::{
    require_sipp, test_dir, Node, NodeConfig, Request, Response, Sipp, SippOutcome, TestUsers,
    Transport, UdpClient, DOMAIN,
};
use sip::auth::{authorization_value, first_supported_challenge, Algorithm, DigestChallenge};
use std::time::Duration;

const REPLY_LIMIT: Duration = Duration::from_secs(5);

/// Registers `user@DOMAIN` at the node with the contact `127.0.0.1:contact_port` over
/// `transport`, through SIPp (`register_contact.xml`).
fn register_contact(
    node: &Node,
    transport: Transport,
    user: &str,
    contact_port: u16,
) -> Result<()> {
    let outcome = Sipp::new("register_contact.xml")
        .remote(node.addr(transport))
        .transport(transport)
        .key("user", user)
        .key("domain", DOMAIN)
        .key("contact_port", &contact_port.to_string())
        .key("contact_transport", transport.name())
        .arg("-default_behaviors")
        .arg("all,-bye")
        .timeout(Duration::from_secs(30))
        .run()?;
    outcome
        .ensure_success()
        .with_context(|| format!("registering {user} -> 127.0.0.1:{contact_port}"))
}

/// Runs `calls` calls of `uac` (from a SIPp client) to `bob@DOMAIN`, answered by a SIPp
/// server running `uas` that registered itself as bob, all through one open node.
fn run_through_node(
    transport: Transport,
    uas: &str,
    uac: &str,
    calls: u32,
    rate: u32,
) -> Result<(SippOutcome, SippOutcome)> {
    let mut node = Node::start(&NodeConfig::open())?;
    let server = Sipp::new(uas)
        .transport(transport)
        .calls(calls)
        .recv_timeout(None)
        .timeout(Duration::from_secs(90))
        .spawn_listening(Duration::from_secs(10))?;
    node.context(register_contact(
        &node,
        transport,
        "bob",
        server.local_port(),
    ))?;

    let client = Sipp::new(uac)
        .remote(node.addr(transport))
        .transport(transport)
        .service("bob")
        .key("domain", DOMAIN)
        .calls(calls)
        .rate(rate)
        .limit(10)
        .timeout(Duration::from_secs(60))
        .run()?;
    // The server exits by itself after its last call; when the client failed some calls
    // it would wait for them until its timeout, so it is stopped instead.
    let server = if client.success() {
        server.wait()?
    } else {
        server.kill()
    };
    let result = (|| {
        client.ensure_success()?;
        server.ensure_success()?;
        ensure!(
            client.successful_calls() == Some(u64::from(calls)),
            "client: {:?} successful calls of {calls}",
            client.successful_calls()
        );
        node.check_alive()
    })();
    node.context(
        result.with_context(|| format!("{uac} -> node -> {uas} over {transport}\n{server}")),
    )?;
    Ok((client, server))
}

// ---------------------------------------------------------------------------------------
// (a) REGISTER with digest authentication.

/// The challenge order the SIPp tests start the node with. SIPp 3.6.1 computes digest
/// with MD5 only and reads only the first challenge of a 401, so MD5 goes first; SHA-256
/// stays on offer second, and the queries answered by hand use it.
const SIPP_DIGEST_ALGORITHMS: &str = "MD5,SHA-256";

/// The client nonce of the hand-written answers.
const CNONCE: &str = "0a4f113b";

/// `count` users register with digest authentication through SIPp over `transport`,
/// talking straight to a node started with [`SIPP_DIGEST_ALGORITHMS`]. Afterwards a query
/// (REGISTER without Contact, over UDP, answered with SHA-256) for some of them lists the
/// binding SIPp created.
fn register_users_with_digest_auth(
    transport: Transport,
    count: u32,
    rate: u32,
    limit: u32,
) -> Result<()> {
    let dir = test_dir(&format!("register-{count}-{transport}-"))?;
    let users = TestUsers::generate(usize::try_from(count)?, DOMAIN);
    let users_toml = dir.path().join("users.toml");
    let csv = dir.path().join("users.csv");
    users.write_users_toml(&users_toml)?;
    users.write_auth_csv(&csv, false)?;

    let mut node = Node::start(
        &NodeConfig::with_users(&users_toml).digest_algorithms(SIPP_DIGEST_ALGORITHMS),
    )?;
    let outcome = Sipp::new("register_auth.xml")
        .remote(node.addr(transport))
        .transport(transport)
        .inf(&csv)
        .key("domain", DOMAIN)
        .arg("-auth_uri")
        .arg(DOMAIN)
        .arg("-default_behaviors")
        .arg("all,-bye")
        .calls(count)
        .rate(rate)
        .limit(limit)
        .timeout(Duration::from_secs(120))
        .run()?;
    node.context(outcome.ensure_success())?;
    ensure!(
        outcome.successful_calls() == Some(u64::from(count)),
        "{:?} successful REGISTER calls of {count} over {transport}\n{outcome}",
        outcome.successful_calls()
    );

    let client = UdpClient::new(node.udp_addr())?;
    let last = users.users.len() - 1;
    for i in [0, 1, last / 2, last - 1, last] {
        let (user, password) = &users.users[i];
        let result = (|| -> Result<()> {
            let (first, unauthorized) = unauthenticated_register(&client, user, false)?;
            let challenges = digest_challenges(&unauthorized)?;
            ensure!(
                algorithms(&challenges) == [Algorithm::Md5, Algorithm::Sha256],
                "expected an MD5 challenge, then a SHA-256 one:\n{}",
                unauthorized.raw
            );
            let sha256 = challenge_with(&challenges, Algorithm::Sha256)?;
            let query = answer_challenge(&client, &first, sha256, user, password, false)?;
            ensure!(query.status == 200, "query answered:\n{}", query.raw);
            let expected = format!("sip:{user}@127.0.0.1:");
            let tcp_param = format!("transport={transport}");
            ensure!(
                query
                    .header_all("Contact")
                    .iter()
                    .any(|c| c.contains(&expected)
                        && (transport == Transport::Udp
                            || c.to_ascii_lowercase().contains(&tcp_param))),
                "no binding {expected}... over {transport}:\n{}",
                query.raw
            );
            Ok(())
        })();
        node.context(result.with_context(|| format!("query for {user}")))?;
    }
    node.check_alive()
}

/// 1,000 users register with digest authentication through SIPp over UDP.
#[test]
fn register_1000_users_with_digest_auth_udp() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    register_users_with_digest_auth(Transport::Udp, 1000, 250, 100)
}

/// 200 users register with digest authentication through SIPp over one TCP connection.
#[test]
fn register_200_users_with_digest_auth_tcp() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    register_users_with_digest_auth(Transport::Tcp, 200, 100, 50)
}

/// Wrong passwords are refused with 401 (a new challenge) or 403, never 200. Fewer users
/// than a registrar would tolerate failures from one address before throttling, so each
/// goes through a challenge.
#[test]
fn register_with_wrong_password_is_refused() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    let dir = test_dir("register-wrong-")?;
    let users = TestUsers::generate(8, DOMAIN);
    let users_toml = dir.path().join("users.toml");
    let csv = dir.path().join("wrong.csv");
    users.write_users_toml(&users_toml)?;
    users.write_auth_csv(&csv, true)?;

    let mut node = Node::start(
        &NodeConfig::with_users(&users_toml).digest_algorithms(SIPP_DIGEST_ALGORITHMS),
    )?;
    let outcome = Sipp::new("register_wrong_password.xml")
        .remote(node.udp_addr())
        .inf(&csv)
        .key("domain", DOMAIN)
        .arg("-auth_uri")
        .arg(DOMAIN)
        .arg("-default_behaviors")
        .arg("all,-bye")
        .calls(8)
        .rate(10)
        .timeout(Duration::from_secs(60))
        .run()?;
    node.context(outcome.ensure_success())?;
    node.check_alive()
}

fn register_request(client: &UdpClient, user: &str, cseq: u32, contact: bool) -> Request {
    let aor = format!("<sip:{user}@{DOMAIN}>");
    let request = Request::new("REGISTER", &format!("sip:{DOMAIN}"), client)
        .set("From", &format!("{aor};tag=reg{user}"))
        .set("To", &aor)
        .set("CSeq", &format!("{cseq} REGISTER"));
    if contact {
        request
            .with("Contact", &format!("<sip:{user}@{}>", client.local_addr()))
            .with("Expires", "600")
    } else {
        request
    }
}

/// Sends a REGISTER for `user` without credentials (with a Contact of `client`'s address,
/// or none: a query) and returns it and the 401 it got.
fn unauthenticated_register(
    client: &UdpClient,
    user: &str,
    contact: bool,
) -> Result<(Request, Response)> {
    let register = register_request(client, user, 1, contact);
    let response = client.expect_response(&register, REPLY_LIMIT)?;
    ensure!(
        response.status == 401,
        "REGISTER without credentials: expected 401, got:\n{}",
        response.raw
    );
    Ok((register, response))
}

/// The digest challenges of a 401, in header order; each must be one the `sip` crate's
/// client can parse.
fn digest_challenges(response: &Response) -> Result<Vec<DigestChallenge<'_>>> {
    let values = response.header_all("WWW-Authenticate");
    ensure!(
        !values.is_empty(),
        "401 without a challenge:\n{}",
        response.raw
    );
    values
        .into_iter()
        .map(|value| DigestChallenge::parse(value).with_context(|| format!("challenge {value:?}")))
        .collect()
}

fn algorithms(challenges: &[DigestChallenge<'_>]) -> Vec<Algorithm> {
    challenges.iter().map(|c| c.algorithm).collect()
}

/// The first challenge of `algorithm`.
fn challenge_with<'c, 'v>(
    challenges: &'c [DigestChallenge<'v>],
    algorithm: Algorithm,
) -> Result<&'c DigestChallenge<'v>> {
    challenges
        .iter()
        .find(|c| c.algorithm == algorithm)
        .with_context(|| format!("no {} challenge in {challenges:?}", algorithm.as_str()))
}

/// Sends `first` again (same Call-ID, next CSeq) with an `Authorization` answering
/// `challenge` as `user` with `password`, and returns the response.
fn answer_challenge(
    client: &UdpClient,
    first: &Request,
    challenge: &DigestChallenge<'_>,
    user: &str,
    password: &str,
    contact: bool,
) -> Result<Response> {
    let uri = format!("sip:{DOMAIN}");
    let authorization = authorization_value(challenge, user, password, "REGISTER", &uri, CNONCE, 1)
        .with_context(|| format!("answering {challenge:?}"))?;
    let mut second =
        register_request(client, user, 2, contact).with("Authorization", &authorization);
    if let Some(call_id) = first.call_id() {
        second = second.set("Call-ID", call_id);
    }
    client.expect_response(&second, REPLY_LIMIT)
}

/// Registers `user` with a fresh challenge of `algorithm` and `password`; the response.
fn register_with(
    client: &UdpClient,
    user: &str,
    password: &str,
    algorithm: Algorithm,
) -> Result<Response> {
    let (first, unauthorized) = unauthenticated_register(client, user, true)?;
    let challenges = digest_challenges(&unauthorized)?;
    let challenge = challenge_with(&challenges, algorithm)?;
    answer_challenge(client, &first, challenge, user, password, true)
}

/// By default the registrar challenges with SHA-256 first, then MD5 (RFC 8760), and
/// accepts an answer to either; a wrong password is refused with 401 or 403.
#[test]
fn register_digest_default_sha256_then_md5_by_hand() -> Result<()> {
    let dir = test_dir("register-raw-")?;
    let users = TestUsers::generate(4, DOMAIN);
    let users_toml = dir.path().join("users.toml");
    users.write_users_toml(&users_toml)?;
    let node = Node::start(&NodeConfig::with_users(&users_toml))?;
    let client = UdpClient::new(node.udp_addr())?;

    let result = (|| -> Result<()> {
        let (user, password) = &users.users[0];
        let (first, unauthorized) = unauthenticated_register(&client, user, true)?;
        let challenges = digest_challenges(&unauthorized)?;
        ensure!(
            algorithms(&challenges) == [Algorithm::Sha256, Algorithm::Md5],
            "expected a SHA-256 challenge, then an MD5 one:\n{}",
            unauthorized.raw
        );
        // What a client of the `sip` crate answers: the first challenge it supports.
        let preferred = first_supported_challenge(unauthorized.header_all("WWW-Authenticate"))
            .context("no supported challenge")?;
        ensure!(
            preferred.algorithm == Algorithm::Sha256,
            "first supported challenge: {preferred:?}"
        );
        let ok = answer_challenge(&client, &first, &preferred, user, password, true)?;
        ensure!(ok.status == 200, "SHA-256 answer refused:\n{}", ok.raw);
        ensure!(
            ok.header("Contact").is_some(),
            "200 to REGISTER lists no Contact:\n{}",
            ok.raw
        );

        let (user, password) = &users.users[1];
        let ok = register_with(&client, user, password, Algorithm::Md5)?;
        ensure!(ok.status == 200, "MD5 answer refused:\n{}", ok.raw);

        let (user, _) = &users.users[2];
        for algorithm in [Algorithm::Sha256, Algorithm::Md5] {
            let refused = register_with(&client, user, "not-the-password", algorithm)?;
            ensure!(
                refused.status == 401 || refused.status == 403,
                "wrong {} password: expected 401 or 403, got:\n{}",
                algorithm.as_str(),
                refused.raw
            );
        }
        Ok(())
    })();
    node.context(result)
}

/// A node started with `--digest-algorithms MD5` challenges with MD5 only, accepts an MD5
/// answer, and refuses a SHA-256 answer (with the right password) without registering it.
#[test]
fn register_digest_md5_only_refuses_sha256() -> Result<()> {
    let dir = test_dir("register-md5-only-")?;
    let users = TestUsers::generate(2, DOMAIN);
    let users_toml = dir.path().join("users.toml");
    users.write_users_toml(&users_toml)?;
    let node = Node::start(&NodeConfig::with_users(&users_toml).digest_algorithms("MD5"))?;
    let client = UdpClient::new(node.udp_addr())?;

    let result = (|| -> Result<()> {
        let (user, password) = &users.users[0];
        let (first, unauthorized) = unauthenticated_register(&client, user, true)?;
        let challenges = digest_challenges(&unauthorized)?;
        ensure!(
            algorithms(&challenges) == [Algorithm::Md5],
            "expected one MD5 challenge:\n{}",
            unauthorized.raw
        );
        let ok = answer_challenge(&client, &first, &challenges[0], user, password, true)?;
        ensure!(ok.status == 200, "MD5 answer refused:\n{}", ok.raw);

        // The MD5 challenge's realm and nonce, answered as if it had offered SHA-256.
        let (user, password) = &users.users[1];
        let (first, unauthorized) = unauthenticated_register(&client, user, true)?;
        let challenges = digest_challenges(&unauthorized)?;
        let md5 = challenge_with(&challenges, Algorithm::Md5)?;
        let sha256 = DigestChallenge {
            algorithm: Algorithm::Sha256,
            ..md5.clone()
        };
        let refused = answer_challenge(&client, &first, &sha256, user, password, true)?;
        ensure!(
            refused.status == 401 || refused.status == 403,
            "SHA-256 answer to an MD5-only node: expected 401 or 403, got:\n{}",
            refused.raw
        );

        // No binding came of it: a query answered with MD5 lists none for the user.
        let (first, unauthorized) = unauthenticated_register(&client, user, false)?;
        let challenges = digest_challenges(&unauthorized)?;
        let md5 = challenge_with(&challenges, Algorithm::Md5)?;
        let query = answer_challenge(&client, &first, md5, user, password, false)?;
        ensure!(query.status == 200, "query answered:\n{}", query.raw);
        let binding = format!("sip:{user}@");
        ensure!(
            !query
                .header_all("Contact")
                .iter()
                .any(|c| c.contains(&binding)),
            "a refused REGISTER left a binding:\n{}",
            query.raw
        );
        Ok(())
    })();
    node.context(result)
}

// ---------------------------------------------------------------------------------------
// (b)-(e) Calls, MESSAGE and CANCEL through the node, over UDP and TCP.

const CALLS: u32 = 20;

#[test]
fn call_through_node_udp() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    run_through_node(Transport::Udp, "uas_call.xml", "uac_call.xml", CALLS, 10).map(drop)
}

#[test]
fn call_through_node_tcp() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    run_through_node(Transport::Tcp, "uas_call.xml", "uac_call.xml", CALLS, 10).map(drop)
}

#[test]
fn message_through_node_udp() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    run_through_node(Transport::Udp, "uas_message.xml", "uac_message.xml", 10, 10).map(drop)
}

#[test]
fn message_through_node_tcp() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    run_through_node(Transport::Tcp, "uas_message.xml", "uac_message.xml", 10, 10).map(drop)
}

#[test]
fn cancel_ringing_call_udp() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    run_through_node(Transport::Udp, "uas_cancel.xml", "uac_cancel.xml", 10, 5).map(drop)
}

#[test]
fn cancel_ringing_call_tcp() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    run_through_node(Transport::Tcp, "uas_cancel.xml", "uac_cancel.xml", 10, 5).map(drop)
}

// ---------------------------------------------------------------------------------------
// (f) Malformed and unsupported requests over raw UDP.

fn expect_status(client: &UdpClient, request: &Request, status: u16) -> Result<Response> {
    let response = client.expect_response(request, REPLY_LIMIT)?;
    ensure!(
        response.status == status,
        "expected {status}, got {} {} for:\n{}\nresponse:\n{}",
        response.status,
        response.reason,
        String::from_utf8_lossy(&request.to_bytes()),
        response.raw
    );
    Ok(response)
}

/// An Allow header is present and lists OPTIONS (and not `absent`). What else it lists is
/// the node's choice: the methods it handles as a proxy, or only those it accepts itself.
fn check_allow(response: &Response, absent: Option<&str>) -> Result<()> {
    let allow = response.tokens("Allow");
    ensure!(
        allow.iter().any(|m| m.eq_ignore_ascii_case("OPTIONS")),
        "Allow {allow:?} lacks OPTIONS:\n{}",
        response.raw
    );
    if let Some(absent) = absent {
        ensure!(
            !allow.iter().any(|m| m.eq_ignore_ascii_case(absent)),
            "Allow {allow:?} lists {absent}:\n{}",
            response.raw
        );
    }
    Ok(())
}

#[test]
fn options_and_unsupported_requests() -> Result<()> {
    let node = Node::start(&NodeConfig::open())?;
    let client = UdpClient::new(node.udp_addr())?;
    let me = format!("sip:{}", node.udp_addr());
    let result = (|| -> Result<()> {
        let ok = expect_status(&client, &Request::new("OPTIONS", &me, &client), 200)?;
        check_allow(&ok, None)?;

        let unknown = expect_status(&client, &Request::new("FROBNICATE", &me, &client), 405)?;
        check_allow(&unknown, Some("FROBNICATE"))?;

        let require = Request::new("OPTIONS", &me, &client).with("Require", "foo");
        let unsupported = expect_status(&client, &require, 420)?;
        ensure!(
            unsupported.tokens("Unsupported").iter().any(|t| t == "foo"),
            "420 without `Unsupported: foo`:\n{}",
            unsupported.raw
        );
        Ok(())
    })();
    node.context(result)
}

#[test]
fn malformed_input_gets_errors_not_a_crash() -> Result<()> {
    let mut node = Node::start(&NodeConfig::open())?;
    let client = UdpClient::new(node.udp_addr())?;
    let me = format!("sip:{}", node.udp_addr());
    let result =
        (|| -> Result<()> {
            let no_call_id = Request::new("OPTIONS", &me, &client).without("Call-ID");
            let bad = expect_status(&client, &no_call_id, 400)?;
            ensure!(
                bad.reason.to_ascii_lowercase().contains("call-id"),
                "400 reason phrase {:?} does not name Call-ID",
                bad.reason
            );

            let sip7 = Request::new("OPTIONS", &me, &client).version("SIP/7.0");
            expect_status(&client, &sip7, 505)?;

            let bob = format!("sip:bob@{DOMAIN}");
            let exhausted = Request::new("MESSAGE", &bob, &client)
                .set("Max-Forwards", "0")
                .body("text/plain", b"hop limit");
            expect_status(&client, &exhausted, 483)?;

            // Garbage: none of it may take the node down. Answers, if any, are not checked.
            let long_line = format!("INVITE sip:{} SIP/2.0\r\n", "a".repeat(60_000));
            let garbage: Vec<Vec<u8>> =
                vec![
            b"\x00\x01\x02\x03\xff\xfe\xfd".to_vec(),
            b"\r\n\r\n".to_vec(),
            b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
            b"INVITE\r\n\r\n".to_vec(),
            b"INVITE sip:bob@example.com SIP/2.0\r\nVia: \r\nContent-Length: 99999\r\n\r\nx"
                .to_vec(),
            b"OPTIONS sip:x SIP/2.0\r\nCSeq: notanumber OPTIONS\r\nCall-ID: a\r\n\r\n".to_vec(),
            b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK\
              \r\nFrom: <>\r\nTo: <>\r\nCall-ID: \xc3\x28\r\nCSeq: 1 REGISTER\r\n\r\n"
                .to_vec(),
            "\u{1F600} BYE sip:\u{1F600} SIP/2.0\r\n\r\n".as_bytes().to_vec(),
            long_line.into_bytes(),
            (0u32..1400).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(),
        ];
            for datagram in &garbage {
                client.send(datagram)?;
            }
            // Drain whatever came back, bounded.
            for _ in 0..50 {
                if client.recv(Duration::from_millis(100))?.is_none() {
                    break;
                }
            }
            node.check_alive()?;

            let ok = expect_status(&client, &Request::new("OPTIONS", &me, &client), 200)?;
            check_allow(&ok, None)?;
            Ok(())
        })();
    node.context(result)
}
