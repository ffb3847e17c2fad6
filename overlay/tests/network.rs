//! Several overlay nodes in one process, talking over loopback only. Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{kad, Multiaddr, PeerId};
use overlay::authority::{generate_authority_key, AuthorityRecord, Delegation, TrustAnchors};
use overlay::key::{Aor, RecordKind};
use overlay::network::{
    load_or_create_keypair, now_unix, DhtMode, NodeRole, Overlay, OverlayConfig, OverlayEvent,
    PublishError, RoleSetting,
};
use overlay::record::RecordBinding;
use overlay::validate::{AuthorityMode, RecordValidator, RefusalReason};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);

struct Node {
    overlay: Overlay,
    events: mpsc::Receiver<OverlayEvent>,
    addr: Multiaddr,
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

fn loopback_config(keypair: Keypair) -> OverlayConfig {
    let mut config = OverlayConfig::new(keypair);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.lookup_timeout = Duration::from_secs(5);
    config.publish_timeout = Duration::from_secs(5);
    config
}

async fn start(config: OverlayConfig) -> Node {
    let (overlay, events) = Overlay::start(config).await.unwrap();
    let addr = overlay.listen_addrs().await.unwrap()[0]
        .clone()
        .with(Protocol::P2p(overlay.local_peer_id()));
    Node {
        overlay,
        events,
        addr,
    }
}

/// Polls `condition` every 100 ms until it holds; panics after `bound`.
async fn wait_for<F, Fut>(what: &str, bound: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `count` nodes, each bootstrapped from the first, waiting until every routing table holds
/// every other node.
async fn mesh(count: usize, configure: impl Fn(usize, &mut OverlayConfig)) -> Vec<Node> {
    let mut nodes = Vec::new();
    for index in 0..count {
        let mut config = loopback_config(Keypair::generate_ed25519());
        if let Some(first) = nodes.first() {
            let first: &Node = first;
            config.bootstrap = vec![first.addr.clone()];
        }
        configure(index, &mut config);
        nodes.push(start(config).await);
    }
    for node in &nodes {
        let overlay = node.overlay.clone();
        wait_for("a full routing table", WAIT, || {
            let overlay = overlay.clone();
            async move { overlay.peers().await.unwrap().len() >= count - 1 }
        })
        .await;
    }
    nodes
}

async fn shutdown(nodes: Vec<Node>) {
    for node in nodes {
        node.overlay.shutdown().await;
    }
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

fn sip_message(call_id: &str, body: &[u8]) -> Bytes {
    let mut message = format!(
        "MESSAGE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    message.extend_from_slice(body);
    Bytes::from(message)
}

/// Next inbound SIP message, skipping other events.
async fn next_sip(events: &mut mpsc::Receiver<OverlayEvent>) -> (PeerId, Bytes) {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(OverlayEvent::SipMessage { from, bytes }) => return (from, bytes),
                Some(_) => continue,
                None => panic!("event channel closed"),
            }
        }
    })
    .await;
    found.expect("timed out waiting for a SIP message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_published_at_one_node_is_found_at_every_other() {
    init_tracing();
    let nodes = mesh(5, |_, _| {}).await;
    let aor = Aor::parse("sip:alice@example.com").unwrap();
    let report = nodes[2]
        .overlay
        .publish(aor.clone(), vec![binding("sip:alice@127.0.0.1:5070")])
        .await
        .unwrap();
    assert!(report.remote_copies >= 1, "{report:?}");
    for (index, node) in nodes.iter().enumerate() {
        let record = node
            .overlay
            .lookup(aor.clone())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("node {index} found no record"));
        let live = record.live_bindings(now_unix());
        assert_eq!(live.len(), 1, "node {index}: {record:?}");
        assert_eq!(live[0].binding.contact, "sip:alice@127.0.0.1:5070");
        assert_eq!(live[0].serving_peer, nodes[2].overlay.local_peer_id());
    }

    // A second node serving the same AoR adds its entry instead of replacing the first.
    nodes[4]
        .overlay
        .publish(aor.clone(), vec![binding("sip:alice@127.0.0.1:5080")])
        .await
        .unwrap();
    let record = nodes[0].overlay.lookup(aor.clone()).await.unwrap().unwrap();
    assert_eq!(record.live_bindings(now_unix()).len(), 2, "{record:?}");

