//! The routing chain against a real name server and SIPp providers: a number reaches its
//! provider through ENUM and RFC 3263 (NAPTR, SRV, A), a provider that is down or busy
//! hands the call to the next SRV target, nothing is relayed for a stranger, a URI naming
//! the node's own address is the node, and broken DNS data ends in a SIP error.
//!
//! The name server is hickory-server in this process on 127.0.0.1; the node asks it
//! (`[routing] dns_servers`). Providers are SIPp `uas` processes, or bare sockets where the
//! test only needs to see what arrives. Loopback only.

use anyhow::{ensure, Context, Result};
use p2psip_tests::name_server::{NameServer, Zone};
use p2psip_tests::requests::{challenge, ensure_silent, invite, message, next_request};
use p2psip_tests::{
    free_port, require_sipp, run_p2psip, test_dir, Node, NodeConfig, Request, Sipp, TestDir,
    TestUsers, Transport, UdpClient, DOMAIN,
};
use sip::auth::authorization_value;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

const REPLY_LIMIT: Duration = Duration::from_secs(5);
const SIPP_LIMIT: Duration = Duration::from_secs(30);
const LISTEN_LIMIT: Duration = Duration::from_secs(10);
const CNONCE: &str = "0a4f113b";
/// The number the tests call, and its ENUM domain under e164.arpa.
const NUMBER: &str = "+4312345";
const NUMBER_ENUM: &str = "5.4.3.2.1.3.4.e164.arpa";
/// The digits the ENUM rule keeps: the provider's user part.
const PROVIDER_USER: &str = "12345";
/// Digest algorithms SIPp answers.
const SIPP_DIGEST_ALGORITHMS: &str = "MD5,SHA-256";

/// The ENUM zone: `NUMBER` maps to `sip:12345@itsp-a.example`.
fn enum_zone() -> Result<Zone> {
    Zone::new("e164.arpa")?.naptr(
        NUMBER_ENUM,
        (100, 10),
        "u",
        "E2U+sip",
        r"!^\+43(.*)$!sip:\1@itsp-a.example!",
        ".",
    )
}

/// A provider domain whose NAPTR points at UDP SRV records, one per `(priority, port)`,
/// each target `sipN.<domain>` at 127.0.0.1.
fn provider_zone(domain: &str, service: &str, targets: &[(u16, u16)]) -> Result<Zone> {
    let (srv_name, naptr_service) = match service {
        "tcp" => (format!("_sip._tcp.{domain}"), "SIP+D2T"),
        _ => (format!("_sip._udp.{domain}"), "SIP+D2U"),
    };
    let mut zone = Zone::new(domain)?.naptr(domain, (10, 10), "s", naptr_service, "", &srv_name)?;
    for (index, (priority, port)) in targets.iter().enumerate() {
        let target = format!("sip{index}.{domain}");
        zone = zone
            .srv(&srv_name, *priority, 10, *port, &target)?
            .a(&target, Ipv4Addr::LOCALHOST)?;
    }
    Ok(zone)
}

/// `zone` with 60 ENUM NAPTRs of 100-odd bytes at `owner`: far beyond 512 bytes, so an
/// answer over UDP is truncated. The best (lowest preference) maps the number to
/// `sip:<digits>-000@itsp-a.example;...`.
fn with_huge_naptr_set(mut zone: Zone, owner: &str) -> Result<Zone> {
    for preference in 0..60u16 {
        zone = zone.naptr(
            owner,
            (100, 100 + preference),
            "u",
            "E2U+sip",
            &format!(r"!^\+43(.*)$!sip:\1-{preference:03}@itsp-a.example;some-long-parameter=padding-padding!"),
            ".",
        )?;
    }
    Ok(zone)
}

/// A config file naming the test's name server, plus `extra` TOML.
fn routing_config(dir: &TestDir, dns: SocketAddr, extra: &str) -> Result<PathBuf> {
    let path = dir.path().join("routing.toml");
    std::fs::write(
        &path,
        format!("[routing]\ndns_servers = [\"{dns}\"]\n{extra}"),
    )?;
    Ok(path)
}

