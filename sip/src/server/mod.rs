//! The SIP server element of a node: registrar (RFC 3261 10), stateful proxy (16), OPTIONS
//! and error responder, on top of the transaction layer. Sans-IO: the node feeds it whole
//! messages with [`SipServer::handle_input`] and drains [`SipServer::poll_transmit`].
//!
//! Request path: parse → validate (400/505 naming the fault) → transaction match
//! (retransmissions and ACKs for non-2xx end there) → Max-Forwards (483) → loop check (482) →
//! Route processing → local handling (REGISTER, OPTIONS to the node, CANCEL) or routing to
//! the location table and forking.

mod authorize;
pub mod identity;
pub mod ids;
mod local;
mod nat;
mod originate;
pub mod overlay;
mod overload;
mod proxy;
mod resolve;
pub mod response_choice;
mod routing;

use crate::auth::{CredentialStore, DigestAuthenticator, FailureLimiter};
use crate::message::{edit, Message};
use crate::registrar::{LocationTable, RegistrarPolicy};
use crate::transaction::{ServerTxId, TransactionConfig, TransactionEvent, TransactionLayer};
use crate::transport::{ConnectionId, Peer, Transmit, Transport};
use authorize::DialogTokens;
use bytes::Bytes;
use identity::LocalIdentity;
use ids::IdGenerator;
pub use originate::{OriginateError, OutgoingRequest, RequestId};
use overlay::OverlayPeers;
use proxy::{BranchRef, ForkTable};
use resolve::PendingRoutes;
pub use resolve::{
    Hop, Resolution, ResolveId, RoutePurpose, ServerEvent, TargetSet, MAX_HOPS_PER_SET,
    MAX_TARGET_SETS,
};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::debug;

/// One address the node listens on, and the host it advertises there (in Via and
/// Record-Route). `advertised_host` is the bound IP unless the socket is bound to a wildcard
/// address, in which case the node picks an interface address or a configured name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub advertised_host: String,
}

/// Server configuration. Every field has a sane default so a node runs with no config file.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listeners: Vec<Listener>,
    /// Domains this node is registrar and proxy for. Empty: accept any domain.
    pub domains: Vec<String>,
    /// Accept REGISTER without authentication (labs, meshes).
    pub open: bool,
    /// Users allowed to register (from `--users`); ignored when `open`.
    pub users: Vec<crate::auth::Credential>,
    /// Digest algorithms challenged with, most preferred first. Empty: SHA-256, then MD5.
    pub digest_algorithms: Vec<crate::auth::Algorithm>,
    /// Bounds of the location table.
    pub max_aors: usize,
    pub max_bindings_per_aor: usize,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    /// Bound of the transaction table; when full, new requests get 503 statelessly.
    pub max_transactions: usize,
    /// RFC 3261 timer T1 (RTT estimate), T2, T4.
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Other names of this node (host names, addresses): a URI with one of them as host
    /// and no port, or the port of a listener, addresses this node.
    pub aliases: Vec<String>,
    /// This node's host name on the overlay (e.g. derived from its peer id).
    pub overlay_host: Option<String>,
    /// True when the node runs a routing chain that answers [`ServerEvent::Resolve`]:
    /// requests for users with no local binding, `tel:` numbers, foreign domains and host
    /// names in Routes are then resolved by it; without, they get 404.
    pub resolves_routes: bool,
    /// How long a request waits for its route to be resolved before it is answered 480.
    pub lookup_timeout: Duration,
    /// Bound of the requests waiting for route resolution; beyond it new ones get 503.
    pub max_pending_lookups: usize,
    /// Proxy Timer C: how long an INVITE branch may ring before it is cancelled (> 3 min).
    pub timer_c: Duration,
    /// Seed for branch/tag generation and the nonce secret; the node passes OS randomness.
    pub random_seed: [u8; 32],
    /// Sources trusted like overlay nodes (peers such as a provider's or a gateway's
    /// addresses): they may send requests anywhere and assert identities.
    pub trusted_sources: Vec<ipnet::IpNet>,
    /// With `open`: bindings one source address may hold in all; beyond it, REGISTERs for
    /// addresses-of-record it holds no binding of get 503, so one source cannot fill the
    /// table for everyone.
    pub max_bindings_per_source: usize,
    /// Failed authentications per account (username and realm) within a minute before the
    /// account is refused for the rest of that minute (password guessing spread over many
    /// addresses).
    pub max_failures_per_account: u32,
    /// Requests a second one untrusted source address may send (counted over two
    /// seconds); beyond it, its requests are dropped until the window ends. 0: no limit.
    pub max_requests_per_source: u32,
    /// Addresses of peers (providers, gateways) that may send requests to local users when
    /// `require_authenticated_inbound` is set. Unlike `trusted_sources` they may not relay.
    pub inbound_peers: Vec<ipnet::IpNet>,
    /// A closed federation: an out-of-dialog request to a local user must come from an
    /// inbound peer, a connection authenticated as a federation member (mutual TLS), an
    /// overlay node, a trusted source, a phone registered here, or a local user who
    /// authenticates; anyone else gets 403. Off: anyone may call local users (open SIP).
    pub require_authenticated_inbound: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listeners: Vec::new(),
            domains: Vec::new(),
            open: false,
            users: Vec::new(),
            digest_algorithms: Vec::new(),
            max_aors: 1_000_000,
            max_bindings_per_aor: 16,
            min_expires: 60,
            max_expires: 86_400,
            default_expires: 3_600,
            max_transactions: 1_000_000,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            aliases: Vec::new(),
            overlay_host: None,
            resolves_routes: false,
            lookup_timeout: Duration::from_secs(8),
            max_pending_lookups: 10_000,
            timer_c: Duration::from_secs(181),
            random_seed: [0; 32],
            trusted_sources: Vec::new(),
            max_bindings_per_source: 1_000,
            max_failures_per_account: 20,
            max_requests_per_source: 2_000,
            inbound_peers: Vec::new(),
            require_authenticated_inbound: false,
        }
    }
}

