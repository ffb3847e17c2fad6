//! The steps of the routing chain, in order: the overlay (for users of served domains),
//! ENUM (for numbers), RFC 3263 (for other domains), static peering, then 404. Domain
//! policy sits before RFC 3263 when configured. Each step can be turned off; each notes
//! what it did in a [`Trace`], which `p2psip route` prints.

use super::e164::E164;
use super::enum_step::{self, EnumFailure};
use super::overlay_step::{overlay_lookup, OverlayResult};
use super::peering::{PeerRoute, PeeringTable};
use super::policy::{self, Federation, PolicyDecision};
use super::rfc3263::{LocateError, Located, Locator};
use super::Trace;
use crate::route_cache::ServingPeers;
use hickory_resolver::proto::rr::{RData, RecordType};
use overlay::network::Overlay;
use sip::message::uri::{Scheme, Uri};
use sip::server::{Hop, Resolution, RoutePurpose, TargetSet, MAX_TARGET_SETS};
use sip::transport::Transport;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// ENUM results routed again, at most, before the chain calls it a loop.
const MAX_REWRITES: usize = 4;
/// How long "nothing found" is remembered: briefly, so a user who registers, or a record
/// that is fixed, is found soon.
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(5);
/// The longest an overlay route is remembered (less when the record expires sooner).
pub const OVERLAY_ROUTE_TTL: Duration = Duration::from_secs(30);
/// The longest a DNS answer is remembered, whatever its TTL.
pub const MAX_DNS_TTL: Duration = Duration::from_secs(3600);

/// Which steps run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps {
    pub overlay: bool,
    pub enum_lookup: bool,
    pub domain_policy: bool,
    pub dns: bool,
    pub peering: bool,
}

impl Default for Steps {
    fn default() -> Self {
        Steps {
            overlay: true,
            enum_lookup: true,
            domain_policy: true,
            dns: true,
            peering: true,
        }
    }
}

/// What the chain is built from.
#[derive(Clone, Default)]
pub struct ChainConfig {
    pub steps: Steps,
    /// ENUM suffixes, tried in order (a private tree before `e164.arpa`).
    pub enum_suffixes: Vec<String>,
    pub peering: PeeringTable,
    /// The federations this node belongs to (domain policy).
    pub federations: Vec<Federation>,
}

/// A route request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub uri: String,
    pub aor: Option<String>,
    pub purpose: RoutePurpose,
    /// The source may be routed outside the overlay; without, only the overlay step runs.
    pub external: bool,
}

impl Query {
    /// The route cache's key: the purpose changes which steps apply.
    pub fn cache_key(&self) -> String {
        let target = match (&self.purpose, &self.aor) {
            (RoutePurpose::ServedUser, Some(aor)) => aor.as_str(),
            _ => self.uri.as_str(),
        };
        format!("{:?} {} {target}", self.purpose, self.external)
    }
}

/// The chain's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub resolution: Resolution,
    /// Until when the answer may be reused; None: not at all (a step failed).
    pub cache_until: Option<Instant>,
    /// The overlay nodes the answer names, with their addresses (for dialling).
    pub serving: ServingPeers,
    /// The federation whose TLS identity the TLS hops are reached with.
    pub federation: Option<String>,
}

impl Answer {
    fn failed(status: u16, reason: impl Into<String>, cacheable: bool) -> Answer {
        Answer {
            resolution: Resolution::failed(status, reason),
            cache_until: cacheable.then(|| Instant::now() + NOT_FOUND_TTL),
            serving: Vec::new(),
            federation: None,
        }
    }

    fn found(sets: Vec<TargetSet>, until: Instant) -> Answer {
        Answer {
            resolution: Resolution::Found(sets),
            cache_until: Some(until.min(Instant::now() + MAX_DNS_TTL)),
            serving: Vec::new(),
            federation: None,
        }
    }
}

/// What a step that found nothing leaves for the 404 or 480 at the end.
#[derive(Default)]
struct Misses {
    /// A step failed (DNS down, overlay unreachable): the answer is 480, not 404, and not
    /// cached.
    temporary: Option<String>,
    /// The last step's reason for finding nothing, for the 404's reason phrase.
    reason: Option<String>,
}

impl Misses {
    fn finish(self, default_reason: String) -> Answer {
        match self.temporary {
            Some(reason) => {
                Answer::failed(480, format!("Temporarily Unavailable ({reason})"), false)
            }
            None => Answer::failed(
                404,
                format!("Not Found ({})", self.reason.unwrap_or(default_reason)),
                true,
            ),
        }
    }
}

