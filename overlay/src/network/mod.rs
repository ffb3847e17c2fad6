//! The libp2p network of an overlay node behind an async handle.
//!
//! [`Overlay::start`] builds the swarm (TCP + noise + yamux, DNS; Kademlia, identify, ping,
//! mDNS, AutoNAT, relay client and server, DCUtR, and the SIP stream protocol), moves it onto
//! its own tokio task, and returns a cheap-to-clone [`Overlay`] handle plus a bounded
//! receiver of [`OverlayEvent`]s. Every handle method sends one command over a bounded
//! channel to that task and waits for the answer on a oneshot channel; when the command
//! channel is full, callers wait for room.
//!
//! Records: every record stored by this node, received from others or published by itself,
//! is first run through the [`RecordValidator`](crate::validate::RecordValidator) and the
//! merged value it returns is what is stored, with the expiry of its latest entry. Refused
//! records are counted ([`Overlay::stats`]) and reported as [`OverlayEvent::RecordRefused`].
//! Domain authority records ([`Overlay::publish_authority`]) are stored first-come and
//! their key pinned by every node that stores one; in open mode a node also fetches a
//! domain's authority record when it meets a domain with no known key (see
//! `authority_fetch.rs` and `WIRE.md`, "Learning a pinned key").
//! A node puts only its own signed entry of a record; it puts it again every
//! [`OverlayConfig::republish_interval`] until the entry expires, so the record survives the
//! loss of the nodes that stored it.
//!
//! Roles ([`OverlayConfig::role`]): a supernode is a DHT server and a circuit relay (the relay
//! server is always part of the swarm; [`libp2p::relay::Behaviour::set_status`] switches the
//! advertisement of the hop protocol, and with it the acceptance of reservations, on and
//! off at runtime). A peer is a DHT client while it is connected to a supernode (see
//! [`DhtMode::ByRole`] for `auto` nodes in an overlay without supernodes), and keeps a relay
//! reservation on one connected supernode, found by identify (it advertises the hop
//! protocol), listening on `<relay>/p2p-circuit`; when the reservation fails or the relay
//! goes away it asks another (or the same again after a few seconds). DCUtR upgrades
//! relayed connections to direct ones where it can. A node in `auto` becomes a supernode
//! once AutoNAT has confirmed a direct external address and the node has been up for
//! [`OverlayConfig::promote_after`], and a peer again when the address expires or AutoNAT
//! finds the node private; every switch is reported as [`OverlayEvent::RoleChanged`].
//!
//! Leaving: [`Overlay::shutdown`] first puts every record of the local store to the
//! closest other DHT servers for its key (bounded to two seconds and 512 records), so that
//! records survive a graceful departure even if replication has not run since they
//! arrived. A node switching to DHT client mode does the same without waiting.

mod authority_fetch;
mod behaviour;
mod config;
mod driver;
mod keep_alive;
mod records;
mod roles;
mod sip_stream;

use std::time::Duration;

use bytes::Bytes;
use libp2p::identity::PublicKey;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::authority::AuthorityRecord;
use crate::key::Aor;
use crate::record::{RecordBinding, RecordError, RegistrationRecord};
use crate::validate::{Refusal, ValidationCounters};

pub use behaviour::{
    agent_version, BuildError, IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL, SIP_PROTOCOL,
};
pub use config::{
    default_listen_addr, load_or_create_keypair, DhtMode, KeyFileError, OverlayConfig,
    OverlayTransport, TransportFactory, NODE_KEY_FILE,
};
pub use records::{follow_tokio_clock, now_unix, now_unix_millis, peer_id_of, without_peer_id};
pub use roles::{BadRoleSetting, NodeRole, RoleSetting};

/// Tracing target of the debug event `record stored` that a DHT server logs for every
/// record another node puts to it and that it accepts and stores, whether the put comes from
/// the record's publisher, from a node's replication or from a node handing records over:
/// `record stored kind=<kind> key=<hash hex> from=<sending peer> publishers=<serving peers>`
/// (`key` as [`crate::key::key_hash_hex`] writes it). Enable it with a log filter such as
/// `info,overlay::store=debug`.
pub const STORE_LOG_TARGET: &str = "overlay::store";