/// Why the server could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ServerConfigError {
    #[error("users: {0}")]
    Users(#[from] crate::auth::CredentialError),
}

/// Counters for status output and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub messages_in: u64,
    pub messages_out: u64,
    /// Messages that failed to parse or validate.
    pub parse_errors: u64,
    /// Requests answered by this node (not forwarded), by any status.
    pub requests_answered: u64,
    pub requests_forwarded: u64,
    pub responses_forwarded: u64,
    pub registrations: u64,
    pub auth_failures: u64,
    /// Requests refused with 503 because the node was overloaded or its transaction table
    /// full.
    pub overload_rejections: u64,
    /// Requests dropped because their source exceeded its request rate.
    pub rate_limited: u64,
    /// CRLF keepalives received over UDP (and ignored).
    pub keepalives: u64,
}

/// Context of a server transaction: the fork it feeds, if the request was proxied.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ServerCtx {
    pub fork: Option<u64>,
    /// The route resolution the request is waiting for.
    pub route: Option<u64>,
}

/// Context of a client transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClientCtx {
    /// A forwarded request on one branch of a fork.
    Branch(BranchRef),
    /// A CANCEL this node sent for a branch; its responses end here.
    Cancel,
    /// A request this node originated (see [`SipServer::originate`]).
    Originated(u64),
}

pub(crate) type Transactions = TransactionLayer<ClientCtx, ServerCtx>;

/// The registrar + proxy state machine of one node.
pub struct SipServer {
    config: ServerConfig,
    identity: LocalIdentity,
    transactions: Transactions,
    location: LocationTable,
    registrar_policy: RegistrarPolicy,
    credentials: CredentialStore,
    authenticator: DigestAuthenticator,
    /// Failed authentications per source address.
    auth_failures: FailureLimiter,
    /// Failed authentications per account, against guessing from many addresses.
    account_failures: FailureLimiter<String>,
    dialog_tokens: DialogTokens,
    /// Requests per source address, when limited.
    source_rates: Option<FailureLimiter>,
    /// Set by the node while its input queue stays full.
    overloaded: bool,
    /// Stream connections whose far end proved to be a federation member (a client
    /// certificate under a federation CA). Bounded by the node's connections: an entry goes
    /// when its connection closes.
    authenticated_connections: HashSet<ConnectionId>,
    forks: ForkTable,
    routes: PendingRoutes,
    overlay_peers: OverlayPeers,
    /// Requests to the node (route resolutions); drained with `poll_event` after every input, so it
    /// holds at most what one input produced.
    events: VecDeque<ServerEvent>,
    ids: IdGenerator,
    /// The id of the last request this node originated.
    originated_next: u64,
    /// Stateless sends (errors, ACKs for 2xx, stray responses); transaction sends are queued
    /// in the transaction layer. Drained by the caller after every input, so it holds at most
    /// the output of one input.
    outbox: VecDeque<Transmit>,
    stats: ServerStats,
}