/// The routing chain. Cheap to clone: every resolution task holds one.
#[derive(Clone)]
pub struct Chain {
    inner: Arc<Inner>,
}

struct Inner {
    config: ChainConfig,
    locator: Option<Locator>,
    overlay: Option<Overlay>,
}

impl Chain {
    /// `locator` is None when DNS is not available (no resolver could be set up): ENUM and
    /// RFC 3263 then find nothing.
    pub fn new(config: ChainConfig, locator: Option<Locator>, overlay: Option<Overlay>) -> Chain {
        Chain {
            inner: Arc::new(Inner {
                config,
                locator,
                overlay,
            }),
        }
    }

    fn steps(&self) -> &Steps {
        &self.inner.config.steps
    }

    /// Runs the chain for one request.
    pub async fn resolve(&self, query: &Query, trace: &mut Trace) -> Answer {
        let Ok(uri) = Uri::parse(&query.uri) else {
            trace.note(|| format!("{}: not a URI", query.uri));
            return Answer::failed(400, "Bad Request (bad Request-URI)", false);
        };
        match query.purpose {
            RoutePurpose::ServedUser => {
                self.served_user(&uri, query.aor.as_deref(), query.external, trace)
                    .await
            }
            RoutePurpose::Foreign => self.foreign(&uri, 0, trace).await,
            RoutePurpose::NextHop => self.next_hop(&uri, trace).await,
        }
    }

    async fn served_user(
        &self,
        uri: &Uri<'_>,
        aor: Option<&str>,
        external: bool,
        trace: &mut Trace,
    ) -> Answer {
        let mut misses = Misses::default();
        match (&self.inner.overlay, aor) {
            (Some(overlay), Some(aor)) if self.steps().overlay => {
                match overlay_lookup(overlay, aor, trace).await {
                    OverlayResult::Found(answer) => return answer,
                    OverlayResult::NotFound => {}
                    OverlayResult::Failed(reason) => misses.temporary = Some(reason),
                }
            }
            _ => trace.note(|| "overlay: not consulted (off)".to_owned()),
        }
        match E164::of_uri(uri) {
            Some(number) if external => self.number(&number, 0, misses, trace).await,
            Some(_) => {
                trace.note(|| "ENUM, peering: not for this source (not authenticated)".to_owned());
                misses.finish("no such user".to_owned())
            }
            None => misses.finish("no such user".to_owned()),
        }
    }

    /// A Request-URI outside the served domains: a number through ENUM and the peering
    /// table, a domain through RFC 3263 and the peering table.
    async fn foreign(&self, uri: &Uri<'_>, rewrites: usize, trace: &mut Trace) -> Answer {
        if uri.scheme == Scheme::Tel {
            return match E164::of_uri(uri) {
                Some(number) => {
                    self.number(&number, rewrites, Misses::default(), trace)
                        .await
                }
                None => {
                    trace.note(|| format!("{}: not a global number", uri.raw));
                    Answer::failed(404, "Not Found (not a global number)", true)
                }
            };
        }
        let domain = uri.host_lower().into_owned();
        let mut misses = Misses::default();
        if self.steps().domain_policy {
            match self.domain_policy(&domain, trace).await {
                PolicyStep::Open => {}
                PolicyStep::Done(answer) => return answer,
            }
        } else {
            trace.note(|| "domain policy: off".to_owned());
        }
        if self.steps().dns {
            match self.locate(uri, trace).await {
                Ok(located) if !located.sets.is_empty() => {
                    return Answer::found(located.sets, located.valid_until)
                }
                Ok(_) => trace.note(|| format!("RFC 3263: no server for {domain}")),
                Err(error) => {
                    trace.note(|| format!("RFC 3263: {error}"));
                    if error.is_temporary() {
                        misses.temporary = Some(error.to_string());
                    } else {
                        misses.reason = Some(error.to_string());
                    }
                }
            }
        } else {
            trace.note(|| "RFC 3263: off".to_owned());
        }
        if self.steps().peering {
            if let Some(route) = self.inner.config.peering.for_domain(&domain) {
                return self.gateways(route, None, trace).await;
            }
            trace.note(|| format!("peering: no route for {domain}"));
        }
        misses.finish(format!("no route to {domain}"))
    }

