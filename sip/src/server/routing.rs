//! Request intake and routing decisions (RFC 3261 16.3 to 16.5): transaction matching,
//! Max-Forwards, loop detection, Route processing, and the choice between local handling,
//! the location table and a next hop.

use super::authorize::{Challenger, Destination, ForwardPolicy, Refusal};
use super::ids::{loop_hash, loop_hash_of_branch};
use super::proxy::Target;
use super::resolve::{RoutePurpose, RouteQuery};
use super::{ServerCtx, SipServer};
use crate::message::uri::{Scheme, Uri};
use crate::message::{HeaderName, Message, Method, NameAddr, Via};
use crate::transaction::{ServerKey, ServerMatch, TransactionError};
use crate::transport::{Peer, Transport};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tracing::debug;

/// UDP branches a request forks to at most whose contact is not the address its REGISTER
/// came from. Bindings are tried in q order, so the preferred ones are kept.
const MAX_UNVERIFIED_BRANCHES: usize = 2;

/// Where a request goes after Route processing.
enum RouteDecision {
    /// Answer here (REGISTER, OPTIONS to the node, methods the node does not serve).
    Local,
    /// Proxy to these targets (forking when several), edited as the policy says.
    Forward(Vec<Target>, ForwardPolicy),
    /// Answer with this status and reason.
    Reject(u16, &'static str),
    /// The authorisation step refused it: 403 or a challenge.
    Refuse(Refusal),
    /// 420 listing the Proxy-Require option tags (this node supports none).
    BadExtension,
    /// Not reachable from what the server knows: ask the node's routing chain.
    Resolve(RouteQuery),
}

impl SipServer {
    pub(super) fn handle_request(&mut self, now: Instant, from: Peer, msg: &Message<'_>) {
        let (Some(method), Some(Ok(via)), Some(Ok(cseq)), Some(call_id)) =
            (msg.method(), msg.top_via(), msg.cseq(), msg.call_id())
        else {
            // validate() guarantees these; a request without them is dropped.
            return;
        };
        let method = *method;
        if !self.admit_source(now, from) {
            return;
        }
        let key = server_key(msg, &via, cseq.seq, cseq.method.as_str(), call_id);
        match self.transactions.on_request(now, &key) {
            ServerMatch::Retransmission(_) | ServerMatch::AckAbsorbed(_) => return,
            ServerMatch::AckAccepted(_) => {
                self.forward_ack(now, from, msg);
                return;
            }
            ServerMatch::New => {}
        }
        if method == Method::Ack {
            if self.is_ack_of_local_reply(msg) {
                return;
            }
            // An ACK for a 2xx travels end to end, outside any transaction (RFC 3261 17.1.1.3).
            self.forward_ack(now, from, msg);
            return;
        }
        if self.sheds(&method, msg) {
            self.shed(from, msg);
            return;
        }
        let cancelled_invite = if method == Method::Cancel {
            self.transactions.find_invite_for_cancel(&key)
        } else {
            None
        };
        let tx = match self
            .transactions
            .create_server(key, from, ServerCtx::default())
        {
            Ok(tx) => tx,
            Err(TransactionError::TableFull) => {
                self.shed(from, msg);
                return;
            }
            Err(err) => {
                debug!(?err, "no server transaction");
                return;
            }
        };
        if method == Method::Cancel {
            self.handle_cancel(now, tx, msg, cancelled_invite);
            return;
        }
        match self.route_request(now, from, msg, &method) {
            RouteDecision::Local => self.handle_local(now, tx, from, msg, &method),
            RouteDecision::Forward(targets, policy) => {
                self.forward(now, tx, msg, targets, &policy);
            }
            RouteDecision::Resolve(query) => {
                self.start_resolution(now, Some(tx), from, msg, query);
            }
            RouteDecision::Reject(status, reason) => {
                self.respond_error(now, tx, from, msg, status, reason, &[]);
            }
            RouteDecision::Refuse(refusal) => {
                self.refuse(now, tx, from, msg, refusal, Challenger::Proxy);
            }
            RouteDecision::BadExtension => {
                self.respond_bad_extension(now, tx, from, msg, HeaderName::ProxyRequire);
            }
        }
    }

