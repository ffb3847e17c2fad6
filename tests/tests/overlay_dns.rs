//! Domain authority learnt from DNS: no node is given a `--trust-anchor`; each looks
//! `TXT _p2psip.example.com` up at start-up on a name server run in this test process
//! (`--dns-server`), which serves the record `p2psip domain init` printed. The key found
//! is then trusted as if configured: node 1, delegated by that key, publishes alice;
//! node 2, without a delegation, registers her too and its publication is refused.
//!
//! The name server is hickory-server's, on 127.0.0.1 and a UDP port of its own; it
//! answers real DNS queries from the nodes' resolver. Loopback only, mDNS off.

use anyhow::{ensure, Context, Result};
use p2psip_tests::authority::{
    self, expect_only_entry, lookup_fresh, register_delegated_then_rogue, wait_for_log,
    DelegatedNode,
};
use p2psip_tests::name_server::{NameServer, Zone};
use p2psip_tests::{require_flags, test_dir, Mesh, MeshNode, MeshNodeConfig, DOMAIN};
use std::path::Path;
use std::time::{Duration, Instant};

/// Bound on a `p2psip domain` or `p2psip lookup` run.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

const ALICE: &str = "alice@example.com";
const ORIGINAL_CONTACT: &str = "sip:alice@127.0.0.1:15071";
const ROGUE_CONTACT: &str = "sip:alice@127.0.0.1:15072";

fn require_dns_cli() -> Result<()> {
    require_flags(
        "node",
        &["--p2p-listen", "--no-mdns", "--delegation", "--dns-server"],
    )?;
    Ok(())
}

/// `p2psip domain init example.com`: the trust-anchor line and the TXT record text it
/// prints.
fn init_domain(authority_dir: &Path) -> Result<(String, String)> {
    let (anchor, out) = authority::init_domain(authority_dir, COMMAND_LIMIT)?;
    let record = out
        .lines()
        .find_map(|line| line.strip_prefix("DNS TXT record: "))
        .with_context(|| format!("no DNS TXT record line in:\n{out}"))?;
    let expected_owner = format!("_p2psip.{DOMAIN}. IN TXT \"");
    let txt = record
        .strip_prefix(&expected_owner)
        .and_then(|rest| rest.strip_suffix('"'))
        .with_context(|| format!("the TXT record {record:?} is not {expected_owner}...\""))?;
    Ok((anchor, txt.to_string()))
}

/// alice's record, looked up through `via` trusting example.com's authority, holds node 1's
/// entry alone with the original contact.
fn expect_only_node1(
    via: &MeshNode,
    node1: &MeshNode,
    anchor: &str,
    rogues: &[&str],
) -> Result<()> {
    let outcome = lookup_fresh(ALICE, via, Some(anchor), COMMAND_LIMIT)?;
    expect_only_entry(&outcome, ALICE, node1, ORIGINAL_CONTACT, rogues).with_context(|| {
        format!(
            "lookup of {ALICE} through {} trusting {anchor}:\n{outcome}",
            via.label()
        )
    })
}

/// Three nodes serving example.com, none with a trust anchor, all asking the test's name
/// server: each trusts the key of the TXT record; node 1 (delegated) publishes alice, node
/// 2 (not delegated) registers her too and its publication is refused by its own validator.
/// Through every node, alice's record holds node 1's entry alone.
#[test]
fn an_authority_key_found_in_dns_is_enforced() -> Result<()> {
    require_dns_cli()?;
    let started = Instant::now();
    let authority = test_dir("p2psip-dns-authority-")?;
    let (anchor, txt) = init_domain(authority.path())?;
    let key = anchor
        .strip_prefix(&format!("{DOMAIN}="))
        .with_context(|| format!("trust anchor {anchor:?} is not for {DOMAIN}"))?
        .to_string();
    let name_server = NameServer::start(vec![
        Zone::new(DOMAIN)?.txt(&format!("_p2psip.{DOMAIN}"), &txt)?
    ])?;
    eprintln!(
        "name server on {} serving _p2psip.{DOMAIN} TXT {txt:?}",
        name_server.addr()
    );

    // Node 1's key is made before it starts, so that its delegation can be issued.
    let node1 = DelegatedNode::create(authority.path(), "p2psip-dns-node1-", COMMAND_LIMIT)?;

    let configs = (0..3)
        .map(|i| {
            let config = MeshNodeConfig {
                extra_args: vec!["--dns-server".to_string(), name_server.addr().to_string()],
                ..MeshNodeConfig::default()
            };
            if i == 1 {
                node1.configure(config)
            } else {
                config
            }
        })
        .collect();
    let mut mesh = Mesh::start_configured(configs)?;
    let result = dns_flow(&mesh, &node1.peer_id, &anchor, &key);
    let result = result.and_then(|()| mesh.check_alive());
    mesh.context(result)?;
    drop(name_server);
    eprintln!(
        "an_authority_key_found_in_dns_is_enforced: {:?}",
        started.elapsed()
    );
    Ok(())
}

fn dns_flow(mesh: &Mesh, node1_peer: &str, anchor: &str, key: &str) -> Result<()> {
    let (node0, node1, node2) = (mesh.node(0), mesh.node(1), mesh.node(2));
    ensure!(
        node1.peer_id() == node1_peer,
        "node 1 runs as {}, not as the delegated {node1_peer}",
        node1.peer_id()
    );
    // Every node found the key in DNS and trusts it (before it was ready).
    for node in mesh.nodes() {
        wait_for_log(node, &["authority key found in DNS", DOMAIN, key])?;
    }

    // The delegated node registers alice, found through node 0; the node without a
    // delegation is refused by its own validator, which trusts the key from DNS.
    register_delegated_then_rogue(node1, node2, node0, ALICE, ORIGINAL_CONTACT, ROGUE_CONTACT)?;

    // Through every node, with example.com's authority trusted, node 1's entry alone.
    let rogues = [node2.peer_id(), ROGUE_CONTACT];
    for via in mesh.nodes() {
        expect_only_node1(via, node1, anchor, &rogues)?;
    }
    Ok(())
}
