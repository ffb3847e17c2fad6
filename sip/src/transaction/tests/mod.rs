//! Transaction layer tests with virtual time: an `Instant` base plus offsets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod scale;
mod server;

use super::*;
use crate::transport::Transport;
use std::net::SocketAddr;

/// Client context and server context are plain numbers, so tests can check which one an
/// event hands back.
type Layer = TransactionLayer<u32, u32>;
type Event = TransactionEvent<u32, u32>;
/// What happened at which millisecond: payloads sent, events reported.
type Timeline = (Vec<(u64, Bytes)>, Vec<(u64, Event)>);

fn peer(transport: Transport) -> Peer {
    let remote: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let local: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    Peer {
        transport,
        remote,
        local,
        connection: None,
    }
}

fn udp() -> Peer {
    peer(Transport::Udp)
}

fn tcp() -> Peer {
    peer(Transport::Tcp)
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Drives a layer through virtual time and records what it sends and reports.
struct Harness {
    layer: Layer,
    base: Instant,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(TransactionConfig::default())
    }

    fn with_config(config: TransactionConfig) -> Harness {
        let base = Instant::now();
        Harness {
            layer: Layer::new(config),
            base,
            now: base,
        }
    }

    /// Milliseconds since the base.
    fn elapsed_ms(&self) -> u64 {
        (self.now - self.base).as_millis() as u64
    }

    fn at_ms(&self, millis: u64) -> Instant {
        self.base + ms(millis)
    }

    /// Moves the clock to `millis` without firing timers.
    fn set_ms(&mut self, millis: u64) {
        self.now = self.at_ms(millis);
    }

    fn transmits(&mut self) -> Vec<Bytes> {
        std::iter::from_fn(|| self.layer.poll_transmit())
            .map(|transmit| transmit.payload)
            .collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.layer.poll_event()).collect()
    }

    /// Fires timers one deadline at a time up to `millis`, recording each transmit and
    /// event with the millisecond it happened at.
    fn run_until_ms(&mut self, millis: u64) -> Timeline {
        let end = self.at_ms(millis);
        let mut sent = Vec::new();
        let mut events = Vec::new();
        while let Some(deadline) = self.layer.poll_timeout() {
            if deadline > end {
                break;
            }
            self.now = self.now.max(deadline);
            self.layer.handle_timeout(self.now);
            let at = self.elapsed_ms();
            sent.extend(self.transmits().into_iter().map(|payload| (at, payload)));
            events.extend(self.events().into_iter().map(|event| (at, event)));
        }
        self.now = self.now.max(end);
        (sent, events)
    }
}

fn times(sent: &[(u64, Bytes)]) -> Vec<u64> {
    sent.iter().map(|(at, _)| *at).collect()
}

#[test]
fn config_is_clamped() {
    let layer: Layer = TransactionLayer::new(TransactionConfig {
        t1: Duration::ZERO,
        t2: Duration::ZERO,
        t4: Duration::from_secs(1_000_000),
        capacity: usize::MAX,
    });
    assert_eq!(layer.config().t1, ms(1));
    assert_eq!(layer.config().t2, ms(1));
    assert_eq!(layer.config().t4, MAX_TIMER);
    assert_eq!(layer.config().capacity, u32::MAX as usize - 1);
}

#[test]
fn table_full_is_shared_by_both_sides_and_frees_up() {
    let mut h = Harness::with_config(TransactionConfig {
        capacity: 2,
        ..TransactionConfig::default()
    });
    let server = h
        .layer
        .create_server(
            ServerKey::rfc3261("z9hG4bK1", "a", None, "OPTIONS"),
            tcp(),
            1,
        )
        .unwrap();
    h.layer
        .start_client(
            h.now,
            ClientKey::new("z9hG4bK2", "OPTIONS"),
            tcp(),
            Bytes::from_static(b"O"),
            2,
        )
        .unwrap();
    assert!(h.layer.is_full());
    assert_eq!(
        h.layer.create_server(
            ServerKey::rfc3261("z9hG4bK3", "a", None, "OPTIONS"),
            tcp(),
            3
        ),
        Err(TransactionError::TableFull)
    );
    assert_eq!(
        h.layer.start_client(
            h.now,
            ClientKey::new("z9hG4bK4", "OPTIONS"),
            tcp(),
            Bytes::new(),
            4
        ),
        Err(TransactionError::TableFull)
    );
    // A final response on a reliable transport ends the transaction at the next timeout call.
    h.layer
        .send_response(h.now, server, 200, Bytes::from_static(b"200"))
        .unwrap();
    assert_eq!(h.layer.len(), 2);
    assert_eq!(h.layer.poll_timeout(), Some(h.now));
    h.layer.handle_timeout(h.now);
    assert!(matches!(
        h.events().as_slice(),
        [TransactionEvent::ServerTerminated { ctx: 1, .. }]
    ));
    assert!(!h.layer.is_full());
    assert!(h
        .layer
        .create_server(
            ServerKey::rfc3261("z9hG4bK3", "a", None, "OPTIONS"),
            tcp(),
            3
        )
        .is_ok());
}

#[test]
fn ack_never_creates_a_transaction() {
    let mut h = Harness::new();
    assert_eq!(
        h.layer
            .create_server(ServerKey::rfc3261("z9hG4bK1", "a", None, "ACK"), udp(), 1),
        Err(TransactionError::AckCreatesNoTransaction)
    );
    assert_eq!(
        h.layer.start_client(
            h.now,
            ClientKey::new("z9hG4bK1", "ACK"),
            udp(),
            Bytes::new(),
            1
        ),
        Err(TransactionError::AckCreatesNoTransaction)
    );
    assert!(h.transmits().is_empty());
    assert!(h.layer.is_empty());
}
