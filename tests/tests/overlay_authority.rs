//! Domain authority across a mesh: nobody without a delegation from example.com's authority
//! can take over, add to or withdraw the registration of alice@example.com.
//!
//! Every node trusts example.com's authority key (`--trust-anchor`, from
//! `p2psip domain init`); only node 1 holds a delegation (`p2psip domain delegate`). The
//! rogue is node 2, an honest binary without a delegation: its own validator refuses its
//! publication. To show that the other nodes refuse such writes as well, a forger then
//! plays a rogue node whose software skips that check: an overlay node run in this test
//! process through the overlay library, trusting no authority (so its own validator lets
//! its entries through), with a delegation signed by a key of its own making.
//!
//! The forger is a DHT client: it puts records but stores none and serves none. A storing
//! forger would answer lookups with its own copy, and `p2psip lookup` validates with no
//! trust anchors, so it would print the forged binding; nodes, which validate with their
//! anchors, would still ignore it.
//!
//! Loopback only, mDNS off. The validators' refusals are read from each node's `node.json`
//! (`validation.refused.unauthorised`) and from their logs.

use anyhow::{ensure, Context, Result};
use libp2p::identity::Keypair;
use libp2p::Multiaddr;
use overlay::authority::{generate_authority_key, Delegation};
use overlay::key::Aor;
use overlay::network::{DhtMode, Overlay, OverlayConfig, PublishReport};
use overlay::record::RecordBinding;
use p2psip_tests::authority::{
    self, expect_only_entry, register, wait_for_log, wait_for_unauthorised, DelegatedNode,
    PUBLISH_ATTEMPTS, PUBLISH_LIMIT,
};
use p2psip_tests::{
    lookup, require_flags, test_dir, wait_until_found, Mesh, MeshNode, MeshNodeConfig, DOMAIN,
};
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bound on each step of the forger (start, connecting, publishing, withdrawing).
const FORGER_STEP: Duration = Duration::from_secs(30);
/// Bound on a `p2psip domain` run.
const DOMAIN_LIMIT: Duration = Duration::from_secs(20);

const ALICE: &str = "alice@example.com";
/// alice's contact at node 1, and the one the rogues try to put in her record.
const ORIGINAL_CONTACT: &str = "sip:alice@127.0.0.1:15061";
const ROGUE_CONTACT: &str = "sip:alice@127.0.0.1:15062";
const FORGED_CONTACT: &str = "sip:alice@127.0.0.1:15063";

fn require_authority_cli() -> Result<()> {
    require_flags(
        "node",
        &[
            "--p2p-listen",
            "--no-mdns",
            "--trust-anchor",
            "--delegation",
            "--authority-mode",
        ],
    )?;
    require_flags("domain", &["init", "delegate", "show-key"])?;
    Ok(())
}

/// `p2psip domain init example.com`: the trust-anchor line it prints.
fn init_domain(authority_dir: &Path) -> Result<String> {
    let (anchor, _) = authority::init_domain(authority_dir, DOMAIN_LIMIT)?;
    ensure!(
        anchor.starts_with(&format!("{DOMAIN}=")),
        "trust anchor {anchor:?} is not for {DOMAIN}"
    );
    Ok(anchor)
}

