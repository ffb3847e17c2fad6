//! Adversaries against a few real overlay nodes over loopback TCP. Every wait is bounded;
//! nothing asserts on speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport as _};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId};
use overlay::authority::{generate_authority_key, Delegation, TrustAnchors};
use overlay::key::Aor;
use overlay::network::{now_unix, DhtMode, LookupError, Overlay, OverlayConfig, OverlayEvent};
use overlay::record::{RecordBinding, RegistrationRecord};
use overlay::validate::{AuthorityMode, RecordValidator, RefusalReason, ValidationCounters};
use simulations::adversary::{
    spawn_adversary, AdversaryConfig, AdversaryHandle, AdversaryKind, FORGED_CONTACT_HOST,
};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);
const ALICE_CONTACT: &str = "sip:alice@127.0.0.1:5070";

struct Honest {
    overlay: Overlay,
    _events: mpsc::Receiver<OverlayEvent>,
    addr: Multiaddr,
}

fn binding(contact: &str) -> RecordBinding {
    RecordBinding {
        contact: contact.to_owned(),
        expires_at: now_unix() + 3600,
        q: 1000,
        instance: None,
        reg_id: None,
    }
}

/// What the simulator's in-memory network provides, over TCP: authenticated, multiplexed.
fn tcp_transport(keypair: &Keypair) -> Boxed<(PeerId, StreamMuxerBox)> {
    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(keypair).unwrap())
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed()
}

/// Polls `condition` every 200 ms until it holds; panics after [`WAIT`].
async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `keypairs.len()` DHT servers on loopback, each bootstrapped from the first, waiting
/// until every routing table holds every other node.
async fn honest_mesh(keypairs: &[Keypair], configure: impl Fn(&mut OverlayConfig)) -> Vec<Honest> {
    let mut nodes: Vec<Honest> = Vec::new();
    for keypair in keypairs {
        let mut config = OverlayConfig::new(keypair.clone());
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        config.dht_mode = DhtMode::Server;
        config.lookup_timeout = Duration::from_secs(5);
        config.publish_timeout = Duration::from_secs(5);
        if let Some(first) = nodes.first() {
            config.bootstrap = vec![first.addr.clone()];
        }
        configure(&mut config);
        let (overlay, events) = Overlay::start(config).await.unwrap();
        let addr = overlay.listen_addrs().await.unwrap()[0]
            .clone()
            .with(Protocol::P2p(overlay.local_peer_id()));
        nodes.push(Honest {
            overlay,
            _events: events,
            addr,
        });
    }
    for node in &nodes {
        let overlay = node.overlay.clone();
        let others = keypairs.len() - 1;
        wait_for("a full routing table", || {
            let overlay = overlay.clone();
            async move { overlay.peers().await.unwrap().len() >= others }
        })
        .await;
    }
    nodes
}

async fn spawn(kind: AdversaryKind, targets: Vec<Aor>, nodes: &[Honest]) -> AdversaryHandle {
    let keypair = Keypair::generate_ed25519();
    let config = AdversaryConfig {
        kind,
        transport: tcp_transport(&keypair),
        keypair,
        listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        bootstrap: nodes.iter().map(|node| node.addr.clone()).collect(),
        targets: Arc::new(targets),
        forge_interval: Duration::from_millis(200),
        forged_puts_per_interval: 2,
    };
    spawn_adversary(config).await.unwrap()
}

/// Waits until some honest node has the adversary in its routing table.
async fn wait_until_routed(nodes: &[Honest], adversary: PeerId) {
    let overlays: Vec<Overlay> = nodes.iter().map(|node| node.overlay.clone()).collect();
    wait_for("the adversary in a routing table", || {
        let overlays = overlays.clone();
        async move {
            for overlay in overlays {
                let peers = overlay.peers().await.unwrap();
                if peers.iter().any(|peer| peer.peer == adversary) {
                    return true;
                }
            }
            false
        }
    })
    .await;
}

/// The sum of every honest node's validation counters for `reason`.
async fn refused(nodes: &[Honest], reason: RefusalReason) -> u64 {
    let mut total = 0;
    for node in nodes {
        let counters: ValidationCounters = node.overlay.stats().await.unwrap().validation;
        total += counters.refused(reason);
    }
    total
}

/// Only `publisher`'s entry, with only the honest contact, nothing at the forged host.
fn assert_only_honest(record: &RegistrationRecord, publisher: PeerId, who: usize) {
    for entry in &record.entries {
        assert_eq!(entry.serving_peer, publisher, "node {who}: {record:?}");
        for binding in &entry.bindings {
            assert!(
                !binding.contact.contains(FORGED_CONTACT_HOST),
                "node {who} accepted a forgery: {record:?}"
            );
        }
    }
    let live = record.live_bindings(now_unix());
    assert_eq!(live.len(), 1, "node {who}: {record:?}");
    assert_eq!(live[0].binding.contact, ALICE_CONTACT, "node {who}");
}

