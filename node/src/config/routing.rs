//! The `[routing]` table: which steps of the routing chain run, the ENUM suffixes, the
//! name servers it asks, and the static peering routes.
//!
//! ```toml
//! [routing]
//! overlay = true
//! enum = true
//! domain_policy = true
//! dns = true
//! peering = true
//! enum_suffixes = ["e164.arpa"]
//! dns_servers = ["192.0.2.53:53"]
//! # Inbound requests to local users only from peers, federation members (mutual TLS),
//! # overlay nodes and local users (a closed federation); default: from anyone.
//! require_authenticated_inbound = false
//!
//! [[routing.peer]]
//! name = "itsp-a"
//! prefixes = ["+43", "+49"]
//! domains = ["itsp-a.example"]
//! gateways = ["udp:192.0.2.1:5060", "tls:gw.itsp-a.example:5061"]
//! sources = ["192.0.2.1", "198.51.100.0/24"]   # inbound from this peer
//!
//! [[routing.federation]]
//! id = "http://fedx.example/"
//! domain_prefix = "fedx"
//! transport = "tls"
//! domain_replacement = "proxy.fedx.example"
//! tls_cert = "fedx-cert.pem"
//! tls_key = "fedx-key.pem"
//! tls_ca = "fedx-ca.pem"
//! ```
//!
//! Paths are relative to the configuration file.

use super::{invalid, parse_dns_server, parse_trusted_peer, ConfigError, Origin};
use crate::routing::e164::E164;
use crate::routing::peering::{Gateway, PeerRoute, PeeringTable};
use crate::routing::policy::Federation;
use crate::routing::{is_domain_name, ChainConfig, Steps};
use serde::Deserialize;
use sip::transport::Transport;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The ENUM tree asked when none is configured.
pub const DEFAULT_ENUM_SUFFIX: &str = "e164.arpa";

/// Peering routes at most; a table beyond that is a mistake rather than a wish.
const MAX_PEER_ROUTES: usize = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoutingFile {
    overlay: Option<bool>,
    #[serde(rename = "enum")]
    enum_lookup: Option<bool>,
    domain_policy: Option<bool>,
    dns: Option<bool>,
    peering: Option<bool>,
    enum_suffixes: Option<Vec<String>>,
    dns_servers: Option<Vec<String>>,
    require_authenticated_inbound: Option<bool>,
    #[serde(default)]
    peer: Vec<PeerFile>,
    #[serde(default)]
    federation: Vec<FederationFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FederationFile {
    id: String,
    domain_prefix: Option<String>,
    transport: Option<String>,
    domain_replacement: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerFile {
    name: String,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    gateways: Vec<String>,
    #[serde(default)]
    sources: Vec<String>,
}

/// The routing chain's settings.
#[derive(Clone, Default)]
pub struct RoutingSettings {
    pub chain: ChainConfig,
    /// Name servers for ENUM, RFC 3263 and gateway names; empty: the system's.
    pub dns_servers: Vec<SocketAddr>,
    /// Sources of the peering routes: they may send requests to local users when inbound
    /// requests must come from authenticated peers.
    pub inbound_peers: Vec<ipnet::IpNet>,
    pub require_authenticated_inbound: bool,
}

impl std::fmt::Debug for RoutingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutingSettings")
            .field("steps", &self.chain.steps)
            .field("enum_suffixes", &self.chain.enum_suffixes)
            .field("peering", &self.chain.peering)
            .field("dns_servers", &self.dns_servers)
            .field("federations", &self.chain.federations)
            .field("inbound_peers", &self.inbound_peers)
            .field(
                "require_authenticated_inbound",
                &self.require_authenticated_inbound,
            )
            .finish()
    }
}

