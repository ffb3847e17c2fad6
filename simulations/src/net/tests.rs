//! Tests of the in-memory network.
//!
//! Timing tests run on real time (the crate's tokio has no `test-util`, so no paused clock):
//! a timer never fires early, so the lower bounds are exact; the upper bounds only allow for
//! a loaded machine.

use std::{future::poll_fn, io, pin::Pin, time::Duration};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{
    core::{
        multiaddr::Protocol,
        transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent},
        Endpoint, Transport,
    },
    identity::Keypair,
    ping,
    swarm::{self, SwarmEvent},
    Multiaddr, PeerId, Swarm,
};
use tokio::time::Instant;

use super::*;

/// Slack for scheduling on a busy machine; the lower bounds are exact.
const SLACK: Duration = Duration::from_millis(250);

fn fixed(latency: Duration, jitter: f64) -> NetworkModel {
    NetworkModel {
        latency: LatencyModel::Fixed(latency),
        jitter,
        ..NetworkModel::default()
    }
}

fn opts() -> DialOpts {
    DialOpts {
        role: Endpoint::Dialer,
        port_use: PortUse::Reuse,
    }
}

async fn next_event(
    transport: &mut SimTransport,
) -> TransportEvent<<SimTransport as Transport>::ListenerUpgrade, SimNetError> {
    poll_fn(|cx| Pin::new(&mut *transport).poll(cx)).await
}

/// A transport of `node` listening on its address, its `NewAddress` already taken.
async fn listening(net: &SimNetwork, node: NodeIndex) -> SimTransport {
    let mut transport = net.transport(node);
    transport
        .listen_on(ListenerId::next(), node_address(node))
        .unwrap();
    match next_event(&mut transport).await {
        TransportEvent::NewAddress { listen_addr, .. } => {
            assert_eq!(listen_addr, node_address(node))
        }
        _ => panic!("expected NewAddress"),
    }
    transport
}

async fn accept(listener: &mut SimTransport) -> (SimStream, Multiaddr) {
    match next_event(listener).await {
        TransportEvent::Incoming {
            upgrade,
            send_back_addr,
            local_addr,
            ..
        } => {
            assert_eq!(local_addr, node_address(listener.node()));
            (upgrade.await.unwrap(), send_back_addr)
        }
        _ => panic!("expected Incoming"),
    }
}

/// A connection from `from` to `to` (which must be listening): (dialer end, listener end).
async fn connect(
    net: &SimNetwork,
    listener: &mut SimTransport,
    from: NodeIndex,
) -> (SimStream, SimStream) {
    let dial = net
        .transport(from)
        .dial(node_address(listener.node()), opts())
        .unwrap();
    let dialer_end = dial.await.unwrap();
    let (listener_end, send_back) = accept(listener).await;
    assert_eq!(send_back, node_address(from));
    (dialer_end, listener_end)
}

#[test]
fn link_latency_is_symmetric_deterministic_and_seeded() {
    let uniform = |seed| NetworkModel {
        seed,
        latency: LatencyModel::Uniform {
            min: Duration::from_millis(10),
            max: Duration::from_millis(100),
        },
        ..NetworkModel::default()
    };
    let (a, b) = (uniform(1), uniform(2));
    let mut differs = 0;
    for (x, y) in [(0, 1), (5, 9_999), (42, 7), (1_000, 2_000), (3, 3)] {
        let l = a.link_latency(x, y);
        assert_eq!(l, a.link_latency(y, x));
        assert_eq!(l, uniform(1).link_latency(x, y));
        assert!((Duration::from_millis(10)..=Duration::from_millis(100)).contains(&l));
        differs += usize::from(l != b.link_latency(x, y));
    }
    assert!(differs >= 4, "seeds 1 and 2 gave the same latencies");

    assert_eq!(
        fixed(Duration::from_millis(20), 0.5).link_latency(3, 4),
        Duration::from_millis(20)
    );

    // Log-normal: the median of many links is near the configured median.
    let lognormal = NetworkModel {
        latency: "lognormal:40ms,0.6".parse().unwrap(),
        ..NetworkModel::default()
    };
    let mut samples: Vec<Duration> = (0..2_000)
        .map(|i| lognormal.link_latency(i, i + 1))
        .collect();
    samples.sort();
    let median = samples[samples.len() / 2].as_secs_f64() * 1000.0;
    assert!((34.0..46.0).contains(&median), "median {median} ms");
    assert!(
        samples[samples.len() - 1] > Duration::from_millis(100),
        "no tail"
    );
}

