//! The network task: owns the swarm, executes the handles' commands and reacts to swarm
//! events. Everything here runs on one task, so no state is shared or locked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use libp2p::core::transport::ListenerId;
use libp2p::identity::{Keypair, PublicKey};
use libp2p::kad::store::RecordStore as _;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{autonat, dcutr, identify, kad, mdns, relay, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::authority_fetch::{self, AuthorityFetches, Need, Waiting, WaitingLookup};
use super::behaviour::{
    build_swarm, kad_mode, relay_status, InitialModes, OverlayBehaviour, OverlayBehaviourEvent,
    IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL,
};
use super::config::OverlayConfig;
use super::records::{
    delegation_for, earlier, instant_at, is_dialable, is_loopback, now_unix, now_unix_millis,
    peer_id_of, registration_expiry, serving_addrs, stored_record, without_peer_id, write_quorum,
};
use super::roles::{dht_server, is_relayed, NodeRole, RoleMachine, RoleSetting};
use super::sip_stream::{self, OutboundSip, WriterSettings};
use super::{
    Discovery, LookupAnswer, LookupError, OverlayEvent, OverlayStats, PeerStatus, PublishError,
    PublishReport, SendError, StartError, STORE_LOG_TARGET,
};
use crate::authority::{AuthorityError, AuthorityRecord, Delegation, PinOutcome};
use crate::key::{dht_key, key_hash_hex, Aor, RecordKind};
use crate::record::{next_seq, EntryDraft, NodeEntry, RecordBinding, RegistrationRecord};
use crate::validate::{RecordValidator, Refusal, RefusalReason};

/// How often expired records are purged from the local store.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Sources of a lookup's values kept for the answer.
const MAX_LOOKUP_SOURCES: usize = 32;
/// How often own entries are checked for being due for republication; each entry is put
/// again every `republish_interval`, spread as the original publishes were.
const REPUBLISH_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often the role, the DHT mode and the relay reservation are brought up to date.
const ROLE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Supernodes remembered: connected overlay nodes that advertise the relay hop protocol.
const MAX_KNOWN_SUPERNODES: usize = 64;
/// Addresses remembered per supernode.
const MAX_SUPERNODE_ADDRS: usize = 8;
/// A relay whose reservation failed or ended is not asked again for this long.
const RELAY_RETRY_BACKOFF: Duration = Duration::from_secs(5);
/// Bound on handing the stored records over to other nodes when leaving.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(2);
/// Records handed over at most at a time (hand-off puts in flight).
const MAX_HANDOFF_RECORDS: usize = 512;

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

/// A put of this node's entry waiting for Kademlia's answer.
struct PendingPublish {
    seq: u64,
    quorum: NonZeroUsize,
    /// `None` for republications, which nobody waits for.
    reply: Option<oneshot::Sender<Result<PublishReport, PublishError>>>,
}

/// A lookup collecting the values Kademlia finds.
struct PendingLookup {
    key: Vec<u8>,
    merged: Option<RegistrationRecord>,
    /// Where the valid values came from (`None`: this node's store); at most
    /// [`MAX_LOOKUP_SOURCES`].
    answered_by: Vec<Option<PeerId>>,
    reply: oneshot::Sender<Result<LookupAnswer, LookupError>>,
}

/// The latest entry this node signed for an AoR, put again until it expires.
struct OwnEntry {
    entry: NodeEntry,
    /// When the entry is put to the DHT again.
    next_put: Instant,
}

/// This peer's reservation on a relay, so that nodes can reach it through the relay.
#[derive(Default)]
struct RelayReservation {
    /// The `/p2p-circuit` listener and the relay it reserves on. The relay client renews an
    /// accepted reservation itself; when it fails or the connection to the relay closes, the
    /// listener closes and a relay is chosen again.
    listener: Option<(ListenerId, PeerId)>,
    /// The relay accepted the reservation.
    accepted: bool,
    /// Relays whose reservation failed or ended recently, skipped until then. Entries are
    /// dropped once past, so there are at most a few.
    backoff: HashMap<PeerId, Instant>,
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
    own_entries: HashMap<Aor, OwnEntry>,
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
    /// addresses (at most [`MAX_KNOWN_SUPERNODES`]).
    supernodes: HashMap<PeerId, Vec<Multiaddr>>,
    relay: RelayReservation,
    /// Puts of stored records to other nodes, made when leaving or when becoming a DHT
    /// client (at most [`MAX_HANDOFF_RECORDS`]).
    handoff_queries: HashSet<kad::QueryId>,
    /// Hand-off puts that reached at least one node.
    handed_over: usize,
    /// Shutting down: the role and the relay reservation are left alone.
    leaving: bool,
    /// Fetches of domains' authority records (open mode), see [`authority_fetch`].
    authority_fetches: AuthorityFetches,
    /// The first bootstrap query has finished.
    bootstrapped: bool,
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
            own_entries: HashMap::new(),
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

    /// Graceful leave: puts every record of the local store (its own and those it stores for
    /// others) to the closest other DHT servers for its key, so that the records survive
    /// even if replication has not run since they arrived. Bounded by [`HANDOFF_TIMEOUT`]
    /// and [`MAX_HANDOFF_RECORDS`]; swarm events are handled meanwhile.
    async fn hand_off_before_leaving(&mut self) {
        let started = self.hand_off_stored_records();
        if self.handoff_queries.is_empty() {
            return;
        }
        let handed_before = self.handed_over;
        let deadline = Instant::now() + HANDOFF_TIMEOUT;
        while !self.handoff_queries.is_empty() {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(event) => self.on_swarm_event(event),
                Err(_) => break,
            }
        }
        tracing::info!(
            records = started,
            handed_over = self.handed_over.saturating_sub(handed_before),
            unanswered = self.handoff_queries.len(),
            "handed stored records to the closest nodes before leaving"
        );
    }

    /// Starts a put of every unexpired record of the local store to the closest DHT servers
    /// of the routing table for its key (up to the replication factor of them), as far as
    /// [`MAX_HANDOFF_RECORDS`] allows. Returns how many puts started.
    fn hand_off_stored_records(&mut self) -> usize {
        let room = MAX_HANDOFF_RECORDS.saturating_sub(self.handoff_queries.len());
        let fanout = self.config.replication_factor.get();
        let now = Instant::now();
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        let records: Vec<kad::Record> = kademlia
            .store_mut()
            .records()
            .filter(|record| !record.is_expired(now))
            .take(room)
            .map(|record| record.into_owned())
            .collect();
        let mut started = 0;
        for record in records {
            let target = kad::KBucketKey::new(record.key.clone());
            let peers: Vec<PeerId> = kademlia
                .get_closest_local_peers(&target)
                .take(fanout)
                .map(|key| *key.preimage())
                .collect();
            let Some(copies) = NonZeroUsize::new(peers.len()) else {
                // No other DHT server is known: there is nobody to hand anything to.
                break;
            };
            let query = kademlia.put_record_to(record, peers.into_iter(), kad::Quorum::N(copies));
            self.handoff_queries.insert(query);
            started += 1;
        }
        if started > 0 {
            tracing::debug!(records = started, "handing stored records over");
        }
        started
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

    // ----- records -------------------------------------------------------------------

    /// Signs this node's new entry for `aor`, with a sequence number above any it used
    /// before for that AoR (in memory or still in the local store).
    fn sign_own_entry(
        &mut self,
        aor: &Aor,
        bindings: Vec<RecordBinding>,
    ) -> Result<NodeEntry, PublishError> {
        let now = now_unix();
        let previous = self.previous_own_entry(aor);
        let last_seq = previous.as_ref().map_or(0, |entry| entry.seq);
        let mut draft = EntryDraft::new(next_seq(last_seq, now_unix_millis()), now, bindings)
            .with_addrs(self.serving_addrs())
            .with_delegation(delegation_for(&self.delegations, aor.domain(), now).cloned());
        if let Some(previous) = &previous {
            draft = draft.outliving(previous);
        }
        Ok(NodeEntry::sign(&self.keypair, aor, draft)?)
    }

    fn sign_withdrawal(&mut self, aor: &Aor) -> Result<NodeEntry, PublishError> {
        let previous = self
            .previous_own_entry(aor)
            .ok_or(PublishError::NotPublished)?;
        let now = now_unix();
        let draft =
            EntryDraft::withdrawal(next_seq(previous.seq, now_unix_millis()), now, &previous);
        Ok(NodeEntry::sign(&self.keypair, aor, draft)?)
    }

    /// This node's latest entry for `aor`: the one in memory, or one still in the local
    /// store from an earlier run (the DHT may have handed it back).
    fn previous_own_entry(&mut self, aor: &Aor) -> Option<NodeEntry> {
        let local_peer = *self.swarm.local_peer_id();
        let key = kad::RecordKey::new(&aor.dht_key(RecordKind::Registration));
        let stored = self
            .swarm
            .behaviour_mut()
            .kademlia
            .store_mut()
            .get(&key)
            .and_then(|record| RegistrationRecord::decode(&record.value).ok())
            .and_then(|record| record.entry(&local_peer).cloned());
        let remembered = self.own_entries.get(aor).map(|own| own.entry.clone());
        match (remembered, stored) {
            (Some(a), Some(b)) => Some(if b.seq > a.seq { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    fn serving_addrs(&self) -> Vec<Multiaddr> {
        serving_addrs(self.swarm.external_addresses(), self.swarm.listeners())
    }

    /// Validates and stores `entry` locally (merged with what is stored), remembers it for
    /// republication, and puts a record holding only this entry to the closest nodes: the
    /// other entries are their publishers' to spread.
    fn put_own_entry(
        &mut self,
        aor: Aor,
        entry: NodeEntry,
        reply: Option<oneshot::Sender<Result<PublishReport, PublishError>>>,
    ) {
        // Learnt for the next republication if the domain turns out to have an authority.
        self.learn_authority(aor.domain());
        let seq = entry.seq;
        let answer = |reply: Option<oneshot::Sender<_>>, result| {
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        };
        let now = now_unix();
        let expires_at = entry.effective_expiry();
        let value = match RegistrationRecord::with_entry(aor.clone(), entry.clone()).encode() {
            Ok(value) => value,
            Err(error) => return answer(reply, Err(PublishError::Record(error))),
        };
        let key_bytes = aor.dht_key(RecordKind::Registration);
        let key = kad::RecordKey::new(&key_bytes);
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        let existing = kademlia.store_mut().get(&key).map(|r| r.value.clone());
        let merged = match self
            .validator
            .validate_put(&key_bytes, &value, existing.as_deref(), now)
        {
            Ok(merged) => merged,
            Err(refusal) => return answer(reply, Err(PublishError::Refused(refusal))),
        };
        let merged_expiry = registration_expiry(&merged).map(|at| instant_at(at, now));
        let merged = stored_record(key.clone(), merged, merged_expiry);
        let known_peers = self.routing_table_size();
        let has_query_slot = self.has_query_slot();
        let next_put = if has_query_slot {
            Instant::now() + self.config.republish_interval
        } else {
            // Put as soon as a query slot frees up.
            Instant::now()
        };
        self.own_entries
            .insert(aor.clone(), OwnEntry { entry, next_put });
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        if known_peers == 0 || !has_query_slot {
            // Republished as soon as a peer is known.
            let stored = kademlia.store_mut().put(merged);
            return answer(reply, stored_locally_only(stored, known_peers, seq));
        }
        let quorum = write_quorum(self.config.write_quorum, known_peers);
        let mut outgoing = kad::Record::new(key, value);
        outgoing.expires = Some(instant_at(expires_at, now));
        // `put_record` also stores `outgoing` locally; the merged value replaces it below.
        let query = match kademlia.put_record(outgoing, kad::Quorum::N(quorum)) {
            Ok(query) => query,
            Err(error) => return answer(reply, Err(PublishError::Store(error.to_string()))),
        };
        if let Err(error) = kademlia.store_mut().put(merged) {
            tracing::warn!(%aor, %error, "cannot store merged record locally");
        }
        tracing::debug!(%aor, seq, known_peers, quorum = quorum.get(), "putting own entry");
        // Republications have no deadline of their own: nobody waits for them, and
        // Kademlia's query timeout ends them.
        if reply.is_some() {
            self.add_deadline(query, self.config.publish_timeout);
        }
        self.pending_publishes
            .insert(query, PendingPublish { seq, quorum, reply });
    }

    /// Puts the own entries that are due again, as far as query slots allow, and forgets
    /// expired ones.
    fn republish_due_entries(&mut self) {
        let now_unix = now_unix();
        self.own_entries
            .retain(|_, own| !own.entry.is_expired(now_unix));
        if self.routing_table_size() == 0 {
            return;
        }
        let now = Instant::now();
        let free_slots = self
            .config
            .max_concurrent_queries
            .saturating_sub(self.pending_queries());
        let due: Vec<(Aor, NodeEntry)> = self
            .own_entries
            .iter()
            .filter(|(_, own)| own.next_put <= now)
            .take(free_slots)
            .map(|(aor, own)| (aor.clone(), own.entry.clone()))
            .collect();
        if !due.is_empty() {
            tracing::debug!(count = due.len(), "republishing own entries");
        }
        for (aor, entry) in due {
            self.put_own_entry(aor, entry, None);
        }
    }

    /// Makes every own entry due, e.g. when the first peer appears after publishing alone.
    fn make_own_entries_due(&mut self) {
        let now = Instant::now();
        for own in self.own_entries.values_mut() {
            own.next_put = now;
        }
    }

    fn pending_queries(&self) -> usize {
        self.pending_publishes.len()
            + self.pending_lookups.len()
            + self.authority_fetches.waiting_lookups()
    }

    fn has_query_slot(&self) -> bool {
        self.pending_queries() < self.config.max_concurrent_queries
    }

    fn on_put_result(&mut self, query: kad::QueryId, result: kad::PutRecordResult) {
        if self.handoff_queries.remove(&query) {
            match result {
                Ok(_) => self.handed_over = self.handed_over.saturating_add(1),
                Err(
                    kad::PutRecordError::QuorumFailed { success, .. }
                    | kad::PutRecordError::Timeout { success, .. },
                ) if !success.is_empty() => {
                    self.handed_over = self.handed_over.saturating_add(1);
                }
                Err(error) => tracing::debug!(%error, "handing a record over reached no node"),
            }
            return;
        }
        let Some(pending) = self.pending_publishes.remove(&query) else {
            return;
        };
        let outcome = match result {
            Ok(_) => Ok(PublishReport {
                seq: pending.seq,
                remote_copies: pending.quorum.get(),
                quorum_met: true,
            }),
            Err(
                kad::PutRecordError::QuorumFailed { success, .. }
                | kad::PutRecordError::Timeout { success, .. },
            ) if !success.is_empty() => Ok(PublishReport {
                seq: pending.seq,
                remote_copies: success.len(),
                quorum_met: false,
            }),
            Err(error) => {
                tracing::debug!(%error, "put reached no node");
                Err(PublishError::NoCopies {
                    needed: pending.quorum.get(),
                })
            }
        };
        if let Some(reply) = pending.reply {
            let _ = reply.send(outcome);
        }
    }

    fn start_lookup(
        &mut self,
        aor: &Aor,
        reply: oneshot::Sender<Result<LookupAnswer, LookupError>>,
    ) {
        if !self.has_query_slot() {
            let _ = reply.send(Err(LookupError::Busy));
            return;
        }
        let deadline = Instant::now() + self.config.lookup_timeout;
        let waiting = WaitingLookup {
            aor: aor.clone(),
            reply,
            deadline,
        };
        // A domain whose authority is unknown: its record first, then the registration.
        if let Some(fetch) = self.learn_authority(aor.domain()) {
            match self
                .authority_fetches
                .wait(&fetch, Waiting::Lookup(waiting))
            {
                Ok(()) => {}
                Err(waiting) => self.resume(waiting),
            }
            return;
        }
        self.get_registration(waiting);
    }

    /// Starts the DHT get of a lookup's registration record, answered by `deadline`.
    fn get_registration(&mut self, lookup: WaitingLookup) {
        let WaitingLookup {
            aor,
            reply,
            deadline,
        } = lookup;
        let key = aor.dht_key(RecordKind::Registration);
        let query = self
            .swarm
            .behaviour_mut()
            .kademlia
            .get_record(kad::RecordKey::new(&key));
        self.pending_lookups.insert(
            query,
            PendingLookup {
                key,
                merged: None,
                answered_by: Vec::new(),
                reply,
            },
        );
        self.add_deadline_at(query, deadline);
    }

    fn on_get_result(
        &mut self,
        query: kad::QueryId,
        result: kad::GetRecordResult,
        step: kad::ProgressStep,
        stats: &kad::QueryStats,
    ) {
        if self.authority_fetches.get_mut(&query).is_some() {
            return self.on_authority_fetched(query, result, step);
        }
        let Some(pending) = self.pending_lookups.get_mut(&query) else {
            return;
        };
        if let Ok(kad::GetRecordOk::FoundRecord(found)) = result {
            let now = now_unix();
            match self
                .validator
                .validate_fetched(&pending.key, &found.record.value, now)
            {
                Ok(record) => {
                    if pending.answered_by.len() < MAX_LOOKUP_SOURCES
                        && !pending.answered_by.contains(&found.peer)
                    {
                        pending.answered_by.push(found.peer);
                    }
                    pending.merged = Some(match pending.merged.take() {
                        Some(merged) => RegistrationRecord::merge(&merged, &record, now),
                        None => record,
                    });
                }
                Err(refusal) => {
                    let from = found.peer.map(|peer| peer.to_string());
                    tracing::info!(from = from.as_deref().unwrap_or("local store"), %refusal, "fetched record refused");
                }
            }
        }
        let enough = pending.answered_by.len() >= self.config.lookup_quorum.get();
        if enough && !step.last {
            if let Some(mut running) = self.swarm.behaviour_mut().kademlia.query_mut(&query) {
                running.finish();
            }
        }
        if step.last || enough {
            if let Some(pending) = self.pending_lookups.remove(&query) {
                let _ = pending.reply.send(Ok(LookupAnswer {
                    record: pending.merged,
                    answered_by: pending.answered_by,
                    dht_requests: stats.num_requests(),
                }));
            }
        }
    }

    /// A record put by `source`: stored only as the validator's merged value.
    fn on_inbound_put(&mut self, source: PeerId, record: kad::Record) {
        let now = now_unix();
        let key_bytes = record.key.to_vec();
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        let existing = kademlia
            .store_mut()
            .get(&record.key)
            .map(|r| r.value.clone());
        let kind = key_bytes.first().copied().and_then(RecordKind::from_byte);
        if kind == Some(RecordKind::Registration) {
            // Judged below by what is known now; the domain's authority is learnt for later.
            if let Ok(incoming) = RegistrationRecord::decode(&record.value) {
                self.learn_authority(incoming.aor.domain());
            }
        }
        let result = match kind {
            Some(RecordKind::Registration) => {
                self.validator
                    .validate_put(&key_bytes, &record.value, existing.as_deref(), now)
            }
            Some(RecordKind::DomainAuthority) => self.validator.validate_authority_put(
                &key_bytes,
                &record.value,
                existing.as_deref(),
                now,
            ),
            Some(RecordKind::Mailbox) | None => {
                self.refused_unsupported_kind = self.refused_unsupported_kind.saturating_add(1);
                Err(Refusal::new(
                    RefusalReason::WrongKey,
                    "this node does not store records of this kind",
                ))
            }
        };
        match result {
            Ok(merged) => {
                let own_expiry = match kind {
                    Some(RecordKind::Registration) => {
                        registration_expiry(&merged).map(|at| instant_at(at, now))
                    }
                    _ => None,
                };
                if kind == Some(RecordKind::DomainAuthority) {
                    // First-come: the key stored is the key pinned.
                    if let Ok(authority) = AuthorityRecord::decode(&merged) {
                        self.pin(&authority);
                    }
                }
                let expires = earlier(record.expires, own_expiry);
                let stored = stored_record(record.key.clone(), merged, expires);
                match self.swarm.behaviour_mut().kademlia.store_mut().put(stored) {
                    // Puts from publishers, replication and hand-offs all arrive here.
                    Ok(()) => tracing::debug!(
                        target: STORE_LOG_TARGET,
                        kind = %KindName(kind),
                        key = %key_hash_hex(&key_bytes),
                        from = %source,
                        publishers = %EntryPublishers { kind, value: &record.value },
                        "record stored"
                    ),
                    Err(error) => {
                        tracing::warn!(from = %source, %error, "cannot store accepted record");
                    }
                }
            }
            Err(refusal) => {
                tracing::info!(from = %source, %refusal, "record refused");
                self.emit(OverlayEvent::RecordRefused {
                    from: source,
                    refusal,
                });
            }
        }
    }

    // ----- domain authorities (open mode) --------------------------------------------

    /// Makes sure `domain`'s authority record is being looked for when the domain has no
    /// known key (see [`authority_fetch`]); the running fetch, if there is one.
    fn learn_authority(&mut self, domain: &str) -> Option<kad::QueryId> {
        if !self.validator.wants_authority_of(domain) {
            return None;
        }
        match self.authority_fetches.need(domain, Instant::now()) {
            Need::Running(query) => Some(query),
            Need::Skip => None,
            Need::Fetch => {
                let key = dht_key(RecordKind::DomainAuthority, domain);
                let query = self
                    .swarm
                    .behaviour_mut()
                    .kademlia
                    .get_record(kad::RecordKey::new(&key));
                tracing::debug!(%domain, "looking for the domain's authority record");
                self.authority_fetches.start(query, domain.to_owned(), key);
                let bound = authority_fetch::FETCH_TIMEOUT.min(self.config.lookup_timeout / 2);
                self.add_deadline(query, bound);
                Some(query)
            }
        }
    }

    /// A value found by an authority fetch: validated and pinned; the first valid one ends
    /// the fetch.
    fn on_authority_fetched(
        &mut self,
        query: kad::QueryId,
        result: kad::GetRecordResult,
        step: kad::ProgressStep,
    ) {
        let mut done = step.last;
        if let Ok(kad::GetRecordOk::FoundRecord(found)) = result {
            let key = match self.authority_fetches.get_mut(&query) {
                Some(fetch) if !fetch.pinned => Some(fetch.key.clone()),
                _ => None,
            };
            if let Some(key) = key {
                match self.validator.validate_authority_fetched(
                    &key,
                    &found.record.value,
                    now_unix(),
                ) {
                    Ok(record) => {
                        if self.pin(&record) {
                            if let Some(fetch) = self.authority_fetches.get_mut(&query) {
                                fetch.pinned = true;
                            }
                            if let Some(mut running) =
                                self.swarm.behaviour_mut().kademlia.query_mut(&query)
                            {
                                running.finish();
                            }
                            done = true;
                        }
                    }
                    Err(refusal) => {
                        let from = found.peer.map(|peer| peer.to_string());
                        tracing::info!(
                            from = from.as_deref().unwrap_or("local store"),
                            %refusal,
                            "fetched authority record refused"
                        );
                    }
                }
            }
        }
        if done {
            self.end_authority_fetch(query);
        }
    }

    /// Ends an authority fetch and lets the lookups that waited for it go on.
    fn end_authority_fetch(&mut self, query: kad::QueryId) {
        let now = Instant::now();
        let Some(fetch) = self.authority_fetches.finish(&query, now) else {
            return;
        };
        if !fetch.pinned {
            tracing::debug!(
                domain = %fetch.domain,
                "no authority record found; the domain stays open for a while"
            );
        }
        for waiting in fetch.waiting {
            self.resume(waiting);
        }
    }

    /// Goes on with what waited for an authority fetch.
    fn resume(&mut self, waiting: Waiting) {
        match waiting {
            Waiting::Lookup(lookup) if lookup.deadline <= Instant::now() => {
                let _ = lookup.reply.send(Err(LookupError::Timeout));
            }
            Waiting::Lookup(lookup) => self.get_registration(lookup),
            Waiting::PublishAuthority { record, reply } => self.put_authority(*record, reply),
        }
    }

    /// Pins `record`'s key for its domain, first-come; whether that key is the pinned one.
    fn pin(&mut self, record: &AuthorityRecord) -> bool {
        match self.validator.pin_authority(record) {
            Ok(PinOutcome::Pinned) => {
                tracing::info!(
                    domain = %record.domain,
                    key = %crate::authority::public_key_to_text(&record.authority),
                    "domain authority key pinned"
                );
                true
            }
            Ok(PinOutcome::AlreadyPinned) => true,
            Err(refusal) => {
                tracing::info!(domain = %record.domain, %refusal, "authority key not pinned");
                false
            }
        }
    }

    /// Publishes an authority record once the domain's current authority is known here
    /// (fetched first when it is not), so that a second key is refused at once.
    fn publish_authority(
        &mut self,
        record: AuthorityRecord,
        reply: oneshot::Sender<Result<PublishReport, PublishError>>,
    ) {
        let domain = record.domain.clone();
        let waiting = Waiting::PublishAuthority {
            record: Box::new(record),
            reply,
        };
        match self.learn_authority(&domain) {
            Some(fetch) => {
                if let Err(waiting) = self.authority_fetches.wait(&fetch, waiting) {
                    self.resume(waiting);
                }
            }
            None => self.resume(waiting),
        }
    }

    /// Validates `record` as a put, stores and pins it locally, and puts it to the closest
    /// nodes with the write quorum. The report's `seq` is the record's `issued_at`.
    fn put_authority(
        &mut self,
        record: AuthorityRecord,
        reply: oneshot::Sender<Result<PublishReport, PublishError>>,
    ) {
        let now = now_unix();
        let key_bytes = record.dht_key();
        let value = match record.encode() {
            Ok(value) => value,
            Err(error) => {
                let _ = reply.send(Err(PublishError::Record(error)));
                return;
            }
        };
        let key = kad::RecordKey::new(&key_bytes);
        let existing = self
            .swarm
            .behaviour_mut()
            .kademlia
            .store_mut()
            .get(&key)
            .map(|r| r.value.clone());
        let merged = match self.validator.validate_authority_put(
            &key_bytes,
            &value,
            existing.as_deref(),
            now,
        ) {
            Ok(merged) => merged,
            Err(refusal) => {
                let _ = reply.send(Err(PublishError::Refused(refusal)));
                return;
            }
        };
        self.pin(&record);
        let known_peers = self.routing_table_size();
        let has_query_slot = self.has_query_slot();
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        let merged = stored_record(key.clone(), merged, None);
        if known_peers == 0 || !has_query_slot {
            let stored = kademlia.store_mut().put(merged);
            let _ = reply.send(stored_locally_only(stored, known_peers, record.issued_at));
            return;
        }
        let quorum = write_quorum(self.config.write_quorum, known_peers);
        let query = match kademlia.put_record(kad::Record::new(key, value), kad::Quorum::N(quorum))
        {
            Ok(query) => query,
            Err(error) => {
                let _ = reply.send(Err(PublishError::Store(error.to_string())));
                return;
            }
        };
        if let Err(error) = kademlia.store_mut().put(merged) {
            tracing::warn!(domain = %record.domain, %error, "cannot store authority record locally");
        }
        tracing::debug!(domain = %record.domain, known_peers, quorum = quorum.get(), "putting authority record");
        self.add_deadline(query, self.config.publish_timeout);
        self.pending_publishes.insert(
            query,
            PendingPublish {
                seq: record.issued_at,
                quorum,
                reply: Some(reply),
            },
        );
    }

    /// Removes records whose bindings have all expired from the local store.
    fn purge_expired(&mut self) {
        let now = Instant::now();
        let store = self.swarm.behaviour_mut().kademlia.store_mut();
        let expired: Vec<kad::RecordKey> = store
            .records()
            .filter(|record| record.is_expired(now))
            .map(|record| record.key.clone())
            .collect();
        for key in &expired {
            store.remove(key);
        }
        if !expired.is_empty() {
            tracing::debug!(count = expired.len(), "purged expired records");
        }
    }

    fn add_deadline(&mut self, query: kad::QueryId, after: Duration) {
        self.add_deadline_at(query, Instant::now() + after);
    }

    fn add_deadline_at(&mut self, query: kad::QueryId, at: Instant) {
        self.deadline_counter = self.deadline_counter.wrapping_add(1);
        self.deadlines.insert((at, self.deadline_counter), query);
    }

    /// Answers publishes and lookups whose time is up with what is known so far.
    fn on_deadlines(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let query = entry.remove();
            if self.authority_fetches.get_mut(&query).is_some() {
                if let Some(mut running) = self.swarm.behaviour_mut().kademlia.query_mut(&query) {
                    running.finish();
                }
                self.end_authority_fetch(query);
            }
            if let Some(pending) = self.pending_lookups.remove(&query) {
                let dht_requests = self
                    .swarm
                    .behaviour_mut()
                    .kademlia
                    .query(&query)
                    .map_or(0, |running| running.stats().num_requests());
                let answer = match pending.merged {
                    Some(record) => Ok(LookupAnswer {
                        record: Some(record),
                        answered_by: pending.answered_by,
                        dht_requests,
                    }),
                    None => Err(LookupError::Timeout),
                };
                let _ = pending.reply.send(answer);
                if let Some(mut running) = self.swarm.behaviour_mut().kademlia.query_mut(&query) {
                    running.finish();
                }
            }
            if let Some(pending) = self.pending_publishes.remove(&query) {
                let kademlia = &mut self.swarm.behaviour_mut().kademlia;
                let acknowledged = kademlia.query_mut(&query).map_or(0, |mut running| {
                    let acknowledged = match running.info() {
                        kad::QueryInfo::PutRecord {
                            phase: kad::PutRecordPhase::PutRecord { success, .. },
                            ..
                        } => success.len(),
                        _ => 0,
                    };
                    running.finish();
                    acknowledged
                });
                if let Some(reply) = pending.reply {
                    let outcome = if acknowledged > 0 {
                        Ok(PublishReport {
                            seq: pending.seq,
                            remote_copies: acknowledged,
                            quorum_met: acknowledged >= pending.quorum.get(),
                        })
                    } else {
                        Err(PublishError::NoCopies {
                            needed: pending.quorum.get(),
                        })
                    };
                    let _ = reply.send(outcome);
                }
            }
        }
    }

    // ----- SIP -----------------------------------------------------------------------

    fn send_sip(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        message: Bytes,
        reply: oneshot::Sender<Result<(), SendError>>,
    ) {
        if peer == *self.swarm.local_peer_id() {
            let _ = reply.send(Err(SendError::OwnPeer));
            return;
        }
        if let Err(error) = sip_stream::check_framing(&message, self.config.max_sip_message_size) {
            let _ = reply.send(Err(error));
            return;
        }
        if !self.swarm.is_connected(&peer) && !addrs.is_empty() {
            let addresses = addrs.iter().map(without_peer_id).collect();
            let dial = DialOpts::peer_id(peer)
                .addresses(addresses)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            match self.swarm.dial(dial) {
                Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {}
                // The writer reports the failure when it cannot open the stream.
                Err(error) => tracing::debug!(%peer, %error, "cannot dial for SIP"),
            }
        }
        let mut item = OutboundSip {
            bytes: message,
            done: reply,
        };
        if let Some(queue) = self.sip_writers.get(&peer) {
            match queue.try_send(item) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(item)) => {
                    tracing::warn!(%peer, "SIP send queue full; dropping message");
                    let _ = item.done.send(Err(SendError::QueueFull));
                    return;
                }
                // The writer ended after being idle; a new one takes over below.
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    self.sip_writers.remove(&peer);
                    item = returned;
                }
            }
        }
        if self.sip_writers.len() >= self.config.max_sip_peers {
            self.sip_writers.retain(|_, queue| !queue.is_closed());
            if self.sip_writers.len() >= self.config.max_sip_peers {
                let _ = item.done.send(Err(SendError::TooManyPeers));
                return;
            }
        }
        let (queue, queue_rx) = mpsc::channel(self.config.sip_send_queue_len.max(1));
        let settings = WriterSettings {
            open_timeout: self.config.sip_open_timeout,
            write_timeout: self.config.sip_write_timeout,
            idle_timeout: self.config.sip_idle_timeout,
        };
        let span = tracing::info_span!("sip_out", %peer);
        self.sip_writer_tasks.spawn(
            sip_stream::run_writer(peer, self.sip_control.clone(), queue_rx, settings)
                .instrument(span),
        );
        // A fresh queue has room for at least one message.
        if let Err(error) = queue.try_send(item) {
            let item = match error {
                mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item) => {
                    item
                }
            };
            let _ = item.done.send(Err(SendError::QueueFull));
            return;
        }
        self.sip_writers.insert(peer, queue);
    }

    // ----- swarm events --------------------------------------------------------------

    fn on_swarm_event(&mut self, event: SwarmEvent<OverlayBehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                self.listener_ready(listener_id);
                if self.roles.setting() == RoleSetting::Supernode && !is_relayed(&address) {
                    // A relay hands its external addresses to the peers it accepts, and peers
                    // refuse a reservation without any. A supernode by configuration has no
                    // confirmation to wait for: its listen addresses are its external ones.
                    self.swarm.add_external_address(address.clone());
                }
                self.emit(OverlayEvent::ListenAddr { address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                if self.roles.setting() == RoleSetting::Supernode && !is_relayed(&address) {
                    self.swarm.remove_external_address(&address);
                }
                self.emit(OverlayEvent::ListenAddrExpired { address });
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let reason = reason.map_err(|error| error.to_string());
                if !self.relay_listener_closed(listener_id, &reason) {
                    if let Err(error) = reason {
                        self.listener_failed(listener_id, error);
                    }
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                self.listener_failed(listener_id, error.to_string());
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                tracing::debug!(peer = %peer_id, address = %endpoint.get_remote_address(), "connected");
                if num_established.get() == 1 {
                    self.emit(OverlayEvent::PeerConnected { peer: peer_id });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, cause = ?cause, "connection closed");
                if num_established == 0 {
                    if self.supernodes.remove(&peer_id).is_some() {
                        tracing::debug!(peer = %peer_id, "disconnected from supernode");
                        self.update_dht_mode();
                    }
                    self.emit(OverlayEvent::PeerDisconnected { peer: peer_id });
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
                let changed = self
                    .roles
                    .address_confirmed(&address, self.started.elapsed());
                self.apply_role_change(changed);
                self.emit(OverlayEvent::ExternalAddrConfirmed { address });
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!(%address, "external address expired");
                let changed = self.roles.address_expired(&address, self.started.elapsed());
                self.apply_role_change(changed);
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: OverlayBehaviourEvent) {
        match event {
            OverlayBehaviourEvent::Kademlia(event) => self.on_kademlia_event(event),
            OverlayBehaviourEvent::Identify(identify::Event::Received {
                peer_id, info, ..
            }) => {
                self.on_identified(peer_id, info);
            }
            OverlayBehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                self.on_mdns_discovered(found);
            }
            OverlayBehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                tracing::info!(?old, ?new, "NAT status changed");
                if matches!(new, autonat::NatStatus::Private) {
                    self.on_reachability_lost();
                }
            }
            OverlayBehaviourEvent::RelayClient(event) => self.on_relay_client_event(event),
            OverlayBehaviourEvent::RelayServer(event) => on_relay_server_event(event),
            OverlayBehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(_) => {
                    tracing::info!(peer = %remote_peer_id, "relayed connection upgraded to a direct one");
                }
                Err(error) => {
                    tracing::debug!(peer = %remote_peer_id, %error, "direct connection upgrade failed");
                }
            },
            _ => {}
        }
    }

    fn on_kademlia_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => self.on_inbound_put(source, record),
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            } => match result {
                kad::QueryResult::GetRecord(result) => self.on_get_result(id, result, step, &stats),
                kad::QueryResult::PutRecord(result) => self.on_put_result(id, result),
                kad::QueryResult::Bootstrap(Ok(ok)) if ok.num_remaining == 0 => {
                    tracing::debug!("bootstrap done");
                    if !self.bootstrapped {
                        // Entries put while the routing table was still filling went to the
                        // closest nodes known then, which may not be the closest ones: put
                        // them again now that the node knows its neighbourhood.
                        self.bootstrapped = true;
                        self.make_own_entries_due();
                    }
                }
                _ => {}
            },
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer: true,
                addresses,
                ..
            } => {
                tracing::debug!(%peer, "peer added to routing table");
                if self.routing_table_size() == 1 {
                    // Entries published while alone reach the overlay now.
                    self.make_own_entries_due();
                }
                self.emit(OverlayEvent::PeerDiscovered {
                    peer,
                    addresses: addresses.into_vec(),
                    via: Discovery::Dht,
                });
            }
            kad::Event::ModeChanged { new_mode } => {
                tracing::info!(mode = %new_mode, "DHT mode changed");
            }
            _ => {}
        }
    }

    /// Adds an identified DHT server's listen addresses to the routing table (Kademlia
    /// cannot know on which address a peer that dialled in accepts connections), removes an
    /// overlay node that stopped being one, and notes whether the node is a supernode.
    /// Identify runs on connecting and again whenever the node's protocols change (a role
    /// or DHT mode switch).
    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        if info.protocol_version != IDENTIFY_PROTOCOL_VERSION {
            return;
        }
        let addresses: Vec<Multiaddr> = info.listen_addrs.into_iter().filter(is_dialable).collect();
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        if info.protocols.contains(&KAD_PROTOCOL) {
            for address in &addresses {
                kademlia.add_address(&peer, address.clone());
            }
        } else if kademlia.remove_peer(&peer).is_some() {
            // A DHT client answers no DHT request: asking it only slows queries down.
            tracing::debug!(%peer, "peer is a DHT client now; removed from the routing table");
        }
        let relay = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
        self.note_supernode(peer, relay, addresses);
    }

    // ----- roles ---------------------------------------------------------------------

    /// Remembers or forgets `peer` as a supernode, then re-decides the DHT mode and the
    /// relay reservation.
    fn note_supernode(&mut self, peer: PeerId, relay: bool, mut addresses: Vec<Multiaddr>) {
        addresses.retain(|address| !is_relayed(address));
        addresses.truncate(MAX_SUPERNODE_ADDRS);
        if relay && !addresses.is_empty() && self.swarm.is_connected(&peer) {
            if !self.supernodes.contains_key(&peer) {
                if self.supernodes.len() >= MAX_KNOWN_SUPERNODES {
                    tracing::debug!(%peer, "supernode table full; not remembering this one");
                    return;
                }
                tracing::info!(%peer, "supernode found");
            }
            self.supernodes.insert(peer, addresses);
        } else if self.supernodes.remove(&peer).is_some() {
            tracing::info!(%peer, "peer is no longer a supernode");
            if matches!(self.relay.listener, Some((_, relay)) if relay == peer) {
                self.drop_relay_reservation("the relay is no longer a supernode");
            }
        }
        self.update_dht_mode();
        self.maintain_relay_reservation();
    }

    /// Periodic: promotion by uptime, then the DHT mode and the relay reservation.
    fn on_role_check(&mut self) {
        let changed = self.roles.tick(self.started.elapsed());
        self.apply_role_change(changed);
        self.update_dht_mode();
        self.maintain_relay_reservation();
    }

    /// AutoNAT found this node not reachable: its direct external addresses are void (a
    /// supernode by configuration keeps its own), and so is the promotion they gave.
    fn on_reachability_lost(&mut self) {
        if self.roles.setting() != RoleSetting::Supernode {
            let stale: Vec<Multiaddr> = self
                .swarm
                .external_addresses()
                .filter(|address| !is_relayed(address))
                .cloned()
                .collect();
            for address in &stale {
                tracing::info!(%address, "external address no longer confirmed");
                self.swarm.remove_external_address(address);
            }
        }
        let changed = self.roles.reachability_lost(self.started.elapsed());
        self.apply_role_change(changed);
    }

    /// Applies a new role: relay server on or off, DHT mode, relay reservation; reported
    /// as [`OverlayEvent::RoleChanged`].
    fn apply_role_change(&mut self, changed: Option<NodeRole>) {
        let Some(role) = changed else {
            return;
        };
        tracing::info!(%role, setting = %self.roles.setting(), "node role changed");
        // Connected nodes learn of it by an identify push (the hop protocol comes or goes).
        self.swarm
            .behaviour_mut()
            .relay_server
            .inner_mut()
            .set_status(Some(relay_status(role == NodeRole::Supernode)));
        self.update_dht_mode();
        self.maintain_relay_reservation();
        self.emit(OverlayEvent::RoleChanged { role });
    }

    /// Switches Kademlia between server and client mode as [`dht_server`] says. A node
    /// becoming a client hands its stored records over first: nobody will ask it for them.
    fn update_dht_mode(&mut self) {
        if self.leaving {
            return;
        }
        let server = dht_server(
            self.config.dht_mode,
            self.roles.setting(),
            self.roles.role(),
            !self.supernodes.is_empty(),
        );
        if server == self.dht_server {
            return;
        }
        self.dht_server = server;
        tracing::debug!(
            server,
            role = %self.roles.role(),
            supernodes = self.supernodes.len(),
            "switching DHT mode"
        );
        self.swarm
            .behaviour_mut()
            .kademlia
            .set_mode(Some(kad_mode(server)));
        if !server {
            self.hand_off_stored_records();
        }
    }

    /// A peer that listens anywhere keeps one reservation on a connected supernode; a
    /// supernode (or a node that listens nowhere, such as a short-lived client) keeps none.
    fn maintain_relay_reservation(&mut self) {
        if self.leaving {
            return;
        }
        let wanted = self.roles.role() == NodeRole::Peer && !self.config.listen.is_empty();
        if !wanted {
            self.drop_relay_reservation("not a peer");
            return;
        }
        if self.relay.listener.is_some() {
            return;
        }
        let now = Instant::now();
        self.relay.backoff.retain(|_, until| *until > now);
        let backoff = &self.relay.backoff;
        let Some((relay, address)) = self
            .supernodes
            .iter()
            .filter(|(peer, _)| !backoff.contains_key(*peer))
            .find_map(|(peer, addresses)| preferred_addr(addresses).map(|a| (*peer, a)))
        else {
            return;
        };
        let circuit = without_peer_id(&address)
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(listener) => {
                tracing::info!(%relay, address = %circuit, "asking for a relay reservation");
                self.relay.listener = Some((listener, relay));
                self.relay.accepted = false;
            }
            Err(error) => {
                tracing::warn!(%relay, %error, "cannot listen through the relay");
                self.relay.backoff.insert(relay, now + RELAY_RETRY_BACKOFF);
            }
        }
    }

    fn drop_relay_reservation(&mut self, why: &'static str) {
        if let Some((listener, relay)) = self.relay.listener.take() {
            tracing::info!(%relay, reason = why, "dropping the relay reservation");
            self.relay.accepted = false;
            self.swarm.remove_listener(listener);
        }
    }

    /// Whether `listener` was the relay reservation's; if so, it is gone and another relay
    /// (or the same one after [`RELAY_RETRY_BACKOFF`]) is asked at the next role check.
    fn relay_listener_closed(&mut self, listener: ListenerId, reason: &Result<(), String>) -> bool {
        let Some((id, relay)) = self.relay.listener else {
            return false;
        };
        if id != listener {
            return false;
        }
        self.relay.listener = None;
        self.relay.accepted = false;
        match reason {
            Ok(()) => tracing::info!(%relay, "relay reservation ended"),
            Err(error) => tracing::warn!(%relay, %error, "relay reservation failed"),
        }
        self.relay
            .backoff
            .insert(relay, Instant::now() + RELAY_RETRY_BACKOFF);
        true
    }

    fn on_relay_client_event(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                if matches!(self.relay.listener, Some((_, relay)) if relay == relay_peer_id) {
                    self.relay.accepted = true;
                }
                if renewal {
                    tracing::debug!(relay = %relay_peer_id, "relay reservation renewed");
                } else {
                    tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
                }
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "relayed connection from peer");
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "relayed connection through relay");
            }
        }
    }

    fn on_mdns_discovered(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, address) in found {
            by_peer.entry(peer).or_default().push(address);
        }
        let was_alone = self.routing_table_size() == 0;
        for (peer, addresses) in by_peer {
            let kademlia = &mut self.swarm.behaviour_mut().kademlia;
            for address in &addresses {
                kademlia.add_address(&peer, address.clone());
            }
            tracing::debug!(%peer, "found by mDNS");
            self.emit(OverlayEvent::PeerDiscovered {
                peer,
                addresses,
                via: Discovery::Mdns,
            });
        }
        if was_alone {
            // Joining a mesh found on the LAN: learn the rest of it.
            let _ = self.swarm.behaviour_mut().kademlia.bootstrap();
        }
    }

    fn listener_ready(&mut self, listener: ListenerId) {
        if self.listeners_pending.remove(&listener) && self.listeners_pending.is_empty() {
            self.answer_ready();
        }
    }

    fn listener_failed(&mut self, listener: ListenerId, reason: String) {
        tracing::warn!(%reason, "listener failed");
        if self.listeners_pending.remove(&listener) {
            if let Some(address) = self.listener_addrs.get(&listener) {
                self.listeners_failed.push((address.clone(), reason));
            }
            if self.listeners_pending.is_empty() {
                self.answer_ready();
            }
        }
    }

    /// Start succeeds when at least one listener works (or none was asked for).
    fn answer_ready(&mut self) {
        let Some(ready) = self.ready.take() else {
            return;
        };
        let answer = match self.listeners_failed.first() {
            Some((address, reason)) if self.listeners_failed.len() == self.listener_addrs.len() => {
                Err(StartError::Listen {
                    address: address.clone(),
                    reason: reason.clone(),
                })
            }
            _ => Ok(()),
        };
        let _ = ready.send(answer);
    }

    // ----- views ---------------------------------------------------------------------

    fn routing_table(&mut self) -> Vec<PeerStatus> {
        let mut peers = Vec::new();
        for bucket in self.swarm.behaviour_mut().kademlia.kbuckets() {
            for entry in bucket.iter() {
                peers.push((
                    *entry.node.key.preimage(),
                    entry.node.value.iter().cloned().collect::<Vec<_>>(),
                ));
            }
        }
        peers
            .into_iter()
            .map(|(peer, addresses)| PeerStatus {
                peer,
                addresses,
                connected: self.swarm.is_connected(&peer),
            })
            .collect()
    }

    fn routing_table_size(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kademlia
            .kbuckets()
            .map(|bucket| bucket.num_entries())
            .sum()
    }

    fn stats(&mut self) -> OverlayStats {
        OverlayStats {
            role: self.roles.role(),
            dht_server: self.dht_server,
            relay_reservation: self
                .relay
                .listener
                .filter(|_| self.relay.accepted)
                .map(|(_, relay)| relay),
            connected_supernodes: self.supernodes.len(),
            validation: self.validator.counters(),
            refused_unsupported_kind: self.refused_unsupported_kind,
            stored_records: self
                .swarm
                .behaviour_mut()
                .kademlia
                .store_mut()
                .records()
                .count(),
            own_publications: self.own_entries.len(),
            pinned_authorities: self.validator.pinned().len(),
            sip_messages_dropped: self.sip_dropped.load(Ordering::Relaxed),
            connected_peers: self.swarm.connected_peers().count(),
            bootstrapped: self.bootstrapped,
        }
    }

    /// Events other than SIP messages are dropped when the queue is full: they are hints,
    /// and the state they report can be queried.
    fn emit(&self, event: OverlayEvent) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.events.try_send(event) {
            tracing::debug!(?event, "event queue full; dropping event");
        }
    }
}

