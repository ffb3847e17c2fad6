//! A node's TCP listener on a public address: idle connections and slow messages are
//! closed, a phone's registered connection is kept, a few addresses cannot take every
//! connection, and an oversize message is answered 513 before the close.
//!
//! Every test starts its own node on loopback with short limits in a config file.
//! Timing checks are one-sided with generous margins ("closed within the timeout plus
//! 5 s", "not before half the timeout"), so a slow machine cannot fail them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{ensure, Context, Result};
use p2psip_tests::{closed_by_peer, test_dir, Node, NodeConfig, Request, TcpClient, TestDir};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const REPLY_LIMIT: Duration = Duration::from_secs(5);

/// Slack on every "closed by then" check, for a loaded machine.
const SLACK: Duration = Duration::from_secs(5);

/// An open node whose `[limits]` section is `limits`.
fn node_with_limits(limits: &str) -> Result<(TestDir, Node)> {
    let dir = test_dir("stream-limits-")?;
    let config_file = dir.path().join("node.toml");
    std::fs::write(&config_file, format!("[limits]\n{limits}"))?;
    let mut config = NodeConfig::open();
    config.extra_args = vec!["--config".into(), config_file.display().to_string()];
    let node = Node::start(&config)?;
    Ok((dir, node))
}

/// An OPTIONS to the node itself, as sent from `client`.
fn options(node: &Node, client: &TcpClient) -> Result<Request> {
    Ok(Request::from_addr(
        "OPTIONS",
        &format!("sip:{}", node.tcp_addr()),
        client.local_addr()?,
        "TCP",
    ))
}

/// OPTIONS over `client` is answered 200.
fn expect_options_ok(node: &Node, client: &mut TcpClient) -> Result<()> {
    let request = options(node, client)?;
    let response = client.transact(&request, REPLY_LIMIT)?;
    ensure!(
        response.status == 200,
        "OPTIONS answered:\n{}",
        response.raw
    );
    Ok(())
}

/// A connection nobody uses is closed after `tcp_idle_timeout`; one kept busy with CRLF
/// keep-alive pings (RFC 5626) over the same time is not.
#[test]
fn idle_connection_is_closed_after_the_idle_timeout() -> Result<()> {
    const IDLE: Duration = Duration::from_secs(2);
    let (_dir, mut node) = node_with_limits("tcp_idle_timeout = 2\n")?;
    let started = Instant::now();
    let mut idle = TcpClient::connect(node.tcp_addr())?;
    let mut pinging = TcpClient::connect(node.tcp_addr())?;

    // Bounded: one ping every 500 ms until the idle connection has closed or time is up.
    let mut pongs = 0;
    let mut idle_closed_after = None;
    for _ in 0..((IDLE + SLACK).as_millis() / 500) {
        pinging.send(b"\r\n\r\n")?;
        if idle.wait_closed(Duration::from_millis(500))? {
            idle_closed_after = Some(started.elapsed());
            break;
        }
        pongs += 1;
    }
    let result = (|| -> Result<()> {
        let after = idle_closed_after.with_context(|| {
            format!("an idle connection was still open after {:?}", IDLE + SLACK)
        })?;
        ensure!(
            after >= IDLE / 2,
            "an idle connection was closed after only {after:?}"
        );
        ensure!(pongs > 0, "no keep-alive was sent before the idle close");
        ensure!(
            !pinging.is_closed()?,
            "a connection carrying keep-alives was closed"
        );
        // Its pongs came back and it still carries requests.
        expect_options_ok(&node, &mut pinging)
    })();
    node.context(result)?;
    node.check_alive()
}

