//! Tests of the in-memory network.
//!
//! Timing tests run on a paused (virtual) clock: a timer never fires early and nothing else
//! moves the clock, so the bounds measure the network model, not the machine.

use std::{future::poll_fn, io, pin::Pin, time::Duration};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{
    core::{
        multiaddr::Protocol,
        transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent},
        Endpoint, Transport,
    },
    Multiaddr, PeerId,
};
use tokio::time::Instant;

use super::*;

/// Slack for scheduling on a busy machine; the lower bounds are exact.
/// Timers fire exactly on virtual time; this only absorbs rounding to the millisecond.
const SLACK: Duration = Duration::from_millis(2);

pub(super) fn fixed(latency: Duration, jitter: f64) -> NetworkModel {
    NetworkModel {
        latency: LatencyModel::Fixed(latency),
        jitter,
        ..NetworkModel::default()
    }
}

pub(super) fn opts() -> DialOpts {
    DialOpts {
        role: Endpoint::Dialer,
        port_use: PortUse::Reuse,
    }
}

pub(super) async fn next_event(
    transport: &mut SimTransport,
) -> TransportEvent<<SimTransport as Transport>::ListenerUpgrade, SimNetError> {
    poll_fn(|cx| Pin::new(&mut *transport).poll(cx)).await
}

/// A transport of `node` listening on its address, its `NewAddress` already taken.
pub(super) async fn listening(net: &SimNetwork, node: NodeIndex) -> SimTransport {
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

pub(super) async fn accept(listener: &mut SimTransport) -> (SimStream, Multiaddr) {
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
pub(super) async fn connect(
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

#[tokio::test(start_paused = true)]
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

#[tokio::test(start_paused = true)]
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

#[tokio::test(start_paused = true)]
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

#[tokio::test(start_paused = true)]
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

#[tokio::test(start_paused = true)]
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

#[tokio::test(start_paused = true)]
async fn a_full_backlog_refuses_dials() {
    let net = SimNetwork::new(fixed(Duration::from_millis(1), 0.0), 2);
    let _listener = listening(&net, 0).await; // never accepts
    let dials =
        (0..=ACCEPT_BACKLOG).map(|_| net.transport(1).dial(node_address(0), opts()).unwrap());
    let results = futures::future::join_all(dials).await;
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(refused, vec![&SimNetError::BacklogFull(0)]);
}

#[tokio::test(start_paused = true)]
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

#[tokio::test(start_paused = true)]
async fn writing_to_a_dropped_reader_is_a_broken_pipe() {
    let net = SimNetwork::new(fixed(Duration::from_millis(5), 0.0), 2);
    let mut listener = listening(&net, 0).await;
    let (mut a, b) = connect(&net, &mut listener, 1).await;
    drop(b);
    let error = a.write(b"anyone?").await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test(start_paused = true)]
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
