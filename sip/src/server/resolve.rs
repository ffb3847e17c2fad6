//! Routing beyond the location table, sans-IO. When a request's target is not a binding of
//! this node and not an IP literal (a user of a served domain registered elsewhere, a
//! `tel:` number, a foreign domain, a host name in a Route), the server asks the node's
//! routing chain to resolve the URI ([`ServerEvent::Resolve`]) and parks the request until
//! the node answers with [`SipServer::resolve_route`] or the deadline passes.
//!
//! The answer is an ordered list of [`TargetSet`]s: the sets are tried in series (the next
//! one when every branch of the current one failed with a transport error, 408 or 503, RFC
//! 3263 4.3), the hops of one set are forked in parallel. A set that leaves the overlay
//! (ENUM, RFC 3263, a static peer) goes through the authorisation step as a destination
//! elsewhere, whatever the Request-URI looked like, so no resolution reopens the relay.

use super::authorize::{Challenger, Destination, ForwardPolicy};
use super::proxy::Target;
use super::{ServerCtx, SipServer};
use crate::message::Message;
use crate::transaction::ServerTxId;
use crate::transport::{Peer, Transport};
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;
use tracing::debug;

/// Target sets of one resolution that are kept; later ones are ignored.
pub const MAX_TARGET_SETS: usize = 8;
/// Hops of one target set that are forked to; later ones are ignored.
pub const MAX_HOPS_PER_SET: usize = 8;

/// Identifies one pending resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResolveId(pub u64);

/// What a resolution is for, which decides the steps of the chain that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutePurpose {
    /// A user of a served domain with no binding on this node: the overlay, then (for a
    /// telephone number) ENUM and the peering table.
    ServedUser,
    /// A Request-URI outside the served domains (`tel:` or another domain): ENUM, domain
    /// policy, RFC 3263, the peering table.
    Foreign,
    /// The next hop of a request whose Request-URI stays (a Route, or an in-dialog target):
    /// RFC 3263 only.
    NextHop,
}

/// What the server asks of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// Resolve `uri` and answer with [`SipServer::resolve_route`]. `aor` is the canonical
    /// address-of-record for [`RoutePurpose::ServedUser`] (the overlay key). `external`:
    /// the source may be routed outside the served domains and the overlay (an
    /// authenticated local user, a trusted source); when false, steps that lead elsewhere
    /// (ENUM, DNS, peering) need not run, since their answer would be refused.
    Resolve {
        id: ResolveId,
        uri: String,
        aor: Option<String>,
        purpose: RoutePurpose,
        external: bool,
    },
    /// A request this node originated ended with `status`: the final response's, 408
    /// when none came, 503 when it could not be sent.
    RequestDone { id: super::RequestId, status: u16 },
}

/// One place a target set sends the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// Another overlay node, by its overlay host name.
    Overlay { host: String },
    /// A SIP server at an address; over TLS, `tls_name` is the name its certificate must
    /// carry (RFC 5922).
    Address {
        transport: Transport,
        addr: SocketAddr,
        tls_name: Option<String>,
    },
}

/// Hops tried together (forked in parallel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSet {
    pub hops: Vec<Hop>,
    /// A new Request-URI (an ENUM result), or `None` to keep it.
    pub request_uri: Option<String>,
    /// True when the hops are outside the served domains and the overlay (a provider, a
    /// gateway): the source must be allowed to send elsewhere.
    pub leaves_overlay: bool,
}

/// The node's answer to [`ServerEvent::Resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Target sets in the order to try them.
    Found(Vec<TargetSet>),
    /// Nothing to forward to: answer with this status and reason (404 when no step knew
    /// the target, 480 when a step failed, 403 when policy forbids, 500 for broken DNS
    /// data).
    Failed { status: u16, reason: String },
}

impl Resolution {
    pub fn failed(status: u16, reason: impl Into<String>) -> Resolution {
        Resolution::Failed {
            status,
            reason: reason.into(),
        }
    }
}

#[derive(Debug)]
struct PendingRoute {
    /// None for an ACK, which is forwarded statelessly once resolved.
    server_tx: Option<ServerTxId>,
    from: Peer,
    request: Bytes,
    /// Leading Route values pointing at this node, removed when the request is forwarded.
    own_routes: usize,
    /// How the authorisation step said to edit the request when it is forwarded.
    policy: ForwardPolicy,
    /// The destination class the request was authorised for.
    authorized: Destination,
    /// The target is a user of this node's users file: "not found" means offline (480).
    known_user: bool,
    deadline: Instant,
}

