//! Locating SIP servers (RFC 3263 4): NAPTR for the transport, SRV for the servers in
//! priority and weighted random order (RFC 2782), then A/AAAA. Every address found is a
//! target set of its own, so the server tries them in series (RFC 3263 4.3).

use super::Trace;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use rand::Rng;
use sip::message::uri::{Scheme, Uri};
use sip::server::{Hop, TargetSet, MAX_TARGET_SETS};
use sip::transport::Transport;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// SRV records of one name that are followed at most.
const MAX_SRV_TARGETS: usize = 16;

/// Where a URI's servers are, and until when that answer holds.
#[derive(Debug, Clone)]
pub struct Located {
    pub sets: Vec<TargetSet>,
    pub valid_until: Instant,
}

/// Why no server was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    #[error("{0}: no such domain")]
    NoSuchDomain(String),
    #[error("{0}: no NAPTR, SRV or address records")]
    NoRecords(String),
    #[error("{0}: the SRV record says there is no SIP service")]
    NotOffered(String),
    #[error("{0}: only transports this node does not listen on")]
    NoTransport(String),
    #[error("{name}: DNS failed: {reason}")]
    Failed { name: String, reason: String },
}

impl LocateError {
    /// True when DNS could not answer (timeout, server failure), as opposed to answering
    /// that there is nothing.
    pub fn is_temporary(&self) -> bool {
        matches!(self, LocateError::Failed { .. })
    }
}

/// An SRV name and the transport it is for.
struct Service {
    name: String,
    transport: Transport,
}

/// Finds the servers of SIP URIs through a DNS resolver.
#[derive(Clone)]
pub struct Locator {
    dns: TokioResolver,
    /// Transports this node can send on, in the order it prefers them when DNS leaves the
    /// choice to it.
    transports: Vec<Transport>,
}

impl Locator {
    pub fn new(dns: TokioResolver, transports: Vec<Transport>) -> Locator {
        Locator { dns, transports }
    }

    pub fn dns(&self) -> &TokioResolver {
        &self.dns
    }

    /// The target sets for `uri` (a SIP or SIPS URI whose host is a name), best first.
    /// `tls_name` of TLS hops is `identity` when given (the SIP domain a federation ingress
    /// serves), else the URI's domain (RFC 5922 4).
    pub async fn locate(
        &self,
        uri: &Uri<'_>,
        identity: Option<&str>,
        trace: &mut Trace,
    ) -> Result<Located, LocateError> {
        let host = uri.host_lower().trim_end_matches('.').to_owned();
        let identity = identity.unwrap_or(&host).to_owned();
        let secure = uri.scheme == Scheme::Sips;
        let param = uri.transport_param().and_then(Transport::from_token);
        let mut located = Located {
            sets: Vec::new(),
            valid_until: far_future(),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            let transport = param.unwrap_or(default_transport(secure));
            let port = uri.port.unwrap_or(transport.default_port());
            self.push(
                &mut located,
                &identity,
                transport,
                SocketAddr::new(ip, port),
            );
            return Ok(located);
        }
        // A port, or a transport parameter, fixes what NAPTR would choose (RFC 3263 4.1).
        if let Some(port) = uri.port {
            let transport = param.unwrap_or(default_transport(secure));
            self.require(transport, &host)?;
            trace.note(|| format!("RFC 3263: {host} has a port, {transport:?} to its addresses"));
            self.addresses(&mut located, &identity, &host, transport, port, trace)
                .await?;
            return Ok(located);
        }
        let services = match param {
            Some(transport) => {
                self.require(transport, &host)?;
                vec![srv_service(&host, transport, secure)]
            }
            None => {
                self.naptr_services(&mut located, &host, secure, trace)
                    .await?
            }
        };
        for service in &services {
            self.srv(&mut located, &identity, service, trace).await?;
            if located.sets.len() >= MAX_TARGET_SETS {
                break;
            }
        }
        if located.sets.is_empty() {
            // No SRV: the host's own addresses on the default port (RFC 3263 4.2).
            let transport = param.unwrap_or(default_transport(secure));
            self.require(transport, &host)?;
            trace.note(|| format!("RFC 3263: no SRV for {host}; its A/AAAA records"));
            self.addresses(
                &mut located,
                &identity,
                &host,
                transport,
                transport.default_port(),
                trace,
            )
            .await?;
        }
        Ok(located)
    }