/// A node with `users` and the routing config, challenging with digests SIPp answers.
fn node_with_users(dir: &TestDir, users: &TestUsers, config: &Path) -> Result<Node> {
    let users_toml = dir.path().join("users.toml");
    users.write_users_toml(&users_toml)?;
    let mut node_config =
        NodeConfig::with_users(&users_toml).digest_algorithms(SIPP_DIGEST_ALGORITHMS);
    node_config.extra_args = vec!["--config".into(), config.display().to_string()];
    Node::start(&node_config)
}

/// A SIPp provider answering calls on a free port over `transport`.
fn provider(scenario: &str, transport: Transport, calls: u32) -> Result<p2psip_tests::SippProcess> {
    Sipp::new(scenario)
        .transport(transport)
        .calls(calls)
        .timeout(SIPP_LIMIT)
        .spawn_listening(LISTEN_LIMIT)
}

/// SIPp as a phone of the node: `calls` authenticated calls to `uri`.
fn call_from_phone(
    node: &Node,
    dir: &TestDir,
    users: &TestUsers,
    uri: &str,
    calls: u32,
) -> Result<p2psip_tests::SippOutcome> {
    let csv = dir.path().join("caller.csv");
    users.write_auth_csv(&csv, false)?;
    // The digest-uri is the Request-URI; SIPp writes "sip:" before -auth_uri itself.
    let auth_uri = uri.strip_prefix("sip:").context("a SIP URI")?;
    Sipp::new("uac_call_auth.xml")
        .remote(node.udp_addr())
        .inf(&csv)
        .key("uri", uri)
        .key("domain", DOMAIN)
        .arg("-auth_uri")
        .arg(auth_uri)
        .calls(calls)
        .timeout(SIPP_LIMIT)
        .run()
}

/// Acceptance 1: a phone calls a number at its own domain (`user=phone`); ENUM maps it to
/// itsp-a.example, whose NAPTR and SRV lead to the SIPp provider, which gets every call.
#[test]
fn a_number_reaches_its_provider_through_enum_and_rfc3263() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    let dir = test_dir("routing-enum-")?;
    const CALLS: u32 = 3;
    let provider = provider("uas_call.xml", Transport::Udp, CALLS)?;
    let dns = NameServer::start(vec![
        enum_zone()?,
        provider_zone("itsp-a.example", "udp", &[(10, provider.local_port())])?,
    ])?;
    let config = routing_config(&dir, dns.addr(), "")?;
    let users = TestUsers::generate(1, DOMAIN);
    let node = node_with_users(&dir, &users, &config)?;
    let uri = format!("sip:{NUMBER}@{DOMAIN};user=phone");
    let caller = call_from_phone(&node, &dir, &users, &uri, CALLS)?;
    let answered = provider.wait()?;
    node.context(caller.ensure_success())?;
    node.context(answered.ensure_success())?;
    ensure!(
        answered.successful_calls() == Some(u64::from(CALLS)),
        "the provider answered {:?} of {CALLS} calls\n{answered}",
        answered.successful_calls()
    );
    Ok(())
}

