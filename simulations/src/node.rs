//! One honest simulated node: a real overlay node on the simulated network, plus the few
//! lines of a SIP user agent that answers calls for the users it serves.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use overlay::authority::{Delegation, TrustAnchors};
use overlay::key::Aor;
use overlay::network::{
    now_unix, DhtMode, LookupAnswer, Overlay, OverlayConfig, OverlayEvent, OverlayTransport,
    RoleSetting, SendError,
};
use overlay::record::RecordBinding;
use overlay::validate::{AuthorityMode, RecordValidator};
use sip::message::edit::build_response;
use sip::message::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::lock;
use crate::net::{node_address, NodeIndex, Security, SimNetwork};

/// Domain of every simulated user.
pub const SIM_DOMAIN: &str = "sim.example";

/// How long a call waits for its final response.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Default idle connection timeout of simulated nodes (`--idle-timeout`; real nodes: 60 s).
pub const SIM_IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Routing-table refresh interval of simulated nodes (real nodes: 5 min).
pub const SIM_ROUTING_REFRESH_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Calls waiting for their answer at one node; a call beyond it fails at once.
const MAX_PENDING_CALLS: usize = 4096;

/// Overlay events queued per node. Small: a simulated node only reads SIP messages.
const EVENT_QUEUE: usize = 256;

/// What every honest node shares: the network, the domain's authority, settings.
#[derive(Clone)]
pub struct NodeContext {
    pub network: SimNetwork,
    pub security: Security,
    /// The domain authority that delegates [`SIM_DOMAIN`] to every honest node.
    pub authority: Arc<Keypair>,
    /// Validator every honest node starts with (trust anchor for [`SIM_DOMAIN`]).
    pub validator: RecordValidator,
    /// How long a connection stays open with nothing on it.
    pub idle_connection_timeout: Duration,
}

impl NodeContext {
    pub fn new(network: SimNetwork, security: Security, authority: Keypair) -> NodeContext {
        let mut anchors = TrustAnchors::new();
        // An Ed25519 key made here; `add` refuses only other key types.
        let _ = anchors.add(SIM_DOMAIN, authority.public());
        NodeContext {
            network,
            security,
            authority: Arc::new(authority),
            validator: RecordValidator::new(AuthorityMode::Open, anchors),
            idle_connection_timeout: SIM_IDLE_CONNECTION_TIMEOUT,
        }
    }
}

/// Outcome of one lookup, as the workload judges it.
#[derive(Debug)]
pub struct LookupResult {
    pub answer: Option<LookupAnswer>,
    pub elapsed: Duration,
}

/// Why a call did not connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    LookupFailed,
    NotFound,
    Send(SendError),
    /// The callee's node answered with this status.
    Rejected(u16),
    Timeout,
    TooManyCalls,
}

/// Pending calls of one node by Call-ID.
type PendingCalls = Arc<Mutex<HashMap<String, oneshot::Sender<u16>>>>;

/// A running honest node.
pub struct SimNode {
    pub index: NodeIndex,
    pub peer_id: PeerId,
    /// Reachable (a supernode) or behind NAT (a peer).
    pub public: bool,
    /// Started with bootstrap addresses (every node but the first).
    has_bootstrap_peers: bool,
    overlay: Overlay,
    /// AoRs (canonical text) this node serves; the call answerer reads it.
    served: Arc<Mutex<HashSet<String>>>,
    pending: PendingCalls,
    events_task: JoinHandle<()>,
    next_call: std::sync::atomic::AtomicU64,
}