/// Requests parked while their resolution runs. Bounded by `max_pending_lookups`: when
/// full, new requests are answered 503 at once (ACKs dropped).
#[derive(Debug, Default)]
pub(crate) struct PendingRoutes {
    pending: HashMap<u64, PendingRoute>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
}

impl PendingRoutes {
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((when, _))| *when)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    fn remove(&mut self, id: u64) -> Option<PendingRoute> {
        self.pending.remove(&id)
    }

    /// Drops a resolution whose transaction ended; its deadline entry is skipped when it
    /// fires.
    pub fn forget(&mut self, id: u64) {
        self.pending.remove(&id);
    }
}

/// A request to park until its route is resolved.
pub(super) struct RouteQuery {
    pub uri: String,
    pub aor: Option<String>,
    pub purpose: RoutePurpose,
    pub own_routes: usize,
    pub policy: ForwardPolicy,
    pub authorized: Destination,
    /// The Request-URI names a user of this node's users file.
    pub known_user: bool,
}

impl SipServer {
    /// The next request the server has for the node.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Parks a request (or, with `tx` None, an ACK) until its route is resolved.
    pub(super) fn start_resolution(
        &mut self,
        now: Instant,
        tx: Option<ServerTxId>,
        from: Peer,
        msg: &Message<'_>,
        query: RouteQuery,
    ) {
        if self.routes.len() >= self.config.max_pending_lookups {
            if let Some(tx) = tx {
                self.respond(
                    now,
                    tx,
                    msg,
                    503,
                    "Service Unavailable (too many lookups)",
                    &[],
                );
            }
            return;
        }
        if let Some(tx) = tx {
            if matches!(msg.method(), Some(crate::message::Method::Invite)) {
                self.send_trying(now, tx, msg);
            }
        }
        let external = self.may_route_elsewhere(from, &query.policy, query.authorized);
        self.routes.next_id += 1;
        let id = self.routes.next_id;
        let deadline = now + self.config.lookup_timeout;
        self.routes.pending.insert(
            id,
            PendingRoute {
                server_tx: tx,
                from,
                request: Bytes::copy_from_slice(msg.raw),
                own_routes: query.own_routes,
                policy: query.policy,
                authorized: query.authorized,
                known_user: query.known_user,
                deadline,
            },
        );
        self.routes.deadlines.push(Reverse((deadline, id)));
        if let Some(ctx) = tx.and_then(|tx| self.transactions.server_ctx_mut(tx)) {
            ctx.route = Some(id);
        }
        debug!(uri = %query.uri, purpose = ?query.purpose, resolution = id, "resolving route");
        self.events.push_back(ServerEvent::Resolve {
            id: ResolveId(id),
            uri: query.uri,
            aor: query.aor,
            purpose: query.purpose,
            external,
        });
    }