/// Bound on waiting, in [`Overlay::start`], for every listener to report its address.
const LISTEN_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on [`Overlay::shutdown`] waiting for the network task to stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Added to the caller-side bound of a command whose own deadline the network task enforces,
/// so the task's answer (possibly partial results) normally arrives first.
const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// Something that happened in the overlay.
///
/// Delivered through the receiver returned by [`Overlay::start`], a bounded channel of
/// [`OverlayConfig::event_queue_len`]. When it is full, new events are dropped: inbound
/// SIP messages with a warning (SIP retransmits over unreliable legs, or the transaction
/// times out), other events with a debug log. A node must therefore keep reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverlayEvent {
    /// A complete SIP message, byte for byte as the sending node wrote it.
    SipMessage {
        from: PeerId,
        bytes: Bytes,
    },
    /// The node now listens on this address.
    ListenAddr {
        address: Multiaddr,
    },
    /// The node stopped listening on this address.
    ListenAddrExpired {
        address: Multiaddr,
    },
    /// A node was found and added to the DHT routing table.
    PeerDiscovered {
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        via: Discovery,
    },
    PeerConnected {
        peer: PeerId,
    },
    /// The last connection to this peer closed.
    PeerDisconnected {
        peer: PeerId,
    },
    /// A record put by `from` was refused by the validator and not stored.
    RecordRefused {
        from: PeerId,
        refusal: Refusal,
    },
    /// Others confirmed that this node is reachable at this address.
    ExternalAddrConfirmed {
        address: Multiaddr,
    },
    /// The node's role changed (only ever with [`RoleSetting::Auto`]).
    RoleChanged {
        role: NodeRole,
    },
}

/// How a peer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Multicast DNS on the local link.
    Mdns,
    /// The Kademlia routing table (bootstrap, queries, identify).
    Dht,
}

/// The answer to a lookup: the merged valid record, and where its values came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupAnswer {
    pub record: Option<RegistrationRecord>,
    /// The nodes whose stored value was valid, in arrival order; `None` is this node's own
    /// store. At most 32.
    pub answered_by: Vec<Option<PeerId>>,
    /// DHT requests this node sent for the lookup (Kademlia's query statistics): the
    /// overlay's measure of routing hops.
    pub dht_requests: u32,
}

/// A peer of the DHT routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub peer: PeerId,
    pub addresses: Vec<Multiaddr>,
    pub connected: bool,
}

