//! Routing through the overlay, sans-IO: when a request is for a user of a served domain
//! with no local binding, the server asks the node to look the address-of-record up in the
//! DHT ([`ServerEvent::LookupRequest`]) and parks the request until the node answers with
//! [`SipServer::resolve_lookup`] or the lookup deadline passes.
//!
//! Other nodes are named by overlay host names (chosen by the node, e.g. derived from the
//! libp2p peer id); the server maps each name to a [`ConnectionId`] in a reserved range so
//! that overlay peers travel through the same [`Peer`] plumbing as stream connections.

use super::authorize::ForwardPolicy;
use super::proxy::Target;
use super::{ServerCtx, SipServer};
use crate::message::Message;
use crate::transaction::ServerTxId;
use crate::transport::{ConnectionId, Peer, Transport};
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;
use tracing::debug;

/// Connection ids at or above this value name overlay peers, not sockets.
const OVERLAY_CONNECTION_BASE: u64 = 1 << 62;

/// Identifies one pending lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// What the server asks of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// Find where `aor` is registered and answer with [`SipServer::resolve_lookup`].
    LookupRequest { id: LookupId, aor: String },
}

/// The node's answer to a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupOutcome {
    /// The nodes serving the user, by overlay host name; the request is forked to all.
    Found(Vec<String>),
    /// No record for the user: 404.
    NotFound,
    /// The lookup failed or timed out: 480.
    Unavailable,
}

#[derive(Debug)]
struct PendingLookup {
    server_tx: ServerTxId,
    request: Bytes,
    /// Leading Route values pointing at this node, removed when the request is forwarded.
    own_routes: usize,
    /// How the authorisation step said to edit the request when it is forwarded.
    policy: ForwardPolicy,
    deadline: Instant,
}

/// Requests parked while their lookup runs. Bounded: when full, new lookups are refused and
/// the request is answered 503 at once.
#[derive(Debug, Default)]
pub(crate) struct PendingLookups {
    pending: HashMap<u64, PendingLookup>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
}

impl PendingLookups {
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((when, _))| *when)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    fn remove(&mut self, id: u64) -> Option<PendingLookup> {
        self.pending.remove(&id)
    }

    /// Drops a lookup whose transaction ended; its deadline entry is skipped when it fires.
    pub fn forget(&mut self, id: u64) {
        self.pending.remove(&id);
    }
}

/// Overlay host names and their connection ids. Bounded: beyond `capacity` names the oldest
/// mapping is forgotten (a request routed to it later gets a fresh id; one that was in
/// flight fails like a closed connection).
#[derive(Debug, Default)]
pub(crate) struct OverlayPeers {
    by_name: HashMap<String, ConnectionId>,
    by_id: HashMap<ConnectionId, String>,
    order: VecDeque<ConnectionId>,
    next: u64,
}

/// How many overlay peer names are remembered.
const OVERLAY_PEERS_CAPACITY: usize = 65_536;

impl OverlayPeers {
    fn connection(&mut self, name: &str) -> ConnectionId {
        let name = name.to_ascii_lowercase();
        if let Some(id) = self.by_name.get(&name) {
            return *id;
        }
        if self.order.len() >= OVERLAY_PEERS_CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                if let Some(old_name) = self.by_id.remove(&oldest) {
                    self.by_name.remove(&old_name);
                }
            }
        }
        self.next += 1;
        let id = ConnectionId(OVERLAY_CONNECTION_BASE + self.next);
        self.by_name.insert(name.clone(), id);
        self.by_id.insert(id, name);
        self.order.push_back(id);
        id
    }

    fn name(&self, id: ConnectionId) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }
}

/// The address placeholder of overlay peers (they have no socket address).
const NO_ADDRESS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

impl SipServer {
    /// The [`Peer`] for a message that arrived from the overlay node named `host`. The node
    /// calls this for inbound overlay messages before [`SipServer::handle_input`].
    pub fn overlay_peer(&mut self, host: &str) -> Peer {
        Peer {
            transport: Transport::Overlay,
            remote: NO_ADDRESS,
            local: NO_ADDRESS,
            connection: Some(self.overlay_peers.connection(host)),
        }
    }

    /// The overlay host name behind a [`Transport::Overlay`] transmit's connection id, for
    /// the node to send it on.
    pub fn overlay_host_of(&self, connection: ConnectionId) -> Option<&str> {
        self.overlay_peers.name(connection)
    }

