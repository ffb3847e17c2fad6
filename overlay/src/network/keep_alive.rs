//! Makes a connection re-check whether it is still wanted when a handler's time-limited
//! keep-alive runs out.
//!
//! libp2p's connection task asks its handlers whether to stay open only when it is polled.
//! The relay server's handler keeps every new connection open for 10 s after it goes idle,
//! but nothing wakes the connection when those 10 s are over. A connection with no other
//! traffic then stays open for good (the tests show it); with pings on, it closes only once
//! a ping has woken it after the 10 s. [`RecheckKeepAlive`] wraps a behaviour so that, while
//! its handler asks to keep the connection open, the connection is polled again every
//! [`RECHECK_INTERVAL`].

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use libp2p::{
    core::{transport::PortUse, Endpoint},
    swarm::{
        handler::ConnectionEvent, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent,
        ConnectionId, FromSwarm, NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};
use tokio::time::Sleep;

/// How often a connection whose handler asks to stay open is polled again.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(5);

/// `B` with handlers that get re-polled while they keep their connection alive.
pub struct RecheckKeepAlive<B> {
    inner: B,
    interval: Duration,
}

impl<B> RecheckKeepAlive<B> {
    pub fn new(inner: B) -> Self {
        Self::with_interval(inner, RECHECK_INTERVAL)
    }

    pub fn with_interval(inner: B, interval: Duration) -> Self {
        RecheckKeepAlive { inner, interval }
    }

    pub fn inner_mut(&mut self) -> &mut B {
        &mut self.inner
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for RecheckKeepAlive<B> {
    type ConnectionHandler = RecheckHandler<B::ConnectionHandler>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
            .map(|handler| RecheckHandler::new(handler, self.interval))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(
                connection_id,
                peer,
                addr,
                role_override,
                port_use,
            )
            .map(|handler| RecheckHandler::new(handler, self.interval))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}

/// A handler `H` plus the timer that re-polls its connection.
pub struct RecheckHandler<H> {
    inner: H,
    interval: Duration,
    /// Armed while `inner` keeps the connection alive.
    recheck: Option<Pin<Box<Sleep>>>,
}

impl<H> RecheckHandler<H> {
    fn new(inner: H, interval: Duration) -> Self {
        RecheckHandler {
            inner,
            interval,
            recheck: None,
        }
    }
}

impl<H: ConnectionHandler> ConnectionHandler for RecheckHandler<H> {
    type FromBehaviour = H::FromBehaviour;
    type ToBehaviour = H::ToBehaviour;
    type InboundProtocol = H::InboundProtocol;
    type OutboundProtocol = H::OutboundProtocol;
    type InboundOpenInfo = H::InboundOpenInfo;
    type OutboundOpenInfo = H::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        self.inner.listen_protocol()
    }

    fn connection_keep_alive(&self) -> bool {
        self.inner.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        let event = self.inner.poll(cx);
        if event.is_pending() {
            if self.inner.connection_keep_alive() {
                let interval = self.interval;
                let timer = self
                    .recheck
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
                if timer.as_mut().poll(cx).is_ready() {
                    // Time to ask again: the connection task re-reads every handler's
                    // keep-alive on its next poll, which this wake-up causes.
                    self.recheck = None;
                    cx.waker().wake_by_ref();
                }
            } else {
                self.recheck = None;
            }
        }
        event
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.inner.poll_close(cx)
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        self.inner.on_behaviour_event(event)
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        self.inner.on_connection_event(event)
    }
}

#[cfg(test)]
mod tests;
