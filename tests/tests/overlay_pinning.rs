//! First-come domain authority in open mode: no node is configured with example.com's
//! authority key; the key is published in the DHT (`p2psip domain publish`), every node
//! pins it, and from then on only a node holding a delegation from it can write the
//! registrations of example.com's users. A second key for the domain is refused.
//!
//! Four nodes in open mode, no trust anchors, mDNS off, loopback only. Node 1 holds a
//! delegation (`p2psip domain delegate`), node 2 none; both register alice. Lookups, with
//! the authority key given to the lookup client and without it (the client then fetches
//! the domain's authority record itself), show node 1's entry alone through every node.
//! Node 2's refusal of its own publication is read from its `node.json`
//! (`validation.refused.unauthorised`) and its log.

use anyhow::{ensure, Context, Result};
use p2psip_tests::authority::{
    self, expect_only_entry, lookup_fresh, register_delegated_then_rogue, DelegatedNode,
};
use p2psip_tests::{
    require_flags, run_p2psip, test_dir, CommandOutcome, Mesh, MeshNode, MeshNodeConfig, DOMAIN,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// Bound on a `p2psip domain init|delegate` run.
const DOMAIN_LIMIT: Duration = Duration::from_secs(20);
/// Bound on a `p2psip domain publish` or `p2psip lookup` run (each has `--timeout 15`).
const CLIENT_LIMIT: Duration = Duration::from_secs(30);

const ALICE: &str = "alice@example.com";
const ORIGINAL_CONTACT: &str = "sip:alice@127.0.0.1:15071";
const ROGUE_CONTACT: &str = "sip:alice@127.0.0.1:15072";

fn require_cli() -> Result<()> {
    require_flags(
        "node",
        &[
            "--p2p-listen",
            "--no-mdns",
            "--delegation",
            "--authority-mode",
        ],
    )?;
    require_flags("domain", &["init", "delegate", "publish"])?;
    Ok(())
}

/// `p2psip domain publish --domain example.com --data-dir <authority_dir> --bootstrap <via>`.
fn publish(authority_dir: &Path, via: &MeshNode) -> Result<CommandOutcome> {
    let args: Vec<String> = [
        "domain",
        "publish",
        "--domain",
        DOMAIN,
        "--data-dir",
        &authority_dir.display().to_string(),
        "--bootstrap",
        &via.p2p_addr(),
        "--timeout",
        "15",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    run_p2psip(&args, CLIENT_LIMIT)
}

/// Through `via`, with and without the authority key, alice's record holds node 1's entry
/// alone.
fn expect_only_node1(
    via: &MeshNode,
    node1: &MeshNode,
    anchor: &str,
    rogues: &[&str],
) -> Result<()> {
    for given in [Some(anchor), None] {
        let outcome = lookup_fresh(ALICE, via, given, CLIENT_LIMIT)?;
        expect_only_entry(&outcome, ALICE, node1, ORIGINAL_CONTACT, rogues).with_context(|| {
            format!(
                "lookup of {ALICE} through {} ({}), trust anchor {}:\n{outcome}",
                via.label(),
                via.p2p_addr(),
                if given.is_some() {
                    "given"
                } else {
                    "not given"
                }
            )
        })?;
    }
    Ok(())
}

#[test]
fn a_published_authority_key_is_pinned_first_come() -> Result<()> {
    require_cli()?;
    let started = Instant::now();
    let authority = test_dir("p2psip-authority-")?;
    let (anchor, _) = authority::init_domain(authority.path(), DOMAIN_LIMIT)?;
    ensure!(
        anchor.starts_with(&format!("{DOMAIN}=")),
        "trust anchor {anchor:?} is not for {DOMAIN}"
    );

    // Node 1's key is made before it starts, so that its delegation can be issued.
    let node1 = DelegatedNode::create(authority.path(), "p2psip-node1-", DOMAIN_LIMIT)?;

    let configs = (0..4)
        .map(|i| {
            let config = MeshNodeConfig {
                authority_mode: Some("open".to_string()),
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
    let result = pinning_flow(&mesh, &node1.peer_id, authority.path(), &anchor);
    let result = result.and_then(|()| mesh.check_alive());
    mesh.context(result)?;
    eprintln!(
        "a_published_authority_key_is_pinned_first_come: {:?}",
        started.elapsed()
    );
    Ok(())
}

fn pinning_flow(mesh: &Mesh, node1_peer: &str, authority_dir: &Path, anchor: &str) -> Result<()> {
    let (node0, node1, node2, node3) = (mesh.node(0), mesh.node(1), mesh.node(2), mesh.node(3));
    ensure!(
        node1.peer_id() == node1_peer,
        "node 1 runs as {}, not as the delegated {node1_peer}",
        node1.peer_id()
    );

    // The authority key goes into the DHT through node 0 and reaches every node.
    let published = publish(authority_dir, node0)?;
    ensure!(published.success(), "domain publish failed:\n{published}");
    let key = anchor
        .strip_prefix(&format!("{DOMAIN}="))
        .context("anchor without domain")?;
    ensure!(
        published.stdout.contains(key) && published.stdout.contains("stored by 4 node(s)"),
        "domain publish did not report the key stored by every node:\n{published}"
    );

    // The delegated node registers alice, found through node 3; node 2 has no delegation
    // and is refused by its own validator, which now knows the pinned key.
    register_delegated_then_rogue(node1, node2, node3, ALICE, ORIGINAL_CONTACT, ROGUE_CONTACT)?;

    let rogues = [node2.peer_id(), ROGUE_CONTACT];
    for via in mesh.nodes() {
        expect_only_node1(via, node1, anchor, &rogues)?;
    }

    // First-come: another key for example.com is refused.
    let other = test_dir("p2psip-other-authority-")?;
    let (other_anchor, _) = authority::init_domain(other.path(), DOMAIN_LIMIT)?;
    ensure!(other_anchor != anchor, "the second key is the first one");
    let second = publish(other.path(), node3)?;
    ensure!(
        second.exit_code == Some(1) && second.stderr.contains("refused"),
        "a second authority key for {DOMAIN} was not refused:\n{second}"
    );
    expect_only_node1(node0, node1, anchor, &rogues)?;
    Ok(())
}