/// A record kind as the `record stored` event names it.
struct KindName(Option<RecordKind>);

impl std::fmt::Display for KindName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(RecordKind::Registration) => "registration",
            Some(RecordKind::DomainAuthority) => "domain-authority",
            Some(RecordKind::Mailbox) => "mailbox",
            None => "unknown",
        })
    }
}

/// The serving peers of a registration value's entries, comma-separated (`-` for none or
/// another kind); decoded only when the event is written.
struct EntryPublishers<'a> {
    kind: Option<RecordKind>,
    value: &'a [u8],
}

impl std::fmt::Display for EntryPublishers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let record = match self.kind {
            Some(RecordKind::Registration) => RegistrationRecord::decode(self.value).ok(),
            _ => None,
        };
        let Some(record) = record.filter(|r| !r.entries.is_empty()) else {
            return f.write_str("-");
        };
        for (i, entry) in record.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", entry.serving_peer)?;
        }
        Ok(())
    }
}

/// The outcome of a publish that was only stored locally: no other node is known, or no
/// query slot is free.
fn stored_locally_only(
    stored: kad::store::Result<()>,
    known_peers: usize,
    seq: u64,
) -> Result<PublishReport, PublishError> {
    match stored {
        Err(error) => Err(PublishError::Store(error.to_string())),
        Ok(()) if known_peers == 0 => Ok(PublishReport {
            seq,
            remote_copies: 0,
            quorum_met: false,
        }),
        Ok(()) => Err(PublishError::Busy),
    }
}