/// Acceptance 1 (failover): the first SRV target answers 503, so the second gets the call;
/// over TCP, the first target's port is closed, so the second gets it at once.
#[test]
fn a_provider_that_is_busy_or_down_hands_the_call_to_the_next() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    let dir = test_dir("routing-failover-")?;
    let busy = provider("uas_unavailable.xml", Transport::Udp, 1)?;
    let healthy = provider("uas_call.xml", Transport::Udp, 1)?;
    let tcp_healthy = provider("uas_call.xml", Transport::Tcp, 1)?;
    let closed = free_port()?;
    let dns = NameServer::start(vec![
        provider_zone(
            "itsp-b.example",
            "udp",
            &[(10, busy.local_port()), (20, healthy.local_port())],
        )?,
        provider_zone(
            "itsp-c.example",
            "tcp",
            &[(10, closed), (20, tcp_healthy.local_port())],
        )?,
    ])?;
    let config = routing_config(&dir, dns.addr(), "")?;
    let users = TestUsers::generate(1, DOMAIN);
    let node = node_with_users(&dir, &users, &config)?;

    let caller = call_from_phone(&node, &dir, &users, "sip:bob@itsp-b.example", 1)?;
    node.context(caller.ensure_success())?;
    node.context(busy.wait()?.ensure_success())?;
    node.context(healthy.wait()?.ensure_success())?;

    let caller = call_from_phone(&node, &dir, &users, "sip:carol@itsp-c.example", 1)?;
    node.context(caller.ensure_success())?;
    node.context(tcp_healthy.wait()?.ensure_success())?;
    Ok(())
}

/// Static peering: a number with no ENUM record goes to the longest-prefix route's
/// gateways in order; the first answers 503, the second takes the call as
/// `sip:<number>@<gateway>;user=phone`.
#[test]
fn a_prefix_route_fails_over_between_its_gateways() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    let dir = test_dir("routing-peering-")?;
    let busy = provider("uas_unavailable.xml", Transport::Udp, 1)?;
    let healthy = provider("uas_call.xml", Transport::Udp, 1)?;
    let dns = NameServer::start(vec![enum_zone()?])?;
    let config = routing_config(
        &dir,
        dns.addr(),
        &format!(
            "[[routing.peer]]\n\
             name = \"germany\"\n\
             prefixes = [\"+49\"]\n\
             gateways = [\"udp:127.0.0.1:{}\", \"udp:127.0.0.1:{}\"]\n\
             [[routing.peer]]\n\
             name = \"elsewhere\"\n\
             prefixes = [\"+4\"]\n\
             gateways = [\"udp:192.0.2.1:5060\"]\n",
            busy.local_port(),
            healthy.local_port()
        ),
    )?;
    let users = TestUsers::generate(1, DOMAIN);
    let node = node_with_users(&dir, &users, &config)?;
    let uri = format!("sip:+4930123@{DOMAIN};user=phone");
    let caller = call_from_phone(&node, &dir, &users, &uri, 1)?;
    node.context(caller.ensure_success())?;
    node.context(busy.wait()?.ensure_success())?;
    node.context(healthy.wait()?.ensure_success())?;
    Ok(())
}

