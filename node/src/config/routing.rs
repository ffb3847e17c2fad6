//! The `[routing]` table: which steps of the routing chain run, the ENUM suffixes, the
//! name servers it asks, and the static peering routes.
//!
//! ```toml
//! [routing]
//! overlay = true
//! enum = true
//! dns = true
//! peering = true
//! enum_suffixes = ["e164.arpa"]
//! dns_servers = ["192.0.2.53:53"]
//!
//! [[routing.peer]]
//! name = "itsp-a"
//! prefixes = ["+43", "+49"]
//! domains = ["itsp-a.example"]
//! gateways = ["udp:192.0.2.1:5060", "tls:gw.itsp-a.example:5061"]
//! ```

use super::{invalid, parse_dns_server, ConfigError, Origin};
use crate::routing::e164::E164;
use crate::routing::peering::{Gateway, PeerRoute, PeeringTable};
use crate::routing::{ChainConfig, Steps};
use serde::Deserialize;
use std::net::SocketAddr;

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
    dns: Option<bool>,
    peering: Option<bool>,
    enum_suffixes: Option<Vec<String>>,
    dns_servers: Option<Vec<String>>,
    #[serde(default)]
    peer: Vec<PeerFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerFile {
    name: String,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    domains: Vec<String>,
    gateways: Vec<String>,
}

/// The routing chain's settings.
#[derive(Clone, Default)]
pub struct RoutingSettings {
    pub chain: ChainConfig,
    /// Name servers for ENUM, RFC 3263 and gateway names; empty: the system's.
    pub dns_servers: Vec<SocketAddr>,
}

impl std::fmt::Debug for RoutingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutingSettings")
            .field("steps", &self.chain.steps)
            .field("enum_suffixes", &self.chain.enum_suffixes)
            .field("peering", &self.chain.peering)
            .field("dns_servers", &self.dns_servers)
            .finish()
    }
}

/// Validates the `[routing]` table. `fallback_dns` are the name servers given for the
/// overlay's authority lookups, used when the table names none.
pub(super) fn resolve_routing<'a>(
    file: &RoutingFile,
    fallback_dns: &[SocketAddr],
    origin: &dyn Fn(&'static str) -> Origin<'a>,
) -> Result<RoutingSettings, ConfigError> {
    let steps = Steps {
        overlay: file.overlay.unwrap_or(true),
        enum_lookup: file.enum_lookup.unwrap_or(true),
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
    for peer in &file.peer {
        routes.push(peer_route(peer, origin)?);
    }
    Ok(RoutingSettings {
        chain: ChainConfig {
            steps,
            enum_suffixes,
            peering: PeeringTable::new(routes),
        },
        dns_servers,
    })
}

fn peer_route<'a>(
    peer: &PeerFile,
    origin: &dyn Fn(&'static str) -> Origin<'a>,
) -> Result<PeerRoute, ConfigError> {
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
    if peer.prefixes.is_empty() && peer.domains.is_empty() {
        return Err(invalid(
            origin("routing.peer"),
            &peer.name,
            "needs prefixes or domains to carry",
        ));
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
    Ok(PeerRoute {
        name: peer.name.clone(),
        prefixes: peer.prefixes.clone(),
        domains: peer
            .domains
            .iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect(),
        gateways,
    })
}

fn is_domain_name(text: &str) -> bool {
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
