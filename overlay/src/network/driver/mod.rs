//! The network task: owns the swarm, executes the handles' commands and reacts to swarm
//! events. Everything here runs on one task, so no state is shared or locked.

mod authorities;
mod deadlines;
mod events;
mod lookup;
mod publish;
mod redial;
mod relay_reservation;
mod role_switch;
mod sip;
mod store;
mod views;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use libp2p::core::transport::ListenerId;
use libp2p::identity::{Keypair, PublicKey};
use libp2p::{kad, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

use self::lookup::PendingLookup;
use self::publish::{OwnEntry, PendingPublish};
use self::relay_reservation::RelayReservation;
use super::authority_fetch::{AuthorityFetches, Waiting};
use super::behaviour::{build_swarm, InitialModes, OverlayBehaviour};
use super::config::OverlayConfig;
use super::records::{peer_id_of, without_peer_id};
use super::roles::{dht_server, NodeRole, RoleMachine};
use super::sip_stream::{self, OutboundSip};
use super::{
    LookupAnswer, LookupError, OverlayEvent, OverlayStats, PeerStatus, PublishError, PublishReport,
    SendError, StartError,
};
use crate::authority::{AuthorityError, AuthorityRecord, Delegation};
use crate::key::Aor;
use crate::record::RecordBinding;
use crate::validate::RecordValidator;

/// How often expired records are purged from the local store.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// How often own entries are checked for being due for republication; each entry is put
/// again every `republish_interval`, spread as the original publishes were.
const REPUBLISH_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often the role, the DHT mode and the relay reservation are brought up to date.
const ROLE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) enum Command {
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Publish {
        aor: Aor,
        bindings: Vec<RecordBinding>,
        reply: oneshot::Sender<Result<PublishReport, PublishError>>,
    },
    Withdraw {
        aor: Aor,
        reply: oneshot::Sender<Result<PublishReport, PublishError>>,
    },
    Lookup {
        aor: Aor,
        reply: oneshot::Sender<Result<LookupAnswer, LookupError>>,
    },
    PublishAuthority {
        record: AuthorityRecord,
        reply: oneshot::Sender<Result<PublishReport, PublishError>>,
    },
    SendSip {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        message: Bytes,
        reply: oneshot::Sender<Result<(), SendError>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerStatus>>,
    },
    Stats {
        reply: oneshot::Sender<OverlayStats>,
    },
    AddTrustAnchor {
        domain: String,
        key: PublicKey,
        reply: oneshot::Sender<Result<(), AuthorityError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Aborts the task when dropped, so that no task outlives the network task.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) struct Driver {
    swarm: Swarm<OverlayBehaviour>,
    keypair: Keypair,
    config: OverlayConfig,
    validator: RecordValidator,
    delegations: Vec<Delegation>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<OverlayEvent>,
    /// Answered once every listener has an address (or failed).
    ready: Option<oneshot::Sender<Result<(), StartError>>>,
    listeners_pending: HashSet<ListenerId>,
    listeners_failed: Vec<(Multiaddr, String)>,
    listener_addrs: HashMap<ListenerId, Multiaddr>,
    pending_publishes: HashMap<kad::QueryId, PendingPublish>,
    pending_lookups: HashMap<kad::QueryId, PendingLookup>,
    /// Deadlines of pending publishes and lookups, earliest first; the counter keeps keys
    /// unique because query ids are not ordered.
    deadlines: BTreeMap<(Instant, u64), kad::QueryId>,
    deadline_counter: u64,
    /// This node's own entries by user, ordered so that republishing (a few at a time when
    /// query slots run short) goes in the same order in every run.
    own_entries: BTreeMap<Aor, OwnEntry>,
    sip_control: libp2p_stream::Control,
    sip_writers: HashMap<PeerId, mpsc::Sender<OutboundSip>>,
    sip_writer_tasks: JoinSet<()>,
    _sip_acceptor: AbortOnDrop,
    sip_dropped: Arc<AtomicU64>,
    refused_unsupported_kind: u64,
    /// When the network task was created, for the uptime the role rule needs.
    started: Instant,
    roles: RoleMachine,
    /// Kademlia's current mode: server (true) or client.
    dht_server: bool,
    /// Connected overlay nodes that advertise the relay hop protocol, with their listen
    /// addresses (at most [`MAX_KNOWN_SUPERNODES`](role_switch::MAX_KNOWN_SUPERNODES)).
    supernodes: HashMap<PeerId, Vec<Multiaddr>>,
    relay: RelayReservation,
    /// Puts of stored records to other nodes, made when leaving or when becoming a DHT
    /// client (at most [`MAX_HANDOFF_RECORDS`](store::MAX_HANDOFF_RECORDS)).
    handoff_queries: HashSet<kad::QueryId>,
    /// Hand-off puts that reached at least one node.
    handed_over: usize,
    /// Shutting down: the role and the relay reservation are left alone.
    leaving: bool,
    /// Fetches of domains' authority records (open mode), see
    /// [`authority_fetch`](super::authority_fetch).
    authority_fetches: AuthorityFetches,
    /// The first bootstrap query has finished.
    bootstrapped: bool,
    /// TCP dials made again from a fresh port after a simultaneous open.
    redials: redial::FreshPortRedials,
}

impl Driver {
    pub(crate) fn new(
        config: OverlayConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<OverlayEvent>,
        ready: oneshot::Sender<Result<(), StartError>>,
    ) -> Result<Driver, StartError> {
        let roles = RoleMachine::new(config.role, config.promote_after);
        let initial_dht_server = dht_server(config.dht_mode, config.role, roles.role(), false);
        let modes = InitialModes {
            dht_server: initial_dht_server,
            relay_server: roles.role() == NodeRole::Supernode,
        };
        tracing::info!(
            local_peer = %config.keypair.public().to_peer_id(),
            role = %roles.role(),
            setting = %config.role,
            dht_server = initial_dht_server,
            "node role"
        );
        let mut swarm = build_swarm(&config, modes)?;
        let mut listeners_pending = HashSet::new();
        let mut listener_addrs = HashMap::new();
        for address in &config.listen {
            let listener =
                swarm
                    .listen_on(address.clone())
                    .map_err(|error| StartError::Listen {
                        address: address.clone(),
                        reason: error.to_string(),
                    })?;
            listeners_pending.insert(listener);
            listener_addrs.insert(listener, address.clone());
        }
        for address in &config.bootstrap {
            let peer = peer_id_of(address).ok_or_else(|| StartError::BootstrapWithoutPeerId {
                address: address.clone(),
            })?;
            swarm
                .behaviour_mut()
                .kademlia
                .add_address(&peer, without_peer_id(address));
            if let Err(error) = swarm.dial(address.clone()) {
                tracing::warn!(%peer, %address, %error, "cannot dial bootstrap node");
            }
        }
        if !config.bootstrap.is_empty() {
            // Fails only without known peers, which the loop above rules out.
            let _ = swarm.behaviour_mut().kademlia.bootstrap();
        }
        let sip_control = swarm.behaviour().sip_streams.new_control();
        let sip_dropped = Arc::new(AtomicU64::new(0));
        let acceptor = tokio::spawn(
            sip_stream::accept_inbound(
                sip_control.clone(),
                events.clone(),
                config.max_inbound_sip_streams,
                config.max_sip_message_size,
                Arc::clone(&sip_dropped),
            )
            .in_current_span(),
        );
        Ok(Driver {
            keypair: config.keypair.clone(),
            validator: config.validator.clone(),
            delegations: config.delegations.clone(),
            swarm,
            config,
            commands,
            events,
            ready: Some(ready),
            listeners_pending,
            listeners_failed: Vec::new(),
            listener_addrs,
            pending_publishes: HashMap::new(),
            pending_lookups: HashMap::new(),
            deadlines: BTreeMap::new(),
            deadline_counter: 0,
            own_entries: BTreeMap::new(),
            sip_control,
            sip_writers: HashMap::new(),
            sip_writer_tasks: JoinSet::new(),
            _sip_acceptor: AbortOnDrop(acceptor),
            sip_dropped,
            refused_unsupported_kind: 0,
            started: Instant::now(),
            roles,
            dht_server: initial_dht_server,
            supernodes: HashMap::new(),
            relay: RelayReservation::default(),
            handoff_queries: HashSet::new(),
            handed_over: 0,
            leaving: false,
            authority_fetches: AuthorityFetches::default(),
            bootstrapped: false,
            redials: redial::FreshPortRedials::default(),
        })
    }

    pub(crate) async fn run(mut self) {
        if self.listeners_pending.is_empty() {
            self.answer_ready();
        }
        let mut republish =
            tokio::time::interval(REPUBLISH_CHECK_INTERVAL.min(self.config.republish_interval));
        republish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut purge = tokio::time::interval(PURGE_INTERVAL);
        purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut role_check = tokio::time::interval(ROLE_CHECK_INTERVAL);
        role_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_deadline = self.deadlines.keys().next().map(|(at, _)| *at);
            let deadline_sleep = tokio::time::sleep_until(
                next_deadline.unwrap_or_else(|| Instant::now() + PURGE_INTERVAL),
            );
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.stop().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    // Every handle is gone.
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = deadline_sleep, if next_deadline.is_some() => self.on_deadlines(),
                _ = republish.tick() => self.republish_due_entries(),
                _ = purge.tick() => self.purge_expired(),
                _ = role_check.tick() => self.on_role_check(),
                Some(_) = self.sip_writer_tasks.join_next(), if !self.sip_writer_tasks.is_empty() => {}
            }
        }
        self.stop().await;
    }

    async fn stop(&mut self) {
        tracing::info!("overlay shutting down");
        self.leaving = true;
        self.hand_off_before_leaving().await;
        // Writers end when their queues close; give them a moment to close streams politely.
        self.sip_writers.clear();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while self.sip_writer_tasks.join_next().await.is_some() {}
        })
        .await;
        self.sip_writer_tasks.abort_all();
        for (_, pending) in self.pending_publishes.drain() {
            if let Some(reply) = pending.reply {
                let _ = reply.send(Err(PublishError::Shutdown));
            }
        }
        for (_, pending) in self.pending_lookups.drain() {
            let _ = pending.reply.send(Err(LookupError::Shutdown));
        }
        for waiting in self.authority_fetches.drain() {
            match waiting {
                Waiting::Lookup(lookup) => {
                    let _ = lookup.reply.send(Err(LookupError::Shutdown));
                }
                Waiting::PublishAuthority { reply, .. } => {
                    let _ = reply.send(Err(PublishError::Shutdown));
                }
            }
        }
        self.handoff_queries.clear();
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Publish {
                aor,
                bindings,
                reply,
            } => {
                let result = self.sign_own_entry(&aor, bindings);
                match result {
                    Ok(entry) => self.put_own_entry(aor, entry, Some(reply)),
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
            Command::Withdraw { aor, reply } => match self.sign_withdrawal(&aor) {
                Ok(entry) => self.put_own_entry(aor, entry, Some(reply)),
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            },
            Command::Lookup { aor, reply } => self.start_lookup(&aor, reply),
            Command::PublishAuthority { record, reply } => self.publish_authority(record, reply),
            Command::SendSip {
                peer,
                addrs,
                message,
                reply,
            } => self.send_sip(peer, addrs, message, reply),
            Command::Peers { reply } => {
                let _ = reply.send(self.routing_table());
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Command::AddTrustAnchor { domain, key, reply } => {
                let _ = reply.send(self.validator.anchors_mut().add(&domain, key));
            }
            Command::Shutdown { reply } => {
                // Handled in `run`, which must leave its loop.
                let _ = reply.send(());
            }
        }
    }

    /// Events other than SIP messages are dropped when the queue is full: they are hints,
    /// and the state they report can be queried.
    pub(super) fn emit(&self, event: OverlayEvent) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.events.try_send(event) {
            tracing::debug!(?event, "event queue full; dropping event");
        }
    }
}