/// Outcome of a [`Overlay::publish`] or [`Overlay::withdraw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishReport {
    /// Sequence number of the entry that was put.
    pub seq: u64,
    /// Other nodes that acknowledged the put. Zero when no other node is known: the record
    /// is then only in this node's store, and is put again by the republication timer.
    pub remote_copies: usize,
    /// Whether the write quorum (`min(write_quorum, known peers)`) was reached. When it was
    /// not but some node stored the record, the publish still counts as done.
    pub quorum_met: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// This node's own validator refuses the entry (e.g. no delegation for a domain that has
    /// a trust anchor); nothing was stored or sent.
    #[error("refused by the local validator: {0}")]
    Refused(Refusal),
    #[error("cannot build the entry: {0}")]
    Record(#[from] RecordError),
    #[error("cannot store the record locally: {0}")]
    Store(String),
    /// Other nodes are known but none acknowledged the put. The record stays in the local
    /// store and is put again by the republication timer.
    #[error("no node acknowledged the record (needed {needed})")]
    NoCopies { needed: usize },
    /// No answer within [`OverlayConfig::publish_timeout`]; the record is stored locally and
    /// is put again by the republication timer.
    #[error("publish timed out")]
    Timeout,
    /// [`OverlayConfig::max_concurrent_queries`] DHT queries are running; the entry is stored
    /// locally and put as soon as a query slot frees up.
    #[error("too many DHT queries running; the entry will be put shortly")]
    Busy,
    /// [`Overlay::withdraw`] for an AoR this node has not published.
    #[error("this node has no entry for that AoR")]
    NotPublished,
    #[error("the overlay has shut down")]
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No valid record arrived within [`OverlayConfig::lookup_timeout`].
    #[error("lookup timed out")]
    Timeout,
    /// [`OverlayConfig::max_concurrent_queries`] DHT queries are running; try again later.
    #[error("too many DHT queries running")]
    Busy,
    #[error("the overlay has shut down")]
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer's send queue ([`OverlayConfig::sip_send_queue_len`]) is full; the message was
    /// not queued.
    #[error("send queue to the peer is full")]
    QueueFull,
    /// [`OverlayConfig::max_sip_peers`] peers already have an outbound stream.
    #[error("too many peers with outbound SIP streams")]
    TooManyPeers,
    /// No connection or no SIP stream could be opened.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    #[error("writing to the SIP stream failed: {0}")]
    Io(String),
    #[error("timed out")]
    Timeout,
    /// Over [`OverlayConfig::max_sip_message_size`].
    #[error("message too large")]
    TooLarge,
    /// The bytes are not exactly one Content-Length-framed SIP message.
    #[error("not exactly one SIP message: {0}")]
    NotOneMessage(&'static str),
    #[error("cannot send to this node itself")]
    OwnPeer,
    #[error("the overlay has shut down")]
    Shutdown,
}

/// The overlay has shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the overlay has shut down")]
pub struct OverlayClosed;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: Multiaddr, reason: String },
    #[error("bootstrap address {address} does not end in /p2p/<peer id>")]
    BootstrapWithoutPeerId { address: Multiaddr },
    #[error("no listen address became available within {0:?}")]
    NotListening(Duration),
}

/// Counters of the network task, for status output and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayStats {
    /// The role the node plays now.
    pub role: NodeRole,
    /// Whether the node answers DHT requests and stores records for others (Kademlia server
    /// mode).
    pub dht_server: bool,
    /// The relay this peer holds an accepted reservation on.
    pub relay_reservation: Option<PeerId>,
    /// Connected nodes that act as supernodes (advertise the relay hop protocol).
    pub connected_supernodes: usize,
    /// Records refused and accepted by the validator, puts and fetches.
    pub validation: ValidationCounters,
    /// Inbound puts of a record kind this node does not store.
    pub refused_unsupported_kind: u64,
    /// Records in the local store.
    pub stored_records: usize,
    /// AoRs this node publishes (and republishes).
    pub own_publications: usize,
    /// Domains whose authority key this node has pinned first-come (open mode).
    pub pinned_authorities: usize,
    /// Inbound SIP messages dropped because the event queue was full.
    pub sip_messages_dropped: u64,
    pub connected_peers: usize,
    /// The node's first routing-table bootstrap has finished (always false for a node
    /// started without bootstrap addresses).
    pub bootstrapped: bool,
}

/// Why a command got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unanswered {
    /// The network task is gone.
    Closed,
    /// The caller-side bound elapsed first.
    TimedOut,
}

/// A publish command's answer, or the error for a command that got none.
fn publish_outcome(
    answer: Result<Result<PublishReport, PublishError>, Unanswered>,
) -> Result<PublishReport, PublishError> {
    match answer {
        Ok(result) => result,
        Err(Unanswered::Closed) => Err(PublishError::Shutdown),
        Err(Unanswered::TimedOut) => Err(PublishError::Timeout),
    }
}

/// Handle to a running overlay node. Cloning is cheap; the node runs until
/// [`Overlay::shutdown`] or until every handle is dropped.
#[derive(Clone)]
pub struct Overlay {
    commands: mpsc::Sender<driver::Command>,
    network_task: tokio::task::AbortHandle,
    local_peer_id: PeerId,
    lookup_timeout: Duration,
    publish_timeout: Duration,
    send_timeout: Duration,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("local_peer_id", &self.local_peer_id)
            .finish_non_exhaustive()
    }
}

