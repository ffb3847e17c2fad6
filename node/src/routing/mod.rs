//! The routing chain: where a request goes when the SIP core cannot tell from what it
//! holds (its location table, IP literals). The core asks with a
//! [`ServerEvent::Resolve`]; the chain answers with ordered target sets or a failure.
//!
//! Order of the steps (see [`chain`]): the overlay DHT for users of served domains, ENUM
//! for numbers (re-routing the result, loop-limited), RFC 3263 for other domains, the
//! static peering table, then 404. Authorisation stays in the core: every set that leaves
//! the overlay is marked so, and the core lets only authenticated local users and trusted
//! sources use it.
//!
//! [`RoutingChain`] is the core's side: answers from the route cache at once (no DNS query
//! or DHT lookup per call once warm), else runs the chain on a task, at most
//! [`MAX_RESOLUTIONS`] at once, and hands the answer back through a bounded channel.

pub mod chain;
pub mod e164;
mod enum_step;
pub(crate) mod overlay_step;
pub mod peering;
pub mod policy;
pub mod rfc3263;

use crate::route_cache::{CachedRoute, RouteCache, ServingPeers};
use crate::tls_client::{TlsClients, TlsTarget};
pub use chain::{Answer, Chain, ChainConfig, Query, Steps};
use libp2p::PeerId;
use sip::server::{Hop, Resolution, ResolveId, SipServer};
use sip::transport::Transport;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Chain runs at once. Beyond it a request is answered 480 at once rather than queued
/// behind slow DNS or a slow DHT.
pub const MAX_RESOLUTIONS: usize = 256;

/// Routes remembered (least recently used forgotten first).
pub const ROUTE_CACHE: usize = 65_536;

/// True for a DNS name: dot-separated labels of letters, digits, `-` and `_` (SRV labels),
/// 63 bytes each at most, 253 in all; a final dot is allowed.
pub fn is_domain_name(text: &str) -> bool {
    let text = text.trim_end_matches('.');
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// True for a host: an IP address (IPv6 with or without brackets) or a domain name.
pub fn is_host(text: &str) -> bool {
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok() || is_domain_name(text)
}

/// The notes of one run of the chain, for `p2psip route`; off (nothing formatted) on the
/// request path.
#[derive(Debug, Default)]
pub struct Trace {
    lines: Option<Vec<String>>,
}

impl Trace {
    /// A trace that records.
    pub fn recording() -> Trace {
        Trace {
            lines: Some(Vec::new()),
        }
    }

    /// Records what `line` says, when recording.
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.lines {
            lines.push(line());
        }
    }

    pub fn lines(&self) -> &[String] {
        self.lines.as_deref().unwrap_or_default()
    }
}

/// The end of one chain task.
#[derive(Debug)]
pub struct ResolutionDone {
    id: ResolveId,
    key: String,
    answer: Answer,
}

/// The core's side of the chain.
pub struct RoutingChain {
    chain: Chain,
    /// Where the TLS identities of resolved servers are left for the connections.
    tls: Arc<TlsClients>,
    cache: RouteCache,
    running: usize,
    /// Requests answered 480 because [`MAX_RESOLUTIONS`] were running, for rate-limited
    /// warnings.
    refused: u64,
    /// Capacity [`MAX_RESOLUTIONS`]: every task sends exactly one answer and is counted
    /// until the core takes it, so a send never waits.
    done_tx: mpsc::Sender<ResolutionDone>,
    done_rx: mpsc::Receiver<ResolutionDone>,
}

impl RoutingChain {
    pub fn new(chain: Chain, tls: Arc<TlsClients>) -> RoutingChain {
        let (done_tx, done_rx) = mpsc::channel(MAX_RESOLUTIONS);
        RoutingChain {
            chain,
            tls,
            cache: RouteCache::new(ROUTE_CACHE),
            running: 0,
            refused: 0,
            done_tx,
            done_rx,
        }
    }

    /// Starts resolving what the server asked (`id`, `query`). An answer from the cache
    /// goes back at once; `remember` gets the overlay nodes of every answer given now.
    pub fn start(
        &mut self,
        now: Instant,
        server: &mut SipServer,
        id: ResolveId,
        query: Query,
        remember: &mut dyn FnMut(&ServingPeers),
    ) {
        let key = query.cache_key();
        if let Some(route) = self.cache.get(now, &key) {
            remember(&route.serving);
            self.remember_tls(&route.resolution, route.federation.as_deref());
            server.resolve_route(now, id, route.resolution);
            return;
        }
        if self.running >= MAX_RESOLUTIONS {
            self.refused += 1;
            if self.refused.is_power_of_two() {
                tracing::warn!(
                    refused = self.refused,
                    "too many route lookups running; answering 480"
                );
            }
            server.resolve_route(
                now,
                id,
                Resolution::failed(480, "Temporarily Unavailable (too many lookups running)"),
            );
            return;
        }
        self.running += 1;
        let chain = self.chain.clone();
        let done = self.done_tx.clone();
        let span = tracing::debug_span!("route", resolution = id.0, uri = %query.uri);
        tokio::spawn(
            async move {
                let answer = chain.resolve(&query, &mut Trace::default()).await;
                tracing::debug!(resolution = ?answer.resolution, "route resolved");
                // Never waits (see `done_tx`); fails only when the core has stopped.
                let _ = done.send(ResolutionDone { id, key, answer }).await;
            }
            .instrument(span),
        );
    }

    /// Registers interest in finished resolutions; the first, if one is ready.
    pub fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<ResolutionDone> {
        match self.done_rx.poll_recv(cx) {
            Poll::Ready(Some(done)) => Poll::Ready(done),
            // The chain holds a sender itself, so the channel never closes.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    /// A finished resolution that is ready now.
    pub fn try_done(&mut self) -> Option<ResolutionDone> {
        self.done_rx.try_recv().ok()
    }

    /// Hands a finished resolution to the server and caches it.
    pub fn finish(
        &mut self,
        now: Instant,
        server: &mut SipServer,
        done: ResolutionDone,
        remember: &mut dyn FnMut(&ServingPeers),
    ) {
        self.running = self.running.saturating_sub(1);
        let ResolutionDone { id, key, answer } = done;
        remember(&answer.serving);
        self.remember_tls(&answer.resolution, answer.federation.as_deref());
        if let Some(until) = answer.cache_until {
            self.cache.store(
                now,
                key,
                CachedRoute {
                    resolution: answer.resolution.clone(),
                    serving: answer.serving,
                    federation: answer.federation,
                },
                until,
            );
        }
        server.resolve_route(now, id, answer.resolution);
    }

    /// Leaves the name (and federation) each TLS hop must present for the connection that
    /// will be opened to it.
    fn remember_tls(&self, resolution: &Resolution, federation: Option<&str>) {
        let Resolution::Found(sets) = resolution else {
            return;
        };
        for hop in sets.iter().flat_map(|set| &set.hops) {
            if let Hop::Address {
                transport: Transport::Tls,
                addr,
                tls_name: Some(name),
            } = hop
            {
                self.tls.remember(
                    *addr,
                    TlsTarget {
                        name: name.clone(),
                        federation: federation.map(str::to_owned),
                    },
                );
            }
        }
    }

    /// `peer` could not be reached: routes through it are looked up afresh.
    pub fn forget_peer(&mut self, peer: &PeerId) {
        self.cache.forget_peer(peer);
    }
}