    /// A number: ENUM under each suffix, then the peering table's longest prefix.
    async fn number(
        &self,
        number: &E164,
        rewrites: usize,
        mut misses: Misses,
        trace: &mut Trace,
    ) -> Answer {
        if rewrites >= MAX_REWRITES {
            trace.note(|| format!("ENUM: {number:?} after {rewrites} rewrites: a loop"));
            return Answer::failed(482, "Loop Detected (ENUM rewrites)", false);
        }
        if self.steps().enum_lookup {
            for suffix in &self.inner.config.enum_suffixes {
                match self.enum_lookup(number, suffix, trace).await {
                    Ok(Some((target, until))) => {
                        let Ok(rewritten) = Uri::parse(&target) else {
                            continue;
                        };
                        let answer = Box::pin(self.foreign(&rewritten, rewrites + 1, trace)).await;
                        return with_request_uri(answer, &target, until);
                    }
                    Ok(None) => {}
                    Err(EnumFailure::Temporary(reason)) => misses.temporary = Some(reason),
                    Err(EnumFailure::Broken(reason)) => misses.reason = Some(reason),
                }
            }
        } else {
            trace.note(|| "ENUM: off".to_owned());
        }
        if self.steps().peering {
            if let Some(route) = self.inner.config.peering.for_number(number) {
                return self.gateways(route, Some(number), trace).await;
            }
            trace.note(|| format!("peering: no prefix route for {}", number.as_str()));
        }
        misses.finish(format!("no route for {}", number.as_str()))
    }

    /// ENUM alone, under each suffix in turn: the first usable URI for `number`.
    pub async fn enum_only(&self, number: &E164, trace: &mut Trace) -> Option<String> {
        for suffix in &self.inner.config.enum_suffixes {
            match self.enum_lookup(number, suffix, trace).await {
                Ok(Some((uri, _))) => return Some(uri),
                Ok(None) => {}
                Err(EnumFailure::Temporary(reason) | EnumFailure::Broken(reason)) => {
                    trace.note(|| format!("ENUM under {suffix}: {reason}"));
                }
            }
        }
        None
    }

    /// The first usable ENUM result for `number` under `suffix`: the URI and until when it
    /// holds; None when the tree has no SIP record for it.
    async fn enum_lookup(
        &self,
        number: &E164,
        suffix: &str,
        trace: &mut Trace,
    ) -> Result<Option<(String, Instant)>, EnumFailure> {
        let Some(locator) = &self.inner.locator else {
            return Err(EnumFailure::Temporary("no DNS resolver".to_owned()));
        };
        enum_step::lookup(locator.dns(), number, suffix, trace).await
    }

    /// RFC 3263 alone, for a next hop whose Request-URI stays.
    async fn next_hop(&self, uri: &Uri<'_>, trace: &mut Trace) -> Answer {
        if !self.steps().dns {
            trace.note(|| "RFC 3263: off".to_owned());
            return Answer::failed(404, "Not Found (DNS routing is off)", true);
        }
        match self.locate(uri, trace).await {
            Ok(located) if !located.sets.is_empty() => {
                Answer::found(located.sets, located.valid_until)
            }
            Ok(_) => Answer::failed(404, "Not Found (no address for next hop)", true),
            Err(error) if error.is_temporary() => {
                Answer::failed(480, format!("Temporarily Unavailable ({error})"), false)
            }
            Err(error) => Answer::failed(404, format!("Not Found ({error})"), true),
        }
    }

    async fn locate(&self, uri: &Uri<'_>, trace: &mut Trace) -> Result<Located, LocateError> {
        let Some(locator) = &self.inner.locator else {
            return Err(LocateError::Failed {
                name: uri.host.to_owned(),
                reason: "no DNS resolver".to_owned(),
            });
        };
        locator.locate(uri, None, trace).await
    }