impl Overlay {
    /// Builds the swarm, starts listening and dials the bootstrap nodes, and runs the network
    /// on a new tokio task. Returns once every listener has an address, so
    /// [`Overlay::listen_addrs`] is complete.
    pub async fn start(
        config: OverlayConfig,
    ) -> Result<(Overlay, mpsc::Receiver<OverlayEvent>), StartError> {
        let (commands_tx, commands_rx) = mpsc::channel(config.command_queue_len.max(1));
        let (events_tx, events_rx) = mpsc::channel(config.event_queue_len.max(1));
        let (ready_tx, ready_rx) = oneshot::channel();
        let local_peer_id = config.keypair.public().to_peer_id();
        let lookup_timeout = config.lookup_timeout;
        let publish_timeout = config.publish_timeout;
        // Opening the stream and writing are bounded separately in the writer; a message
        // may also wait behind a full queue of others, hence the margin.
        let send_timeout = config.sip_open_timeout + config.sip_write_timeout + ANSWER_GRACE;
        let network = driver::Driver::new(config, commands_rx, events_tx, ready_tx)?;
        let span = tracing::info_span!("overlay", local_peer = %local_peer_id);
        let network_task = tokio::spawn(tracing::Instrument::instrument(network.run(), span));
        let handle = Overlay {
            commands: commands_tx,
            network_task: network_task.abort_handle(),
            local_peer_id,
            lookup_timeout,
            publish_timeout,
            send_timeout,
        };
        match tokio::time::timeout(LISTEN_READY_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok((handle, events_rx)),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(_)) | Err(_) => {
                handle.shutdown().await;
                Err(StartError::NotListening(LISTEN_READY_TIMEOUT))
            }
        }
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The addresses the node listens on, as bound (actual ports, one per interface when
    /// listening on an unspecified address).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, OverlayClosed> {
        self.ask(|reply| driver::Command::ListenAddrs { reply })
            .await
            .map_err(|_| OverlayClosed)
    }

    /// Signs this node's entry for `aor` with `bindings` (the delegation for the AoR's
    /// domain is attached when [`OverlayConfig::delegations`] has one), stores it locally and
    /// puts it to the nodes closest to the AoR's key. Replaces this node's previous entry;
    /// other nodes' entries of the same AoR are kept.
    pub async fn publish(
        &self,
        aor: Aor,
        bindings: Vec<RecordBinding>,
    ) -> Result<PublishReport, PublishError> {
        let answer = self.ask_within(self.publish_timeout + ANSWER_GRACE, |reply| {
            driver::Command::Publish {
                aor,
                bindings,
                reply,
            }
        });
        publish_outcome(answer.await)
    }

    /// Replaces this node's entry for `aor` by a signed withdrawal (an entry without
    /// bindings), so the bindings disappear everywhere rather than lingering until expiry.
    pub async fn withdraw(&self, aor: Aor) -> Result<PublishReport, PublishError> {
        let answer = self.ask_within(self.publish_timeout + ANSWER_GRACE, |reply| {
            driver::Command::Withdraw { aor, reply }
        });
        publish_outcome(answer.await)
    }

    /// Fetches the registration record of `aor` from the DHT (the local store included),
    /// validates every value found and merges the valid ones. `Ok(None)`: no valid record
    /// exists. When [`OverlayConfig::lookup_timeout`] passes before the query ends, the
    /// values found so far are the answer, or [`LookupError::Timeout`] when there are none.
    /// A record may hold only withdrawals or expired bindings; route with
    /// [`RegistrationRecord::live_bindings`].
    ///
    /// In open mode, for a domain with neither a trust anchor nor a pinned authority key,
    /// the domain's authority record is fetched (and its key pinned) first, within the same
    /// bound, so that the values found are checked against it.
    pub async fn lookup(&self, aor: Aor) -> Result<Option<RegistrationRecord>, LookupError> {
        self.lookup_with_sources(aor)
            .await
            .map(|answer| answer.record)
    }