impl SipServer {
    pub fn new(config: ServerConfig, now: Instant) -> Result<SipServer, ServerConfigError> {
        let identity = LocalIdentity::new(
            config.listeners.clone(),
            &config.domains,
            config.overlay_host.as_deref(),
        )
        .with_aliases(&config.aliases);
        let transactions = TransactionLayer::new(TransactionConfig {
            t1: config.t1,
            t2: config.t2,
            t4: config.t4,
            capacity: config.max_transactions,
        });
        let registrar_policy = RegistrarPolicy::from(&config);
        let location = LocationTable::for_policy(&registrar_policy);
        let credentials = CredentialStore::new(config.users.clone())?;
        let authenticator = DigestAuthenticator::new(&config.random_seed, now)
            .with_algorithms(&config.digest_algorithms);
        // Branch/tag salt is derived one-way from the seed so ids on the wire reveal nothing
        // about the nonce key.
        let ids = IdGenerator::new(ids::derive_salt(&config.random_seed));
        Ok(SipServer {
            identity,
            transactions,
            location,
            registrar_policy,
            credentials,
            authenticator,
            auth_failures: FailureLimiter::default(),
            account_failures: FailureLimiter::new(
                config.max_failures_per_account,
                FailureLimiter::<String>::DEFAULT_WINDOW,
                FailureLimiter::<String>::DEFAULT_CAPACITY,
            ),
            dialog_tokens: DialogTokens::new(&config.random_seed),
            source_rates: overload::source_rate_limiter(config.max_requests_per_source),
            overloaded: false,
            authenticated_connections: HashSet::new(),
            forks: ForkTable::default(),
            routes: PendingRoutes::default(),
            overlay_peers: OverlayPeers::default(),
            events: VecDeque::new(),
            ids,
            originated_next: 0,
            outbox: VecDeque::new(),
            stats: ServerStats::default(),
            config,
        })
    }

    /// Feeds one complete message (a UDP datagram, or a message framed off a stream by
    /// [`crate::message::frame_stream`]).
    pub fn handle_input(&mut self, now: Instant, from: Peer, bytes: &[u8]) {
        if from.transport == crate::transport::Transport::Udp && nat::is_crlf_keepalive(bytes) {
            self.stats.keepalives += 1;
            return;
        }
        self.stats.messages_in += 1;
        let msg = match Message::parse(bytes) {
            Ok(msg) => msg,
            Err(err) => {
                self.stats.parse_errors += 1;
                debug!(remote = %from.remote, fault = err.what, "unparseable message");
                let reason = format!("Bad Request ({})", err.what);
                if let Some(response) = edit::build_response_to_unparseable(bytes, 400, &reason) {
                    self.send_stateless(from, response);
                }
                return;
            }
        };
        let span = tracing::debug_span!("sip", call_id = msg.call_id().unwrap_or(""));
        let _entered = span.enter();
        if let Err(rejection) = msg.validate() {
            self.stats.parse_errors += 1;
            debug!(remote = %from.remote, status = rejection.status, reason = %rejection.reason, "invalid message");
            if msg.is_request() && !matches!(msg.method(), Some(crate::message::Method::Ack)) {
                let response = edit::build_response(
                    &msg,
                    rejection.status,
                    &rejection.reason,
                    None,
                    &[],
                    None,
                );
                self.send_stateless(from, response);
            }
            return;
        }
        if msg.is_request() {
            // The top Via gets received and rport (RFC 3581) before anything answers or
            // forwards the request, so that every copy carries them.
            let fixed = SipServer::with_received(&msg, from);
            let reparsed = fixed.as_deref().map(Message::parse);
            match reparsed {
                Some(Ok(fixed)) => self.handle_request(now, from, &fixed),
                Some(Err(_)) | None => self.handle_request(now, from, &msg),
            }
        } else {
            self.handle_response(now, from, &msg);
        }
        self.drain_transaction_events(now);
    }

