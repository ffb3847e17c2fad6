//! `p2psip route <uri>` and `p2psip enum <number>`: the routing chain a node with the same
//! configuration runs, step by step, for an operator debugging a route. Nothing is sent
//! but DNS queries; the overlay is not joined (`p2psip lookup` asks it).
//!
//! Exit status: 0 when a route (or an ENUM result) is found, 1 when none is, 2 for a usage
//! or configuration error.

use crate::cli::{EnumArgs, RouteArgs};
use crate::config::{self, NodeConfig};
use crate::routing::e164::E164;
use crate::routing::{Query, Trace};
use crate::startup::{advertised_host, routing_chain};
use sip::message::uri::{Scheme, Uri};
use sip::server::identity::LocalIdentity;
use sip::server::{Hop, Listener, Resolution, RoutePurpose};
use std::process::ExitCode;

const EXIT_NOT_FOUND: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// `p2psip route <uri>`.
pub fn route(args: &RouteArgs) -> ExitCode {
    let config = match config::resolve(&args.node, &config::Environment::from_process()) {
        Ok(config) => config,
        Err(error) => return usage(&error),
    };
    let Ok(uri) = Uri::parse(&args.uri) else {
        return usage(&format!("{:?}: not a URI", args.uri));
    };
    let listeners = planned_listeners(&config);
    let identity = LocalIdentity::new(listeners.clone(), &config.server.domains, None)
        .with_aliases(&config.server.aliases);
    println!("uri: {}", args.uri);
    let purpose = match uri.scheme {
        Scheme::Sip | Scheme::Sips if identity.is_node_uri(&uri) => {
            println!("decision: this node itself (answered here: REGISTER, OPTIONS)");
            return ExitCode::SUCCESS;
        }
        Scheme::Sip | Scheme::Sips if identity.is_local_user_domain(uri.host, uri.port) => {
            println!(
                "class: a user of a served domain ({}): the location table first; anyone may call",
                identity.canonical_aor(&uri)
            );
            println!("location table: not consulted by this command (the running node's)");
            RoutePurpose::ServedUser
        }
        Scheme::Sip | Scheme::Sips | Scheme::Tel => {
            println!(
                "class: outside the served domains: only authenticated local users and trusted \
                 peers may be routed there; others get 407 (claiming a local user) or 403"
            );
            RoutePurpose::Foreign
        }
        Scheme::Other => {
            println!("decision: 416 Unsupported URI Scheme");
            return ExitCode::from(EXIT_NOT_FOUND);
        }
    };
    println!("overlay: not consulted by this command (p2psip lookup asks the overlay)");
    let query = Query {
        uri: args.uri.clone(),
        aor: (purpose == RoutePurpose::ServedUser).then(|| identity.canonical_aor(&uri)),
        purpose,
        external: true,
    };
    let chain = routing_chain(&config, &listeners, None);
    let mut trace = Trace::recording();
    let Some(answer) = block_on(chain.resolve(&query, &mut trace)) else {
        return ExitCode::from(EXIT_NOT_FOUND);
    };
    let resolution = answer.resolution;
    for line in trace.lines() {
        println!("{line}");
    }
    match resolution {
        Resolution::Found(sets) => {
            println!("decision: forward, target sets tried in this order:");
            for (index, set) in sets.iter().enumerate() {
                let hops: Vec<String> = set.hops.iter().map(describe_hop).collect();
                let request_uri = set
                    .request_uri
                    .as_deref()
                    .map(|uri| format!(" with Request-URI {uri}"))
                    .unwrap_or_default();
                println!("  {}. {}{request_uri}", index + 1, hops.join(" + "));
            }
            ExitCode::SUCCESS
        }
        Resolution::Failed { status, reason } => {
            println!("decision: {status} {reason}");
            ExitCode::from(EXIT_NOT_FOUND)
        }
    }
}

/// `p2psip enum <number>`.
pub fn enum_lookup(args: &EnumArgs) -> ExitCode {
    let config = match config::resolve(&args.node, &config::Environment::from_process()) {
        Ok(config) => config,
        Err(error) => return usage(&error),
    };
    let Some(number) = E164::parse(&args.number) else {
        return usage(&format!(
            "{:?}: not an E.164 number (+ and up to 15 digits)",
            args.number
        ));
    };
    let listeners = planned_listeners(&config);
    let chain = routing_chain(&config, &listeners, None);
    let mut trace = Trace::recording();
    let Some(found) = block_on(chain.enum_only(&number, &mut trace)) else {
        return ExitCode::from(EXIT_NOT_FOUND);
    };
    for line in trace.lines() {
        println!("{line}");
    }
    match found {
        Some(uri) => {
            println!("result: {uri}");
            ExitCode::SUCCESS
        }
        None => {
            println!("result: none");
            ExitCode::from(EXIT_NOT_FOUND)
        }
    }
}

/// Runs `work` to its end on a runtime of its own.
fn block_on<T>(work: impl std::future::Future<Output = T>) -> Option<T> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime.block_on(work)),
        Err(error) => {
            eprintln!("p2psip: cannot start runtime: {error}");
            None
        }
    }
}

fn describe_hop(hop: &Hop) -> String {
    match hop {
        Hop::Overlay { host } => format!("overlay node {host}"),
        Hop::Address {
            transport,
            addr,
            tls_name,
        } => match tls_name {
            Some(name) => format!("{} {addr} (certificate for {name})", transport.uri_param()),
            None => format!("{} {addr}", transport.uri_param()),
        },
    }
}

/// The listeners a node with `config` would have (ports as configured, not bound).
fn planned_listeners(config: &NodeConfig) -> Vec<Listener> {
    config
        .listen
        .iter()
        .map(|wanted| Listener {
            transport: wanted.transport,
            addr: wanted.addr,
            advertised_host: advertised_host(wanted.addr.ip()),
        })
        .collect()
}

fn usage(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("p2psip: {error}");
    ExitCode::from(EXIT_USAGE)
}