    /// [`Overlay::lookup`], also telling which nodes the valid values came from.
    pub async fn lookup_with_sources(&self, aor: Aor) -> Result<LookupAnswer, LookupError> {
        let answer = self.ask_within(self.lookup_timeout + ANSWER_GRACE, |reply| {
            driver::Command::Lookup { aor, reply }
        });
        match answer.await {
            Ok(result) => result,
            Err(Unanswered::Closed) => Err(LookupError::Shutdown),
            Err(Unanswered::TimedOut) => Err(LookupError::Timeout),
        }
    }

    /// Publishes a domain's self-signed authority record (open mode): validates it as a
    /// put (first-come: refused when another key is stored or pinned here for the domain),
    /// stores and pins it locally, and puts it under its DHT key (`DomainAuthority` +
    /// sha1(domain)) to the closest nodes with the write quorum. Every storing node
    /// validates it the same way and pins the key it stores. In the report, `seq` is the
    /// record's `issued_at`; the record is not republished by this node.
    pub async fn publish_authority(
        &self,
        record: AuthorityRecord,
    ) -> Result<PublishReport, PublishError> {
        let answer = self.ask_within(self.publish_timeout + ANSWER_GRACE, |reply| {
            driver::Command::PublishAuthority { record, reply }
        });
        publish_outcome(answer.await)
    }

    /// Sends one SIP message to `peer` on the long-lived SIP stream to it, dialling `addrs`
    /// first when not connected (with no addresses, the DHT's are used). `message` must be
    /// exactly one message with a correct Content-Length. Resolves once the message is
    /// written to the stream; messages to one peer are written in call order.
    pub async fn send_sip(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        message: Bytes,
    ) -> Result<(), SendError> {
        let answer = self.ask_within(self.send_timeout, |reply| driver::Command::SendSip {
            peer,
            addrs,
            message,
            reply,
        });
        match answer.await {
            Ok(result) => result,
            Err(Unanswered::Closed) => Err(SendError::Shutdown),
            Err(Unanswered::TimedOut) => Err(SendError::Timeout),
        }
    }

    /// The DHT routing table: every peer with its known addresses, and whether connected.
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, OverlayClosed> {
        self.ask(|reply| driver::Command::Peers { reply })
            .await
            .map_err(|_| OverlayClosed)
    }

    pub async fn stats(&self) -> Result<OverlayStats, OverlayClosed> {
        self.ask(|reply| driver::Command::Stats { reply })
            .await
            .map_err(|_| OverlayClosed)
    }

    /// Trusts `key` as an authority of `domain` from now on (e.g. learnt from DNS).
    pub async fn add_trust_anchor(
        &self,
        domain: String,
        key: PublicKey,
    ) -> Result<Result<(), crate::authority::AuthorityError>, OverlayClosed> {
        self.ask(|reply| driver::Command::AddTrustAnchor { domain, key, reply })
            .await
            .map_err(|_| OverlayClosed)
    }

    /// Hands the records this node stores over to the closest other nodes (at most two
    /// seconds), then stops the network task: closes every connection and stream. Later
    /// calls on any handle fail with a shutdown error. Waits at most a few seconds.
    pub async fn shutdown(&self) {
        let stopped = self.ask(|reply| driver::Command::Shutdown { reply });
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, stopped).await;
    }

    /// Stops the network task at once, with no hand-off and no polite close of streams:
    /// what a crash of the process does (peers see their connections end). For simulations
    /// and tests; a node leaving on purpose calls [`Overlay::shutdown`].
    pub fn abort(&self) {
        self.network_task.abort();
    }

    /// Sends a command and waits for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> driver::Command,
    ) -> Result<T, Unanswered> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| Unanswered::Closed)?;
        answer.await.map_err(|_| Unanswered::Closed)
    }

    /// [`Overlay::ask`] with a bound on the whole exchange.
    async fn ask_within<T>(
        &self,
        bound: Duration,
        command: impl FnOnce(oneshot::Sender<T>) -> driver::Command,
    ) -> Result<T, Unanswered> {
        tokio::time::timeout(bound, self.ask(command))
            .await
            .unwrap_or(Err(Unanswered::TimedOut))
    }
}
