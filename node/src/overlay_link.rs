//! The core's side of the overlay: everything between the [`SipServer`] and the
//! [`Overlay`] handle. The core owns one [`OverlayLink`] and calls it synchronously; every
//! overlay operation that waits (a DHT lookup, a publish, a SIP send) runs on a spawned task
//! and reports back through a bounded channel, so nothing on the SIP request path ever waits
//! for the DHT.
//!
//! - Lookups run in the routing chain ([`crate::routing`]); the addresses of the nodes it
//!   finds are handed here ([`OverlayLink::remember_addresses`]) and kept in a bounded
//!   cache for dialling.
//! - SIP between nodes: a [`Transport::Overlay`](sip::transport::Transport::Overlay)
//!   transmit goes to a per-peer sender task through a bounded queue of [`SEND_QUEUE`]
//!   messages, which keeps messages to one peer in order. A full queue drops the message
//!   with a warning: SIP retransmits over unreliable legs or the transaction times out.
//!   Inbound messages are fed to the server as coming from the sending node's host name.
//! - Publishing: the location table's change log is drained after every turn, only as far
//!   as publish slots ([`MAX_PUBLISHES`]) are free, so a backlog waits in that (bounded,
//!   merging) log rather than here. A changed AoR is published with this node's current
//!   bindings, a removed one withdrawn; a refresh that changes nothing is published again
//!   only once half the lifetime of the last publication has passed. One publish per AoR
//!   runs at a time; a change arriving meanwhile is published when it ends.

use crate::log_throttle::LogThrottle;
use crate::lru::LruMap;
use crate::route_cache::ServingPeers;
use libp2p::{Multiaddr, PeerId};
use overlay::key::Aor;
use overlay::network::now_unix as unix_now;
use overlay::network::{Overlay, OverlayEvent, PublishError};
use overlay::record::{
    RecordBinding, MAX_BINDINGS_PER_ENTRY, MAX_CONTACT_BYTES, MAX_ENTRY_LIFETIME_SECS,
    MAX_INSTANCE_BYTES,
};
use overlay::sip_name;
use sender::{peer_sender, Outbound, PeerSender};
use sip::registrar::ChangeKind;
use sip::server::SipServer;
use sip::transport::Transmit;
use std::collections::{HashMap, HashSet, VecDeque};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

/// Publishes and withdrawals running at once. Beyond it changes wait in the location
/// table's change log.
pub const MAX_PUBLISHES: usize = 64;

/// Messages waiting for one peer's sender task. When full, new messages to that peer are
/// dropped with a warning.
pub const SEND_QUEUE: usize = 256;

/// Peers with a sender task. A new peer beyond it takes the place of the least recently
/// used one, whose task sends what it has queued and ends.
pub const MAX_PEERS: usize = 4096;

/// Peers whose overlay addresses (from lookups) are remembered for dialling; the least
/// recently used are forgotten (the overlay then finds addresses through the DHT).
pub const ADDRESS_CACHE: usize = 4096;

/// AoRs whose last publication time is remembered, to coalesce refreshes. An AoR forgotten
/// here is simply published on its next refresh.
pub const LAST_PUBLISHED: usize = 1 << 18;

/// Overlay inputs (events, publish completions) handled per turn.
pub const INPUT_BATCH: usize = 64;

/// A sender task with nothing to send for this long ends; the next message starts another.
pub(crate) const SENDER_IDLE: Duration = Duration::from_secs(5 * 60);

/// At most one line per this interval for each warning a burst can repeat.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Shortest time between two full republications after the change log overflowed.
const RESYNC_INTERVAL: Duration = Duration::from_secs(30);

/// Bound on withdrawing this node's AoRs at shutdown.
pub const SHUTDOWN_WITHDRAW: Duration = Duration::from_secs(2);

/// Something the overlay side has for the core.
#[derive(Debug)]
pub enum LinkInput {
    Event(OverlayEvent),
    Published(PublishDone),
    /// A message to this peer could not be delivered.
    SendFailed(PeerId),
}