    /// The node's answer to [`ServerEvent::Resolve`]. Answers for resolutions that were
    /// cancelled or timed out are ignored.
    pub fn resolve_route(&mut self, now: Instant, id: ResolveId, resolution: Resolution) {
        let Some(pending) = self.routes.remove(id.0) else {
            return;
        };
        if let Some(ctx) = pending
            .server_tx
            .and_then(|tx| self.transactions.server_ctx_mut(tx))
        {
            ctx.route = None;
        }
        let Ok(request) = Message::parse(&pending.request) else {
            return;
        };
        let sets = match resolution {
            Resolution::Found(sets) => sets,
            Resolution::Failed { status, reason } => {
                debug!(status, %reason, "no route");
                // A reason phrase is one line of text (RFC 3261 25.1).
                let reason: String = reason
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                let status = if (300..700).contains(&status) {
                    status
                } else {
                    500
                };
                if let Some(tx) = pending.server_tx {
                    if status == 404 && pending.known_user {
                        // A user of this node that is registered nowhere: offline.
                        self.respond(now, tx, &request, 480, "Temporarily Unavailable", &[]);
                    } else {
                        self.respond(now, tx, &request, status, &reason, &[]);
                    }
                }
                self.drain_transaction_events(now);
                return;
            }
        };
        let mut policy = pending.policy.clone();
        // A source that authenticated as a local user on the way in may go anywhere; its
        // credentials are not checked twice (their nonce count is spent).
        let mut may_leave =
            self.may_route_elsewhere(pending.from, &pending.policy, pending.authorized);
        let mut refusal = None;
        let mut series: VecDeque<Vec<Target>> = VecDeque::new();
        for set in sets.into_iter().take(MAX_TARGET_SETS) {
            if set.leaves_overlay && !may_leave {
                match self.authorize_forward(now, pending.from, &request, Destination::Elsewhere) {
                    Ok(granted) => {
                        policy = granted;
                        may_leave = true;
                    }
                    Err(refused) => {
                        refusal.get_or_insert(refused);
                        continue;
                    }
                }
            }
            let targets: Vec<Target> = set
                .hops
                .iter()
                .take(MAX_HOPS_PER_SET)
                .filter_map(|hop| self.target_for_hop(hop, &set.request_uri, pending.own_routes))
                .collect();
            if !targets.is_empty() {
                series.push_back(targets);
            }
        }
        match (pending.server_tx, refusal) {
            (Some(tx), Some(refusal)) if series.is_empty() => {
                self.refuse(now, tx, pending.from, &request, refusal, Challenger::Proxy);
            }
            (Some(tx), _) if series.is_empty() => {
                self.respond(now, tx, &request, 404, "Not Found (no usable target)", &[]);
            }
            (Some(tx), _) => {
                let trying_sent = matches!(request.method(), Some(crate::message::Method::Invite));
                self.forward_in_series(now, tx, &request, series, &policy, trying_sent);
            }
            (None, _) => {
                if let Some(target) = series.pop_front().and_then(|set| set.into_iter().next()) {
                    self.forward_stateless(&request, target, &policy);
                }
            }
        }
        self.drain_transaction_events(now);
    }

    /// True when a request from `from`, authorised for `authorized` with `policy`, may go
    /// outside the served domains and the overlay: it was authorised for that already, its
    /// source authenticated as a local user, or the source is trusted.
    pub(super) fn may_route_elsewhere(
        &self,
        from: Peer,
        policy: &ForwardPolicy,
        authorized: Destination,
    ) -> bool {
        authorized == Destination::Elsewhere
            || policy.consumed_credentials.is_some()
            || self.is_trusted_source(from)
    }

    /// The branch target for one resolved hop, or None when the hop is this node itself or
    /// needs a transport the node does not listen on.
    fn target_for_hop(
        &mut self,
        hop: &Hop,
        request_uri: &Option<String>,
        own_routes: usize,
    ) -> Option<Target> {
        let peer = match hop {
            Hop::Overlay { host } => {
                if self
                    .identity
                    .overlay_host()
                    .is_some_and(|own| own.eq_ignore_ascii_case(host))
                {
                    return None;
                }
                self.overlay_peer(host)
            }
            Hop::Address {
                transport, addr, ..
            } => {
                if self.identity.is_listener_address(*transport, *addr) {
                    debug!(%addr, "resolved hop is this node; skipped");
                    return None;
                }
                let local = self.identity.listener_for(*transport)?.addr;
                Peer {
                    transport: *transport,
                    remote: *addr,
                    local,
                    connection: None,
                }
            }
        };
        Some(Target {
            request_uri: request_uri.clone(),
            peer,
            pop_routes: own_routes,
        })
    }

    /// Answers parked requests whose resolution did not come back in time.
    pub(super) fn expire_resolutions(&mut self, now: Instant) {
        while let Some(Reverse((when, id))) = self.routes.deadlines.peek().copied() {
            if when > now {
                break;
            }
            self.routes.deadlines.pop();
            let current = self
                .routes
                .pending
                .get(&id)
                .is_some_and(|p| p.deadline == when);
            if current {
                self.resolve_route(
                    now,
                    ResolveId(id),
                    Resolution::failed(480, "Temporarily Unavailable (lookup timed out)"),
                );
            }
        }
    }

    /// A CANCEL for a request still waiting for its route: it ends here with 487.
    pub(super) fn cancel_resolution(&mut self, now: Instant, ctx: ServerCtx) -> bool {
        let Some(id) = ctx.route else {
            return false;
        };
        let Some(pending) = self.routes.remove(id) else {
            return false;
        };
        if let (Some(tx), Ok(request)) = (pending.server_tx, Message::parse(&pending.request)) {
            self.respond(now, tx, &request, 487, "Request Terminated", &[]);
        }
        true
    }
}