    /// The domain policy step: the policy `domain` announces, applied when this node
    /// shares a federation with it, refused when it announces policies this node cannot
    /// meet, passed over when it announces none.
    async fn domain_policy(&self, domain: &str, trace: &mut Trace) -> PolicyStep {
        let Some(locator) = &self.inner.locator else {
            return PolicyStep::Open;
        };
        let records: Vec<_> = match locator.dns().lookup(domain, RecordType::NAPTR).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::NAPTR(naptr) => Some(naptr.clone()),
                    _ => None,
                })
                .collect(),
            Err(error) => {
                // RFC 3263 asks the same name next and reports what is wrong with it.
                trace.note(|| format!("domain policy: {domain}: {error}"));
                return PolicyStep::Open;
            }
        };
        match policy::decide(&records, domain, &self.inner.config.federations) {
            PolicyDecision::Open => {
                trace.note(|| format!("domain policy: {domain} announces none"));
                PolicyStep::Open
            }
            PolicyDecision::Unmet(announced) => {
                trace.note(|| {
                    format!(
                        "domain policy: {domain} accepts only: {}; this node meets none",
                        announced.join(", ")
                    )
                });
                PolicyStep::Done(Answer::failed(
                    403,
                    format!("Forbidden (no federation shared with {domain})"),
                    true,
                ))
            }
            PolicyDecision::Federation {
                federation,
                target_domain,
            } => {
                trace.note(|| {
                    format!(
                        "domain policy: {domain} is in federation {}: route to {target_domain}{}",
                        federation.id,
                        federation
                            .transport
                            .map(|t| format!(" over {}", t.uri_param()))
                            .unwrap_or_default()
                    )
                });
                let target = match federation.transport {
                    Some(transport) => {
                        format!("sip:{target_domain};transport={}", transport.uri_param())
                    }
                    None => format!("sip:{target_domain}"),
                };
                let Ok(target_uri) = Uri::parse(&target) else {
                    return PolicyStep::Done(Answer::failed(
                        500,
                        "Server Internal Error (bad federation domain)",
                        false,
                    ));
                };
                let located = locator.locate(&target_uri, Some(domain), trace).await;
                let answer = match located {
                    Ok(located) if !located.sets.is_empty() => {
                        Answer::found(located.sets, located.valid_until)
                    }
                    Ok(_) => Answer::failed(
                        404,
                        format!("Not Found (no ingress {target_domain} of the federation)"),
                        true,
                    ),
                    Err(error) if error.is_temporary() => {
                        Answer::failed(480, format!("Temporarily Unavailable ({error})"), false)
                    }
                    Err(error) => Answer::failed(404, format!("Not Found ({error})"), true),
                };
                PolicyStep::Done(Answer {
                    federation: Some(federation.id.clone()),
                    ..answer
                })
            }
        }
    }

    /// A peering route's gateways, each a set of its own in the configured order. A number
    /// goes to a gateway as `sip:<number>@<gateway>;user=phone`.
    async fn gateways(
        &self,
        route: &PeerRoute,
        number: Option<&E164>,
        trace: &mut Trace,
    ) -> Answer {
        trace.note(|| format!("peering: route {:?}", route.name));
        let mut sets = Vec::new();
        let mut until = Instant::now() + MAX_DNS_TTL;
        for gateway in &route.gateways {
            if sets.len() >= MAX_TARGET_SETS {
                break;
            }
            let request_uri = number.map(|n| {
                let host = if gateway.host.contains(':') {
                    format!("[{}]", gateway.host)
                } else {
                    gateway.host.clone()
                };
                let scheme = if gateway.transport == Transport::Tls {
                    "sips"
                } else {
                    "sip"
                };
                format!("{scheme}:{}@{host};user=phone", n.as_str())
            });
            let addrs: Vec<IpAddr> = match gateway.host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => {
                    let Some(locator) = &self.inner.locator else {
                        continue;
                    };
                    match locator.dns().lookup_ip(gateway.host.as_str()).await {
                        Ok(lookup) => {
                            until = until.min(lookup.valid_until());
                            lookup.iter().collect()
                        }
                        Err(error) => {
                            trace.note(|| format!("peering: gateway {}: {error}", gateway.host));
                            continue;
                        }
                    }
                }
            };
            for ip in addrs {
                trace.note(|| {
                    format!(
                        "peering: gateway {:?} {ip} port {}",
                        gateway.transport, gateway.port
                    )
                });
                sets.push(TargetSet {
                    hops: vec![Hop::Address {
                        transport: gateway.transport,
                        addr: SocketAddr::new(ip, gateway.port),
                        tls_name: (gateway.transport == Transport::Tls)
                            .then(|| gateway.host.clone()),
                    }],
                    request_uri: request_uri.clone(),
                    leaves_overlay: true,
                });
            }
        }
        if sets.is_empty() {
            return Answer::failed(
                480,
                format!(
                    "Temporarily Unavailable (no gateway of {} resolved)",
                    route.name
                ),
                false,
            );
        }
        Answer::found(sets, until)
    }
}

/// Where the domain policy step leaves a request.
enum PolicyStep {
    /// No policy applies: RFC 3263 as usual.
    Open,
    /// The policy decided: this answer.
    Done(Answer),
}

/// An ENUM result's answer: every set carries the rewritten Request-URI (unless a later
/// step set its own), and it holds no longer than the NAPTR.
fn with_request_uri(mut answer: Answer, target: &str, until: Instant) -> Answer {
    if let Resolution::Found(sets) = &mut answer.resolution {
        for set in sets.iter_mut() {
            if set.request_uri.is_none() {
                set.request_uri = Some(target.to_owned());
            }
        }
    }
    answer.cache_until = answer.cache_until.map(|at| at.min(until));
    answer
}