/// Delivery failures waiting for the core. When full, further notices are dropped and the
/// affected transactions end by their own timers instead.
const SEND_FAILURES: usize = 256;

/// The end of one publish or withdrawal task.
#[derive(Debug)]
pub struct PublishDone {
    aor: String,
    /// What was attempted and why it failed, when it failed in a way worth a warning.
    failure: Option<(&'static str, String)>,
}

enum PublishAction {
    Publish(Vec<RecordBinding>),
    Withdraw,
}

pub struct OverlayLink {
    overlay: Overlay,
    local_peer: PeerId,
    events: mpsc::Receiver<OverlayEvent>,
    /// False once the overlay's event channel closed (the overlay stopped).
    events_open: bool,
    failures_tx: mpsc::Sender<PeerId>,
    failures_rx: mpsc::Receiver<PeerId>,
    addrs: LruMap<PeerId, Vec<Multiaddr>>,
    senders: LruMap<PeerId, PeerSender>,
    /// AoRs with a publish task running → whether another publish is due when it ends.
    /// At most [`MAX_PUBLISHES`] entries.
    publishing: HashMap<String, bool>,
    /// Capacity [`MAX_PUBLISHES`]: every publish task sends exactly one completion and is
    /// counted until the core takes it, so a send never waits.
    publish_tx: mpsc::Sender<PublishDone>,
    publish_rx: mpsc::Receiver<PublishDone>,
    /// AoR → when its last publication should be renewed on a refresh.
    last_published: LruMap<String, Instant>,
    /// AoRs to publish again after the change log overflowed; at most the location table's
    /// AoRs plus `last_published`'s.
    resync: VecDeque<String>,
    resync_wanted: bool,
    last_resync: Option<Instant>,
    /// Warnings that a burst of registrations can repeat by the million, one line each
    /// per [`WARNING_INTERVAL`] at most.
    publish_failure_log: LogThrottle,
    change_overflow_log: LogThrottle,
}

impl OverlayLink {
    pub fn new(overlay: Overlay, events: mpsc::Receiver<OverlayEvent>) -> OverlayLink {
        let (publish_tx, publish_rx) = mpsc::channel(MAX_PUBLISHES);
        let (failures_tx, failures_rx) = mpsc::channel(SEND_FAILURES);
        OverlayLink {
            local_peer: overlay.local_peer_id(),
            overlay,
            events,
            events_open: true,
            failures_tx,
            failures_rx,
            addrs: LruMap::new(ADDRESS_CACHE),
            senders: LruMap::new(MAX_PEERS),
            publishing: HashMap::new(),
            publish_tx,
            publish_rx,
            last_published: LruMap::new(LAST_PUBLISHED),
            resync: VecDeque::new(),
            resync_wanted: false,
            last_resync: None,
            publish_failure_log: LogThrottle::new(WARNING_INTERVAL),
            change_overflow_log: LogThrottle::new(WARNING_INTERVAL),
        }
    }