/// Acceptance 3: on a node with users, an unauthenticated INVITE or MESSAGE to a tel: URI,
/// a foreign domain and a foreign IP literal each gets 407 and nothing reaches the
/// provider; authenticated, the tel: call is routed (ENUM's URI as Request-URI). On an
/// `--open` node the same requests get 403.
#[test]
fn nothing_is_relayed_for_a_stranger_and_an_authenticated_user_is_routed() -> Result<()> {
    let dir = test_dir("routing-relay-")?;
    let provider = UdpClient::bind(Ipv4Addr::LOCALHOST, SocketAddr::from(([127, 0, 0, 1], 9)))?;
    let dns = NameServer::start(vec![
        enum_zone()?,
        provider_zone(
            "itsp-a.example",
            "udp",
            &[(10, provider.local_addr().port())],
        )?,
    ])?;
    let config = routing_config(&dir, dns.addr(), "")?;
    let users = TestUsers::generate(1, DOMAIN);
    let node = node_with_users(&dir, &users, &config)?;
    let client = UdpClient::new(node.udp_addr())?;
    let (user, password) = &users.users[0];
    let from = format!("sip:{user}@{DOMAIN}");
    let targets = [
        format!("tel:{NUMBER}"),
        "sip:bob@itsp-a.example".to_string(),
        format!("sip:bob@{}", provider.local_addr()),
    ];
    let result = (|| -> Result<()> {
        for target in &targets {
            for request in [
                invite(&client, target, &from),
                message(&client, target, &from),
            ] {
                let response = client.expect_response(&request, REPLY_LIMIT)?;
                ensure!(
                    response.status == 407 && response.header("Proxy-Authenticate").is_some(),
                    "{target}: expected 407 with a challenge, got:\n{}",
                    response.raw
                );
            }
        }
        ensure_silent(&provider, "the provider")?;

        let uri = format!("tel:{NUMBER}");
        let first = invite(&client, &uri, &from);
        let required = client.expect_response(&first, REPLY_LIMIT)?;
        let challenge = challenge(&required, "Proxy-Authenticate")?;
        let credentials =
            authorization_value(&challenge, user, password, "INVITE", &uri, CNONCE, 1)
                .context("answering the 407")?;
        let mut second = invite(&client, &uri, &from)
            .set("CSeq", "2 INVITE")
            .with("Proxy-Authorization", &credentials);
        if let Some(call_id) = first.call_id() {
            second = second.set("Call-ID", call_id);
        }
        client.send(&second.to_bytes())?;
        let forwarded = next_request(&provider, REPLY_LIMIT)?
            .context("the authenticated call did not reach the provider")?;
        let expected = format!("INVITE sip:{PROVIDER_USER}@itsp-a.example SIP/2.0");
        ensure!(forwarded.starts_with(&expected), "{forwarded}");
        Ok(())
    })();
    node.context(result)?;
    // That node retransmits the INVITE the provider never answers: stop it, and drain.
    let mut node = node;
    node.stop();
    for _ in 0..20 {
        if next_request(&provider, Duration::from_millis(300))?.is_none() {
            break;
        }
    }

    let mut open = NodeConfig::open();
    open.extra_args = vec!["--config".into(), config.display().to_string()];
    let node = Node::start(&open)?;
    let client = UdpClient::new(node.udp_addr())?;
    let result = (|| -> Result<()> {
        for target in &targets {
            for request in [
                invite(&client, target, &from),
                message(&client, target, &from),
            ] {
                let response = client.expect_response(&request, REPLY_LIMIT)?;
                ensure!(
                    response.status == 403 && response.reason.contains("relaying not allowed"),
                    "--open, {target}: expected 403, got:\n{}",
                    response.raw
                );
            }
        }
        ensure_silent(&provider, "the provider")
    })();
    node.context(result)
}

/// Acceptance 4: a REGISTER to `sip:<node address>` is the node's own, and a call to
/// `bob@<node address>:<port>` reaches the phone registered as bob@example.com.
#[test]
fn the_node_s_own_address_stands_for_its_domain() -> Result<()> {
    let node = Node::start(&NodeConfig::open())?;
    let bob = UdpClient::bind(Ipv4Addr::new(127, 0, 0, 31), node.udp_addr())?;
    let caller = UdpClient::bind(Ipv4Addr::new(127, 0, 0, 32), node.udp_addr())?;
    let result = (|| -> Result<()> {
        let register = Request::new("REGISTER", "sip:127.0.0.1", &bob)
            .set("From", &format!("<sip:bob@{DOMAIN}>;tag=r1"))
            .set("To", &format!("<sip:bob@{DOMAIN}>"))
            .set("CSeq", "1 REGISTER")
            .with("Contact", &format!("<sip:bob@{}>", bob.local_addr()))
            .with("Expires", "600");
        let ok = bob.expect_response(&register, REPLY_LIMIT)?;
        ensure!(
            ok.status == 200,
            "REGISTER to the node's address:\n{}",
            ok.raw
        );
        ensure!(
            ok.header("Contact").is_some(),
            "not the registrar's answer:\n{}",
            ok.raw
        );
        let uri = format!("sip:bob@{}", node.udp_addr());
        caller.send(&invite(&caller, &uri, "sip:alice@elsewhere.example").to_bytes())?;
        let delivered = next_request(&bob, REPLY_LIMIT)?
            .context("the call to bob at the node's address did not reach bob")?;
        ensure!(
            delivered.starts_with("INVITE sip:bob@127.0.0.31"),
            "{delivered}"
        );
        Ok(())
    })();
    node.context(result)
}