    /// The next message to send, if any. Drain until `None` after every call that mutates.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let transmit = self
            .outbox
            .pop_front()
            .or_else(|| self.transactions.poll_transmit());
        if transmit.is_some() {
            self.stats.messages_out += 1;
        }
        transmit
    }

    /// The earliest instant at which [`SipServer::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.transactions.poll_timeout(),
            self.location.poll_timeout(),
            self.forks.next_timer_c(),
            self.routes.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.transactions.handle_timeout(now);
        self.location.purge_expired(now);
        self.fire_timer_c(now);
        self.expire_resolutions(now);
        self.drain_transaction_events(now);
    }

    /// A stream connection went away: bindings that used it keep their address so a new
    /// connection can be opened to the phone's contact.
    pub fn connection_closed(&mut self, connection: ConnectionId) {
        self.location.remove_connection(connection);
        self.authenticated_connections.remove(&connection);
    }

    /// The far end of `connection` authenticated as a federation member (its client
    /// certificate was verified): it counts as an authenticated inbound peer until the
    /// connection closes.
    pub fn connection_authenticated(&mut self, connection: ConnectionId) {
        self.authenticated_connections.insert(connection);
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// The location table, for status output and the overlay's publisher.
    pub fn location(&self) -> &LocationTable {
        &self.location
    }

    pub fn location_mut(&mut self) -> &mut LocationTable {
        &mut self.location
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    fn send_stateless(&mut self, to: Peer, payload: Vec<u8>) {
        self.outbox.push_back(Transmit {
            to,
            payload: Bytes::from(payload),
        });
    }

    /// Answers a request through its server transaction, so retransmissions are absorbed.
    fn respond(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        request: &Message<'_>,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) {
        self.stats.requests_answered += 1;
        self.send_response(now, tx, request, status, reason, extra);
    }

    /// 100 Trying for a request this node goes on to forward or look up: it stops the
    /// caller's retransmissions but does not answer the request, so it is not counted.
    fn send_trying(&mut self, now: Instant, tx: ServerTxId, request: &Message<'_>) {
        self.send_response(now, tx, request, 100, "Trying", &[]);
    }

    fn send_response(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        request: &Message<'_>,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) {
        let tag = self.fresh_to_tag(request, status);
        let response = edit::build_response(request, status, reason, tag.as_deref(), extra, None);
        if let Err(err) = self
            .transactions
            .send_response(now, tx, status, Bytes::from(response))
        {
            debug!(?err, status, "response not sent");
        }
    }

    /// A To tag for responses this node generates (not for 100 Trying, RFC 3261 8.2.6.2).
    fn fresh_to_tag(&mut self, request: &Message<'_>, status: u16) -> Option<String> {
        if status == 100 {
            return None;
        }
        let has_tag = request
            .to()
            .and_then(Result::ok)
            .is_some_and(|to| to.tag().is_some());
        (!has_tag).then(|| self.ids.tag())
    }

    fn drain_transaction_events(&mut self, now: Instant) {
        while let Some(event) = self.transactions.poll_event() {
            match event {
                TransactionEvent::ClientTimeout { id, ctx } => match ctx {
                    ClientCtx::Branch(branch) => self.branch_failed(now, id, branch, 408),
                    ClientCtx::Originated(request) => self.originated_done(request, 408),
                    ClientCtx::Cancel => {}
                },
                TransactionEvent::ClientTransportError { id, ctx } => match ctx {
                    ClientCtx::Branch(branch) => self.branch_failed(now, id, branch, 503),
                    ClientCtx::Originated(request) => self.originated_done(request, 503),
                    ClientCtx::Cancel => {}
                },
                TransactionEvent::ClientTerminated { .. } => {}
                TransactionEvent::ServerNoAck { .. } => {}
                TransactionEvent::ServerTransportError { .. } => {}
                TransactionEvent::ServerTerminated { ctx, .. } => {
                    if let Some(fork) = ctx.fork {
                        self.forks.remove(fork);
                    }
                    if let Some(route) = ctx.route {
                        self.routes.forget(route);
                    }
                }
            }
        }
    }

    /// Live proxied requests, for status output.
    pub fn forks_in_progress(&self) -> usize {
        self.forks.len()
    }

    /// Live transactions, for status output.
    pub fn transactions_in_progress(&self) -> usize {
        self.transactions.len()
    }
}

#[cfg(test)]
mod tests;