    /// Registers interest in every overlay source; the first ready input, if any.
    pub fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<LinkInput> {
        if let Poll::Ready(Some(done)) = self.publish_rx.poll_recv(cx) {
            return Poll::Ready(LinkInput::Published(done));
        }
        if let Poll::Ready(Some(peer)) = self.failures_rx.poll_recv(cx) {
            return Poll::Ready(LinkInput::SendFailed(peer));
        }
        if self.events_open {
            match self.events.poll_recv(cx) {
                Poll::Ready(Some(event)) => return Poll::Ready(LinkInput::Event(event)),
                Poll::Ready(None) => self.events_closed(),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    /// The next input that is ready now.
    pub fn try_input(&mut self) -> Option<LinkInput> {
        if let Ok(done) = self.publish_rx.try_recv() {
            return Some(LinkInput::Published(done));
        }
        if let Ok(peer) = self.failures_rx.try_recv() {
            return Some(LinkInput::SendFailed(peer));
        }
        if self.events_open {
            match self.events.try_recv() {
                Ok(event) => return Some(LinkInput::Event(event)),
                Err(mpsc::error::TryRecvError::Disconnected) => self.events_closed(),
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
        }
        None
    }

    fn events_closed(&mut self) {
        self.events_open = false;
        tracing::error!("the overlay stopped; this node now serves only its local users");
    }

    pub fn handle_input(&mut self, now: Instant, server: &mut SipServer, input: LinkInput) {
        match input {
            LinkInput::Event(event) => self.handle_event(now, server, event),
            LinkInput::SendFailed(peer) => {
                server.overlay_peer_unreachable(now, &sip_name::host_name(&peer));
            }
            LinkInput::Published(done) => {
                if let Some((what, error)) = &done.failure {
                    if let Some(failures) = self.publish_failure_log.occurred(now) {
                        warn!(what, %error, failures, "registration not published (failures: how many since the last such line)");
                    }
                }
                if self.publishing.remove(&done.aor) == Some(true) {
                    self.publish_current(now, server, done.aor);
                }
            }
        }
    }

    fn handle_event(&mut self, now: Instant, server: &mut SipServer, event: OverlayEvent) {
        match event {
            OverlayEvent::SipMessage { from, bytes } => {
                let span = tracing::debug_span!("overlay_in", peer = %from);
                let _entered = span.enter();
                let peer = server.overlay_peer(&sip_name::host_name(&from));
                server.handle_input(now, peer, &bytes);
            }
            OverlayEvent::PeerDiscovered {
                peer,
                addresses,
                via,
            } => debug!(%peer, ?addresses, ?via, "overlay peer discovered"),
            OverlayEvent::ListenAddr { address } => debug!(%address, "overlay listening"),
            OverlayEvent::ListenAddrExpired { address } => {
                debug!(%address, "overlay stopped listening")
            }
            OverlayEvent::RoleChanged { role } => {
                info!(%role, peer_id = %self.overlay.local_peer_id(), "overlay role changed")
            }
            other => debug!(event = ?other, "overlay event"),
        }
    }

    /// Work for the overlay produced by this turn: changed registrations to publish.
    pub fn after_turn(&mut self, now: Instant, server: &mut SipServer) {
        self.publish_changes(now, server);
    }

    /// Remembers the addresses of overlay nodes the routing chain found, for dialling.
    pub fn remember_addresses(&mut self, serving: &ServingPeers) {
        for (peer, addrs) in serving {
            if !addrs.is_empty() {
                self.addrs.insert(*peer, addrs.clone());
            }
        }
    }

    /// When the core must call [`OverlayLink::after_turn`] even if nothing else happens: a
    /// republication held back by [`RESYNC_INTERVAL`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.resync_wanted {
            return None;
        }
        Some(
            self.last_resync
                .map_or(Instant::now(), |at| at + RESYNC_INTERVAL),
        )
    }

    fn publish_changes(&mut self, now: Instant, server: &mut SipServer) {
        if server.location_mut().take_change_overflow() {
            if let Some(overflows) = self.change_overflow_log.occurred(now) {
                warn!(
                    overflows,
                    "registration change log overflowed; every registration will be republished"
                );
            }
            self.resync_wanted = true;
        }
        if self.resync_wanted
            && self
                .last_resync
                .is_none_or(|at| now.saturating_duration_since(at) >= RESYNC_INTERVAL)
        {
            self.start_resync(now, server);
        }
        loop {
            let free = MAX_PUBLISHES.saturating_sub(self.publishing.len());
            if free == 0 {
                break;
            }
            let changes = server.location_mut().drain_changed(free);
            if changes.is_empty() {
                break;
            }
            for (aor, kind) in changes {
                match kind {
                    ChangeKind::Changed | ChangeKind::Removed => {
                        self.publish_current(now, server, aor)
                    }
                    ChangeKind::Refreshed => {
                        let due = self.last_published.peek(&aor).is_none_or(|at| now >= *at);
                        if due {
                            self.publish_current(now, server, aor);
                        }
                    }
                }
            }
        }
        while self.publishing.len() < MAX_PUBLISHES {
            let Some(aor) = self.resync.pop_front() else {
                break;
            };
            self.publish_current(now, server, aor);
        }
    }

    /// Queues every AoR this node has or had published for publication of its current state.
    fn start_resync(&mut self, now: Instant, server: &SipServer) {
        self.resync_wanted = false;
        self.last_resync = Some(now);
        let mut seen: HashSet<String> = self.resync.drain(..).collect();
        seen.extend(server.location().aors().map(str::to_owned));
        // Published before but gone from the table: their removal may have been lost.
        seen.extend(self.last_published.keys().cloned());
        info!(aors = seen.len(), "republishing every registration");
        self.resync.extend(seen);
    }

    /// Publishes this node's current bindings of `aor`, or withdraws it when there are none;
    /// marks it for another round if a publish of it is already running.
    fn publish_current(&mut self, now: Instant, server: &SipServer, aor: String) {
        if let Some(again) = self.publishing.get_mut(&aor) {
            *again = true;
            return;
        }
        let key = match Aor::parse(&aor) {
            Ok(key) => key,
            Err(error) => {
                debug!(%aor, %error, "registration not published: not an overlay AoR");
                return;
            }
        };
        let (bindings, longest) = record_bindings(server, now, &aor, unix_now());
        let action = if bindings.is_empty() {
            self.last_published.remove(&aor);
            PublishAction::Withdraw
        } else {
            self.last_published.insert(aor.clone(), now + longest / 2);
            PublishAction::Publish(bindings)
        };
        self.publishing.insert(aor.clone(), false);
        let span = tracing::debug_span!("overlay_publish", %aor);
        tokio::spawn(
            publish_task(
                self.overlay.clone(),
                key,
                aor,
                action,
                self.publish_tx.clone(),
            )
            .instrument(span),
        );
    }

    /// Hands an overlay transmit to its peer's sender task.
    pub fn send(&mut self, server: &SipServer, transmit: Transmit) {
        let Some(connection) = transmit.to.connection else {
            debug!("overlay transmit without a peer dropped");
            return;
        };
        let Some(host) = server.overlay_host_of(connection) else {
            debug!("overlay transmit to a forgotten peer dropped");
            return;
        };
        let Some(peer) = sip_name::peer_of_host(host) else {
            debug!(%host, "overlay transmit to a name that is no peer id dropped");
            return;
        };
        if peer == self.local_peer {
            debug!("overlay transmit to this node itself dropped");
            return;
        }
        let addrs = self.addrs.peek(&peer).cloned().unwrap_or_default();
        let mut message = Outbound {
            payload: transmit.payload,
            addrs,
        };
        // A second attempt only when the task ended between the check and the send.
        for _ in 0..2 {
            if self
                .senders
                .peek(&peer)
                .is_none_or(|sender| sender.queue.is_closed())
            {
                self.spawn_sender(peer);
            }
            let Some(sender) = self.senders.get_mut(&peer) else {
                return;
            };
            match sender.queue.try_send(message) {
                Ok(()) => return,
                Err(TrySendError::Full(_)) => {
                    sender.dropped += 1;
                    if sender.dropped.is_power_of_two() {
                        warn!(%peer, dropped = sender.dropped, "overlay send queue full; message dropped");
                    }
                    return;
                }
                Err(TrySendError::Closed(back)) => message = back,
            }
        }
    }

    fn spawn_sender(&mut self, peer: PeerId) {
        let (queue, receiver) = mpsc::channel(SEND_QUEUE);
        let span = tracing::debug_span!("overlay_send", %peer);
        let failures = self.failures_tx.clone();
        tokio::spawn(peer_sender(self.overlay.clone(), peer, receiver, failures).instrument(span));
        if let Some((evicted, _)) = self.senders.insert(peer, PeerSender { queue, dropped: 0 }) {
            debug!(peer = %evicted, "sender of the least recently used peer retired");
        }
    }

    /// At shutdown: lets running publishes end, withdraws `aors` (this node's registrations)
    /// and every AoR published before, all within [`SHUTDOWN_WITHDRAW`], then stops the
    /// overlay.
    pub async fn shutdown(mut self, aors: Vec<String>) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WITHDRAW;
        // A withdrawal must not be overtaken by a publish of the same AoR still running.
        while !self.publishing.is_empty() {
            match tokio::time::timeout_at(deadline, self.publish_rx.recv()).await {
                Ok(Some(done)) => {
                    self.publishing.remove(&done.aor);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let mut withdraw: HashSet<String> = aors.into_iter().collect();
        withdraw.extend(self.last_published.keys().cloned());
        let total = withdraw.len();
        let mut pending = withdraw
            .into_iter()
            .filter_map(|aor| Aor::parse(&aor).ok())
            .collect::<Vec<_>>()
            .into_iter();
        let mut tasks = JoinSet::new();
        let mut withdrawn = 0usize;
        let finished = tokio::time::timeout_at(deadline, async {
            loop {
                while tasks.len() < MAX_PUBLISHES {
                    let Some(aor) = pending.next() else { break };
                    let overlay = self.overlay.clone();
                    tasks.spawn(async move { overlay.withdraw(aor).await });
                }
                match tasks.join_next().await {
                    Some(Ok(Ok(_))) => withdrawn += 1,
                    Some(_) => {}
                    None => break,
                }
            }
        })
        .await
        .is_ok();
        tasks.abort_all();
        if finished {
            info!(withdrawn, "registrations withdrawn from the overlay");
        } else {
            warn!(
                withdrawn,
                total, "not every registration was withdrawn in time; the rest expire"
            );
        }
        // Sender tasks end once their queues are dropped.
        drop(self.senders);
        self.overlay.shutdown().await;
    }
}

/// This node's live bindings of `aor` as record bindings, and the longest time left on any.
fn record_bindings(
    server: &SipServer,
    now: Instant,
    aor: &str,
    now_unix: u64,
) -> (Vec<RecordBinding>, Duration) {
    let mut longest = Duration::ZERO;
    let mut bindings = Vec::new();
    // Best q first, so the ones kept within the entry limit are the preferred ones.
    for binding in server.location().lookup(now, aor) {
        if bindings.len() == MAX_BINDINGS_PER_ENTRY {
            break;
        }
        if binding.uri.len() > MAX_CONTACT_BYTES {
            debug!(aor, "contact too long for the overlay; not published");
            continue;
        }
        let left = binding.expires_at.saturating_duration_since(now);
        longest = longest.max(left);
        let seconds = u64::from(binding.expires_in(now)).min(MAX_ENTRY_LIFETIME_SECS);
        bindings.push(RecordBinding {
            contact: binding.uri.to_string(),
            expires_at: now_unix + seconds,
            q: binding.q,
            instance: binding
                .instance
                .as_deref()
                .filter(|instance| instance.len() <= MAX_INSTANCE_BYTES)
                .map(str::to_owned),
            reg_id: binding.reg_id,
        });
    }
    (bindings, longest)
}

async fn publish_task(
    overlay: Overlay,
    key: Aor,
    aor: String,
    action: PublishAction,
    done: mpsc::Sender<PublishDone>,
) {
    let (what, result) = match action {
        PublishAction::Publish(bindings) => ("publish", overlay.publish(key, bindings).await),
        PublishAction::Withdraw => ("withdraw", overlay.withdraw(key).await),
    };
    let failure = match result {
        Ok(report) => {
            debug!(
                what,
                seq = report.seq,
                copies = report.remote_copies,
                quorum = report.quorum_met,
                "registration published"
            );
            None
        }
        // Nothing to withdraw; or the overlay stopped, which the core has already reported.
        Err(PublishError::NotPublished | PublishError::Shutdown) => None,
        // Stored locally; the overlay puts it again on its republication timer.
        Err(
            error @ (PublishError::Timeout | PublishError::Busy | PublishError::NoCopies { .. }),
        ) => {
            debug!(what, %error, "registration stored locally, put again later");
            None
        }
        // Logged by the link, throttled: a burst of registrations can fail by the million.
        Err(error) => Some((what, error.to_string())),
    };
    let _ = done.send(PublishDone { aor, failure }).await;
}

mod sender;
#[cfg(test)]
mod tests;
