//! The core task: owns the [`SipServer`], the UDP sockets and the connection table, and
//! moves bytes between them. Everything else (accepting, stream I/O) runs in other tasks
//! and talks to it through one bounded channel.
//!
//! Each turn: wait until a UDP socket is readable, a stream event or overlay input arrives,
//! the server's timer fires, a route resolution finishes or shutdown is signalled; take
//! `now` once; drain a bounded batch from every source; hand the routing chain the routes
//! the turn asked for ([`crate::routing`]) and the overlay the changed registrations
//! ([`crate::overlay_link`]); then send everything the server queued. The server is plain
//! state and is never borrowed across an await.

use crate::connections::Connections;
use crate::log_throttle::LogThrottle;
use crate::overlay_link::{LinkInput, OverlayLink, INPUT_BATCH};
use crate::overload::OverloadDetector;
use crate::route_cache::ServingPeers;
use crate::routing::{Query, ResolutionDone, RoutingChain};

/// At most one warning about overload per this interval (a node at its capacity can enter
/// and leave overload many times a second).
const OVERLOAD_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
use crate::stream::StreamEvent;
use crate::udp::{self, UdpEndpoint, RECV_BATCH};
use sip::server::{ServerEvent, SipServer};
use sip::transport::{ConnectionId, Peer, Transport};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio::time::Sleep;

/// Largest UDP datagram; one buffer of this size is reused for every receive.
const UDP_BUFFER: usize = 64 * 1024;

/// Stream events handled per turn, so UDP and timers keep being served under TCP load.
const EVENT_BATCH: usize = 64;

/// Far enough to mean "no timer"; tokio needs some deadline for the reusable sleep.
const IDLE_SLEEP: std::time::Duration = std::time::Duration::from_secs(3600);

pub struct Core {
    server: SipServer,
    udp: Vec<UdpEndpoint>,
    connections: Connections,
    events: mpsc::Receiver<StreamEvent>,
    recv_buffer: Box<[u8]>,
    /// Reused by every flush for connections dropped while sending.
    dropped_connections: Vec<ConnectionId>,
    /// Pacing permits of this turn's stream messages, released once their answers are
    /// queued. At most [`EVENT_BATCH`] long.
    in_flight: Vec<OwnedSemaphorePermit>,
    timer: Pin<Box<Sleep>>,
    /// The deadline `timer` is set to; None when the server has no timer.
    timer_deadline: Option<Instant>,
    overload: OverloadDetector,
    /// Overload episodes, logged once per [`OVERLOAD_LOG_INTERVAL`] at most.
    overload_log: LogThrottle,
    /// None in single-node mode.
    overlay: Option<OverlayLink>,
    routing: RoutingChain,
    stun: StunCounters,
}

/// STUN datagrams on the SIP UDP ports, answered or dropped; logged when the core stops.
#[derive(Debug, Default)]
struct StunCounters {
    answered: u64,
    dropped: u64,
}

impl StunCounters {
    /// Answers a Binding request at once with a non-blocking send: a response lost to a full
    /// socket buffer is retransmitted for by the client.
    fn answer(&mut self, endpoint: &UdpEndpoint, datagram: &[u8], remote: std::net::SocketAddr) {
        match nat::stun::answer_binding(datagram, remote) {
            Ok(response) => match endpoint.socket.try_send_to(&response, remote) {
                Ok(_) => self.answered += 1,
                Err(error) => {
                    self.dropped += 1;
                    tracing::debug!(%error, %remote, "STUN response not sent");
                }
            },
            Err(reason) => {
                self.dropped += 1;
                tracing::debug!(%reason, %remote, "STUN datagram dropped");
            }
        }
    }
}

/// Why the core woke up.
enum Wake {
    /// A socket may be readable or the timer fired: poll everything.
    Ready,
    Event(StreamEvent),
    Overlay(LinkInput),
    Routed(ResolutionDone),
}

impl Core {
    pub fn new(
        server: SipServer,
        udp: Vec<UdpEndpoint>,
        connections: Connections,
        events: mpsc::Receiver<StreamEvent>,
        overlay: Option<OverlayLink>,
        routing: RoutingChain,
    ) -> Core {
        Core {
            server,
            udp,
            connections,
            events,
            recv_buffer: vec![0u8; UDP_BUFFER].into_boxed_slice(),
            dropped_connections: Vec::new(),
            in_flight: Vec::with_capacity(EVENT_BATCH),
            timer: Box::pin(tokio::time::sleep(IDLE_SLEEP)),
            timer_deadline: None,
            overlay,
            routing,
            stun: StunCounters::default(),
            overload: OverloadDetector::default(),
            overload_log: LogThrottle::new(OVERLOAD_LOG_INTERVAL),
        }
    }

