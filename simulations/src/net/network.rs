//! The network itself: per-node state (listener, NAT, traffic counters) and the transports
//! handed to the nodes.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use futures::{channel::mpsc, future};
use libp2p::{
    core::{
        muxing::StreamMuxerBox,
        transport::{Boxed, ListenerId},
        upgrade::Version,
        Transport,
    },
    identity::Keypair,
    noise, plaintext, yamux, PeerId,
};

use super::{
    model::splitmix64,
    pipe::{self, SimStream},
    transport::SimTransport,
    NetworkModel, NodeIndex,
};

/// Connections a listener may have waiting to be accepted; a dial beyond it is refused.
pub const ACCEPT_BACKLOG: usize = 128;

/// Gives up on a connection whose security or multiplexer handshake has not finished by then.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the simulated network refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimNetError {
    #[error("node {node} is out of range: this network was created for {max_nodes} nodes")]
    NodeOutOfRange { node: u64, max_nodes: usize },
    #[error("connection refused: node {0} is not listening")]
    ConnectionRefused(NodeIndex),
    #[error("connection refused: node {0}'s accept backlog ({ACCEPT_BACKLOG}) is full")]
    BacklogFull(NodeIndex),
    #[error("node {0} is behind NAT: inbound connections are blocked by NAT")]
    BlockedByNat(NodeIndex),
    #[error("node {0} is already listening")]
    AlreadyListening(NodeIndex),
    #[error("the simulated network must be used inside a tokio runtime with time enabled")]
    NoRuntime,
}

/// Traffic one node sent (or, from [`SimNetwork::total_traffic`], the whole network).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub bytes_sent: u64,
    /// Write calls that accepted data.
    pub frames_sent: u64,
    /// Dials that succeeded, counted at the dialer.
    pub connections_opened: u64,
}

/// The security handshake of [`SimNetwork::authenticated_transport`].
///
/// Measured memory per idle connection, both ends together, release build: RSS growth over
/// 1,000 connections between two swarms (`dummy` behaviour, yamux, 1 ms links with 10 %
/// jitter, 2 worker threads), divided by 1,000; see the ignored tests
/// `net::swarm_tests::memory_per_connection` and `memory_per_raw_connection`:
///
/// - `Plaintext`: about 16 KiB
/// - `Noise`: about 33 KiB (its frame buffers and cipher states stay for the connection's life)
///
/// Of this, the simulated link itself is about 1 KiB; the rest is libp2p's connection task,
/// yamux and the security layer. 10,000 nodes × 50 connections each ≈ 250,000 connections
/// ≈ 4 GB with Plaintext, 8 GB with Noise, which is why Plaintext is the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Security {
    /// libp2p's plaintext handshake: public keys are exchanged and peer ids are checked
    /// against them, nothing is encrypted. The default for large runs.
    #[default]
    Plaintext,
    /// The real Noise XX handshake and encryption, as deployed nodes use.
    Noise,
}

/// The in-memory network all simulated nodes share. Cheap to clone.
#[derive(Clone)]
pub struct SimNetwork {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) model: NetworkModel,
    nodes: Box<[NodeSlot]>,
    /// Numbers connections, to seed each one's jitter/loss generator differently.
    connections: AtomicU64,
}

/// What the network knows about one node.
pub(super) struct NodeSlot {
    bytes_sent: AtomicU64,
    frames_sent: AtomicU64,
    connections_opened: AtomicU64,
    reachable: AtomicBool,
    listener: Mutex<Option<Registration>>,
}

struct Registration {
    id: ListenerId,
    backlog: mpsc::Sender<Incoming>,
}

/// A connection waiting in a listener's backlog.
pub(super) struct Incoming {
    pub(super) stream: SimStream,
    pub(super) from: NodeIndex,
}

impl NodeSlot {
    fn new() -> NodeSlot {
        NodeSlot {
            bytes_sent: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            reachable: AtomicBool::new(true),
            listener: Mutex::new(None),
        }
    }

    pub(super) fn record_write(&self, bytes: usize) {
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        self.frames_sent.fetch_add(1, Ordering::Relaxed);
    }

    fn traffic(&self) -> Traffic {
        Traffic {
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            frames_sent: self.frames_sent.load(Ordering::Relaxed),
            connections_opened: self.connections_opened.load(Ordering::Relaxed),
        }
    }

    fn listener(&self) -> MutexGuard<'_, Option<Registration>> {
        crate::lock(&self.listener)
    }
}

impl Shared {
    pub(super) fn node(&self, node: NodeIndex) -> Option<&NodeSlot> {
        self.nodes.get(usize::try_from(node).ok()?)
    }

    fn out_of_range(&self, node: u64) -> SimNetError {
        SimNetError::NodeOutOfRange {
            node,
            max_nodes: self.nodes.len(),
        }
    }

    /// `node`'s slot, or the error naming it as out of range.
    fn slot(&self, node: NodeIndex) -> Result<&NodeSlot, SimNetError> {
        self.node(node)
            .ok_or_else(|| self.out_of_range(node.into()))
    }

    pub(super) fn check_node(&self, node: u64) -> Result<NodeIndex, SimNetError> {
        NodeIndex::try_from(node)
            .ok()
            .filter(|n| self.node(*n).is_some())
            .ok_or_else(|| self.out_of_range(node))
    }

    /// Registers `node`'s listener and returns its backlog. A registration left by an earlier
    /// transport of the same node (a restarted node) is replaced; its listener then closes.
    pub(super) fn listen(
        &self,
        node: NodeIndex,
        id: ListenerId,
    ) -> Result<mpsc::Receiver<Incoming>, SimNetError> {
        let slot = self.slot(node)?;
        // One sender, so the channel holds exactly `buffer + 1` connections.
        let (sender, receiver) = mpsc::channel(ACCEPT_BACKLOG - 1);
        *slot.listener() = Some(Registration {
            id,
            backlog: sender,
        });
        Ok(receiver)
    }