/// Acceptance 6: broken DNS data ends in a SIP error whose reason names the fault, and a
/// warning in the log: a bad regexp, a loop of non-terminal NAPTRs, a CNAME loop (no
/// record at its end). A huge
/// answer (truncated over UDP, complete over TCP) is used. The caller is a trusted peer so
/// that no challenge hides the routing answer.
#[test]
fn broken_dns_data_is_a_clear_sip_error() -> Result<()> {
    let dir = test_dir("routing-broken-")?;
    let provider = UdpClient::bind(Ipv4Addr::LOCALHOST, SocketAddr::from(([127, 0, 0, 1], 9)))?;
    let number = |last: char| format!("+43{}", std::iter::repeat_n(last, 4).collect::<String>());
    let enum_name = |last: char| format!("{last}.{last}.{last}.{last}.3.4.e164.arpa");
    let mut zone = Zone::new("e164.arpa")?
        .naptr(
            &enum_name('1'),
            (10, 10),
            "u",
            "E2U+sip",
            r"!^(.*$!sip:\1@x.example!",
            ".",
        )?
        .naptr(
            &enum_name('2'),
            (10, 10),
            "",
            "E2U+sip",
            "",
            &enum_name('2'),
        )?
        .cname(&enum_name('3'), "loop-a.e164.arpa")?
        .cname("loop-a.e164.arpa", "loop-b.e164.arpa")?
        .cname("loop-b.e164.arpa", "loop-a.e164.arpa")?;
    zone = with_huge_naptr_set(zone, &enum_name('4'))?;
    let dns = NameServer::start(vec![
        zone,
        provider_zone(
            "itsp-a.example",
            "udp",
            &[(10, provider.local_addr().port())],
        )?,
    ])?;
    let config = routing_config(&dir, dns.addr(), "")?;
    let mut open = NodeConfig::open();
    open.extra_args = vec![
        "--config".into(),
        config.display().to_string(),
        "--trusted-peer".into(),
        "127.0.0.0/8".into(),
    ];
    let node = Node::start(&open)?;
    let client = UdpClient::new(node.udp_addr())?;
    let result = (|| -> Result<()> {
        for (last, status, fault) in [
            ('1', 404, "bad NAPTR regexp"),
            ('2', 404, "NAPTR loop"),
            ('3', 404, "CNAME"),
        ] {
            let uri = format!("tel:{}", number(last));
            let response =
                client.expect_response(&invite(&client, &uri, "sip:a@b.example"), REPLY_LIMIT)?;
            ensure!(
                response.status == status && response.reason.contains(fault),
                "{uri}: expected {status} naming {fault:?}, got:\n{}",
                response.raw
            );
        }
        ensure_silent(&provider, "the provider")?;
        let uri = format!("tel:{}", number('4'));
        client.send(&invite(&client, &uri, "sip:a@b.example").to_bytes())?;
        let forwarded = next_request(&provider, REPLY_LIMIT)?
            .context("the number with a huge NAPTR set was not routed")?;
        ensure!(
            forwarded.starts_with("INVITE sip:4444-000@itsp-a.example;"),
            "the best NAPTR (lowest preference) was not used:\n{forwarded}"
        );
        let log = node.stderr_tail();
        for warning in ["unusable ENUM record", "ENUM NAPTR loop", "CNAME"] {
            ensure!(log.contains(warning), "no {warning:?} in the log:\n{log}");
        }
        Ok(())
    })();
    node.context(result)
}