    // A withdrawal removes that node's bindings everywhere.
    nodes[2].overlay.withdraw(aor.clone()).await.unwrap();
    let record = nodes[3].overlay.lookup(aor.clone()).await.unwrap().unwrap();
    let live = record.live_bindings(now_unix());
    assert_eq!(live.len(), 1, "{record:?}");
    assert_eq!(live[0].serving_peer, nodes[4].overlay.local_peer_id());

    let unknown = Aor::parse("sip:nobody@example.com").unwrap();
    assert_eq!(nodes[1].overlay.lookup(unknown).await.unwrap(), None);
    assert_eq!(
        nodes[1]
            .overlay
            .withdraw(Aor::parse("sip:carol@example.com").unwrap())
            .await,
        Err(PublishError::NotPublished)
    );
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_survives_the_loss_of_its_publisher() {
    init_tracing();
    let nodes = mesh(3, |_, _| {}).await;
    let aor = Aor::parse("sip:dave@example.com").unwrap();
    nodes[1]
        .overlay
        .publish(aor.clone(), vec![binding("sip:dave@127.0.0.1:5090")])
        .await
        .unwrap();
    let mut nodes = nodes;
    let publisher = nodes.remove(1);
    publisher.overlay.shutdown().await;
    for node in &nodes {
        let record = node.overlay.lookup(aor.clone()).await.unwrap().unwrap();
        assert_eq!(record.live_bindings(now_unix()).len(), 1);
    }
    shutdown(nodes).await;
}

/// A node that joins after a publish gets the record at the next republication, and keeps
/// it after every node that stored it before is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republication_reaches_nodes_that_joined_later() {
    init_tracing();
    let nodes = mesh(2, |_, config| {
        config.republish_interval = Duration::from_secs(1);
    })
    .await;
    let aor = Aor::parse("sip:frank@example.com").unwrap();
    nodes[0]
        .overlay
        .publish(aor.clone(), vec![binding("sip:frank@127.0.0.1:5100")])
        .await
        .unwrap();
    let mut late_config = loopback_config(Keypair::generate_ed25519());
    late_config.bootstrap = vec![nodes[1].addr.clone()];
    let late = start(late_config).await;
    let late_overlay = late.overlay.clone();
    wait_for("the republished record", WAIT, || {
        let overlay = late_overlay.clone();
        async move { overlay.stats().await.unwrap().stored_records >= 1 }
    })
    .await;
    shutdown(nodes).await;
    let record = late.overlay.lookup(aor).await.unwrap().unwrap();
    assert_eq!(record.live_bindings(now_unix()).len(), 1);
    shutdown(vec![late]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_messages_arrive_byte_identical() {
    init_tracing();
    let mut nodes = mesh(3, |_, _| {}).await;
    let sender = nodes[0].overlay.clone();
    let receiver_id = nodes[2].overlay.local_peer_id();
    let receiver_addrs = nodes[2].overlay.listen_addrs().await.unwrap();

    let first = sip_message("one", b"hello");
    sender
        .send_sip(receiver_id, receiver_addrs.clone(), first.clone())
        .await
        .unwrap();
    let (from, bytes) = next_sip(&mut nodes[2].events).await;
    assert_eq!(from, sender.local_peer_id());
    assert_eq!(bytes, first);

    // Back to back, on the same stream, in order.
    let burst: Vec<Bytes> = (0..50)
        .map(|n| sip_message(&format!("burst{n}"), format!("message {n}").as_bytes()))
        .collect();
    let sends = burst
        .iter()
        .map(|message| sender.send_sip(receiver_id, Vec::new(), message.clone()));
    for result in futures::future::join_all(sends).await {
        result.unwrap();
    }
    for expected in &burst {
        let (_, bytes) = next_sip(&mut nodes[2].events).await;
        assert_eq!(&bytes, expected);
    }

    // Larger than one read and than a yamux frame.
    let body: Vec<u8> = (0..48_000u32).map(|n| b'a' + (n % 26) as u8).collect();
    let large = sip_message("large", &body);
    sender
        .send_sip(receiver_id, Vec::new(), large.clone())
        .await
        .unwrap();
    let (_, bytes) = next_sip(&mut nodes[2].events).await;
    assert_eq!(bytes, large);

    // And the other way, dialling by the routing table's addresses.
    let reply = sip_message("reply", b"");
    nodes[2]
        .overlay
        .send_sip(sender.local_peer_id(), Vec::new(), reply.clone())
        .await
        .unwrap();
    let (from, bytes) = next_sip(&mut nodes[0].events).await;
    assert_eq!(from, receiver_id);
    assert_eq!(bytes, reply);

    // Bytes that are not one framed message never reach the stream.
    let mut two = first.to_vec();
    two.extend_from_slice(&first);
    assert!(sender
        .send_sip(receiver_id, Vec::new(), Bytes::from(two))
        .await
        .is_err());
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_to_an_unreachable_peer_fails_within_the_bound() {
    init_tracing();
    let mut config = loopback_config(Keypair::generate_ed25519());
    config.sip_open_timeout = Duration::from_secs(2);
    let node = start(config).await;
    // Nothing listens on port 1 of loopback.
    let result = node
        .overlay
        .send_sip(
            PeerId::random(),
            vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()],
            sip_message("lost", b""),
        )
        .await;
    assert!(result.is_err(), "{result:?}");
    shutdown(vec![node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_without_authority_are_refused_by_others() {
    init_tracing();
    let authority = generate_authority_key();
    let mut anchors = TrustAnchors::new();
    anchors.add("example.com", authority.public()).unwrap();
    const ROGUE: usize = 3;
    const DELEGATED: usize = 2;
    let keypairs: Vec<Keypair> = (0..4).map(|_| Keypair::generate_ed25519()).collect();
    let delegation = Delegation::issue(
        &authority,
        "example.com",
        keypairs[DELEGATED].public().to_peer_id(),
        now_unix() - 60,
        now_unix() + 86_400,
    )
    .unwrap();
    let nodes = mesh(4, |index, config| {
        config.keypair = keypairs[index].clone();
        config.validator = if index == ROGUE {
            // Knows no authority for the domain, so its own check lets the entry through.
            RecordValidator::new(AuthorityMode::Open, TrustAnchors::new())
        } else {
            RecordValidator::new(AuthorityMode::Open, anchors.clone())
        };
        if index == DELEGATED {
            config.delegations = vec![delegation.clone()];
        }
    })
    .await;

    let victim = Aor::parse("sip:alice@example.com").unwrap();
    nodes[ROGUE]
        .overlay
        .publish(victim.clone(), vec![binding("sip:mallory@127.0.0.1:6666")])
        .await
        .unwrap();
    for index in [0, 1, DELEGATED] {
        // The put itself is refused (before any lookup could count a refused fetch).
        let overlay = nodes[index].overlay.clone();
        wait_for("the refusal of the rogue put", WAIT, || {
            let overlay = overlay.clone();
            async move {
                let stats = overlay.stats().await.unwrap();
                stats.validation.refused(RefusalReason::Unauthorised) >= 1
                    && stats.stored_records == 0
            }
        })
        .await;
        assert_eq!(
            nodes[index].overlay.lookup(victim.clone()).await.unwrap(),
            None,
            "node {index} accepted an unauthorised entry"
        );
    }

    // The node holding a delegation may publish, and its entry is all the others see.
    let report = nodes[DELEGATED]
        .overlay
        .publish(victim.clone(), vec![binding("sip:alice@127.0.0.1:5070")])
        .await
        .unwrap();
    assert!(report.remote_copies >= 1);
    for index in [0, 1] {
        let record = nodes[index]
            .overlay
            .lookup(victim.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.entries.len(), 1, "{record:?}");
        assert_eq!(
            record.entries[0].serving_peer,
            nodes[DELEGATED].overlay.local_peer_id()
        );
    }

    // A node without the delegation is stopped by its own validator before anything is sent.
    let refused = nodes[0]
        .overlay
        .publish(victim.clone(), vec![binding("sip:alice@127.0.0.1:5071")])
        .await;
    assert!(
        matches!(refused, Err(PublishError::Refused(_))),
        "{refused:?}"
    );
    shutdown(nodes).await;
}

/// Open mode, no anchors: an authority record published through one node is pinned by
/// every node; then only a delegated node can publish for the domain, a second key is
/// refused, and a node that joins later fetches the record before its first lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_authority_is_pinned_first_come() {
    init_tracing();
    let authority = generate_authority_key();
    const DELEGATED: usize = 1;
    const OTHER: usize = 2;
    let keypairs: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
    let delegation = Delegation::issue(
        &authority,
        "example.com",
        keypairs[DELEGATED].public().to_peer_id(),
        now_unix() - 60,
        now_unix() + 86_400,
    )
    .unwrap();
    let nodes = mesh(3, |index, config| {
        config.keypair = keypairs[index].clone();
        if index == DELEGATED {
            config.delegations = vec![delegation.clone()];
        }
    })
    .await;

    let record = AuthorityRecord::sign(&authority, "example.com", now_unix()).unwrap();
    let report = nodes[0].overlay.publish_authority(record).await.unwrap();
    assert!(report.remote_copies >= 1, "{report:?}");
    for node in &nodes {
        let overlay = node.overlay.clone();
        wait_for("the authority key to be pinned", WAIT, || {
            let overlay = overlay.clone();
            async move { overlay.stats().await.unwrap().pinned_authorities == 1 }
        })
        .await;
    }

    let alice = Aor::parse("alice@example.com").unwrap();
    let refused = nodes[OTHER]
        .overlay
        .publish(alice.clone(), vec![binding("sip:alice@127.0.0.1:5071")])
        .await;
    assert!(
        matches!(refused, Err(PublishError::Refused(_))),
        "{refused:?}"
    );
    nodes[DELEGATED]
        .overlay
        .publish(alice.clone(), vec![binding("sip:alice@127.0.0.1:5070")])
        .await
        .unwrap();

    // First-come: another key for the domain is refused.
    let second =
        AuthorityRecord::sign(&generate_authority_key(), "example.com", now_unix()).unwrap();
    let refused = nodes[OTHER].overlay.publish_authority(second).await;
    assert!(
        matches!(refused, Err(PublishError::Refused(_))),
        "{refused:?}"
    );

    // A node that missed the put learns the key by its first lookup of the domain.
    let mut config = loopback_config(Keypair::generate_ed25519());
    config.bootstrap = vec![nodes[0].addr.clone()];
    let late = start(config).await;
    let overlay = late.overlay.clone();
    wait_for("the late node's routing table", WAIT, || {
        let overlay = overlay.clone();
        async move { overlay.peers().await.unwrap().len() >= 3 }
    })
    .await;
    assert_eq!(late.overlay.stats().await.unwrap().pinned_authorities, 0);
    let found = late.overlay.lookup(alice).await.unwrap().unwrap();
    assert_eq!(found.entries.len(), 1, "{found:?}");
    assert_eq!(
        found.entries[0].serving_peer,
        nodes[DELEGATED].overlay.local_peer_id()
    );
    assert_eq!(late.overlay.stats().await.unwrap().pinned_authorities, 1);
    late.overlay.shutdown().await;
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_key_gives_the_same_peer_id_after_restart() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let first = start(loopback_config(load_or_create_keypair(dir.path()).unwrap())).await;
    let first_id = first.overlay.local_peer_id();
    shutdown(vec![first]).await;
    let second = start(loopback_config(load_or_create_keypair(dir.path()).unwrap())).await;
    assert_eq!(second.overlay.local_peer_id(), first_id);
    shutdown(vec![second]).await;
}

/// Nobody gets a confirmed public address on loopback, so `auto` nodes (the default) stay
/// peers; with no supernode around they stay DHT servers and store each other's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_nodes_without_a_supernode_store_records() {
    init_tracing();
    // `mesh` waits until every routing table holds every other node: only DHT servers
    // are added to routing tables.
    let nodes = mesh(3, |_, _| {}).await;
    for node in &nodes {
        let stats = node.overlay.stats().await.unwrap();
        assert_eq!(stats.role, NodeRole::Peer);
        assert!(stats.dht_server, "{stats:?}");
        assert_eq!(stats.connected_supernodes, 0);
        assert_eq!(stats.relay_reservation, None);
    }
    let aor = Aor::parse("sip:grace@example.com").unwrap();
    let report = nodes[0]
        .overlay
        .publish(aor.clone(), vec![binding("sip:grace@127.0.0.1:5110")])
        .await
        .unwrap();
    assert_eq!(report.remote_copies, 2, "{report:?}");
    for node in &nodes[1..] {
        assert_eq!(node.overlay.stats().await.unwrap().stored_records, 1);
    }
    shutdown(nodes).await;
}

/// A peer holds a relay reservation on a supernode, and a node that knows the peer only by
/// its relayed address reaches it through the circuit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_is_reached_through_its_reservation_on_a_supernode() {
    init_tracing();
    let mut config = loopback_config(Keypair::generate_ed25519());
    config.role = RoleSetting::Supernode;
    let supernode = start(config).await;
    let supernode_id = supernode.overlay.local_peer_id();

    let mut config = loopback_config(Keypair::generate_ed25519());
    config.role = RoleSetting::Peer;
    config.bootstrap = vec![supernode.addr.clone()];
    let mut peer = start(config).await;
    let peer_id = peer.overlay.local_peer_id();

    // In `auto`, as every node starts.
    let mut config = loopback_config(Keypair::generate_ed25519());
    config.bootstrap = vec![supernode.addr.clone()];
    let mut caller = start(config).await;
    let caller_id = caller.overlay.local_peer_id();

    let stats = supernode.overlay.stats().await.unwrap();
    assert_eq!(stats.role, NodeRole::Supernode);
    assert!(stats.dht_server);
    let overlay = peer.overlay.clone();
    wait_for("the peer's relay reservation", WAIT, || {
        let overlay = overlay.clone();
        async move { overlay.stats().await.unwrap().relay_reservation == Some(supernode_id) }
    })
    .await;
    let stats = peer.overlay.stats().await.unwrap();
    assert_eq!(stats.role, NodeRole::Peer);
    assert!(!stats.dht_server, "{stats:?}");
    // An `auto` peer connected to a supernode leaves storing to it.
    let overlay = caller.overlay.clone();
    wait_for("the auto node to become a DHT client", WAIT, || {
        let overlay = overlay.clone();
        async move {
            let stats = overlay.stats().await.unwrap();
            !stats.dht_server && stats.connected_supernodes == 1
        }
    })
    .await;
    assert_eq!(caller.overlay.stats().await.unwrap().role, NodeRole::Peer);

    // The peer's records tell others its relayed address (stored at the supernode, the only
    // DHT server).
    let aor = Aor::parse("sip:ivy@example.com").unwrap();
    let report = peer
        .overlay
        .publish(aor.clone(), vec![binding("sip:ivy@127.0.0.1:5130")])
        .await
        .unwrap();
    assert_eq!(report.remote_copies, 1, "{report:?}");
    let record = caller.overlay.lookup(aor).await.unwrap().unwrap();
    assert_eq!(record.entries.len(), 1, "{record:?}");
    let advertised = &record.entries[0].serving_addrs;
    assert!(
        advertised.iter().any(|address| address
            .iter()
            .any(|protocol| protocol == Protocol::P2pCircuit)),
        "{advertised:?}"
    );

    // The caller has no direct address of the peer, a DHT client that no routing table holds.
    assert!(caller
        .overlay
        .peers()
        .await
        .unwrap()
        .iter()
        .all(|status| status.peer != peer_id));
    let circuit = supernode
        .addr
        .clone()
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(peer_id));
    let message = sip_message("relayed", b"through the supernode");
    caller
        .overlay
        .send_sip(peer_id, vec![circuit], message.clone())
        .await
        .unwrap();
    let (from, bytes) = next_sip(&mut peer.events).await;
    assert_eq!(from, caller_id);
    assert_eq!(bytes, message);

    // And back, over the connection the caller opened.
    let reply = sip_message("relayed-reply", b"");
    peer.overlay
        .send_sip(caller_id, Vec::new(), reply.clone())
        .await
        .unwrap();
    let (from, bytes) = next_sip(&mut caller.events).await;
    assert_eq!(from, peer_id);
    assert_eq!(bytes, reply);
    shutdown(vec![caller, peer, supernode]).await;
}

/// Whether the record key of `aor` is closer to `a` than to `b` in the DHT's metric.
fn closer_to(aor: &Aor, a: PeerId, b: PeerId) -> bool {
    let key = kad::KBucketKey::new(kad::RecordKey::new(&aor.dht_key(RecordKind::Registration)));
    kad::KBucketKey::from(a).distance(&key) < kad::KBucketKey::from(b).distance(&key)
}

/// A record stored at one node only is handed to the other when that node leaves
/// gracefully, before any replication could run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_a_graceful_leave() {
    init_tracing();
    let mut nodes = mesh(2, |_, _| {}).await;
    let (holder_id, other_id) = (
        nodes[0].overlay.local_peer_id(),
        nodes[1].overlay.local_peer_id(),
    );
    // A DHT client (stored at by nobody) that puts to the single closest node.
    let mut config = loopback_config(Keypair::generate_ed25519());
    config.dht_mode = DhtMode::Client;
    config.replication_factor = NonZeroUsize::MIN;
    config.write_quorum = NonZeroUsize::MIN;
    config.bootstrap = vec![nodes[0].addr.clone()];
    let publisher = start(config).await;
    let overlay = publisher.overlay.clone();
    wait_for("the publisher to know both nodes", WAIT, || {
        let overlay = overlay.clone();
        async move { overlay.peers().await.unwrap().len() >= 2 }
    })
    .await;
    let aor = (0..)
        .map(|n| Aor::parse(&format!("sip:user{n}@example.com")).unwrap())
        .find(|aor| closer_to(aor, holder_id, other_id))
        .unwrap();
    let report = publisher
        .overlay
        .publish(aor.clone(), vec![binding("sip:henry@127.0.0.1:5120")])
        .await
        .unwrap();
    assert_eq!(report.remote_copies, 1, "{report:?}");
    assert_eq!(nodes[0].overlay.stats().await.unwrap().stored_records, 1);
    assert_eq!(nodes[1].overlay.stats().await.unwrap().stored_records, 0);