#[test]
fn latency_model_text_round_trips() {
    for text in [
        "fixed:20ms",
        "fixed:0ms",
        "fixed:2s",
        "fixed:150us",
        "fixed:7ns",
        "uniform:10ms-100ms",
        "lognormal:40ms,0.6",
        "lognormal:1s,0",
    ] {
        let model: LatencyModel = text.parse().unwrap();
        assert_eq!(model.to_string(), text);
        assert_eq!(model.to_string().parse::<LatencyModel>().unwrap(), model);
    }
    assert_eq!(
        "uniform:1000ms-2s"
            .parse::<LatencyModel>()
            .unwrap()
            .to_string(),
        "uniform:1s-2s"
    );
}

#[test]
fn latency_model_errors_name_the_problem() {
    let error = |text: &str| text.parse::<LatencyModel>().unwrap_err();
    assert!(matches!(error("gauss:1ms"), LatencyParseError::UnknownModel(k) if k == "gauss"));
    assert!(matches!(
        error("fixed"),
        LatencyParseError::MissingParameters(_)
    ));
    assert!(matches!(
        error("fixed:20"),
        LatencyParseError::MissingUnit(_)
    ));
    assert!(matches!(
        error("fixed:1.5ms"),
        LatencyParseError::InvalidNumber(_)
    ));
    assert!(matches!(
        error("fixed:ms"),
        LatencyParseError::InvalidNumber(_)
    ));
    assert!(matches!(
        error("uniform:10ms"),
        LatencyParseError::UniformSyntax(_)
    ));
    assert!(matches!(
        error("lognormal:40ms"),
        LatencyParseError::LogNormalSyntax(_)
    ));
    assert!(matches!(
        error("lognormal:40ms,-1"),
        LatencyParseError::InvalidSigma(_)
    ));
    assert!(matches!(
        error("fixed:99999999999999999999s"),
        LatencyParseError::TooLarge(_)
    ));
    let unit = error("fixed:20m");
    assert!(unit.to_string().contains("unknown unit `m`"), "{unit}");
    let order = error("uniform:100ms-10ms");
    assert_eq!(
        order.to_string(),
        "uniform latency: min 100ms is above max 10ms"
    );
}

#[tokio::test]
async fn data_arrives_one_link_latency_after_the_write() {
    let latency = Duration::from_millis(100);
    let net = SimNetwork::new(fixed(latency, 0.0), 2);
    let mut listener = listening(&net, 0).await;

    let start = Instant::now();
    let (mut a, mut b) = connect(&net, &mut listener, 1).await;
    let handshake = start.elapsed();
    assert!(
        handshake >= 2 * latency && handshake < 2 * latency + SLACK,
        "{handshake:?}"
    );
    assert_eq!(net.traffic(1).connections_opened, 1);
    assert_eq!(net.traffic(0).connections_opened, 0);

    let sent = Instant::now();
    a.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    b.read_exact(&mut buf).await.unwrap();
    let took = sent.elapsed();
    assert_eq!(&buf, b"hello");
    assert!(took >= latency && took < latency + SLACK, "{took:?}");

    let traffic = net.traffic(1);
    assert_eq!((traffic.bytes_sent, traffic.frames_sent), (5, 1));
    assert_eq!(net.total_traffic().bytes_sent, 5);
}