    fn route_request(
        &mut self,
        now: Instant,
        from: Peer,
        msg: &Message<'_>,
        method: &Method<'_>,
    ) -> RouteDecision {
        let Some(request_uri) = msg.request_uri() else {
            return RouteDecision::Reject(400, "Bad Request (no Request-URI)");
        };
        let own_routes = self.leading_own_routes(msg);
        let next_route = msg
            .header_values(HeaderName::Route)
            .nth(own_routes)
            .map(NameAddr::parse);
        let addressed_to_node = next_route.is_none() && self.identity.is_node_uri(request_uri);
        let registers_here = *method == Method::Register
            && next_route.is_none()
            && request_uri.user.is_none()
            && self
                .identity
                .is_local_user_domain(request_uri.host, request_uri.port);

        // RFC 3261 16.3 step 3: Max-Forwards 0 must not be forwarded. REGISTER for our own
        // domain is not forwarded, so it is served whatever its Max-Forwards.
        if !registers_here {
            if let Some(Ok(0)) = msg.max_forwards() {
                return RouteDecision::Reject(483, "Too Many Hops");
            }
        }
        if msg.header(HeaderName::ProxyRequire).is_some() {
            return RouteDecision::BadExtension;
        }
        if self.is_loop(msg) {
            return RouteDecision::Reject(482, "Loop Detected");
        }
        if registers_here || addressed_to_node {
            return RouteDecision::Local;
        }
        if let Some(route) = next_route {
            // Loose routing: the next hop is the first Route that is not ours; the
            // Request-URI stays.
            let Ok(route) = route else {
                return RouteDecision::Reject(400, "Bad Request (bad Route)");
            };
            let destination = destination_of(&route.uri);
            let policy = match self.authorize_forward(now, from, msg, destination) {
                Ok(policy) => policy,
                Err(refusal) => return RouteDecision::Refuse(refusal),
            };
            return self.next_hop(
                &route.uri,
                own_routes,
                policy,
                destination,
                RoutePurpose::NextHop,
                "Not Found (no route to next hop)",
            );
        }
        match request_uri.scheme {
            Scheme::Sip | Scheme::Sips => {}
            Scheme::Tel => {
                let policy = match self.authorize_forward(now, from, msg, Destination::Elsewhere) {
                    Ok(policy) => policy,
                    Err(refusal) => return RouteDecision::Refuse(refusal),
                };
                return self.next_hop(
                    request_uri,
                    own_routes,
                    policy,
                    Destination::Elsewhere,
                    RoutePurpose::Foreign,
                    "Not Found (no route for tel URI)",
                );
            }
            Scheme::Other => return RouteDecision::Reject(416, "Unsupported URI Scheme"),
        }
        let served = self
            .identity
            .is_local_user_domain(request_uri.host, request_uri.port);
        let destination = if served {
            Destination::ServedUser
        } else {
            destination_of(request_uri)
        };
        let policy = match self.authorize_forward(now, from, msg, destination) {
            Ok(policy) => policy,
            Err(refusal) => return RouteDecision::Refuse(refusal),
        };
        if served {
            return self.route_to_local_user(now, from, request_uri, own_routes, policy);
        }
        // A target outside our domains: the routing chain, all of it for a new request, RFC
        // 3263 alone for an in-dialog request (a phone's or a provider's Contact).
        let in_dialog = msg
            .to()
            .and_then(Result::ok)
            .is_some_and(|to| to.tag().is_some());
        let purpose = if in_dialog {
            RoutePurpose::NextHop
        } else {
            RoutePurpose::Foreign
        };
        self.next_hop(
            request_uri,
            own_routes,
            policy,
            destination,
            purpose,
            "Not Found (no route to domain)",
        )
    }

    /// Forwards to the one next hop `uri` names, keeping the Request-URI: at once for an
    /// IP literal or an overlay host, else through the routing chain for `purpose` (the
    /// request was authorised for `authorized`, to be edited as `policy` says); 404
    /// with `not_found` when the node runs no chain.
    fn next_hop(
        &mut self,
        uri: &Uri<'_>,
        own_routes: usize,
        policy: ForwardPolicy,
        authorized: Destination,
        purpose: RoutePurpose,
        not_found: &'static str,
    ) -> RouteDecision {
        match self.peer_for_uri(uri) {
            Some(peer) => RouteDecision::Forward(
                vec![Target {
                    request_uri: None,
                    peer,
                    pop_routes: own_routes,
                }],
                policy,
            ),
            None if self.config.resolves_routes => RouteDecision::Resolve(RouteQuery {
                uri: uri.raw.to_owned(),
                aor: None,
                purpose,
                own_routes,
                policy,
                authorized,
                known_user: false,
            }),
            None => RouteDecision::Reject(404, not_found),
        }
    }