/// alice's record, looked up through `via`, holds node 1's entry alone, with the original
/// contact.
fn expect_only_node1(via: &MeshNode, node1: &MeshNode, rogues: &[&str]) -> Result<()> {
    let outcome = lookup(ALICE, &[via.p2p_addr()])?;
    expect_only_entry(&outcome, ALICE, node1, ORIGINAL_CONTACT, rogues).with_context(|| {
        format!(
            "lookup of {ALICE} through {} ({}):\n{outcome}",
            via.label(),
            via.p2p_addr()
        )
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// What the forger did: its peer id and how its puts went (by its own account).
struct Forgery {
    peer_id: String,
    published: PublishReport,
    withdrawn: PublishReport,
}

/// A node that skips the authority check: trusts no authority (open mode, the library's
/// default), carries a delegation for example.com signed by a key it made up, joins through
/// every mesh node as a DHT client, publishes alice with `FORGED_CONTACT`, then withdraws.
/// Its write quorum is every node it knows, so every node is sent both puts.
fn forge(mesh: &Mesh) -> Result<Forgery> {
    let bootstrap = mesh
        .nodes()
        .iter()
        .map(|node| {
            node.p2p_addr()
                .parse::<Multiaddr>()
                .with_context(|| format!("{}: overlay address {}", node.label(), node.p2p_addr()))
        })
        .collect::<Result<Vec<_>>>()?;
    let keypair = Keypair::generate_ed25519();
    let peer = keypair.public().to_peer_id();
    let now = unix_now();
    let made_up_authority = generate_authority_key();
    let delegation = Delegation::issue(
        &made_up_authority,
        DOMAIN,
        peer,
        now.saturating_sub(60),
        now + 3600,
    )?;
    let mut config = OverlayConfig::new(keypair);
    config.listen = Vec::new();
    config.bootstrap = bootstrap;
    config.mdns = false;
    config.dht_mode = DhtMode::Client;
    config.delegations = vec![delegation];
    config.write_quorum = NonZeroUsize::new(mesh.len().max(1)).unwrap_or(NonZeroUsize::MIN);
    config.publish_timeout = FORGER_STEP;
    config.lookup_timeout = FORGER_STEP;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let wanted = mesh.len();
    let result = runtime.block_on(async move {
        let bounded = |what: &'static str| {
            move |_| anyhow::anyhow!("forger: {what} took over {FORGER_STEP:?}")
        };
        let (overlay, _events) = tokio::time::timeout(FORGER_STEP, Overlay::start(config))
            .await
            .map_err(bounded("starting"))??;
        let outcome = async {
            tokio::time::timeout(FORGER_STEP, connected_to(&overlay, wanted))
                .await
                .map_err(bounded("connecting to every node"))??;
            let aor = Aor::parse(ALICE)?;
            let binding = RecordBinding {
                contact: FORGED_CONTACT.to_string(),
                expires_at: unix_now() + 600,
                q: 1000,
                instance: None,
                reg_id: None,
            };
            let published = overlay
                .publish(aor.clone(), vec![binding])
                .await
                .context("forger: publish")?;
            let withdrawn = overlay.withdraw(aor).await.context("forger: withdraw")?;
            Ok(Forgery {
                peer_id: peer.to_string(),
                published,
                withdrawn,
            })
        }
        .await;
        overlay.shutdown().await;
        outcome
    });
    // Anything the overlay left running is not waited for.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// Waits until `overlay` is connected to `wanted` peers.
async fn connected_to(overlay: &Overlay, wanted: usize) -> Result<()> {
    loop {
        let peers = overlay.peers().await?;
        if peers.iter().filter(|p| p.connected).count() >= wanted {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------

/// Four nodes trusting example.com's authority; node 1 alone holds a delegation and
/// registers alice. Node 2 (no delegation) registers alice with another contact and
/// unregisters her: its REGISTERs are answered, its publication is refused by its own
/// validator. A forger then puts and withdraws a forged entry: every node refuses both.
/// Through every node, alice's record still holds node 1's entry alone.
#[test]
fn only_a_delegated_node_can_write_a_users_registration() -> Result<()> {
    require_authority_cli()?;
    let started = Instant::now();
    let authority = test_dir("p2psip-authority-")?;
    let anchor = init_domain(authority.path())?;

    // Node 1's key is made before it starts, so that its delegation can be issued.
    let node1 = DelegatedNode::create(authority.path(), "p2psip-node1-", DOMAIN_LIMIT)?;
    let written = std::fs::read_to_string(&node1.delegation_file)?;
    ensure!(
        written.lines().any(|line| line == node1.printed.trim()),
        "the printed delegation {:?} is not in {}:\n{written}",
        node1.printed,
        node1.delegation_file.display()
    );

    let configs = (0..4)
        .map(|i| {
            let config = MeshNodeConfig {
                trust_anchors: vec![anchor.clone()],
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
    let result = authority_flow(&mesh, &node1.peer_id);
    let result = result.and_then(|()| mesh.check_alive());
    mesh.context(result)?;
    eprintln!(
        "only_a_delegated_node_can_write_a_users_registration: {:?}",
        started.elapsed()
    );
    Ok(())
}

fn authority_flow(mesh: &Mesh, node1_peer: &str) -> Result<()> {
    let (node1, node2, node3) = (mesh.node(1), mesh.node(2), mesh.node(3));
    ensure!(
        node1.peer_id() == node1_peer,
        "node 1 runs as {}, not as the delegated {node1_peer}",
        node1.peer_id()
    );

    // The delegated node registers alice; she is found through node 3.
    register(node1, ALICE, ORIGINAL_CONTACT, 600)?;
    let found = wait_until_found(ALICE, &[node3.p2p_addr()], PUBLISH_LIMIT, PUBLISH_ATTEMPTS)?;
    ensure!(
        found.stdout.contains(node1.peer_id()) && found.stdout.contains(ORIGINAL_CONTACT),
        "alice's record does not hold node 1's binding:\n{found}"
    );

    // The rogue node: answered locally, refused by its own validator.
    register(node2, ALICE, ROGUE_CONTACT, 600)?;
    register(node2, ALICE, ROGUE_CONTACT, 0)?;
    let rogue_refused = wait_for_unauthorised(node2, 1)?;
    wait_for_log(
        node2,
        &[
            "registration not published",
            "refused by the local validator",
            "unauthorised",
        ],
    )?;

    // The forger: its puts reach every node, and every node refuses them.
    let before: Vec<u64> = mesh
        .nodes()
        .iter()
        .map(|node| node.refusals("unauthorised"))
        .collect::<Result<_>>()?;
    let forgery = forge(mesh)?;
    eprintln!(
        "forger {}: publish reached {} node(s), withdrawal {} node(s) (by its own account)",
        forgery.peer_id, forgery.published.remote_copies, forgery.withdrawn.remote_copies
    );
    for (node, before) in mesh.nodes().iter().zip(before) {
        // The forged entry, then the forged withdrawal.
        wait_for_unauthorised(node, before + 2)?;
        wait_for_log(node, &["record refused", &forgery.peer_id, "unauthorised"])?;
    }
    ensure!(
        node2.refusals("unauthorised")? >= rogue_refused + 2,
        "node 2's count did not grow by the forger's two puts"
    );

    // Every node still gives node 1's entry alone, with the original contact.
    let rogues = [
        node2.peer_id(),
        forgery.peer_id.as_str(),
        ROGUE_CONTACT,
        FORGED_CONTACT,
    ];
    for via in mesh.nodes() {
        expect_only_node1(via, node1, &rogues)?;
    }
    Ok(())
}
