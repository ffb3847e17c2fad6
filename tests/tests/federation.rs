//! Two p2psip nodes in a closed federation, over TLS with the federation's certificates:
//! node A (example.com) calls bob at node B (itsp-b.example) because itsp-b.example
//! announces, in a domain-policy NAPTR, the federation both belong to; B takes inbound
//! calls only from authenticated peers (a federation member's client certificate, or a
//! configured peer address). A domain announcing another federation is refused by A, and
//! a node that reaches B over TLS without a client certificate is refused by B.
//!
//! The CA, the certificates and the DNS zones are made by the test; the name server is
//! hickory-server in this process. Loopback only; "hosts" are 127.0.0.x addresses.

use anyhow::{ensure, Context, Result};
use p2psip_tests::certificates::TestCa;
use p2psip_tests::name_server::{NameServer, Zone};
use p2psip_tests::requests::{invite, next_request};
use p2psip_tests::{
    free_port, require_sipp, run_p2psip, test_dir, Node, NodeConfig, Request, Sipp, TestDir,
    TestUsers, Transport, UdpClient, DOMAIN,
};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

const REPLY_LIMIT: Duration = Duration::from_secs(10);
const SIPP_LIMIT: Duration = Duration::from_secs(30);
const FEDERATION: &str = "http://fedx.example/";
const DOMAIN_B: &str = "itsp-b.example";
const SIPP_DIGEST_ALGORITHMS: &str = "MD5,SHA-256";