    fn route_to_local_user(
        &mut self,
        now: Instant,
        from: Peer,
        request_uri: &Uri<'_>,
        own_routes: usize,
        policy: ForwardPolicy,
    ) -> RouteDecision {
        let aor = self.identity.canonical_aor(request_uri);
        let bindings: Vec<(String, Peer)> = self
            .location
            .lookup(now, &aor)
            .map(|binding| (binding.uri.to_string(), binding.source))
            .collect();
        let mut targets = Vec::with_capacity(bindings.len());
        let mut unverified = 0;
        for (uri, source) in bindings {
            let Ok(contact) = Uri::parse(&uri) else {
                continue;
            };
            if let Some(peer) = self.peer_for_binding(&contact, source) {
                // A UDP contact other than the address its REGISTER came from may name
                // anyone (a victim of reflected traffic): only a few such branches.
                if peer.transport == Transport::Udp && peer.remote != source.remote {
                    if unverified >= MAX_UNVERIFIED_BRANCHES {
                        debug!(contact = %uri, "unverified contact skipped");
                        continue;
                    }
                    unverified += 1;
                }
                targets.push(Target {
                    request_uri: Some(uri),
                    peer,
                    pop_routes: own_routes,
                });
            }
        }
        if !targets.is_empty() {
            return RouteDecision::Forward(targets, policy);
        }
        let known_user = request_uri
            .user_unescaped()
            .is_some_and(|user| self.credentials.contains(&user, &request_uri.host_lower()));
        // A request that came over the overlay was routed here by a lookup: asking the
        // overlay again could bounce it between nodes holding stale records. Without an
        // overlay, only a source that may be routed elsewhere (ENUM, peering) is worth
        // asking for; anyone else is answered at once.
        let worth_resolving = self.identity.overlay_host().is_some()
            || self.may_route_elsewhere(from, &policy, Destination::ServedUser);
        if self.config.resolves_routes && from.transport != Transport::Overlay && worth_resolving {
            return RouteDecision::Resolve(RouteQuery {
                uri: request_uri.raw.to_owned(),
                aor: Some(aor),
                purpose: RoutePurpose::ServedUser,
                own_routes,
                policy,
                authorized: Destination::ServedUser,
                known_user,
            });
        }
        if known_user {
            RouteDecision::Reject(480, "Temporarily Unavailable")
        } else {
            RouteDecision::Reject(404, "Not Found")
        }
    }

    /// How many leading Route values point at this node (one, or two after double
    /// Record-Routing across transports).
    fn leading_own_routes(&self, msg: &Message<'_>) -> usize {
        msg.header_values(HeaderName::Route)
            .take_while(|value| {
                NameAddr::parse(value).is_ok_and(|route| self.identity.is_own_route(&route.uri))
            })
            .count()
    }

    /// RFC 3261 16.3 step 4: a Via of ours whose branch carries the loop hash this request
    /// would get again means the request came back unchanged: a loop, not a spiral.
    fn is_loop(&self, msg: &Message<'_>) -> bool {
        let mut ours = msg
            .header_values(HeaderName::Via)
            .filter_map(|value| Via::parse(value).ok())
            .filter(|via| self.identity.is_local_address(via.host, via.port))
            .peekable();
        if ours.peek().is_none() {
            return false;
        }
        let hash = request_loop_hash(msg);
        ours.any(|via| via.branch().and_then(loop_hash_of_branch) == Some(hash.as_str()))
    }

    /// Where to send a request for a phone's binding. Bindings made over a stream reuse that
    /// connection (phones behind NAT can only be reached that way); a UDP binding whose
    /// contact is a private address behind NAT goes to the REGISTER's source; others go to
    /// the contact address, or to the REGISTER's source when the contact is not an IP
    /// address.
    fn peer_for_binding(&mut self, contact: &Uri<'_>, source: Peer) -> Option<Peer> {
        let contact_transport = uri_transport(contact);
        if source.transport.is_reliable()
            && source.connection.is_some()
            && contact_transport.is_none_or(|t| t == source.transport)
        {
            return Some(source);
        }
        // A phone behind NAT is reached through the mapping its REGISTER came through.
        if source.transport == Transport::Udp
            && contact_transport.is_none_or(|t| t == Transport::Udp)
            && super::nat::contact_behind_nat(contact, source)
        {
            return Some(source);
        }
        self.peer_for_uri(contact).or(Some(source))
    }