impl SimNode {
    /// Starts the node at `index`, bootstrapping from `bootstrap` (addresses with `/p2p`).
    pub async fn start(
        context: &NodeContext,
        index: NodeIndex,
        keypair: Keypair,
        public: bool,
        bootstrap: Vec<Multiaddr>,
    ) -> Result<SimNode, String> {
        let peer_id = keypair.public().to_peer_id();
        let network = context.network.clone();
        let security = context.security;
        let now = now_unix();
        let delegation = Delegation::issue(
            &context.authority,
            SIM_DOMAIN,
            peer_id,
            now.saturating_sub(3600),
            now + 7 * 24 * 3600,
        )
        .map_err(|error| format!("cannot delegate the domain: {error}"))?;
        network.set_reachable(index, public);
        let mut config = OverlayConfig::new(keypair);
        config.transport = OverlayTransport::Custom(Arc::new(move |keypair: &Keypair| {
            network.authenticated_transport(index, keypair, security)
        }));
        config.listen = vec![node_address(index)];
        let has_bootstrap_peers = !bootstrap.is_empty();
        config.bootstrap = bootstrap;
        config.mdns = false;
        config.role = if public {
            RoleSetting::Supernode
        } else {
            RoleSetting::Peer
        };
        config.dht_mode = DhtMode::ByRole;
        config.validator = context.validator.clone();
        config.delegations = vec![delegation];
        config.event_queue_len = EVENT_QUEUE;
        // Thousands of nodes share one thread here: pings every 15 s on every connection
        // cost more CPU than the whole workload, and a crashed simulated node's connections
        // end at once anyway. Roles are configured and addresses known, so AutoNAT has
        // nothing to find. A routing-table refresh costs as much as the node's first bootstrap,
        // so every 5 min on every node would be like starting the network again every 5 min;
        // idle connections cost memory (about 30 KiB per end), so they close sooner.
        config.ping_interval = None;
        config.autonat = false;
        config.routing_refresh_interval = Some(SIM_ROUTING_REFRESH_INTERVAL);
        config.idle_connection_timeout = context.idle_connection_timeout;
        let (overlay, events) = overlay::network::Overlay::start(config)
            .await
            .map_err(|error| format!("node {index} did not start: {error}"))?;
        let served = Arc::new(Mutex::new(HashSet::new()));
        let pending: PendingCalls = Arc::new(Mutex::new(HashMap::new()));
        let events_task = tokio::spawn(
            answer_calls(
                overlay.clone(),
                events,
                Arc::clone(&served),
                Arc::clone(&pending),
            )
            .instrument(tracing::debug_span!("sim_node", index, peer = %peer_id)),
        );
        Ok(SimNode {
            index,
            peer_id,
            public,
            has_bootstrap_peers,
            overlay,
            served,
            pending,
            events_task,
            next_call: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// This node's address for others to bootstrap from.
    pub fn bootstrap_address(&self) -> Multiaddr {
        node_address(self.index).with(Protocol::P2p(self.peer_id))
    }

    /// The contact a user registered at this node has.
    pub fn contact_for(&self, aor: &Aor) -> String {
        format!("sip:{}@phone{}.sim.invalid", aor.user(), self.index)
    }

    /// Registers (or refreshes) `aor` here: publishes this node's binding for it.
    pub async fn register(&self, aor: &Aor, lifetime: Duration) -> bool {
        lock(&self.served).insert(aor.as_str().to_owned());
        let binding = RecordBinding {
            contact: self.contact_for(aor),
            expires_at: now_unix() + lifetime.as_secs(),
            q: 1000,
            instance: None,
            reg_id: None,
        };
        match self.overlay.publish(aor.clone(), vec![binding]).await {
            Ok(report) => report.remote_copies > 0,
            Err(error) => {
                tracing::debug!(index = self.index, %aor, %error, "publish failed");
                false
            }
        }
    }

    pub async fn lookup(&self, aor: &Aor) -> LookupResult {
        let started = Instant::now();
        let answer = self.overlay.lookup_with_sources(aor.clone()).await.ok();
        LookupResult {
            answer,
            elapsed: started.elapsed(),
        }
    }

    /// Calls `aor`: looks it up, sends an INVITE to the node serving its best live
    /// binding over the overlay's SIP stream, and waits for the final response.
    pub async fn call(&self, aor: &Aor) -> Result<Duration, CallFailure> {
        let started = Instant::now();
        let answer = self
            .overlay
            .lookup(aor.clone())
            .await
            .map_err(|_| CallFailure::LookupFailed)?;
        let record = answer.ok_or(CallFailure::NotFound)?;
        let now = now_unix();
        let live = record.live_bindings(now);
        let target = live.first().ok_or(CallFailure::NotFound)?;
        let peer = target.serving_peer;
        let addrs = target.serving_addrs.to_vec();
        let contact = target.binding.contact.clone();
        let number = self
            .next_call
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let call_id = format!("{number}-{}@{}", self.index, self.peer_id);
        let (reply, answered) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if pending.len() >= MAX_PENDING_CALLS {
                return Err(CallFailure::TooManyCalls);
            }
            pending.insert(call_id.clone(), reply);
        }
        let invite = invite(&contact, aor, self.index, number, &call_id);
        let outcome = match self.overlay.send_sip(peer, addrs, invite).await {
            Err(error) => Err(CallFailure::Send(error)),
            Ok(()) => match tokio::time::timeout(CALL_TIMEOUT, answered).await {
                Ok(Ok(200)) => Ok(started.elapsed()),
                Ok(Ok(status)) => Err(CallFailure::Rejected(status)),
                Ok(Err(_)) | Err(_) => Err(CallFailure::Timeout),
            },
        };
        lock(&self.pending).remove(&call_id);
        outcome
    }

    /// Forgets `aor` here (its user moved to another node).
    pub fn unserve(&self, aor: &Aor) {
        lock(&self.served).remove(aor.as_str());
    }

    /// Whether the node was started with bootstrap addresses (and so will bootstrap).
    pub fn has_bootstrap_peers(&self) -> bool {
        self.has_bootstrap_peers
    }

    pub async fn stats(&self) -> Option<overlay::network::OverlayStats> {
        self.overlay.stats().await.ok()
    }

    /// Leaves gracefully: hands stored records over, then stops.
    pub async fn leave(&self) {
        self.overlay.shutdown().await;
        self.events_task.abort();
    }

    /// Stops at once, like a crashed process.
    pub fn crash(&self) {
        self.overlay.abort();
        self.events_task.abort();
    }
}

fn invite(contact: &str, aor: &Aor, from_index: NodeIndex, number: u64, call_id: &str) -> Bytes {
    let text = format!(
        "INVITE {contact} SIP/2.0\r\n\
         Via: SIP/2.0/TCP node{from_index}.sim.invalid;branch=z9hG4bK{from_index}x{number}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller{from_index}@{SIM_DOMAIN}>;tag={from_index}\r\n\
         To: <sip:{aor}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller{from_index}@node{from_index}.sim.invalid>\r\n\
         Content-Length: 0\r\n\r\n",
    );
    Bytes::from(text)
}

/// Reads the node's overlay events: answers INVITEs for served users (200) or not (404),
/// and hands responses to the calls waiting for them.
async fn answer_calls(
    overlay: Overlay,
    mut events: mpsc::Receiver<OverlayEvent>,
    served: Arc<Mutex<HashSet<String>>>,
    pending: PendingCalls,
) {
    while let Some(event) = events.recv().await {
        let OverlayEvent::SipMessage { from, bytes } = event else {
            continue;
        };
        let Ok(message) = Message::parse(&bytes) else {
            tracing::debug!(%from, "unparseable SIP message");
            continue;
        };
        if message.is_request() {
            let status = match called_aor(&message) {
                Some(aor) if lock(&served).contains(&aor) => (200, "OK"),
                _ => (404, "Not Found"),
            };
            let response = build_response(&message, status.0, status.1, Some("sim"), &[], None);
            let overlay = overlay.clone();
            // Sent from a task: a slow caller must not hold up this node's other calls.
            tokio::spawn(async move {
                let _ = overlay.send_sip(from, Vec::new(), response.into()).await;
            });
        } else if let (Some(status), Some(call_id)) = (message.status(), message.call_id()) {
            if status >= 200 {
                if let Some(waiting) = lock(&pending).remove(call_id) {
                    let _ = waiting.send(status);
                }
            }
        }
    }
}

/// The AoR an INVITE is for, from its To header (the Request-URI is the contact).
fn called_aor(message: &Message<'_>) -> Option<String> {
    let to = message.to()?.ok()?;
    let aor = Aor::from_uri(&to.uri).ok()?;
    Some(aor.as_str().to_owned())
}
