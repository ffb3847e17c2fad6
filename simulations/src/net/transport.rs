//! [`SimTransport`]: the libp2p `Transport` of one simulated node.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use futures::{
    channel::mpsc,
    future::{self, Ready},
    StreamExt,
};
use libp2p::{
    core::{
        multiaddr::Protocol,
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
        Transport,
    },
    Multiaddr,
};

use super::{
    network::{Incoming, Shared, SimNetError},
    node_address,
    pipe::{store_waker, SimStream},
    NodeIndex,
};

/// A dial in progress: resolves after one round trip.
pub type SimDial = Pin<Box<dyn Future<Output = Result<SimStream, SimNetError>> + Send>>;

/// The transport of one node: listens on [`node_address`] of its index and dials
/// `/memory/<index + 1>` addresses, optionally followed by `/p2p/<peer id>`.
///
/// Every other address (notably relayed `/p2p-circuit` ones) is `MultiaddrNotSupported`, so
/// in an `OrTransport` the other transport gets its turn.
pub struct SimTransport {
    net: Arc<Shared>,
    node: NodeIndex,
    /// A node has one address, so at most one listener.
    listener: Option<Listener>,
    /// Removed listeners whose `ListenerClosed` has not been reported yet.
    closed: VecDeque<ListenerId>,
    /// The task polling this transport, woken when a listener is added or removed.
    waker: Option<Waker>,
}

struct Listener {
    id: ListenerId,
    backlog: mpsc::Receiver<Incoming>,
    announced: bool,
}

impl SimTransport {
    pub(super) fn new(net: Arc<Shared>, node: NodeIndex) -> SimTransport {
        SimTransport {
            net,
            node,
            listener: None,
            closed: VecDeque::new(),
            waker: None,
        }
    }

    /// The node this transport belongs to.
    pub fn node(&self) -> NodeIndex {
        self.node
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// `/memory/N` alone, as listen addresses are.
fn listen_port(addr: &Multiaddr) -> Option<u64> {
    let mut protocols = addr.iter();
    match (protocols.next(), protocols.next()) {
        (Some(Protocol::Memory(port)), None) => Some(port),
        _ => None,
    }
}

/// `/memory/N` (N > 0) optionally followed by `/p2p/<peer id>`, as dial addresses are.
fn dial_port(addr: &Multiaddr) -> Option<u64> {
    let mut protocols = addr.iter();
    let port = match protocols.next() {
        Some(Protocol::Memory(port)) if port > 0 => port,
        _ => return None,
    };
    match (protocols.next(), protocols.next()) {
        (None, _) | (Some(Protocol::P2p(_)), None) => Some(port),
        _ => None,
    }
}

impl Transport for SimTransport {
    type Output = SimStream;
    type Error = SimNetError;
    type ListenerUpgrade = Ready<Result<SimStream, SimNetError>>;
    type Dial = SimDial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        let own_port = u64::from(self.node) + 1;
        match listen_port(&addr) {
            Some(port) if port == 0 || port == own_port => {}
            _ => return Err(TransportError::MultiaddrNotSupported(addr)),
        }
        if self.listener.is_some() {
            return Err(TransportError::Other(SimNetError::AlreadyListening(
                self.node,
            )));
        }
        let backlog = self
            .net
            .listen(self.node, id)
            .map_err(TransportError::Other)?;
        self.listener = Some(Listener {
            id,
            backlog,
            announced: false,
        });
        self.wake();
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        if self.listener.as_ref().is_none_or(|l| l.id != id) {
            return false;
        }
        // Dropping the backlog drops the connections still waiting in it: their dialers
        // see EOF, as with a listening socket closed before accept.
        self.listener = None;
        self.net.unlisten(self.node, id);
        self.closed.push_back(id);
        self.wake();
        true
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let Some(port) = dial_port(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let from = self
            .net
            .check_node(self.node.into())
            .map_err(TransportError::Other)?;
        let to = self
            .net
            .check_node(port - 1)
            .map_err(TransportError::Other)?;
        let net = Arc::clone(&self.net);
        Ok(Box::pin(async move {
            // The timers below would panic outside a runtime.
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(SimNetError::NoRuntime);
            }
            let latency = net.model.link_latency(from, to);
            // SYN travels to the listener, which accepts or refuses it...
            tokio::time::sleep(latency).await;
            let result = net.accept(from, to);
            // ...and the answer travels back.
            tokio::time::sleep(latency).await;
            if result.is_ok() {
                net.record_connection(from);
            }
            result
        }))
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let this = &mut *self;
        if let Some(listener_id) = this.closed.pop_front() {
            return Poll::Ready(TransportEvent::ListenerClosed {
                listener_id,
                reason: Ok(()),
            });
        }
        if let Some(listener) = &mut this.listener {
            if !listener.announced {
                listener.announced = true;
                return Poll::Ready(TransportEvent::NewAddress {
                    listener_id: listener.id,
                    listen_addr: node_address(this.node),
                });
            }
            match listener.backlog.poll_next_unpin(cx) {
                Poll::Ready(Some(incoming)) => {
                    return Poll::Ready(TransportEvent::Incoming {
                        listener_id: listener.id,
                        upgrade: future::ready(Ok(incoming.stream)),
                        local_addr: node_address(this.node),
                        send_back_addr: node_address(incoming.from),
                    });
                }
                Poll::Ready(None) => {
                    // A newer transport of the same node took over the address.
                    let listener_id = listener.id;
                    this.listener = None;
                    return Poll::Ready(TransportEvent::ListenerClosed {
                        listener_id,
                        reason: Ok(()),
                    });
                }
                Poll::Pending => {}
            }
        }
        store_waker(&mut this.waker, cx);
        Poll::Pending
    }
}

impl Drop for SimTransport {
    fn drop(&mut self) {
        // A stopped or crashed node refuses connections from now on.
        if let Some(listener) = self.listener.take() {
            self.net.unlisten(self.node, listener.id);
        }
    }
}