    /// Removes `node`'s listener if it still is the one registered as `id`.
    pub(super) fn unlisten(&self, node: NodeIndex, id: ListenerId) {
        if let Some(slot) = self.node(node) {
            let mut listener = slot.listener();
            if listener.as_ref().is_some_and(|r| r.id == id) {
                *listener = None;
            }
        }
    }

    /// The connection attempt reaching `to` (the SYN): returns the dialer's end, or why the
    /// attempt is refused.
    pub(super) fn accept(
        self: &Arc<Self>,
        from: NodeIndex,
        to: NodeIndex,
    ) -> Result<SimStream, SimNetError> {
        let slot = self.slot(to)?;
        if !slot.reachable.load(Ordering::Relaxed) {
            return Err(SimNetError::BlockedByNat(to));
        }
        let mut listener = slot.listener();
        let Some(registration) = listener.as_mut() else {
            return Err(SimNetError::ConnectionRefused(to));
        };
        let number = self.connections.fetch_add(1, Ordering::Relaxed);
        let pair = (u64::from(from) << 32) | u64::from(to);
        let rng_seed = splitmix64(self.model.seed ^ splitmix64(pair) ^ splitmix64(!number));
        let latency = self.model.link_latency(from, to);
        let (dialer_end, listener_end) = pipe::connect(self, from, to, latency, rng_seed);
        let incoming = Incoming {
            stream: listener_end,
            from,
        };
        match registration.backlog.try_send(incoming) {
            Ok(()) => Ok(dialer_end),
            Err(e) if e.is_full() => Err(SimNetError::BacklogFull(to)),
            Err(_) => {
                // The listening transport is gone without unregistering (it was leaked).
                *listener = None;
                Err(SimNetError::ConnectionRefused(to))
            }
        }
    }

    pub(super) fn record_connection(&self, node: NodeIndex) {
        if let Some(slot) = self.node(node) {
            slot.connections_opened.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl SimNetwork {
    /// A network for nodes `0..max_nodes`; all counters are allocated here, once.
    pub fn new(model: NetworkModel, max_nodes: usize) -> SimNetwork {
        SimNetwork {
            shared: Arc::new(Shared {
                model,
                nodes: (0..max_nodes).map(|_| NodeSlot::new()).collect(),
                connections: AtomicU64::new(0),
            }),
        }
    }

    /// Nodes the network was created for.
    pub fn max_nodes(&self) -> usize {
        self.shared.nodes.len()
    }

    /// `false` puts `node` behind NAT: dials to it fail after one round trip, its own dials
    /// work. Connections already open stay open. Out-of-range nodes are ignored.
    pub fn set_reachable(&self, node: NodeIndex, reachable: bool) {
        if let Some(slot) = self.shared.node(node) {
            slot.reachable.store(reachable, Ordering::Relaxed);
        }
    }

    pub fn is_reachable(&self, node: NodeIndex) -> bool {
        self.shared
            .node(node)
            .is_some_and(|slot| slot.reachable.load(Ordering::Relaxed))
    }

    /// The raw transport of `node`: its output is a [`SimStream`]. For a node out of range,
    /// every listen and dial fails with [`SimNetError::NodeOutOfRange`].
    pub fn transport(&self, node: NodeIndex) -> SimTransport {
        SimTransport::new(Arc::clone(&self.shared), node)
    }

    /// `node`'s transport with the usual libp2p stack on top: multistream-select V1, the
    /// chosen security handshake, yamux, and a [`HANDSHAKE_TIMEOUT`].
    pub fn authenticated_transport(
        &self,
        node: NodeIndex,
        keypair: &Keypair,
        security: Security,
    ) -> Boxed<(PeerId, StreamMuxerBox)> {
        let builder = self.transport(node).upgrade(Version::V1);
        match security {
            Security::Plaintext => builder
                .authenticate(plaintext::Config::new(keypair))
                .multiplex(yamux::Config::default())
                .timeout(HANDSHAKE_TIMEOUT)
                .boxed(),
            Security::Noise => match noise::Config::new(keypair) {
                Ok(noise) => builder
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .timeout(HANDSHAKE_TIMEOUT)
                    .boxed(),
                Err(e) => {
                    // Only a key that cannot sign gets here; fail each connection loudly
                    // rather than hand back a transport that silently does nothing.
                    let message = format!("node {node}: cannot set up noise: {e}");
                    tracing::error!("{message}");
                    self.transport(node)
                        .and_then(move |_, _| {
                            future::ready(Err::<(PeerId, StreamMuxerBox), _>(
                                std::io::Error::other(message),
                            ))
                        })
                        .boxed()
                }
            },
        }
    }

    /// Traffic sent by `node` (zero for an out-of-range node).
    pub fn traffic(&self, node: NodeIndex) -> Traffic {
        self.shared
            .node(node)
            .map(NodeSlot::traffic)
            .unwrap_or_default()
    }

    /// Traffic sent by all nodes together.
    pub fn total_traffic(&self) -> Traffic {
        self.shared
            .nodes
            .iter()
            .fold(Traffic::default(), |total, slot| {
                let t = slot.traffic();
                Traffic {
                    bytes_sent: total.bytes_sent + t.bytes_sent,
                    frames_sent: total.frames_sent + t.frames_sent,
                    connections_opened: total.connections_opened + t.connections_opened,
                }
            })
    }
}