/// A phone that REGISTERed over a connection keeps it past the idle timeout while its
/// registration lives; a connection opened at the same time without one is closed.
#[test]
fn registered_connection_is_kept_past_the_idle_timeout() -> Result<()> {
    const IDLE: Duration = Duration::from_secs(2);
    let (_dir, mut node) = node_with_limits("tcp_idle_timeout = 2\n")?;
    let mut phone = TcpClient::connect(node.tcp_addr())?;
    let mut other = TcpClient::connect(node.tcp_addr())?;
    let local = phone.local_addr()?;
    let register = Request::from_addr("REGISTER", "sip:example.com", local, "TCP")
        .set("From", "<sip:alice@example.com>;tag=reg1")
        .set("To", "<sip:alice@example.com>")
        .with("Contact", &format!("<sip:alice@{local};transport=tcp>"))
        .with("Expires", "60");
    let result = (|| -> Result<()> {
        let response = phone.transact(&register, REPLY_LIMIT)?;
        ensure!(
            response.status == 200,
            "REGISTER answered:\n{}",
            response.raw
        );
        let since_register = Instant::now();
        ensure!(
            other.wait_closed(IDLE + SLACK)?,
            "the unregistered connection was still open after {:?}",
            IDLE + SLACK
        );
        // Well past the idle timeout, and still well inside the 60 s registration.
        let quiet = (IDLE * 3).saturating_sub(since_register.elapsed());
        ensure!(
            !phone.wait_closed(quiet)?,
            "the registered connection was closed after {:?} of silence",
            since_register.elapsed()
        );
        expect_options_ok(&node, &mut phone)
    })();
    node.context(result)?;
    node.check_alive()
}

/// A client sending one byte every 500 ms never completes its message: it is cut off at
/// `tcp_message_timeout`, although every byte resets the idle timeout.
#[test]
fn slowloris_connection_is_closed_at_the_message_timeout() -> Result<()> {
    const MESSAGE_TIMEOUT: Duration = Duration::from_secs(2);
    let (_dir, mut node) = node_with_limits("tcp_idle_timeout = 60\ntcp_message_timeout = 2\n")?;
    let mut slow = TcpClient::connect(node.tcp_addr())?;
    let request = options(&node, &slow)?.to_bytes();
    let started = Instant::now();
    let mut closed_after = None;
    // Bounded by the request's length and by the deadline.
    for byte in request.iter().take(200) {
        if slow.send(&[*byte]).is_err() || slow.wait_closed(Duration::from_millis(500))? {
            closed_after = Some(started.elapsed());
            break;
        }
        if started.elapsed() > MESSAGE_TIMEOUT + SLACK {
            break;
        }
    }
    let result = (|| -> Result<()> {
        let after = closed_after.with_context(|| {
            format!(
                "a slowloris connection was still open after {:?}",
                started.elapsed()
            )
        })?;
        ensure!(
            after >= MESSAGE_TIMEOUT / 2,
            "the connection was closed after only {after:?}"
        );
        ensure!(
            after <= MESSAGE_TIMEOUT + SLACK,
            "the connection was closed only after {after:?}"
        );
        Ok(())
    })();
    node.context(result)?;
    node.check_alive()
}

