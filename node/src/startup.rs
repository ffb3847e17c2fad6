//! Bringing a node up and down: bind listeners, set up TLS, join the overlay, start the
//! core and accept tasks, publish `node.json`, wait for SIGINT/SIGTERM, shut down in order.

use crate::config::{ConfigError, NodeConfig, OverlaySettings};
use crate::connections::Connections;
use crate::node_info::{OverlayInfo, OverlayStatus};
use crate::overlay_link::{OverlayLink, SHUTDOWN_WITHDRAW};
use crate::routing::rfc3263::Locator;
use crate::routing::{Chain, RoutingChain};
use crate::runtime::Core;
use crate::stream::{self, StreamLimits, StreamShared, EVENT_QUEUE};
use crate::tls_client::TlsClients;
use crate::udp::UdpEndpoint;
use crate::{dns_authority, domain, node_info, tls};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use overlay::network::{Overlay, OverlayConfig, OverlayEvent};
use overlay::validate::RecordValidator;
use sip::auth::Credential;
use sip::server::{Listener, ServerConfig, SipServer};
use sip::transport::Transport;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

/// How long connections get to flush their queues after the core stops.
const CONNECTION_DRAIN: Duration = Duration::from_millis(1500);

/// How long the core may take to stop: flushing, then with the overlay on withdrawing this
/// node's registrations and stopping the overlay.
const CORE_STOP: Duration = Duration::from_secs(2);
const OVERLAY_STOP: Duration = Duration::from_secs(5);

/// Why a node could not run. Configuration problems exit with status 2, others with 1.
#[derive(Debug)]
pub enum RunError {
    Config(ConfigError),
    Io(String),
}

impl From<ConfigError> for RunError {
    fn from(error: ConfigError) -> Self {
        RunError::Config(error)
    }
}

/// The routing chain of a node with this configuration. Without a usable DNS resolver
/// (no system configuration, say) the DNS steps find nothing and say why in the log.
pub fn routing_chain(
    config: &NodeConfig,
    listeners: &[Listener],
    overlay: Option<Overlay>,
) -> Chain {
    let transports: Vec<Transport> = [Transport::Udp, Transport::Tcp, Transport::Tls]
        .into_iter()
        .filter(|t| listeners.iter().any(|l| l.transport == *t))
        .collect();
    let locator = match dns_authority::resolver(&config.routing.dns_servers) {
        Ok(dns) => Some(Locator::new(dns, transports)),
        Err(error) => {
            tracing::warn!(%error, "no DNS for routing: ENUM and RFC 3263 are off");
            None
        }
    };
    Chain::new(config.routing.chain.clone(), locator, overlay)
}

/// The interface addresses a wildcard listener receives on, listed once at start-up (for
/// the node's aliases and the public-address warning); none without a wildcard listener.
fn wildcard_addresses(listeners: &[Listener]) -> Vec<IpAddr> {
    if !listeners.iter().any(|l| l.addr.ip().is_unspecified()) {
        return Vec::new();
    }
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.iter().map(|interface| interface.ip()).collect(),
        Err(error) => {
            tracing::debug!(%error, "interface addresses unknown");
            Vec::new()
        }
    }
}