/// The address to reach a relay at: a routable one when it has any.
fn preferred_addr(addresses: &[Multiaddr]) -> Option<Multiaddr> {
    addresses
        .iter()
        .find(|address| !is_loopback(address))
        .or_else(|| addresses.first())
        .cloned()
}

fn on_relay_server_event(event: relay::Event) {
    match event {
        relay::Event::ReservationReqAccepted {
            src_peer_id,
            renewed,
        } => {
            if renewed {
                tracing::debug!(peer = %src_peer_id, "relay reservation renewed for peer");
            } else {
                tracing::info!(peer = %src_peer_id, "relay reservation accepted for peer");
            }
        }
        relay::Event::ReservationReqDenied {
            src_peer_id,
            status,
        } => {
            tracing::debug!(peer = %src_peer_id, ?status, "relay reservation denied");
        }
        relay::Event::CircuitReqAccepted {
            src_peer_id,
            dst_peer_id,
        } => {
            tracing::debug!(peer = %src_peer_id, to = %dst_peer_id, "relaying a connection");
        }
        relay::Event::CircuitReqDenied {
            src_peer_id,
            dst_peer_id,
            status,
        } => {
            tracing::debug!(peer = %src_peer_id, to = %dst_peer_id, ?status, "relay circuit denied");
        }
        other => tracing::trace!(event = ?other, "relay server"),
    }
}
