//! Two swarms over libp2p's in-memory transport, each with a behaviour whose handler keeps
//! the connection alive for a short grace period without arranging a wake-up (as the relay
//! server's handler does).

use std::{
    convert::Infallible,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    core::{
        transport::{MemoryTransport, PortUse},
        upgrade::{DeniedUpgrade, Version},
        Endpoint, Transport,
    },
    multiaddr::Protocol,
    plaintext,
    swarm::{
        handler::ConnectionEvent, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent,
        ConnectionId, FromSwarm, NetworkBehaviour, SubstreamProtocol, SwarmEvent, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    yamux, Multiaddr, PeerId, Swarm,
};

use super::RecheckKeepAlive;

/// How long the handler keeps its connection alive after it is created.
const GRACE: Duration = Duration::from_millis(300);
const IDLE_TIMEOUT: Duration = Duration::from_millis(200);
/// Bound on how long the test waits for the connection to close.
const WAIT: Duration = Duration::from_secs(30);

struct Grace;

struct GraceHandler {
    until: Instant,
}

impl NetworkBehaviour for Grace {
    type ConnectionHandler = GraceHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(GraceHandler::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(GraceHandler::new())
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

impl GraceHandler {
    fn new() -> Self {
        GraceHandler {
            until: Instant::now() + GRACE,
        }
    }
}

impl ConnectionHandler for GraceHandler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = DeniedUpgrade;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<DeniedUpgrade> {
        SubstreamProtocol::new(DeniedUpgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        Instant::now() < self.until
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, (), Infallible>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(&mut self, _: ConnectionEvent<DeniedUpgrade, DeniedUpgrade>) {}
}

fn swarm<B: NetworkBehaviour>(behaviour: B) -> Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|keypair| {
            MemoryTransport::default()
                .upgrade(Version::V1)
                .authenticate(plaintext::Config::new(keypair))
                .multiplex(yamux::Config::default())
        })
        .unwrap_or_else(|never| match never {})
        .with_behaviour(|_| behaviour)
        .unwrap_or_else(|never| match never {})
        .with_swarm_config(|config| config.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build()
}

/// Connects two swarms and drives both until the dialer's connection closes or `wait` ends;
/// returns whether it closed.
async fn connection_closes<B: NetworkBehaviour>(make: impl Fn() -> B, wait: Duration) -> bool {
    let mut listener = swarm(make());
    let mut dialer = swarm(make());
    // Memory addresses are process-wide: each test run gets its own.
    static NEXT_PORT: AtomicU64 = AtomicU64::new(1);
    let port = (u64::from(std::process::id()) << 20) | NEXT_PORT.fetch_add(1, Ordering::Relaxed);
    let address: Multiaddr = Protocol::Memory(port).into();
    if listener.listen_on(address.clone()).is_err() || dialer.dial(address).is_err() {
        return false;
    }
    let driven = async {
        let mut established = false;
        loop {
            tokio::select! {
                event = dialer.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { .. } => established = true,
                    SwarmEvent::ConnectionClosed { .. } if established => return true,
                    SwarmEvent::OutgoingConnectionError { .. } => return false,
                    _ => {}
                },
                _ = listener.select_next_some() => {}
            }
        }
    };
    tokio::time::timeout(wait, driven).await.unwrap_or(false)
}

#[tokio::test]
async fn connection_closes_after_a_grace_period_ends() {
    let closed = connection_closes(
        || RecheckKeepAlive::with_interval(Grace, Duration::from_millis(100)),
        WAIT,
    )
    .await;
    assert!(closed, "the idle connection stayed open for {WAIT:?}");
}

/// Documents why the wrapper exists: without it, nothing polls the connection once the
/// grace period ends, and the idle timeout never starts.
#[tokio::test]
async fn without_recheck_the_connection_stays_open() {
    let wait = GRACE + IDLE_TIMEOUT + Duration::from_secs(2);
    let closed = connection_closes(|| Grace, wait).await;
    assert!(
        !closed,
        "the connection closed without the wrapper: libp2p now re-polls by itself, and \
         RecheckKeepAlive may be unnecessary"
    );
}