    /// The node could not deliver to the overlay node `host`: requests pending on it are
    /// answered now (500 upstream) instead of after Timer B.
    pub fn overlay_peer_unreachable(&mut self, now: Instant, host: &str) {
        let known = self
            .overlay_peers
            .by_name
            .get(&host.to_ascii_lowercase())
            .copied();
        if let Some(connection) = known {
            self.connection_failed(now, connection);
        }
    }

    /// The next request the server has for the node.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Parks a request whose target must be looked up in the overlay.
    pub(super) fn start_lookup(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        msg: &Message<'_>,
        aor: String,
        own_routes: usize,
        policy: ForwardPolicy,
    ) {
        if self.lookups.len() >= self.config.max_pending_lookups {
            self.respond(
                now,
                tx,
                msg,
                503,
                "Service Unavailable (too many lookups)",
                &[],
            );
            return;
        }
        if matches!(msg.method(), Some(crate::message::Method::Invite)) {
            self.send_trying(now, tx, msg);
        }
        self.lookups.next_id += 1;
        let id = self.lookups.next_id;
        let deadline = now + self.config.lookup_timeout;
        self.lookups.pending.insert(
            id,
            PendingLookup {
                server_tx: tx,
                request: Bytes::copy_from_slice(msg.raw),
                own_routes,
                policy,
                deadline,
            },
        );
        self.lookups.deadlines.push(Reverse((deadline, id)));
        if let Some(ctx) = self.transactions.server_ctx_mut(tx) {
            ctx.lookup = Some(id);
        }
        debug!(aor = %aor, lookup = id, "overlay lookup");
        self.events.push_back(ServerEvent::LookupRequest {
            id: LookupId(id),
            aor,
        });
    }

    /// The node's answer to [`ServerEvent::LookupRequest`]. Answers for lookups that were
    /// cancelled or timed out are ignored.
    pub fn resolve_lookup(&mut self, now: Instant, id: LookupId, outcome: LookupOutcome) {
        let Some(pending) = self.lookups.remove(id.0) else {
            return;
        };
        if let Some(ctx) = self.transactions.server_ctx_mut(pending.server_tx) {
            ctx.lookup = None;
        }
        let Ok(request) = Message::parse(&pending.request) else {
            return;
        };
        match outcome {
            LookupOutcome::Found(hosts) => {
                let own = self.identity.overlay_host().map(str::to_owned);
                let targets: Vec<_> = hosts
                    .iter()
                    .filter(|host| {
                        own.as_deref()
                            .is_none_or(|own| !own.eq_ignore_ascii_case(host))
                    })
                    .map(|host| Target {
                        request_uri: None,
                        peer: self.overlay_peer(host),
                        pop_routes: pending.own_routes,
                    })
                    .collect();
                if targets.is_empty() {
                    self.respond(now, pending.server_tx, &request, 404, "Not Found", &[]);
                } else {
                    self.forward(now, pending.server_tx, &request, targets, &pending.policy);
                }
            }
            LookupOutcome::NotFound => {
                self.respond(now, pending.server_tx, &request, 404, "Not Found", &[]);
            }
            LookupOutcome::Unavailable => {
                self.respond(
                    now,
                    pending.server_tx,
                    &request,
                    480,
                    "Temporarily Unavailable (lookup failed)",
                    &[],
                );
            }
        }
        self.drain_transaction_events(now);
    }

    /// Answers parked requests whose lookup did not come back in time.
    pub(super) fn expire_lookups(&mut self, now: Instant) {
        while let Some(Reverse((when, id))) = self.lookups.deadlines.peek().copied() {
            if when > now {
                break;
            }
            self.lookups.deadlines.pop();
            let current = self
                .lookups
                .pending
                .get(&id)
                .is_some_and(|p| p.deadline == when);
            if current {
                self.resolve_lookup(now, LookupId(id), LookupOutcome::Unavailable);
            }
        }
    }

    /// A CANCEL for a request still waiting for its lookup: it ends here with 487.
    pub(super) fn cancel_lookup(&mut self, now: Instant, ctx: ServerCtx) -> bool {
        let Some(id) = ctx.lookup else {
            return false;
        };
        let Some(pending) = self.lookups.remove(id) else {
            return false;
        };
        if let Ok(request) = Message::parse(&pending.request) {
            self.respond(
                now,
                pending.server_tx,
                &request,
                487,
                "Request Terminated",
                &[],
            );
        }
        true
    }
}