    let holder = nodes.remove(0);
    holder.overlay.shutdown().await;
    let overlay = nodes[0].overlay.clone();
    wait_for("the handed-over record", WAIT, || {
        let overlay = overlay.clone();
        async move { overlay.stats().await.unwrap().stored_records == 1 }
    })
    .await;
    let record = nodes[0].overlay.lookup(aor).await.unwrap().unwrap();
    let live = record.live_bindings(now_unix());
    assert_eq!(live.len(), 1, "{record:?}");
    assert_eq!(live[0].serving_peer, publisher.overlay.local_peer_id());
    shutdown(vec![publisher]).await;
    shutdown(nodes).await;
}

/// Environment variable set when this test binary runs inside its own network namespace.
const IN_NAMESPACE: &str = "P2PSIP_TEST_IN_NETNS";

/// Two nodes with mDNS and no bootstrap find each other and a lookup succeeds.
///
/// libp2p's mDNS ignores loopback addresses, and multicast on a real interface would leave
/// this machine, so the test re-runs itself in a fresh network namespace whose only
/// interface is loopback with an extra non-loopback address and multicast switched on.
/// Where namespaces cannot be created (not root, no `unshare`), it is skipped with a note.
#[test]
fn mdns_nodes_find_each_other_without_bootstrap() {
    let script = "ip link set lo up multicast on \
                  && ip addr add 10.77.0.1/32 dev lo \
                  && ip route add 224.0.0.0/4 dev lo \
                  && exec \"$0\" mdns_inside_namespace --exact --ignored --nocapture";
    let exe = std::env::current_exe().unwrap();
    let child = std::process::Command::new("unshare")
        .args(["--net", "sh", "-c", script])
        .arg(&exe)
        .env(IN_NAMESPACE, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            eprintln!("SKIPPED mdns test: cannot run unshare ({error})");
            return;
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mdns test in the namespace did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !status.success() && !stdout.contains("mdns_inside_namespace") {
        // The namespace could not be set up: unshare or ip refused (no privileges).
        eprintln!("SKIPPED mdns test: cannot create a network namespace: {stderr}");
        return;
    }
    assert!(
        status.success() && stdout.contains("1 passed"),
        "mdns test failed in the namespace:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by mdns_nodes_find_each_other_without_bootstrap inside a network namespace"]
async fn mdns_inside_namespace() {
    assert_eq!(
        std::env::var(IN_NAMESPACE).as_deref(),
        Ok("1"),
        "only meant to run inside the namespace the mdns test creates"
    );
    init_tracing();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut config = loopback_config(Keypair::generate_ed25519());
        config.listen = vec!["/ip4/0.0.0.0/tcp/0".parse().unwrap()];
        config.mdns = true;
        nodes.push(start(config).await);
    }
    // Found each other: each has the other in its routing table, over a live connection
    // (a routing-table entry from mDNS alone may still be dialling).
    for (node, other) in [(&nodes[0], &nodes[1]), (&nodes[1], &nodes[0])] {
        let overlay = node.overlay.clone();
        let other = other.overlay.local_peer_id();
        wait_for("mDNS discovery and a connection", WAIT, || {
            let overlay = overlay.clone();
            async move {
                overlay
                    .peers()
                    .await
                    .unwrap()
                    .iter()
                    .any(|status| status.peer == other && status.connected)
            }
        })
        .await;
    }
    let aor = Aor::parse("sip:erin@example.com").unwrap();
    let published = nodes[0]
        .overlay
        .publish(aor.clone(), vec![binding("sip:erin@10.77.0.1:5060")])
        .await;
    if let Err(error) = published {
        let peers = nodes[0].overlay.peers().await.unwrap();
        panic!("publish failed: {error:?}; routing table of the publisher: {peers:?}");
    }
    let record = nodes[1].overlay.lookup(aor).await.unwrap().unwrap();
    assert_eq!(record.live_bindings(now_unix()).len(), 1);
    shutdown(nodes).await;
}