    /// The SRV names to try: from NAPTR when the domain has SIP records there, else every
    /// transport this node has, in its order of preference (RFC 3263 4.1).
    async fn naptr_services(
        &self,
        located: &mut Located,
        host: &str,
        secure: bool,
        trace: &mut Trace,
    ) -> Result<Vec<Service>, LocateError> {
        let lookup = match self.dns.lookup(host, RecordType::NAPTR).await {
            Ok(lookup) => Some(lookup),
            Err(error) if error.is_no_records_found() => None,
            Err(error) => return Err(failure(host, &error)),
        };
        let mut records: Vec<(u16, u16, Transport, String)> = Vec::new();
        if let Some(lookup) = &lookup {
            located.valid_until = located.valid_until.min(lookup.valid_until());
            for record in lookup.answers() {
                let RData::NAPTR(naptr) = &record.data else {
                    continue;
                };
                let service = String::from_utf8_lossy(&naptr.services).to_ascii_uppercase();
                let transport = match service.as_str() {
                    "SIP+D2U" if !secure => Transport::Udp,
                    "SIP+D2T" if !secure => Transport::Tcp,
                    "SIPS+D2T" => Transport::Tls,
                    _ => continue,
                };
                let terminal_srv = naptr.flags.eq_ignore_ascii_case(b"s");
                if !terminal_srv || !self.transports.contains(&transport) {
                    continue;
                }
                records.push((
                    naptr.order,
                    naptr.preference,
                    transport,
                    naptr.replacement.to_ascii(),
                ));
            }
        }
        if !records.is_empty() {
            records.sort_by_key(|(order, preference, ..)| (*order, *preference));
            trace.note(|| {
                let chosen: Vec<String> = records
                    .iter()
                    .map(|(order, pref, transport, name)| {
                        format!("{transport:?} {name} (order {order}, preference {pref})")
                    })
                    .collect();
                format!("RFC 3263: NAPTR {host}: {}", chosen.join(", "))
            });
            return Ok(records
                .into_iter()
                .map(|(_, _, transport, name)| Service { name, transport })
                .collect());
        }
        trace.note(|| format!("RFC 3263: no usable NAPTR at {host}; SRV for each transport"));
        let services: Vec<Service> = self
            .transports
            .iter()
            .filter(|t| !secure || **t == Transport::Tls)
            .map(|t| srv_service(host, *t, secure || *t == Transport::Tls))
            .collect();
        if services.is_empty() {
            return Err(LocateError::NoTransport(host.to_owned()));
        }
        Ok(services)
    }

    /// Follows one SRV name: its targets by priority, weighted at random within one
    /// priority (RFC 2782), each target's addresses a set of its own.
    async fn srv(
        &self,
        located: &mut Located,
        domain: &str,
        service: &Service,
        trace: &mut Trace,
    ) -> Result<(), LocateError> {
        let lookup = match self
            .dns
            .lookup(service.name.as_str(), RecordType::SRV)
            .await
        {
            Ok(lookup) => lookup,
            Err(error) if error.is_no_records_found() => {
                trace.note(|| format!("RFC 3263: SRV {}: none", service.name));
                return Ok(());
            }
            Err(error) => return Err(failure(&service.name, &error)),
        };
        located.valid_until = located.valid_until.min(lookup.valid_until());
        let mut records: Vec<(u16, u16, u16, String)> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => {
                    Some((srv.priority, srv.weight, srv.port, srv.target.to_ascii()))
                }
                _ => None,
            })
            .take(MAX_SRV_TARGETS)
            .collect();
        if records.len() == 1 && records.iter().all(|(.., target)| target == ".") {
            return Err(LocateError::NotOffered(service.name.clone()));
        }
        records.retain(|(.., target)| target != ".");
        let ordered = weighted_order(records, &mut rand::thread_rng());
        trace.note(|| {
            let chosen: Vec<String> = ordered
                .iter()
                .map(|(priority, weight, port, target)| {
                    format!("{target}:{port} (priority {priority}, weight {weight})")
                })
                .collect();
            format!("RFC 3263: SRV {}: {}", service.name, chosen.join(", "))
        });
        for (_, _, port, target) in ordered {
            if located.sets.len() >= MAX_TARGET_SETS {
                break;
            }
            match self
                .addresses(located, domain, &target, service.transport, port, trace)
                .await
            {
                Ok(()) => {}
                // One dead target is not the end: the next may resolve.
                Err(error) => trace.note(|| format!("RFC 3263: {error}")),
            }
        }
        Ok(())
    }

    /// The A/AAAA records of `target`, each a set over `transport` to `port`.
    async fn addresses(
        &self,
        located: &mut Located,
        domain: &str,
        target: &str,
        transport: Transport,
        port: u16,
        trace: &mut Trace,
    ) -> Result<(), LocateError> {
        let lookup = self.dns.lookup_ip(target).await.map_err(|error| {
            if error.is_nx_domain() {
                LocateError::NoSuchDomain(target.to_owned())
            } else if error.is_no_records_found() {
                LocateError::NoRecords(target.to_owned())
            } else {
                failure(target, &error)
            }
        })?;
        located.valid_until = located.valid_until.min(lookup.valid_until());
        let addrs: Vec<IpAddr> = lookup.iter().collect();
        trace.note(|| format!("RFC 3263: {target}: {addrs:?}, {transport:?} port {port}"));
        for ip in addrs {
            if located.sets.len() >= MAX_TARGET_SETS {
                break;
            }
            self.push(located, domain, transport, SocketAddr::new(ip, port));
        }
        Ok(())
    }

    fn push(&self, located: &mut Located, domain: &str, transport: Transport, addr: SocketAddr) {
        let tls_name = (transport == Transport::Tls).then(|| domain.to_owned());
        located.sets.push(TargetSet {
            hops: vec![Hop::Address {
                transport,
                addr,
                tls_name,
            }],
            request_uri: None,
            leaves_overlay: true,
        });
    }

    fn require(&self, transport: Transport, host: &str) -> Result<(), LocateError> {
        if self.transports.contains(&transport) {
            Ok(())
        } else {
            Err(LocateError::NoTransport(host.to_owned()))
        }
    }
}