fn host(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// The federation's world: its CA, node B's certificate (for its domain and its ingress
/// name), node A's client certificate, and the DNS zones that announce B's policy.
struct World {
    dir: TestDir,
    ca: TestCa,
    b_tls_port: u16,
    dns: NameServer,
}

impl World {
    fn new() -> Result<World> {
        let dir = test_dir("federation-")?;
        let ca = TestCa::new(dir.path(), "fedx-ca", "fedx federation CA")?;
        let b_tls_port = free_port()?;
        let dns = NameServer::start(vec![
            Zone::new(DOMAIN_B)?
                .naptr(
                    DOMAIN_B,
                    (10, 10),
                    "U",
                    "D2P+SIP:fed",
                    &format!("!^.*$!{FEDERATION}!"),
                    ".",
                )?
                .srv(
                    &format!("_sips._tcp.fedx.{DOMAIN_B}"),
                    0,
                    0,
                    b_tls_port,
                    &format!("ingress.{DOMAIN_B}"),
                )?
                .a(&format!("ingress.{DOMAIN_B}"), host(1))?,
            // A number of bob's, in ENUM.
            Zone::new("e164.arpa")?.naptr(
                "5.6.7.8.9.3.4.e164.arpa",
                (100, 10),
                "u",
                "E2U+sip",
                &format!("!^.*$!sip:bob@{DOMAIN_B}!"),
                ".",
            )?,
            Zone::new("itsp-d.example")?.naptr(
                "itsp-d.example",
                (10, 10),
                "U",
                "D2P+SIP:fed",
                "!^.*$!http://another-federation.example/!",
                ".",
            )?,
        ])?;
        Ok(World {
            dir,
            ca,
            b_tls_port,
            dns,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) -> Result<String> {
        let path = self.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    }
}

/// Node B: itsp-b.example, open registration, TLS with the federation's certificate,
/// inbound calls only from authenticated peers (federation members, 127.0.0.7).
fn start_b(world: &World) -> Result<Node> {
    let leaf = world.ca.issue(
        world.path(),
        "b",
        &[DOMAIN_B, &format!("ingress.{DOMAIN_B}")],
    )?;
    let config = world.write(
        "b.toml",
        &format!(
            "[routing]\n\
             require_authenticated_inbound = true\n\
             dns_servers = [\"{dns}\"]\n\
             [[routing.federation]]\n\
             id = \"{FEDERATION}\"\n\
             tls_ca = \"{ca}\"\n\
             [[routing.peer]]\n\
             name = \"gateway\"\n\
             sources = [\"127.0.0.7\"]\n",
            dns = world.dns.addr(),
            ca = world.ca.pem.display(),
        ),
    )?;
    let mut node = NodeConfig::open();
    node.domain = Some(DOMAIN_B.into());
    node.extra_args = vec![
        "--config".into(),
        config,
        "--listen".into(),
        format!("tls:127.0.0.1:{}", world.b_tls_port),
        "--tls-cert".into(),
        leaf.cert.display().to_string(),
        "--tls-key".into(),
        leaf.key.display().to_string(),
    ];
    Node::start(&node)
}

/// Node A: example.com with one user, a member of the federation (its client
/// certificate), trusting 127.0.0.40 to send anywhere.
fn start_a(world: &World, users: &TestUsers) -> Result<Node> {
    let leaf = world.ca.issue(world.path(), "a", &["itsp-a.example"])?;
    let config = world.write(
        "a.toml",
        &format!(
            "[routing]\n\
             dns_servers = [\"{dns}\"]\n\
             [[routing.federation]]\n\
             id = \"{FEDERATION}\"\n\
             domain_prefix = \"fedx\"\n\
             transport = \"tls\"\n\
             tls_cert = \"{cert}\"\n\
             tls_key = \"{key}\"\n\
             tls_ca = \"{ca}\"\n",
            dns = world.dns.addr(),
            cert = leaf.cert.display(),
            key = leaf.key.display(),
            ca = world.ca.pem.display(),
        ),
    )?;
    let users_toml = world.path().join("users.toml");
    users.write_users_toml(&users_toml)?;
    let mut node = NodeConfig::with_users(&users_toml).digest_algorithms(SIPP_DIGEST_ALGORITHMS);
    node.extra_args = vec![
        "--config".into(),
        config,
        "--listen".into(),
        format!("tls:127.0.0.1:{}", free_port()?),
        "--trusted-peer".into(),
        "127.0.0.40".into(),
    ];
    Node::start(&node)
}

/// Registers bob at B from 127.0.0.31 with `contact` (another port on 127.0.0.1), so that
/// no 127.0.0.1 source counts as a phone of B.
fn register_bob(b: &Node, contact: SocketAddr) -> Result<()> {
    let phone = UdpClient::bind(host(31), b.udp_addr())?;
    let register = Request::new("REGISTER", &format!("sip:{DOMAIN_B}"), &phone)
        .set("From", &format!("<sip:bob@{DOMAIN_B}>;tag=r1"))
        .set("To", &format!("<sip:bob@{DOMAIN_B}>"))
        .set("CSeq", "1 REGISTER")
        .with("Contact", &format!("<sip:bob@{contact}>"))
        .with("Expires", "600");
    let ok = phone.expect_response(&register, REPLY_LIMIT)?;
    ensure!(ok.status == 200, "bob's REGISTER at B:\n{}", ok.raw);
    Ok(())
}

/// Acceptance 1 and 2: alice at A calls bob at B over TLS with the federation's client
/// certificate, by his SIP URI and by his number (ENUM); SIPp plays both phones. A refuses
/// a domain of another federation, and `p2psip route` says why.
#[test]
fn members_of_a_federation_call_each_other_over_tls() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    let world = World::new()?;
    let b = start_b(&world)?;
    let users = TestUsers::generate(1, DOMAIN);
    let a = start_a(&world, &users)?;
    let bob = Sipp::new("uas_call.xml")
        .transport(Transport::Udp)
        .calls(2)
        .timeout(SIPP_LIMIT)
        .spawn_listening(Duration::from_secs(10))?;
    b.context(register_bob(
        &b,
        SocketAddr::from((host(1), bob.local_port())),
    ))?;

    let csv = world.path().join("alice.csv");
    users.write_auth_csv(&csv, false)?;
    for uri in [
        format!("sip:bob@{DOMAIN_B}"),
        format!("sip:+4398765@{DOMAIN};user=phone"),
    ] {
        let alice = Sipp::new("uac_call_auth.xml")
            .remote(a.udp_addr())
            .inf(&csv)
            .key("uri", &uri)
            .key("domain", DOMAIN)
            .arg("-auth_uri")
            .arg(uri.trim_start_matches("sip:"))
            .calls(1)
            .timeout(SIPP_LIMIT)
            .run()?;
        a.context(b.context(alice.ensure_success()))
            .with_context(|| format!("calling {uri}"))?;
    }
    let answered = bob.wait()?;
    b.context(answered.ensure_success())?;

    // itsp-d.example announces only a federation A is not in.
    let caller = UdpClient::bind(host(40), a.udp_addr())?;
    let response = caller.expect_response(
        &invite(&caller, "sip:carol@itsp-d.example", "sip:x@example.com"),
        REPLY_LIMIT,
    )?;
    ensure!(
        response.status == 403 && response.reason.contains("no federation shared"),
        "expected 403 naming the missing federation, got:\n{}",
        response.raw
    );
    let out = run_p2psip(
        &[
            "route".into(),
            "sip:carol@itsp-d.example".into(),
            "--config".into(),
            world.path().join("a.toml").display().to_string(),
            "--domain".into(),
            DOMAIN.into(),
            "--no-overlay".into(),
        ],
        Duration::from_secs(20),
    )?;
    ensure!(
        out.exit_code == Some(1)
            && out.stdout.contains("http://another-federation.example/")
            && out
                .stdout
                .contains("decision: 403 Forbidden (no federation shared"),
        "p2psip route does not explain the refusal:\n{out:?}"
    );
    let out = run_p2psip(
        &[
            "route".into(),
            format!("sip:bob@{DOMAIN_B}"),
            "--config".into(),
            world.path().join("a.toml").display().to_string(),
            "--domain".into(),
            DOMAIN.into(),
            "--no-overlay".into(),
            "--listen".into(),
            "tls:127.0.0.1:5061".into(),
        ],
        Duration::from_secs(20),
    )?;
    ensure!(
        out.success()
            && out
                .stdout
                .contains(&format!("is in federation {FEDERATION}"))
            && out.stdout.contains(&format!(
                "1. tls 127.0.0.1:{} (certificate for {DOMAIN_B})",
                world.b_tls_port
            )),
        "p2psip route does not explain the federation route:\n{out:?}"
    );
    Ok(())
}

/// Acceptance 2: B requires authenticated inbound peers. From an unknown address: 403;
/// from the configured peer address: routed; over TLS without a client certificate (node
/// C, which trusts the federation's CA but is no member): 403.
#[test]
fn a_closed_federation_refuses_unauthenticated_callers() -> Result<()> {
    let world = World::new()?;
    let b = start_b(&world)?;
    let bob = UdpClient::bind(host(1), SocketAddr::from((host(1), 9)))?;
    b.context(register_bob(&b, bob.local_addr()))?;
    let uri = format!("sip:bob@{DOMAIN_B}");

    let stranger = UdpClient::bind(host(5), b.udp_addr())?;
    let response = stranger.expect_response(
        &invite(&stranger, &uri, "sip:mallory@elsewhere.example"),
        REPLY_LIMIT,
    )?;
    ensure!(
        response.status == 403 && response.reason.contains("not an authenticated peer"),
        "an unknown address: expected 403, got:\n{}",
        response.raw
    );

    let peer = UdpClient::bind(host(7), b.udp_addr())?;
    peer.send(&invite(&peer, &uri, "sip:gw@peer.example").to_bytes())?;
    let delivered =
        next_request(&bob, REPLY_LIMIT)?.context("the configured peer's call did not reach bob")?;
    ensure!(delivered.starts_with("INVITE sip:bob@"), "{delivered}");

    // Node C reaches B's ingress over TLS through a static route, trusting the CA, with no
    // client certificate.
    let config = world.write(
        "c.toml",
        &format!(
            "tls_ca = [\"{ca}\"]\n\
             [routing]\n\
             dns_servers = [\"{dns}\"]\n\
             domain_policy = false\n\
             dns = false\n\
             [[routing.peer]]\n\
             name = \"itsp-b\"\n\
             domains = [\"{DOMAIN_B}\"]\n\
             gateways = [\"tls:ingress.{DOMAIN_B}:{port}\"]\n",
            ca = world.ca.pem.display(),
            dns = world.dns.addr(),
            port = world.b_tls_port,
        ),
    )?;
    let mut c = NodeConfig::open();
    c.extra_args = vec![
        "--config".into(),
        config,
        "--listen".into(),
        format!("tls:127.0.0.1:{}", free_port()?),
        "--trusted-peer".into(),
        "127.0.0.41".into(),
    ];
    let c = Node::start(&c)?;
    let caller = UdpClient::bind(host(41), c.udp_addr())?;
    let response =
        caller.expect_response(&invite(&caller, &uri, "sip:x@example.com"), REPLY_LIMIT)?;
    c.context(b.context((|| {
        ensure!(
            response.status == 403 && response.reason.contains("not an authenticated peer"),
            "over TLS without a client certificate: expected B's 403, got:\n{}",
            response.raw
        );
        Ok(())
    })()))
}