    /// The next-hop address for a URI whose host is an IP literal.
    pub(super) fn peer_for_uri(&mut self, uri: &Uri<'_>) -> Option<Peer> {
        let transport = uri_transport(uri).unwrap_or(if uri.scheme == Scheme::Sips {
            Transport::Tls
        } else {
            Transport::Udp
        });
        if transport == Transport::Overlay {
            return Some(self.overlay_peer(uri.host));
        }
        let ip: IpAddr = uri
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        let port = uri.port.unwrap_or(transport.default_port());
        let local = self.identity.listener_for(transport)?.addr;
        Some(Peer {
            transport,
            remote: SocketAddr::new(ip, port),
            local,
            connection: None,
        })
    }

    pub(super) fn forward_ack(&mut self, now: Instant, from: Peer, msg: &Message<'_>) {
        let Some(method) = msg.method().copied() else {
            return;
        };
        match self.route_request(now, from, msg, &method) {
            RouteDecision::Forward(targets, policy) => {
                if let Some(target) = targets.into_iter().next() {
                    self.forward_stateless(msg, target, &policy);
                }
            }
            RouteDecision::Resolve(query) => {
                self.start_resolution(now, None, from, msg, query);
            }
            RouteDecision::Local
            | RouteDecision::Reject(..)
            | RouteDecision::Refuse(..)
            | RouteDecision::BadExtension => {
                debug!(remote = %from.remote, "ACK with no route dropped");
            }
        }
    }
}

/// Where a URI outside the served domains leads: another overlay node, or elsewhere.
fn destination_of(uri: &Uri<'_>) -> Destination {
    if uri_transport(uri) == Some(Transport::Overlay) {
        Destination::Overlay
    } else {
        Destination::Elsewhere
    }
}

/// The URI's `transport` parameter, if it names a transport this node speaks.
fn uri_transport(uri: &Uri<'_>) -> Option<Transport> {
    uri.transport_param().and_then(Transport::from_token)
}

/// The server transaction key of a request (RFC 3261 17.2.3, with the RFC 2543 fallback).
fn server_key(
    msg: &Message<'_>,
    via: &Via<'_>,
    cseq_number: u32,
    cseq_method: &str,
    call_id: &str,
) -> ServerKey {
    let method = msg.method().map_or(cseq_method, Method::as_str);
    match via.branch() {
        Some(branch) if ServerKey::is_rfc3261_branch(branch) => {
            ServerKey::rfc3261(branch, via.host, via.port, method)
        }
        _ => {
            let from_tag = msg.from().and_then(Result::ok).and_then(|f| f.tag());
            let request_uri = msg.request_uri().map_or("", |u| u.raw);
            ServerKey::rfc2543(request_uri, from_tag, call_id, cseq_number, method, via.raw)
        }
    }
}

/// The loop-detection hash of a request: everything that identifies it and that changes
/// when it legitimately spirals (Request-URI, Route, Proxy-Require); not the top Via, which
/// differs on every hop and would hide loops.
pub(super) fn request_loop_hash(msg: &Message<'_>) -> String {
    let to_tag = msg
        .to()
        .and_then(Result::ok)
        .and_then(|t| t.tag())
        .unwrap_or("");
    let from_tag = msg
        .from()
        .and_then(Result::ok)
        .and_then(|f| f.tag())
        .unwrap_or("");
    let cseq = msg.header(HeaderName::CSeq).map_or("", |h| h.value);
    let routes = msg.header(HeaderName::Route).map_or("", |h| h.value);
    let proxy_require = msg.header(HeaderName::ProxyRequire).map_or("", |h| h.value);
    loop_hash(&[
        msg.request_uri().map_or("", |u| u.raw),
        to_tag,
        from_tag,
        msg.call_id().unwrap_or(""),
        cseq,
        routes,
        proxy_require,
    ])
}