/// Runs a node until SIGINT or SIGTERM.
pub async fn run(config: NodeConfig, users: Vec<Credential>) -> Result<(), RunError> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| RunError::Io(format!("data dir {}: {e}", data_dir.display())))?;
    // Installed before announcing readiness so a signal sent right after is not lost.
    let signals = Signals::install()?;

    let mut udp = Vec::new();
    let mut stream_listeners = Vec::new();
    let mut listeners = Vec::new();
    for wanted in &config.listen {
        let cannot = |e: std::io::Error| RunError::Io(format!("listen {wanted}: {e}"));
        let addr = match wanted.transport {
            Transport::Udp => {
                let endpoint = UdpEndpoint::bind(wanted.addr).map_err(cannot)?;
                let addr = endpoint.local;
                udp.push(endpoint);
                addr
            }
            Transport::Tcp | Transport::Tls => {
                let listener = stream::bind_listener(wanted.addr).map_err(cannot)?;
                let addr = listener.local_addr().map_err(cannot)?;
                stream_listeners.push((listener, wanted.transport, addr));
                addr
            }
            // Overlay streams are opened by the overlay, not bound as a listen address.
            Transport::Overlay => {
                return Err(RunError::Io(format!(
                    "listen {wanted}: the overlay is not a socket transport"
                )))
            }
        };
        listeners.push(Listener {
            transport: wanted.transport,
            addr,
            advertised_host: advertised_host(addr.ip()),
        });
    }

    let tls_acceptor = if listeners.iter().any(|l| l.transport == Transport::Tls) {
        let hosts: Vec<String> = listeners
            .iter()
            .map(|l| l.advertised_host.clone())
            .collect();
        let federation_cas: Vec<PathBuf> = config
            .routing
            .chain
            .federations
            .iter()
            .filter_map(|f| f.tls_ca.clone())
            .collect();
        let server =
            tls::server_config(config.tls_files.as_ref(), data_dir, &hosts, &federation_cas)?;
        Some(tokio_rustls::TlsAcceptor::from(server))
    } else {
        None
    };
    let tls_clients = Arc::new(TlsClients::new(
        &config.tls_ca,
        &config.routing.chain.federations,
    )?);

    let interfaces = wildcard_addresses(&listeners);
    if !config.server.open && users.is_empty() {
        tracing::warn!("no users and not --open: every REGISTER will be refused");
    }
    if config.server.open {
        if let Some(public) = public_listen_address(&listeners, &interfaces) {
            tracing::warn!(
                address = %public,
                "--open on a public address: anyone who can reach it may register \
                 addresses-of-record and call the users here; use --users outside a LAN"
            );
        }
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let overlay = match &config.overlay {
        Some(settings) => Some(
            start_overlay(
                settings,
                data_dir,
                config.server.lookup_timeout,
                &config.server.domains,
                shutdown_rx.clone(),
            )
            .await?,
        ),
        None => None,
    };

    let mut random_seed = [0u8; 32];
    rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut random_seed)
        .map_err(|e| RunError::Io(format!("no OS randomness: {e}")))?;
    let mut aliases = config.server.aliases.clone();
    aliases.extend(interfaces.iter().map(IpAddr::to_string));
    let server_config = ServerConfig {
        listeners: listeners.clone(),
        users,
        random_seed,
        aliases,
        resolves_routes: true,
        inbound_peers: config.routing.inbound_peers.clone(),
        require_authenticated_inbound: config.routing.require_authenticated_inbound,
        overlay_host: overlay
            .as_ref()
            .map(|started| overlay::sip_name::host_name(&started.info.peer_id)),
        ..config.server.clone()
    };
    let server = SipServer::new(server_config, Instant::now())
        .map_err(|e| ConfigError(format!("configuration: {e}")))?;

    let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
    let limits = StreamLimits {
        max_connections: config.max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
        max_message_size: config.max_message_size,
        idle_timeout: config.tcp_idle_timeout,
        message_timeout: config.tcp_message_timeout,
    };
    let shared = Arc::new(StreamShared::new(events, limits, tls_clients.clone()));
    let mut accept_tasks = Vec::with_capacity(stream_listeners.len());
    for (listener, transport, local) in stream_listeners {
        let acceptor = match transport {
            Transport::Tls => tls_acceptor.clone(),
            _ => None,
        };
        accept_tasks.push(tokio::spawn(stream::accept_loop(
            listener,
            transport,
            local,
            acceptor,
            shared.clone(),
            shutdown_rx.clone(),
        )));
    }
    let (link, overlay_info, overlay_handle, dns_task) = match overlay {
        Some(started) => (
            Some(OverlayLink::new(started.handle.clone(), started.events)),
            Some(started.info),
            Some(started.handle),
            started.dns_task,
        ),
        None => (None, None, None, None),
    };
    let core_stop = if link.is_some() {
        CORE_STOP + SHUTDOWN_WITHDRAW + OVERLAY_STOP
    } else {
        CORE_STOP
    };
    let routing = RoutingChain::new(
        routing_chain(&config, &listeners, overlay_handle.clone()),
        tls_clients,
    );
    let core = Core::new(
        server,
        udp,
        Connections::new(shared.clone()),
        events_rx,
        link,
        routing,
    );
    let status_shutdown = shutdown_rx.clone();
    let mut core_task = tokio::spawn(core.run(shutdown_rx));

    for listener in &listeners {
        tracing::info!(
            transport = %listener.transport.uri_param(),
            addr = %listener.addr,
            advertised = %listener.advertised_host,
            "listening"
        );
    }
    let status = match &overlay_handle {
        // A closed overlay shows up soon enough in the core; the file then says what it can.
        Some(handle) => handle
            .stats()
            .await
            .map(OverlayStatus::from)
            .unwrap_or_default(),
        None => OverlayStatus::default(),
    };
    node_info::write(
        data_dir,
        &listeners,
        overlay_info.as_ref(),
        overlay_info.as_ref().map(|_| &status),
    )
    .map_err(|e| RunError::Io(format!("data dir {}: {e}", data_dir.display())))?;
    let status_task = match (overlay_handle, overlay_info) {
        (Some(handle), Some(info)) => Some(tokio::spawn(node_info::keep_status_current(
            data_dir.clone(),
            listeners.clone(),
            info,
            handle,
            status,
            status_shutdown,
        ))),
        _ => None,
    };
    tracing::info!(data_dir = %data_dir.display(), "node ready");

    let core_failed = tokio::select! {
        name = signals.recv() => {
            tracing::info!(signal = name, "shutting down");
            false
        }
        result = &mut core_task => {
            tracing::error!(?result, "core task ended unexpectedly");
            true
        }
    };
    let _ = shutdown.send(true);
    if let Some(task) = dns_task {
        // It stops at the shutdown signal, between or during its lookups.
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    if let Some(task) = status_task {
        // It stops at the shutdown signal, or at once if it is writing the file.
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    if !core_failed && tokio::time::timeout(core_stop, core_task).await.is_err() {
        tracing::warn!("core did not stop in time");
    }
    for task in accept_tasks {
        let _ = task.await;
    }
    // Every connection task holds a permit until its socket is closed; getting them all
    // back means everything queued has been written.
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(CONNECTION_DRAIN, shared.permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::debug!("some connections did not close in time");
    }
    if core_failed {
        return Err(RunError::Io("core task failed".to_string()));
    }
    tracing::info!("stopped");
    Ok(())
}

/// A running overlay.
struct StartedOverlay {
    handle: Overlay,
    /// Its events, for the core.
    events: mpsc::Receiver<OverlayEvent>,
    /// What node.json says of it.
    info: OverlayInfo,
    /// Looks the authority keys of served domains without trust anchor up in DNS again
    /// and again, until shutdown.
    dns_task: Option<tokio::task::JoinHandle<()>>,
}

/// Loads or creates the node key, checks the delegation files against it, starts the
/// overlay with the configured authorities, looks the authority keys of served domains
/// without trust anchor up in DNS (waiting a few seconds at most) and reports where it
/// listens. `served_domains` (empty: any) also decides which warnings about missing
/// delegations are worth giving.
async fn start_overlay(
    settings: &OverlaySettings,
    data_dir: &std::path::Path,
    sip_lookup_timeout: Duration,
    served_domains: &[String],
    shutdown: watch::Receiver<bool>,
) -> Result<StartedOverlay, RunError> {
    let keypair = overlay::network::load_or_create_keypair(data_dir)
        .map_err(|e| RunError::Io(format!("overlay: {e}")))?;
    let authority = &settings.authority;
    let delegations = domain::load_delegations(
        authority,
        &keypair.public().to_peer_id(),
        overlay::network::now_unix(),
    )?;
    domain::warn_about_unauthorised_domains(authority, &delegations, served_domains);
    let mut overlay_config = OverlayConfig::new(keypair);
    overlay_config.listen = settings.listen.clone();
    overlay_config.bootstrap = settings.bootstrap.clone();
    overlay_config.mdns = settings.mdns;
    overlay_config.validator = RecordValidator::new(authority.mode, authority.anchors.clone());
    overlay_config.delegations = delegations.clone();
    overlay_config.role = settings.role;
    overlay_config.promote_after = settings.promote_after;
    // Below the SIP server's own bound, so that partial DHT answers arrive before the
    // request waiting for them is given up on.
    overlay_config.lookup_timeout = (sip_lookup_timeout * 3 / 4).max(Duration::from_secs(1));
    let (handle, events) = Overlay::start(overlay_config)
        .await
        .map_err(|e| RunError::Io(format!("overlay: {e}")))?;
    let peer_id = handle.local_peer_id();
    let listening = handle
        .listen_addrs()
        .await
        .map_err(|e| RunError::Io(format!("overlay: {e}")))?;
    let p2p_addrs: Vec<Multiaddr> = listening
        .into_iter()
        .map(|address| {
            if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
                address
            } else {
                address.with(Protocol::P2p(peer_id))
            }
        })
        .collect();
    tracing::info!(
        %peer_id,
        host = %overlay::sip_name::host_name(&peer_id),
        mdns = settings.mdns,
        bootstrap = settings.bootstrap.len(),
        authority_mode = ?authority.mode,
        trust_anchor_domains = authority.anchors.len(),
        role = %settings.role,
        promote_after_secs = settings.promote_after.as_secs(),
        "overlay started"
    );
    for address in &p2p_addrs {
        tracing::info!(%address, "overlay listening");
    }
    // Before any REGISTER is handled, so that the keys found apply to the first ones.
    let dns_task = dns_authority::start(
        &authority.dns_servers,
        dns_authority::domains_to_resolve(served_domains, &authority.anchors),
        handle.clone(),
        delegations,
        shutdown,
    )
    .await;
    Ok(StartedOverlay {
        handle,
        events,
        info: OverlayInfo { peer_id, p2p_addrs },
        dns_task,
    })
}