    /// Runs until `shutdown` turns true (or its sender goes away), then sends what the
    /// server still has queued and lets go of every connection so their writers flush and
    /// close. With the overlay on, this node's registrations are then withdrawn (bounded by
    /// [`crate::overlay_link::SHUTDOWN_WITHDRAW`]) and the overlay stopped.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        self.rearm_timer();
        loop {
            let wake = tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
                wake = poll_fn(|cx| self.poll_wake(cx)) => wake,
            };
            let now = Instant::now();
            match wake {
                Wake::Event(event) => {
                    self.handle_event(now, event);
                    for _ in 1..EVENT_BATCH {
                        match self.events.try_recv() {
                            Ok(event) => self.handle_event(now, event),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Overlay(input) => self.handle_overlay_input(now, input),
                Wake::Routed(done) => self.finish_route(now, done),
                Wake::Ready => {}
            }
            // Every turn, whatever woke it, so a busy stream cannot starve the overlay.
            for _ in 0..INPUT_BATCH {
                match self.overlay.as_mut().and_then(OverlayLink::try_input) {
                    Some(input) => self.handle_overlay_input(now, input),
                    None => break,
                }
            }
            for _ in 0..INPUT_BATCH {
                match self.routing.try_done() {
                    Some(done) => self.finish_route(now, done),
                    None => break,
                }
            }
            self.receive_udp(now);
            if self.timer_deadline.is_some_and(|deadline| deadline <= now) {
                self.server.handle_timeout(now);
            }
            self.start_routes(now);
            if let Some(link) = &mut self.overlay {
                link.after_turn(now, &mut self.server);
            }
            self.flush().await;
            self.in_flight.clear();
            self.rearm_timer();
        }
        self.flush().await;
        let open = self.connections.close_all();
        for id in open {
            self.server.connection_closed(id);
        }
        // What the server produced on learning of the closes has nowhere to go now except
        // UDP; streams would be reopened, so drain them without sending.
        while let Some(transmit) = self.server.poll_transmit() {
            if transmit.to.transport == Transport::Udp {
                if let Some(endpoint) = udp::pick(&self.udp, transmit.to.local, transmit.to.remote)
                {
                    // Shutting down: nobody is left to tell of a failed send.
                    let _sent = endpoint.send(&transmit.payload, transmit.to.remote).await;
                }
            }
        }
        let stats = self.server.stats();
        tracing::info!(
            messages_in = stats.messages_in,
            messages_out = stats.messages_out,
            parse_errors = stats.parse_errors,
            keepalives = stats.keepalives,
            stun_answered = self.stun.answered,
            stun_dropped = self.stun.dropped,
            "core stopped"
        );
        if let Some(link) = self.overlay.take() {
            // Collected first: the server is not borrowed across the withdrawal.
            let aors: Vec<String> = self.server.location().aors().map(str::to_owned).collect();
            link.shutdown(aors).await;
        }
    }

    /// Registers interest in every source and reports whether any is ready. Readiness of a
    /// UDP socket is not consumed here; [`Core::receive_udp`] reads until it would block.
    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<Wake> {
        match self.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => return Poll::Ready(Wake::Event(event)),
            // Cannot happen while the core holds a sender in `Connections`; ignore.
            Poll::Ready(None) | Poll::Pending => {}
        }
        if let Some(link) = &mut self.overlay {
            if let Poll::Ready(input) = link.poll_input(cx) {
                return Poll::Ready(Wake::Overlay(input));
            }
        }
        if let Poll::Ready(done) = self.routing.poll_done(cx) {
            return Poll::Ready(Wake::Routed(done));
        }
        let mut ready = false;
        // Poll every socket, not just up to the first ready one, so all register a waker.
        for endpoint in &self.udp {
            ready |= endpoint.poll_recv_ready(cx).is_ready();
        }
        if self.timer_deadline.is_some() {
            ready |= self.timer.as_mut().poll(cx).is_ready();
        }
        if ready {
            Poll::Ready(Wake::Ready)
        } else {
            Poll::Pending
        }
    }

    fn handle_overlay_input(&mut self, now: Instant, input: LinkInput) {
        if let LinkInput::SendFailed(peer) = &input {
            self.routing.forget_peer(peer);
        }
        if let Some(link) = &mut self.overlay {
            link.handle_input(now, &mut self.server, input);
        }
    }

    /// Hands the routing chain what the server asked this turn; answers from its cache come
    /// back at once.
    fn start_routes(&mut self, now: Instant) {
        // Bounded: the server queues at most what this turn's input produced.
        while let Some(event) = self.server.poll_event() {
            let (id, query) = match event {
                ServerEvent::Resolve {
                    id,
                    uri,
                    aor,
                    purpose,
                    external,
                } => (
                    id,
                    Query {
                        uri,
                        aor,
                        purpose,
                        external,
                    },
                ),
                // No part of the node originates requests yet.
                ServerEvent::RequestDone { id, status } => {
                    tracing::debug!(request = id.0, status, "originated request ended");
                    continue;
                }
            };
            self.routing.start(
                now,
                &mut self.server,
                id,
                query,
                &mut remember_in(&mut self.overlay),
            );
        }
    }