#[tokio::test]
async fn order_is_kept_under_jitter_and_loss() {
    let model = NetworkModel {
        loss: 0.2,
        ..fixed(Duration::from_millis(10), 0.9)
    };
    let net = SimNetwork::new(model, 2);
    let mut listener = listening(&net, 0).await;
    let (mut a, mut b) = connect(&net, &mut listener, 1).await;
    let writer = tokio::spawn(async move {
        for i in 0u32..200 {
            a.write_all(&i.to_be_bytes()).await.unwrap();
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        a.close().await.unwrap();
    });
    let mut received = Vec::new();
    b.read_to_end(&mut received).await.unwrap();
    writer.await.unwrap();
    let numbers: Vec<u32> = received
        .chunks(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(numbers, (0..200).collect::<Vec<_>>());
}

#[tokio::test]
async fn writer_is_back_pressured_beyond_the_window() {
    let model = NetworkModel {
        window_bytes: 1_000,
        ..fixed(Duration::from_millis(1), 0.0)
    };
    let net = SimNetwork::new(model, 2);
    let mut listener = listening(&net, 0).await;
    let (mut a, mut b) = connect(&net, &mut listener, 1).await;

    assert_eq!(a.write(&[0u8; 1_500]).await.unwrap(), 1_000);
    assert!(futures::poll!(a.write(&[0u8; 10])).is_pending());

    let writer = tokio::spawn(async move {
        a.write_all(&[1u8; 3_000]).await.unwrap();
        a.close().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !writer.is_finished(),
        "wrote past the window without a reader"
    );

    let mut received = Vec::new();
    b.read_to_end(&mut received).await.unwrap();
    writer.await.unwrap();
    assert_eq!(received.len(), 4_000);
    assert!(received[1_000..].iter().all(|&x| x == 1));
}

#[tokio::test]
async fn nat_blocks_inbound_dials_only() {
    let latency = Duration::from_millis(50);
    let net = SimNetwork::new(fixed(latency, 0.0), 2);
    let mut open = listening(&net, 0).await;
    let _natted = listening(&net, 1).await;
    net.set_reachable(1, false);
    assert!(!net.is_reachable(1));

    let start = Instant::now();
    let error = net
        .transport(0)
        .dial(node_address(1), opts())
        .unwrap()
        .await
        .err()
        .unwrap();
    assert!(start.elapsed() >= 2 * latency);
    assert_eq!(error, SimNetError::BlockedByNat(1));
    assert!(error
        .to_string()
        .contains("inbound connections are blocked by NAT"));

    let (_a, _b) = connect(&net, &mut open, 1).await;
    assert_eq!(net.traffic(1).connections_opened, 1);
    assert_eq!(net.traffic(0).connections_opened, 0);
}

#[tokio::test]
async fn dialing_a_node_without_listener_is_refused_after_a_round_trip() {
    let latency = Duration::from_millis(50);
    let net = SimNetwork::new(fixed(latency, 0.0), 3);
    let start = Instant::now();
    let error = net
        .transport(0)
        .dial(node_address(1), opts())
        .unwrap()
        .await
        .err()
        .unwrap();
    assert!(start.elapsed() >= 2 * latency);
    assert_eq!(error, SimNetError::ConnectionRefused(1));
    assert!(error.to_string().contains("connection refused"));

    // A stopped node (its transport dropped) refuses too.
    drop(listening(&net, 2).await);
    let error = net
        .transport(0)
        .dial(node_address(2), opts())
        .unwrap()
        .await;
    assert_eq!(error.err(), Some(SimNetError::ConnectionRefused(2)));
    assert_eq!(net.total_traffic(), Traffic::default());
}

#[tokio::test]
async fn a_full_backlog_refuses_dials() {
    let net = SimNetwork::new(fixed(Duration::from_millis(1), 0.0), 2);
    let _listener = listening(&net, 0).await; // never accepts
    let dials =
        (0..=ACCEPT_BACKLOG).map(|_| net.transport(1).dial(node_address(0), opts()).unwrap());
    let results = futures::future::join_all(dials).await;
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(refused, vec![&SimNetError::BacklogFull(0)]);
}

#[tokio::test]
async fn close_and_drop_deliver_eof_after_the_latency() {
    let latency = Duration::from_millis(50);
    let net = SimNetwork::new(fixed(latency, 0.0), 2);
    let mut listener = listening(&net, 0).await;

    let (mut a, mut b) = connect(&net, &mut listener, 1).await;
    let closed = Instant::now();
    a.close().await.unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(b.read(&mut buf).await.unwrap(), 0);
    assert!(closed.elapsed() >= latency);
    // Half-close: the other direction still works.
    b.write_all(b"late").await.unwrap();
    assert_eq!(a.read(&mut buf).await.unwrap(), 4);
    assert_eq!(
        a.write(b"x").await.unwrap_err().kind(),
        io::ErrorKind::BrokenPipe
    );

    let (a, mut b) = connect(&net, &mut listener, 1).await;
    let dropped = Instant::now();
    drop(a);
    assert_eq!(b.read(&mut buf).await.unwrap(), 0);
    assert!(dropped.elapsed() >= latency);
}

#[tokio::test]
async fn writing_to_a_dropped_reader_is_a_broken_pipe() {
    let net = SimNetwork::new(fixed(Duration::from_millis(5), 0.0), 2);
    let mut listener = listening(&net, 0).await;
    let (mut a, b) = connect(&net, &mut listener, 1).await;
    drop(b);
    let error = a.write(b"anyone?").await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn addresses_outside_the_simulation_are_not_supported() {
    let net = SimNetwork::new(NetworkModel::default(), 10);
    let mut transport = net.transport(3);
    fn not_supported<T>(r: Result<T, TransportError<SimNetError>>) -> bool {
        matches!(r, Err(TransportError::MultiaddrNotSupported(_)))
    }
    let id = ListenerId::next();
    assert!(not_supported(transport.listen_on(id, node_address(4))));
    assert!(not_supported(
        transport.listen_on(id, "/ip4/127.0.0.1/tcp/1".parse().unwrap())
    ));
    // `/memory/0` means the node's own address.
    transport
        .listen_on(id, "/memory/0".parse().unwrap())
        .unwrap();
    assert!(matches!(
        next_event(&mut transport).await,
        TransportEvent::NewAddress { listen_addr, .. } if listen_addr == node_address(3)
    ));
    assert!(matches!(
        transport.listen_on(ListenerId::next(), node_address(3)),
        Err(TransportError::Other(SimNetError::AlreadyListening(3)))
    ));

    let peer = PeerId::random();
    for addr in [
        "/memory/0".to_owned(),
        "/ip4/10.0.0.1/tcp/4001".to_owned(),
        format!("/memory/5/p2p/{peer}/p2p-circuit"),
        format!("/memory/5/p2p/{peer}/p2p-circuit/p2p/{peer}"),
        "/memory/5/memory/6".to_owned(),
    ] {
        let addr: Multiaddr = addr.parse().unwrap();
        assert!(
            not_supported(transport.dial(addr.clone(), opts())),
            "{addr}"
        );
    }
    assert!(transport
        .dial(node_address(5).with(Protocol::P2p(peer)), opts())
        .is_ok());
    assert!(matches!(
        transport.dial(node_address(10), opts()),
        Err(TransportError::Other(SimNetError::NodeOutOfRange {
            node: 10,
            max_nodes: 10
        }))
    ));

    // A node beyond the network's size gets errors, not panics.
    let mut outside = net.transport(10);
    assert!(matches!(
        outside.listen_on(ListenerId::next(), node_address(10)),
        Err(TransportError::Other(SimNetError::NodeOutOfRange { .. }))
    ));
    assert!(matches!(
        outside.dial(node_address(0), opts()),
        Err(TransportError::Other(SimNetError::NodeOutOfRange { .. }))
    ));
    net.set_reachable(10, false);
    assert_eq!(net.traffic(10), Traffic::default());

    assert!(transport.remove_listener(id));
    assert!(matches!(
        next_event(&mut transport).await,
        TransportEvent::ListenerClosed { listener_id, reason: Ok(()) } if listener_id == id
    ));
}

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