async fn shutdown(nodes: Vec<Honest>) {
    for node in nodes {
        node.overlay.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forge_adversary_is_refused_by_honest_nodes() {
    let authority = generate_authority_key();
    let mut anchors = TrustAnchors::new();
    anchors.add("example.com", authority.public()).unwrap();
    let keypairs: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
    let delegations: Vec<Delegation> = keypairs
        .iter()
        .map(|keypair| {
            let node = keypair.public().to_peer_id();
            Delegation::issue(
                &authority,
                "example.com",
                node,
                now_unix() - 60,
                now_unix() + 86_400,
            )
            .unwrap()
        })
        .collect();
    let nodes = honest_mesh(&keypairs, |config| {
        config.validator = RecordValidator::new(AuthorityMode::Open, anchors.clone());
        let me = config.keypair.public().to_peer_id();
        config.delegations = delegations
            .iter()
            .filter(|d| d.node == me)
            .cloned()
            .collect();
    })
    .await;
    let publisher = nodes[0].overlay.local_peer_id();
    let alice = Aor::parse("sip:alice@example.com").unwrap();
    let bob = Aor::parse("sip:bob@example.com").unwrap();
    nodes[0]
        .overlay
        .publish(alice.clone(), vec![binding(ALICE_CONTACT)])
        .await
        .unwrap();
    let last = nodes[2].overlay.clone();
    wait_for("the honest record at the last node", || {
        let (last, alice) = (last.clone(), alice.clone());
        async move { matches!(last.lookup(alice).await, Ok(Some(_))) }
    })
    .await;

    let forger = spawn(
        AdversaryKind::Forge,
        vec![alice.clone(), bob.clone()],
        &nodes,
    )
    .await;
    wait_until_routed(&nodes, forger.peer_id()).await;

    // Honest lookups go on while the forger answers and puts; every answer must stay honest,
    // until the forger has answered and put (every put variant at least once) and honest
    // nodes have refused both the unauthorised entries and the tampered one.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for (who, node) in nodes.iter().enumerate() {
            match node.overlay.lookup(alice.clone()).await {
                Ok(Some(record)) => assert_only_honest(&record, publisher, who),
                Ok(None) => panic!("node {who} lost alice's record"),
                // Answered at the deadline with nothing valid yet; not a forgery.
                Err(LookupError::Timeout) => {}
                Err(error) => panic!("node {who}: {error}"),
            }
            // Bob has no honest record: whatever the forger says, nothing is found.
            match node.overlay.lookup(bob.clone()).await {
                Ok(None) | Err(LookupError::Timeout) => {}
                other => panic!("node {who} found bob: {other:?}"),
            }
        }
        let stats = forger.stats();
        let unauthorised = refused(&nodes, RefusalReason::Unauthorised).await;
        let bad_signature = refused(&nodes, RefusalReason::BadSignature).await;
        if stats.forged_answers >= 1
            && stats.forged_puts >= 8
            && unauthorised >= 1
            && bad_signature >= 1
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "forger {stats:?}, refused unauthorised {unauthorised}, bad signature {bad_signature}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(forger.stats().requests_dropped, 0);
    // Nothing of bob's was stored anywhere: alice's honest record is all each node holds.
    for (who, node) in nodes.iter().enumerate() {
        let stats = node.overlay.stats().await.unwrap();
        assert_eq!(stats.stored_records, 1, "node {who}: {stats:?}");
    }

    // After a crash of the forger, lookups are still honest.
    forger.stop();
    let handle = &forger;
    wait_for("the forger to stop", || async move { handle.is_stopped() }).await;
    for (who, node) in nodes.iter().enumerate() {
        if let Ok(Some(record)) = node.overlay.lookup(alice.clone()).await {
            assert_only_honest(&record, publisher, who);
        }
    }
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_adversary_does_not_stop_lookups() {
    let keypairs: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
    // The default publish bound: a put first asks the closest nodes for closer ones, and
    // waits for the black hole's answer until Kademlia's request timeout (10 s); with a
    // shorter bound no put would reach its storing nodes in time.
    let nodes = honest_mesh(&keypairs, |config| {
        config.publish_timeout = Duration::from_secs(15);
    })
    .await;
    let publisher = nodes[0].overlay.local_peer_id();
    let alice = Aor::parse("sip:alice@example.com").unwrap();
    nodes[0]
        .overlay
        .publish(alice.clone(), vec![binding(ALICE_CONTACT)])
        .await
        .unwrap();

    let black_hole = spawn(AdversaryKind::Drop, Vec::new(), &nodes).await;
    assert_eq!(black_hole.kind(), AdversaryKind::Drop);
    wait_until_routed(&nodes, black_hole.peer_id()).await;

    // Lookups succeed (possibly only at their deadline) while requests go into the hole.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for (who, node) in nodes.iter().enumerate() {
            let record = node
                .overlay
                .lookup(alice.clone())
                .await
                .unwrap_or_else(|error| panic!("node {who}: {error}"))
                .unwrap_or_else(|| panic!("node {who} found no record"));
            assert_only_honest(&record, publisher, who);
        }
        if black_hole.stats().requests_dropped > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no request reached the black hole"
        );
    }

    // Publishing still works (slowly) with the black hole among the closest nodes.
    let bob = Aor::parse("sip:bob@example.com").unwrap();
    let report = nodes[1]
        .overlay
        .publish(bob.clone(), vec![binding("sip:bob@127.0.0.1:5071")])
        .await
        .unwrap();
    assert!(report.remote_copies >= 1, "{report:?}");
    let found = nodes[2].overlay.lookup(bob).await.unwrap().unwrap();
    assert_eq!(found.live_bindings(now_unix()).len(), 1, "{found:?}");
    let stats = black_hole.stats();
    assert_eq!((stats.forged_answers, stats.forged_puts), (0, 0));

    black_hole.stop();
    let handle = &black_hole;
    wait_for(
        "the black hole to stop",
        || async move { handle.is_stopped() },
    )
    .await;
    assert!(black_hole.stats().requests_dropped >= stats.requests_dropped);
    shutdown(nodes).await;
}