/// Acceptance 5: `p2psip route` explains each decision with the node's configuration, and
/// `p2psip enum` shows the ENUM step alone.
#[test]
fn route_explains_its_decisions() -> Result<()> {
    let dir = test_dir("routing-explain-")?;
    let dns = NameServer::start(vec![
        enum_zone()?,
        provider_zone("itsp-a.example", "udp", &[(10, 5070)])?,
        provider_zone("itsp-b.example", "udp", &[(10, 5071), (20, 5072)])?,
        // A domain that exists but has no SIP service.
        Zone::new("nowhere.example")?,
    ])?;
    let config = routing_config(&dir, dns.addr(), "")?;
    let route = |what: &str, uri: &str| -> Result<p2psip_tests::CommandOutcome> {
        run_p2psip(
            &[
                what.to_string(),
                uri.to_string(),
                "--config".into(),
                config.display().to_string(),
                "--domain".into(),
                DOMAIN.into(),
                "--listen".into(),
                "udp:127.0.0.1:5060".into(),
                "--no-overlay".into(),
            ],
            Duration::from_secs(20),
        )
    };
    let out = route("route", &format!("tel:{NUMBER}"))?;
    for expected in [
        "class: outside the served domains",
        "ENUM: 5.4.3.2.1.3.4.e164.arpa.: NAPTR",
        "gives sip:12345@itsp-a.example",
        "RFC 3263: SRV _sip._udp.itsp-a.example.",
        "1. udp 127.0.0.1:5070 with Request-URI sip:12345@itsp-a.example",
    ] {
        ensure!(
            out.success() && out.stdout.contains(expected),
            "no {expected:?} in:\n{out:?}"
        );
    }
    let out = route("route", "sip:bob@itsp-b.example")?;
    ensure!(
        out.stdout.contains("1. udp 127.0.0.1:5071")
            && out.stdout.contains("2. udp 127.0.0.1:5072"),
        "the SRV targets in priority order:\n{out:?}"
    );
    let out = route("route", "sip:bob@nowhere.example")?;
    ensure!(
        out.exit_code == Some(1) && out.stdout.contains("decision: 404 Not Found"),
        "an unknown domain:\n{out:?}"
    );
    let out = route("route", "sip:127.0.0.1")?;
    ensure!(out.stdout.contains("this node itself"), "myself:\n{out:?}");
    let out = route("enum", NUMBER)?;
    ensure!(
        out.success() && out.stdout.contains("result: sip:12345@itsp-a.example"),
        "{out:?}"
    );
    let out = route("enum", "12345")?;
    ensure!(out.exit_code == Some(2), "not a number:\n{out:?}");
    Ok(())
}

/// Acceptance 6, truncation: over UDP alone, the huge answer arrives truncated and cannot
/// be fetched whole; the call gets 480 naming the failed lookup, and the log says why.
#[test]
fn a_truncated_answer_that_cannot_be_refetched_is_a_clear_sip_error() -> Result<()> {
    let dir = test_dir("routing-truncated-")?;
    let zone = with_huge_naptr_set(Zone::new("e164.arpa")?, NUMBER_ENUM)?;
    let dns = NameServer::start_udp_only(vec![zone])?;
    let config = routing_config(&dir, dns.addr(), "")?;
    let mut open = NodeConfig::open();
    open.extra_args = vec![
        "--config".into(),
        config.display().to_string(),
        "--trusted-peer".into(),
        "127.0.0.0/8".into(),
    ];
    let node = Node::start(&open)?;
    let client = UdpClient::new(node.udp_addr())?;
    let result = (|| -> Result<()> {
        let uri = format!("tel:{NUMBER}");
        let response = client.expect_response(
            &invite(&client, &uri, "sip:a@b.example"),
            Duration::from_secs(15),
        )?;
        ensure!(
            response.status == 480 && response.reason.contains("ENUM lookup failed"),
            "expected 480 naming the failed ENUM lookup, got:\n{}",
            response.raw
        );
        let log = node.stderr_tail();
        ensure!(
            log.contains("ENUM lookup failed"),
            "no warning in the log:\n{log}"
        );
        Ok(())
    })();
    node.context(result)
}