/// SIGINT and SIGTERM.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, RunError> {
        let install = |kind| {
            signal(kind).map_err(|e| RunError::Io(format!("cannot install signal handler: {e}")))
        };
        Ok(Signals {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
        })
    }

    async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// The host to advertise for a listener bound to `ip`: the IP itself, or for a wildcard
/// bind the first non-loopback interface address of the same family (loopback if none).
/// IPv6 addresses come bracketed, as SIP writes them in Via and URIs.
pub fn advertised_host(ip: IpAddr) -> String {
    let ip = if ip.is_unspecified() {
        interface_address(ip.is_ipv4()).unwrap_or(if ip.is_ipv4() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        })
    } else {
        ip
    };
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn interface_address(ipv4: bool) -> Option<IpAddr> {
    let interfaces = match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces,
        Err(error) => {
            tracing::warn!(%error, "cannot list network interfaces");
            return None;
        }
    };
    // Link-local IPv6 addresses need a scope id that SIP URIs cannot carry.
    interfaces
        .iter()
        .filter(|i| !i.is_loopback() && i.ip().is_ipv4() == ipv4)
        .map(|i| i.ip())
        .find(|ip| ipv4 || !is_link_local(ip))
}

/// A listener address reachable from the Internet, if any: a public IP bound directly, or
/// a public interface address behind a wildcard bind.
fn public_listen_address(listeners: &[Listener], interfaces: &[IpAddr]) -> Option<IpAddr> {
    listeners.iter().find_map(|l| {
        let ip = l.addr.ip();
        if ip.is_unspecified() {
            interfaces.iter().copied().find(|candidate| {
                candidate.is_ipv4() == ip.is_ipv4() && is_public_address(candidate)
            })
        } else {
            is_public_address(&ip).then_some(ip)
        }
    })
}

/// True for unicast addresses outside the loopback, private (RFC 1918, RFC 4193), shared
/// (RFC 6598) and link-local ranges.
fn is_public_address(ip: &IpAddr) -> bool {
    match ip.to_canonical() {
        ip if sip::transport::is_private_address(ip) => false,
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast())
        }
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast()),
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(v4) => v4.is_link_local(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn advertised_host_keeps_bound_ip() {
        assert_eq!(advertised_host("127.0.0.1".parse().unwrap()), "127.0.0.1");
        assert_eq!(advertised_host("::1".parse().unwrap()), "[::1]");
        assert_eq!(advertised_host("fe80::1".parse().unwrap()), "[fe80::1]");
    }

    #[test]
    fn public_addresses_are_told_apart_from_lan_ones() {
        for lan in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.10",
            "100.64.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(!is_public_address(&lan.parse().unwrap()), "{lan}");
        }
        for public in ["203.0.113.5", "8.8.8.8", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(is_public_address(&public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn advertised_host_for_wildcard_is_concrete() {
        let host = advertised_host(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let ip: Ipv4Addr = host.parse().unwrap();
        assert!(!ip.is_unspecified());
    }
}