fn default_transport(secure: bool) -> Transport {
    if secure {
        Transport::Tls
    } else {
        Transport::Udp
    }
}

fn srv_service(host: &str, transport: Transport, secure: bool) -> Service {
    let prefix = match transport {
        Transport::Udp => "_sip._udp",
        Transport::Tls => "_sips._tcp",
        _ if secure => "_sips._tcp",
        _ => "_sip._tcp",
    };
    Service {
        name: format!("{prefix}.{host}."),
        transport,
    }
}

fn failure(name: &str, error: &NetError) -> LocateError {
    tracing::warn!(%name, %error, "DNS lookup failed");
    LocateError::Failed {
        name: name.to_owned(),
        reason: error.to_string(),
    }
}

/// An instant later than any DNS answer stays valid, to take minima against.
fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(24 * 3600)
}

/// SRV records `(priority, weight, port, target)` in the order to try them: ascending
/// priority; within one priority, each next record drawn with probability proportional to
/// its weight (zero-weight records get a small chance, RFC 2782).
pub fn weighted_order<R: Rng>(
    mut records: Vec<(u16, u16, u16, String)>,
    rng: &mut R,
) -> Vec<(u16, u16, u16, String)> {
    records.sort_by_key(|(priority, ..)| *priority);
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].0;
        let same = records.iter().take_while(|r| r.0 == priority).count();
        let mut group: Vec<_> = records.drain(..same).collect();
        while !group.is_empty() {
            // Zero weights count as a small share so such targets are still reachable.
            let weights: Vec<u32> = group
                .iter()
                .map(|(_, weight, ..)| u32::from(*weight) * 100 + 1)
                .collect();
            let total: u32 = weights.iter().sum();
            let mut draw = rng.gen_range(0..total);
            let mut chosen = 0;
            for (index, weight) in weights.iter().enumerate() {
                if draw < *weight {
                    chosen = index;
                    break;
                }
                draw -= weight;
            }
            ordered.push(group.swap_remove(chosen));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn srv(priority: u16, weight: u16, target: &str) -> (u16, u16, u16, String) {
        (priority, weight, 5060, target.to_owned())
    }

    #[test]
    fn srv_priorities_come_first_and_weights_share_the_rest() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut heavy_first = 0;
        for _ in 0..1000 {
            let ordered = weighted_order(
                vec![
                    srv(20, 0, "backup"),
                    srv(10, 10, "light"),
                    srv(10, 90, "heavy"),
                ],
                &mut rng,
            );
            assert_eq!(ordered[2].3, "backup", "the lower priority is always last");
            if ordered[0].3 == "heavy" {
                heavy_first += 1;
            }
        }
        assert!((850..=950).contains(&heavy_first), "{heavy_first} of 1000");
    }
}