/// Connections attempted by the thousand from five addresses get at most
/// `max_connections_per_ip` each and never exhaust `max_connections`: a client from
/// another address still connects and is answered.
#[test]
fn per_address_cap_keeps_the_node_open_to_everyone_else() -> Result<()> {
    const PER_IP: usize = 20;
    const ATTEMPTS: usize = 10_000;
    const BATCH: usize = 200;
    const TIME_LIMIT: Duration = Duration::from_secs(60);
    let (_dir, mut node) =
        node_with_limits("max_connections_per_ip = 20\nmax_connections = 1000\n")?;
    let target = node.tcp_addr();
    let sources: Vec<IpAddr> = (2..=6)
        .map(|last| Ipv4Addr::new(127, 0, 0, last).into())
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let started = Instant::now();
    let mut open: Vec<(IpAddr, std::net::TcpStream)> = Vec::new();
    let mut attempted = 0;
    let mut failed = 0;
    while attempted < ATTEMPTS && started.elapsed() < TIME_LIMIT {
        for _ in 0..BATCH {
            let source = sources[attempted % sources.len()];
            attempted += 1;
            match runtime.block_on(connect_from(source, target)) {
                Ok(stream) => open.push((source, stream)),
                // Refused so fast that the handshake's end already saw the reset.
                Err(error) if is_reset(&error) => {}
                Err(_) => failed += 1,
            }
        }
        // Drop what the node has refused, so that this test needs few descriptors.
        open.retain(|(_, stream)| !closed_by_peer(stream));
    }
    // Let the node work through its accept queue, then count what it kept.
    let settle = Instant::now() + Duration::from_secs(15);
    while open.len() > PER_IP * sources.len() && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(200));
        open.retain(|(_, stream)| !closed_by_peer(stream));
    }
    let result = (|| -> Result<()> {
        ensure!(
            attempted >= 1000,
            "only {attempted} connections attempted in {TIME_LIMIT:?}"
        );
        ensure!(
            failed < attempted / 10,
            "{failed} of {attempted} connects failed otherwise than by a reset"
        );
        let mut per_source: HashMap<IpAddr, usize> = HashMap::new();
        for (source, _) in &open {
            *per_source.entry(*source).or_default() += 1;
        }
        ensure!(
            per_source.values().all(|&count| count <= PER_IP),
            "more than {PER_IP} connections kept from one address: {per_source:?}"
        );
        eprintln!(
            "{attempted} connections attempted from {} addresses ({failed} failed), {} kept: \
             {per_source:?}",
            sources.len(),
            open.len()
        );

        // A newcomer from 127.0.0.1 gets in and is served ...
        let mut newcomer = TcpClient::connect(target)?;
        expect_options_ok(&node, &mut newcomer).context("a client from a fresh address")?;
        // ... and so is each address's kept connection.
        for source in &sources {
            let Some(index) = open.iter().position(|(s, _)| s == source) else {
                continue;
            };
            let (_, stream) = open.swap_remove(index);
            let mut kept = TcpClient::from_stream(stream)?;
            expect_options_ok(&node, &mut kept)
                .with_context(|| format!("a kept connection from {source}"))?;
        }
        Ok(())
    })();
    node.context(result)?;
    node.check_alive()
}

fn is_reset(error: &anyhow::Error) -> bool {
    error.downcast_ref::<std::io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
        )
    })
}

/// A TCP connection to `target` from `source` (port chosen by the system), in blocking
/// std form; fails after 5 s.
async fn connect_from(source: IpAddr, target: SocketAddr) -> Result<std::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(target))
        .await
        .context("connect timed out")??;
    Ok(stream.into_std()?)
}

/// A message over `max_message_size` is answered `513 Message Too Large` (RFC 3261 18.3)
/// with the request's Via, Call-ID and CSeq, and then the connection is closed: whether the
/// body is what is too large, or the header section itself.
#[test]
fn oversize_message_is_answered_513_before_the_close() -> Result<()> {
    let (_dir, mut node) = node_with_limits("max_message_size = 1024\n")?;
    let result = (|| -> Result<()> {
        // A body that makes the message too large, sent whole.
        let mut client = TcpClient::connect(node.tcp_addr())?;
        let request = Request::from_addr(
            "MESSAGE",
            "sip:bob@example.com",
            client.local_addr()?,
            "TCP",
        )
        .body("text/plain", &[b'x'; 4000]);
        check_513(&mut client, &request, &request.to_bytes())?;

        // A header section that never ends within the limit.
        let mut client = TcpClient::connect(node.tcp_addr())?;
        let request = options(&node, &client)?.with("X-Padding", &"p".repeat(3000));
        let bytes = request.to_bytes();
        check_513(&mut client, &request, &bytes[..2000])
    })();
    node.context(result)?;
    node.check_alive()
}

/// Sends `bytes` (all or the start of `request`) and expects a 513 for `request`, then
/// the close.
fn check_513(client: &mut TcpClient, request: &Request, bytes: &[u8]) -> Result<()> {
    client.send(bytes)?;
    let response = client
        .recv_response(REPLY_LIMIT)?
        .context("no response to an oversize message")?;
    ensure!(
        response.status == 513,
        "an oversize message was answered:\n{}",
        response.raw
    );
    for name in ["Call-ID", "CSeq"] {
        ensure!(
            response.header(name) == request.header(name),
            "{name} of the 513 differs from the request's:\n{}",
            response.raw
        );
    }
    ensure!(
        response.header("Via") == request.header("Via"),
        "Via of the 513 differs from the request's:\n{}",
        response.raw
    );
    ensure!(
        client.wait_closed(REPLY_LIMIT)?,
        "the connection stayed open after the 513"
    );
    Ok(())
}