/// Validates the `[routing]` table. `fallback_dns` are the name servers given for the
/// overlay's authority lookups, used when the table names none.
pub(super) fn resolve_routing<'a>(
    file: &RoutingFile,
    fallback_dns: &[SocketAddr],
    base: &Path,
    origin: &dyn Fn(&'static str) -> Origin<'a>,
) -> Result<RoutingSettings, ConfigError> {
    let steps = Steps {
        overlay: file.overlay.unwrap_or(true),
        enum_lookup: file.enum_lookup.unwrap_or(true),
        domain_policy: file.domain_policy.unwrap_or(true),
        dns: file.dns.unwrap_or(true),
        peering: file.peering.unwrap_or(true),
    };
    let enum_suffixes = match &file.enum_suffixes {
        None => vec![DEFAULT_ENUM_SUFFIX.to_owned()],
        Some(suffixes) => {
            for suffix in suffixes {
                if !is_domain_name(suffix) {
                    return Err(invalid(
                        origin("routing.enum_suffixes"),
                        suffix,
                        "not a domain name",
                    ));
                }
            }
            suffixes
                .iter()
                .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
                .collect()
        }
    };
    let dns_servers = match &file.dns_servers {
        Some(servers) => servers
            .iter()
            .map(|s| {
                parse_dns_server(s)
                    .map_err(|reason| invalid(origin("routing.dns_servers"), s, reason))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => fallback_dns.to_vec(),
    };
    if file.peer.len() > MAX_PEER_ROUTES {
        return Err(invalid(
            origin("routing.peer"),
            file.peer.len(),
            format_args!("at most {MAX_PEER_ROUTES} routes"),
        ));
    }
    let mut routes = Vec::with_capacity(file.peer.len());
    let mut inbound_peers = Vec::new();
    for peer in &file.peer {
        for source in &peer.sources {
            let net = parse_trusted_peer(source).map_err(|reason| {
                invalid(
                    origin("routing.peer.sources"),
                    source,
                    format!("route {:?}: {reason}", peer.name),
                )
            })?;
            inbound_peers.push(net);
        }
        if let Some(route) = peer_route(peer, origin)? {
            routes.push(route);
        }
    }
    let mut federations = Vec::with_capacity(file.federation.len());
    for federation in &file.federation {
        federations.push(federation_of(federation, base, origin)?);
    }
    Ok(RoutingSettings {
        chain: ChainConfig {
            steps,
            enum_suffixes,
            peering: PeeringTable::new(routes),
            federations,
        },
        dns_servers,
        inbound_peers,
        require_authenticated_inbound: file.require_authenticated_inbound.unwrap_or(false),
    })
}

fn federation_of<'a>(
    file: &FederationFile,
    base: &Path,
    origin: &dyn Fn(&'static str) -> Origin<'a>,
) -> Result<Federation, ConfigError> {
    if file.id.trim().is_empty() {
        return Err(invalid(
            origin("routing.federation.id"),
            &file.id,
            "must not be empty",
        ));
    }
    let named = |reason: &str| format!("federation {:?}: {reason}", file.id);
    let transport = match file.transport.as_deref() {
        None => None,
        Some(text) => Some(match text.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            _ => {
                return Err(invalid(
                    origin("routing.federation.transport"),
                    text,
                    named("expected udp, tcp or tls"),
                ))
            }
        }),
    };
    for (key, value) in [
        ("routing.federation.domain_prefix", &file.domain_prefix),
        (
            "routing.federation.domain_replacement",
            &file.domain_replacement,
        ),
    ] {
        if let Some(value) = value {
            if !is_domain_name(value) {
                return Err(invalid(origin(key), value, named("not a domain name")));
            }
        }
    }
    if file.tls_cert.is_some() != file.tls_key.is_some() {
        return Err(invalid(
            origin("routing.federation.tls_cert"),
            &file.id,
            named("tls_cert and tls_key go together"),
        ));
    }
    let path = |p: &Option<PathBuf>| {
        p.as_ref().map(|p| {
            if p.is_relative() {
                base.join(p)
            } else {
                p.clone()
            }
        })
    };
    Ok(Federation {
        id: file.id.trim().to_owned(),
        domain_prefix: file.domain_prefix.clone(),
        transport,
        domain_replacement: file.domain_replacement.clone(),
        tls_cert: path(&file.tls_cert),
        tls_key: path(&file.tls_key),
        tls_ca: path(&file.tls_ca),
    })
}

/// The outbound route of a peer; None for a peer that only sends to this node.
fn peer_route<'a>(
    peer: &PeerFile,
    origin: &dyn Fn(&'static str) -> Origin<'a>,
) -> Result<Option<PeerRoute>, ConfigError> {
    let named = |reason: &str| format!("route {:?}: {reason}", peer.name);
    for prefix in &peer.prefixes {
        if E164::parse(prefix).as_ref().map(E164::as_str) != Some(prefix.as_str()) {
            return Err(invalid(
                origin("routing.peer.prefixes"),
                prefix,
                named("expected + and digits, e.g. \"+43\""),
            ));
        }
    }
    for domain in &peer.domains {
        if !is_domain_name(domain) {
            return Err(invalid(
                origin("routing.peer.domains"),
                domain,
                named("not a domain name"),
            ));
        }
    }
    let carries = !(peer.prefixes.is_empty() && peer.domains.is_empty());
    if !carries {
        if peer.sources.is_empty() || !peer.gateways.is_empty() {
            return Err(invalid(
                origin("routing.peer"),
                &peer.name,
                "needs prefixes or domains to carry (with gateways), or sources",
            ));
        }
        return Ok(None);
    }
    if peer.gateways.is_empty() {
        return Err(invalid(
            origin("routing.peer.gateways"),
            &peer.name,
            "needs at least one gateway",
        ));
    }
    let gateways = peer
        .gateways
        .iter()
        .map(|g| {
            Gateway::parse(g)
                .map_err(|reason| invalid(origin("routing.peer.gateways"), g, named(&reason)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(PeerRoute {
        name: peer.name.clone(),
        prefixes: peer.prefixes.clone(),
        domains: peer
            .domains
            .iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect(),
        gateways,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