    fn finish_route(&mut self, now: Instant, done: ResolutionDone) {
        self.routing.finish(
            now,
            &mut self.server,
            done,
            &mut remember_in(&mut self.overlay),
        );
    }

    fn handle_event(&mut self, now: Instant, event: StreamEvent) {
        match event {
            StreamEvent::Message {
                peer,
                payload,
                in_flight,
            } => {
                self.server.handle_input(now, peer, &payload);
                self.in_flight.push(in_flight);
            }
            StreamEvent::Opened {
                peer,
                writer,
                abort,
                authenticated,
            } => {
                if let (true, Some(id)) = (authenticated, peer.connection) {
                    self.server.connection_authenticated(id);
                }
                self.connections.opened(peer, writer, abort);
                tracing::trace!(open = self.connections.len(), "connection registered");
            }
            StreamEvent::Closed { id } => {
                if let Some((transport, remote)) = self.connections.closed(id) {
                    self.server.connection_closed(id);
                    // What waited on it fails now (503 upstream) rather than at Timer B:
                    // requests sent over it, and requests queued for a far end it never
                    // reached (a refused or timed-out connect).
                    self.server.connection_failed(now, id);
                    self.server.transport_failed(now, transport, remote);
                }
            }
        }
    }

    /// Reads up to [`RECV_BATCH`] datagrams from each socket and feeds them to the server.
    /// A socket that still had a full batch waiting tells the overload detector that the
    /// core is behind.
    fn receive_udp(&mut self, now: Instant) {
        let mut found_full_batch = false;
        for endpoint in &self.udp {
            for read in 0..RECV_BATCH {
                match endpoint.socket.try_recv_from(&mut self.recv_buffer) {
                    Ok((len, remote)) => {
                        found_full_batch |= read + 1 == RECV_BATCH;
                        let datagram = &self.recv_buffer[..len];
                        if nat::stun::is_stun(datagram) {
                            // STUN on the SIP port (RFC 5626 4.4.2): keepalives and
                            // address discovery, answered here, never seen by SIP.
                            self.stun.answer(endpoint, datagram, remote);
                            continue;
                        }
                        let peer = Peer {
                            transport: Transport::Udp,
                            remote,
                            local: endpoint.local,
                            connection: None,
                        };
                        self.server.handle_input(now, peer, datagram);
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                    // ICMP errors surfacing from earlier sends: nothing to do, keep reading.
                    Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(error) => {
                        tracing::debug!(%error, local = %endpoint.local, "UDP receive failed");
                        break;
                    }
                }
            }
        }
        if let Some(overloaded) = self.overload.turn(now, found_full_batch) {
            tracing::debug!(overloaded, "input backlog");
            self.server.set_overloaded(overloaded);
            if let Some(episodes) = overloaded
                .then(|| self.overload_log.occurred(now))
                .flatten()
            {
                tracing::warn!(
                    episodes,
                    shed_so_far = self.server.stats().overload_rejections,
                    "overloaded: input backed up, new requests shed with 503"
                );
            }
        }
    }

    /// Sends everything the server has queued.
    async fn flush(&mut self) {
        while let Some(transmit) = self.server.poll_transmit() {
            let to = transmit.to;
            if to.transport == Transport::Udp {
                let sent = match udp::pick(&self.udp, to.local, to.remote) {
                    Some(endpoint) => endpoint.send(&transmit.payload, to.remote).await,
                    None => {
                        tracing::debug!(remote = %to.remote, "no UDP socket for this address family");
                        false
                    }
                };
                if !sent {
                    // What this produces (an answer upstream) is drained by this same loop.
                    self.server
                        .transport_failed(Instant::now(), to.transport, to.remote);
                }
                continue;
            }
            if to.transport == Transport::Overlay {
                match &mut self.overlay {
                    Some(link) => link.send(&self.server, transmit),
                    // Only produced when the server has an overlay name, which it is given
                    // only with the overlay on.
                    None => tracing::warn!("overlay message without an overlay dropped"),
                }
                continue;
            }
            self.connections
                .send(transmit, &mut self.dropped_connections);
            while let Some(id) = self.dropped_connections.pop() {
                self.server.connection_closed(id);
            }
        }
    }

    fn rearm_timer(&mut self) {
        let overlay = self.overlay.as_ref().and_then(OverlayLink::poll_timeout);
        let deadline = match (self.server.poll_timeout(), overlay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if deadline == self.timer_deadline && !self.timer.is_elapsed() {
            return;
        }
        self.timer_deadline = deadline;
        if let Some(deadline) = deadline {
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
        }
    }
}

/// Where the routing chain leaves the addresses of the overlay nodes it found: the overlay
/// link's dialling cache (nowhere without an overlay).
fn remember_in(overlay: &mut Option<OverlayLink>) -> impl FnMut(&ServingPeers) + '_ {
    move |serving| {
        if let Some(link) = overlay.as_mut() {
            link.remember_addresses(serving);
        }
    }
}
