//! Tests with real libp2p swarms over the simulated network, and the memory measurements.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{
    core::multiaddr::Protocol,
    identity::Keypair,
    ping,
    swarm::{self, SwarmEvent},
    Swarm,
};

use super::{tests::*, *};

fn ping_swarm(net: &SimNetwork, node: NodeIndex, security: Security) -> Swarm<ping::Behaviour> {
    let keypair = Keypair::generate_ed25519();
    Swarm::new(
        net.authenticated_transport(node, &keypair, security),
        ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_millis(50))),
        keypair.public().to_peer_id(),
        swarm::Config::with_tokio_executor(),
    )
}

/// Two real swarms connect over the simulated network and ping each other.
async fn swarms_ping(security: Security) {
    let latency = Duration::from_millis(5);
    let net = SimNetwork::new(fixed(latency, 0.0), 2);
    let mut listener = ping_swarm(&net, 0, security);
    let mut dialer = ping_swarm(&net, 1, security);
    listener.listen_on(node_address(0)).unwrap();
    let target = node_address(0).with(Protocol::P2p(*listener.local_peer_id()));
    dialer.dial(target).unwrap();

    let rtt = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                event = listener.select_next_some() => {
                    if let SwarmEvent::IncomingConnectionError { error, .. } = event {
                        panic!("listener: {error}");
                    }
                }
                event = dialer.select_next_some() => match event {
                    SwarmEvent::Behaviour(ping::Event { result: Ok(rtt), peer, .. }) => {
                        assert_eq!(peer, *listener.local_peer_id());
                        break rtt;
                    }
                    SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dialer: {error}"),
                    _ => {}
                },
            }
        }
    })
    .await
    .unwrap();
    assert!(rtt >= 2 * latency, "{rtt:?}");
    assert_eq!(net.traffic(1).connections_opened, 1);
    assert!(net.traffic(0).bytes_sent > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarms_ping_over_plaintext() {
    swarms_ping(Security::Plaintext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarms_ping_over_noise() {
    swarms_ping(Security::Noise).await;
}

/// Resident set size of this process, from /proc/self/status.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Memory per idle connection (both ends). Run one security per process, in release:
/// `cargo test --release -p p2psip-simulations memory_per_connection -- --ignored --nocapture`
/// with `SIM_SECURITY=noise` or `plaintext`.
#[ignore = "measurement, not a check"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_per_connection() {
    use libp2p::swarm::{dial_opts::PeerCondition, dummy};
    const CONNECTIONS: usize = 1_000;
    const BATCH: usize = 100; // below the accept backlog
    let security = match std::env::var("SIM_SECURITY").as_deref() {
        Ok("noise") => Security::Noise,
        _ => Security::Plaintext,
    };
    let net = SimNetwork::new(fixed(Duration::from_millis(1), 0.1), 2);
    let swarm = |node| {
        let keypair = Keypair::generate_ed25519();
        Swarm::new(
            net.authenticated_transport(node, &keypair, security),
            dummy::Behaviour,
            keypair.public().to_peer_id(),
            swarm::Config::with_tokio_executor()
                .with_idle_connection_timeout(Duration::from_secs(3600)),
        )
    };
    let (mut listener, mut dialer) = (swarm(0), swarm(1));
    listener.listen_on(node_address(0)).unwrap();
    let target = *listener.local_peer_id();
    // Warm up allocator and code paths with one connection before the baseline.
    let mut established = (0, 0);
    let mut dials = 1;
    let mut before = None;
    dialer
        .dial(
            swarm::dial_opts::DialOpts::peer_id(target)
                .addresses(vec![node_address(0)])
                .condition(PeerCondition::Always)
                .build(),
        )
        .unwrap();
    while established.0 < CONNECTIONS + 1 || established.1 < CONNECTIONS + 1 {
        tokio::select! {
            event = listener.select_next_some() => {
                if let SwarmEvent::ConnectionEstablished { .. } = event { established.1 += 1 }
            }
            event = dialer.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { .. } => established.0 += 1,
                SwarmEvent::OutgoingConnectionError { error, .. } => panic!("{error}"),
                _ => {}
            },
        }
        if established == (dials, dials) && dials < CONNECTIONS + 1 {
            if before.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                before = Some(rss_kib());
            }
            for _ in 0..BATCH.min(CONNECTIONS + 1 - dials) {
                let opts = swarm::dial_opts::DialOpts::peer_id(target)
                    .addresses(vec![node_address(0)])
                    .condition(PeerCondition::Always)
                    .build();
                dialer.dial(opts).unwrap();
                dials += 1;
            }
        }
    }
    // Let the handshakes' transient buffers go.
    let settle = tokio::time::sleep(Duration::from_millis(500));
    tokio::pin!(settle);
    loop {
        tokio::select! {
            _ = &mut settle => break,
            _ = listener.select_next_some() => {}
            _ = dialer.select_next_some() => {}
        }
    }
    let after = rss_kib();
    let before = before.unwrap();
    println!(
        "{security:?}: {CONNECTIONS} connections, RSS {before} KiB -> {after} KiB, {:.1} KiB per connection (both ends)",
        (after - before) as f64 / CONNECTIONS as f64
    );
}

/// The simulated connection's own share: raw connections that have carried a byte each way
/// (so both ends hold their timer and jitter generator). Same command as above, this name.
#[ignore = "measurement, not a check"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_per_raw_connection() {
    const CONNECTIONS: usize = 10_000;
    let net = SimNetwork::new(fixed(Duration::from_millis(1), 0.1), 2);
    let mut listener = listening(&net, 0).await;
    let mut connections = Vec::with_capacity(CONNECTIONS);
    let (mut a, mut b) = connect(&net, &mut listener, 1).await;
    exchange_a_byte(&mut a, &mut b).await;
    let before = rss_kib();
    for _ in 0..CONNECTIONS {
        let (mut a, mut b) = connect(&net, &mut listener, 1).await;
        exchange_a_byte(&mut a, &mut b).await;
        connections.push((a, b));
    }
    let after = rss_kib();
    println!(
        "raw: {CONNECTIONS} connections, RSS {before} KiB -> {after} KiB, {:.2} KiB per connection (both ends)",
        (after - before) as f64 / CONNECTIONS as f64
    );
}

async fn exchange_a_byte(a: &mut SimStream, b: &mut SimStream) {
    let mut byte = [0u8];
    a.write_all(b"x").await.unwrap();
    b.read_exact(&mut byte).await.unwrap();
    b.write_all(b"y").await.unwrap();
    a.read_exact(&mut byte).await.unwrap();
}
