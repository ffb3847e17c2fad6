//! Node configuration: the `--config` TOML file merged with command-line flags (flags win),
//! validated into a [`NodeConfig`]. Every error names where the bad value came from (the
//! flag, or the file and key) so the user can fix it without guessing.
//!
//! Every key is optional; relative paths are taken from the file's directory:
//!
//! ```toml
//! listen = ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060", "tls:[::]:5061"]
//! data_dir = "/var/lib/p2psip"
//! domain = ["example.com"]
//! users = "users.toml"
//! open = false
//! digest_algorithms = ["SHA-256", "MD5"]
//! log = "info,p2psip=debug"
//! tls_cert = "cert.pem"
//! tls_key = "key.pem"
//! tls_ca = ["ca.pem"]   # trusted for outbound TLS besides the system's roots
//! workers = 2
//! overlay = true
//! p2p_listen = ["/ip4/0.0.0.0/tcp/4001"]
//! bootstrap = ["/ip4/192.0.2.10/tcp/4001/p2p/12D3KooWLy8mUBeyYGqzYFF4Urj2aPAyUoPmW5b4UebmEgv6gFVE"]
//! mdns = true
//! trust_anchors = ["example.com=4XTTM9qVEgiAJCAMuuMhXYiuRy8oUBPghqDDjpqVuP5du8Dgw"]
//! dns_servers = ["192.0.2.53:53"]
//! delegations = ["node.delegations"]
//! authority_mode = "open"
//! role = "auto"
//! promote_after = 600
//! trusted_peers = ["192.0.2.10", "198.51.100.0/24"]
//! aliases = ["sip.example.com", "192.0.2.5"]
//!
//! [routing]   # see the routing module: steps, ENUM suffixes, name servers, peering
//! enum_suffixes = ["e164.arpa"]
//!
//! [limits]
//! max_aors = 1000000
//! max_bindings_per_aor = 16
//! min_expires = 60
//! max_expires = 86400
//! default_expires = 3600
//! max_transactions = 1000000
//! max_bindings_per_source = 1000
//! max_failures_per_account = 20
//! max_requests_per_source = 2000
//! max_connections = 10000
//! max_message_size = 65535
//! max_connections_per_ip = 64
//! tcp_idle_timeout = 120
//! tcp_message_timeout = 10
//!
//! [timers]
//! t1_ms = 500
//! t2_ms = 4000
//! t4_ms = 5000
//! ```
//!
//! Precedence: flag, then file, then default; `--log` falls back on `$RUST_LOG` before the
//! file, as is usual for that variable. `--no-overlay` and `--no-mdns` can only turn things
//! off; with the overlay off, `p2p_listen`, `bootstrap`, `trust_anchors`, `dns_servers`,
//! `delegations`, `authority_mode`, `role` and `promote_after` from the file are ignored,
//! but the `--p2p-listen`, `--bootstrap`, `--trust-anchor`, `--dns-server`, `--delegation`,
//! `--authority-mode`, `--role` and `--promote-after` flags are an error (they contradict
//! `--no-overlay`). Trust anchors, name servers and delegation files given as flags replace
//! those of the file, as for every list. The delegation files are read and checked against
//! the node's peer id at start-up, once the node key is loaded.

mod routing;

use crate::cli::NodeArgs;
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use overlay::authority::{AuthorityError, TrustAnchors};
use overlay::network::RoleSetting;
use overlay::validate::AuthorityMode;
pub use routing::RoutingSettings;
use serde::Deserialize;
use sip::server::ServerConfig;
use sip::transport::Transport;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem. The message is complete and meant for the user as is; the
/// process exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One `--listen` value: `udp:0.0.0.0:5060`, `tls:[::1]:5061`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl ListenAddr {
    /// Parses `TRANSPORT:IP:PORT`. The error is the reason only; callers add the origin.
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        let Some((token, addr)) = text.split_once(':') else {
            return Err("expected TRANSPORT:IP:PORT, e.g. udp:0.0.0.0:5060".to_string());
        };
        let transport = Transport::from_token(token)
            .ok_or_else(|| format!("unknown transport {token:?}, expected udp, tcp or tls"))?;
        let addr = addr
            .parse::<SocketAddr>()
            .map_err(|_| "bad address".to_string())?;
        Ok(ListenAddr { transport, addr })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.uri_param(), self.addr)
    }
}

/// Listeners used when neither the command line nor the file names any.
pub fn default_listeners() -> Vec<ListenAddr> {
    let any = std::net::Ipv4Addr::UNSPECIFIED.into();
    [
        (Transport::Udp, 5060),
        (Transport::Tcp, 5060),
        (Transport::Tls, 5061),
    ]
    .into_iter()
    .map(|(transport, port)| ListenAddr {
        transport,
        addr: SocketAddr::new(any, port),
    })
    .collect()
}

/// The `--config` file. Every key is optional; unknown keys are errors so typos surface.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Vec<String>>,
    data_dir: Option<PathBuf>,
    domain: Option<Vec<String>>,
    users: Option<PathBuf>,
    open: Option<bool>,
    digest_algorithms: Option<Vec<String>>,
    log: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<Vec<PathBuf>>,
    workers: Option<usize>,
    overlay: Option<bool>,
    p2p_listen: Option<Vec<String>>,
    bootstrap: Option<Vec<String>>,
    mdns: Option<bool>,
    trust_anchors: Option<Vec<String>>,
    dns_servers: Option<Vec<String>>,
    delegations: Option<Vec<PathBuf>>,
    authority_mode: Option<String>,
    role: Option<String>,
    promote_after: Option<u64>,
    trusted_peers: Option<Vec<String>>,
    aliases: Option<Vec<String>>,
    #[serde(default)]
    routing: routing::RoutingFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    timers: TimersFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_aors: Option<usize>,
    max_bindings_per_aor: Option<usize>,
    min_expires: Option<u32>,
    max_expires: Option<u32>,
    default_expires: Option<u32>,
    max_transactions: Option<usize>,
    max_bindings_per_source: Option<usize>,
    max_failures_per_account: Option<u32>,
    max_requests_per_source: Option<u32>,
    max_connections: Option<usize>,
    max_message_size: Option<usize>,
    max_connections_per_ip: Option<usize>,
    tcp_idle_timeout: Option<u64>,
    tcp_message_timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimersFile {
    t1_ms: Option<u64>,
    t2_ms: Option<u64>,
    t4_ms: Option<u64>,
}

/// The environment variables configuration falls back on, captured once so tests can
/// supply their own.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub p2psip_data_dir: Option<String>,
    pub xdg_data_home: Option<String>,
    pub home: Option<String>,
    pub rust_log: Option<String>,
}

impl Environment {
    pub fn from_process() -> Environment {
        // Unset and empty are the same: an empty variable is a common way to "unset" it.
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Environment {
            p2psip_data_dir: var("P2PSIP_DATA_DIR"),
            xdg_data_home: var("XDG_DATA_HOME"),
            home: var("HOME"),
            rust_log: var("RUST_LOG"),
        }
    }
}

/// TLS certificate and key files given by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything the node needs to start, validated.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: Vec<ListenAddr>,
    pub data_dir: PathBuf,
    pub users_file: Option<PathBuf>,
    pub log: String,
    /// None: generate or reuse a self-signed certificate in the data directory.
    pub tls_files: Option<TlsFiles>,
    /// CA certificates (PEM files) trusted for outbound TLS besides the system's roots.
    pub tls_ca: Vec<PathBuf>,
    pub workers: usize,
    /// Bound on concurrent stream connections (inbound and outbound).
    pub max_connections: usize,
    /// Largest message accepted on a stream; a bigger one is answered 513 and the
    /// connection closed.
    pub max_message_size: usize,
    /// Bound on concurrent inbound stream connections from one source address (IPv6: one
    /// /64); beyond it new ones are closed without taking one of `max_connections`.
    pub max_connections_per_ip: usize,
    /// A stream connection without traffic for this long is closed, unless a registration
    /// made over it is still live.
    pub tcp_idle_timeout: Duration,
    /// Time for a whole message to arrive on a stream once its first byte has.
    pub tcp_message_timeout: Duration,
    /// Server settings except `listeners`, `users` and `overlay_host`, which are filled in
    /// at start-up.
    pub server: ServerConfig,
    /// The overlay; `None` in single-node mode (`--no-overlay`, `overlay = false`).
    pub overlay: Option<OverlaySettings>,
    /// The routing chain.
    pub routing: RoutingSettings,
}

/// How the node joins the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlaySettings {
    /// libp2p listen addresses (`/ip4/.../tcp/...`).
    pub listen: Vec<Multiaddr>,
    /// Nodes dialled at start, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover nodes on the local link by multicast DNS.
    pub mdns: bool,
    /// Domain authorities and this node's delegations.
    pub authority: AuthoritySettings,
    /// The node's role in the overlay: `auto`, `peer` or `supernode`.
    pub role: RoleSetting,
    /// With role `auto`, the uptime after which a confirmed public address makes the node a
    /// supernode.
    pub promote_after: Duration,
}

/// Default of `limits.tcp_idle_timeout`: Kamailio's `tcp_connection_lifetime` default,
/// which SIP operators know. Long enough for the pauses inside a call setup, short enough
/// that connections nobody uses do not pile up. Phones that rely on their connection
/// between re-registrations (with or without RFC 5626 keep-alives, sent every 95-120 s
/// on TCP) are kept anyway, as long as their registration.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Default of `limits.tcp_message_timeout`: a message of up to 64 KiB reaches the node in
/// well under a second on any working link, while a slowloris client must not hold a
/// connection and its buffer for long (a TLS handshake gets the same 10 s).
pub const DEFAULT_TCP_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of `limits.max_connections_per_ip`: room for a site of phones behind one NAT
/// address, and for SIPp's one-connection-per-call mode at up to 64 concurrent calls,
/// while 10,000 connections (the default `max_connections`) take more than 150 addresses.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;

/// Default of `--promote-after`.
pub const DEFAULT_PROMOTE_AFTER: Duration = Duration::from_secs(600);

/// Largest `--promote-after`, in seconds (a week): a larger value is more likely a unit
/// mistake than a wish.
const MAX_PROMOTE_AFTER_SECS: u64 = 7 * 24 * 3600;

/// Which domain authorities the node trusts, and the delegations it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthoritySettings {
    pub mode: AuthorityMode,
    pub anchors: TrustAnchors,
    /// Delegation files, read and checked at start-up (they must name the node's peer id).
    pub delegation_files: Vec<PathBuf>,
    /// Name servers asked for `TXT _p2psip.<domain>` (the authority key of a served domain
    /// without trust anchor); empty: the system's.
    pub dns_servers: Vec<SocketAddr>,
}

impl Default for AuthoritySettings {
    fn default() -> Self {
        AuthoritySettings {
            mode: AuthorityMode::Open,
            anchors: TrustAnchors::new(),
            delegation_files: Vec::new(),
            dns_servers: Vec::new(),
        }
    }
}

/// Port of a `--dns-server` given without one.
pub const DNS_PORT: u16 = 53;

/// Parses `--dns-server`: `IP:PORT` (IPv6 as `[::1]:53`) or a bare IP (port 53). The error
/// is the reason only.
pub fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| "expected IP:PORT or IP, e.g. 192.0.2.53:53 or [2001:db8::53]:53".to_string())
}

/// Parses `--trusted-peer`: an address (`192.0.2.10`, `2001:db8::1`) or a prefix
/// (`192.0.2.0/24`). The error is the reason only.
pub fn parse_trusted_peer(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| {
            "expected an IP address or prefix, e.g. 192.0.2.10 or 192.0.2.0/24".to_string()
        })
}

/// Parses `--authority-mode`: `open` or `closed`. The error is the reason only.
pub fn parse_authority_mode(text: &str) -> Result<AuthorityMode, String> {
    match text {
        "open" => Ok(AuthorityMode::Open),
        "closed" => Ok(AuthorityMode::Closed),
        _ => Err("expected open or closed".to_string()),
    }
}

/// Parses trust anchors (`domain=<public key>`), naming `origin` and the bad entry.
fn parse_trust_anchors(values: &[String], origin: Origin<'_>) -> Result<TrustAnchors, ConfigError> {
    let mut anchors = TrustAnchors::new();
    for value in values {
        let reason = |error: AuthorityError| match error {
            AuthorityError::BadAnchor { reason, .. } => reason,
            other => other.to_string(),
        };
        let (domain, key) =
            TrustAnchors::parse_entry(value).map_err(|e| invalid(origin, value, reason(e)))?;
        anchors
            .add(&domain, key)
            .map_err(|e| invalid(origin, value, reason(e)))?;
    }
    Ok(anchors)
}

/// The overlay listen address used when none is configured.
pub fn default_p2p_listen() -> Multiaddr {
    overlay::network::default_listen_addr()
}

/// Parses an overlay listen address: `/ip4/<address>/tcp/<port>` or the `/ip6/` form. The
/// error is the reason only; callers add the origin.
pub fn parse_p2p_listen(text: &str) -> Result<Multiaddr, String> {
    let addr: Multiaddr = text.parse().map_err(|e| format!("not a multiaddr ({e})"))?;
    let mut parts = addr.iter();
    let ip = matches!(parts.next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_)));
    let tcp = matches!(parts.next(), Some(Protocol::Tcp(_)));
    if !ip || !tcp || parts.next().is_some() {
        return Err("expected /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port>".to_string());
    }
    Ok(addr)
}

/// Parses a bootstrap address: a dialable multiaddr ending in `/p2p/<peer id>`. The error is
/// the reason only; callers add the origin.
pub fn parse_bootstrap(text: &str) -> Result<Multiaddr, String> {
    let addr: Multiaddr = text.parse().map_err(|e| format!("not a multiaddr ({e})"))?;
    if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        return Err("must end in /p2p/<peer id>".to_string());
    }
    if addr.iter().count() < 2 {
        return Err("needs an address before /p2p/<peer id>".to_string());
    }
    Ok(addr)
}

/// Where a value came from, for error messages: `--listen` or `config /x.toml: listen`.
#[derive(Clone, Copy)]
enum Origin<'a> {
    Flag(&'static str),
    File(&'a Path, &'static str),
    Env(&'static str),
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "--{flag}"),
            Origin::File(path, key) => write!(f, "config {}: {key}", path.display()),
            Origin::Env(name) => f.write_str(name),
        }
    }
}

/// `value` when it lies in `min..=max`, else an error naming `origin`.
fn within<T>(origin: Origin<'_>, value: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: PartialOrd + Copy + fmt::Debug + fmt::Display,
{
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            origin,
            value,
            format_args!("must be between {min} and {max}"),
        ))
    }
}

/// A repeatable flag's values when it is given, else its file key's, each parsed; an error
/// names where the bad value came from (flags replace the file's list, as for every list).
fn parse_list<T>(
    (flag_values, flag): (&[String], &'static str),
    (file_values, file_origin): (Option<&[String]>, Origin<'_>),
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    let (values, origin) = if flag_values.is_empty() {
        (file_values.unwrap_or_default(), file_origin)
    } else {
        (flag_values, Origin::Flag(flag))
    };
    values
        .iter()
        .map(|value| parse(value).map_err(|reason| invalid(origin, value, reason)))
        .collect()
}

fn invalid(origin: Origin<'_>, value: impl fmt::Debug, reason: impl fmt::Display) -> ConfigError {
    ConfigError(format!("{origin} {value:?}: {reason}"))
}

/// Reads and parses a config file. Paths inside it are relative to the file's directory.
fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("config {}: {e}", path.display())))?;
    let mut file: FileConfig = toml::from_str(&text).map_err(|e| {
        ConfigError(format!(
            "config {}: {}",
            path.display(),
            toml_error(&e, &text)
        ))
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    for p in [
        &mut file.data_dir,
        &mut file.users,
        &mut file.tls_cert,
        &mut file.tls_key,
    ]
    .into_iter()
    .flatten()
    .chain(file.delegations.iter_mut().flatten())
    .chain(file.tls_ca.iter_mut().flatten())
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(file)
}

/// A TOML error as one line: the message, then where it is.
pub fn toml_error(error: &toml::de::Error, text: &str) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            format!("{message} (line {line})")
        }
        None => message.to_string(),
    }
}

/// Merges `args` over the config file (if any) over defaults and validates the result.
pub fn resolve(args: &NodeArgs, env: &Environment) -> Result<NodeConfig, ConfigError> {
    let file_path = args.config.as_deref();
    let file = match file_path {
        Some(path) => load_file(path)?,
        None => FileConfig::default(),
    };
    let file_origin = |key| Origin::File(file_path.unwrap_or(Path::new("")), key);
    let overlay = resolve_overlay(args, &file, &file_origin)?;

    let listen = if !args.listen.is_empty() {
        parse_listeners(&args.listen, Origin::Flag("listen"))?
    } else if let Some(listen) = &file.listen {
        parse_listeners(listen, file_origin("listen"))?
    } else {
        default_listeners()
    };

    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| default_data_dir(env));

    let (domains, domain_origin) = if !args.domain.is_empty() {
        (args.domain.clone(), Origin::Flag("domain"))
    } else {
        (file.domain.unwrap_or_default(), file_origin("domain"))
    };
    for domain in &domains {
        if domain.is_empty() || domain.contains(|c: char| c.is_whitespace() || c == ':') {
            return Err(invalid(domain_origin, domain, "not a domain name"));
        }
    }

    let (log, log_origin) = match (&args.log, &env.rust_log, file.log) {
        (Some(log), _, _) => (log.clone(), Origin::Flag("log")),
        (None, Some(log), _) => (log.clone(), Origin::Env("RUST_LOG")),
        (None, None, Some(log)) => (log, file_origin("log")),
        (None, None, None) => ("info".to_string(), Origin::Flag("log")),
    };
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log) {
        return Err(invalid(log_origin, &log, e));
    }

    let tls_cert = args.tls_cert.clone().or(file.tls_cert);
    let tls_key = args.tls_key.clone().or(file.tls_key);
    let tls_files = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError(
                "--tls-cert is set but --tls-key is not (both or neither)".to_string(),
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError(
                "--tls-key is set but --tls-cert is not (both or neither)".to_string(),
            ))
        }
    };

    let (workers, workers_origin) = match (args.workers, file.workers) {
        (Some(n), _) => (n, Origin::Flag("workers")),
        (None, Some(n)) => (n, file_origin("workers")),
        (None, None) => (2, Origin::Flag("workers")),
    };
    if !(1..=256).contains(&workers) {
        return Err(invalid(
            workers_origin,
            workers,
            "must be between 1 and 256",
        ));
    }

    let limits = &file.limits;
    let timers = &file.timers;
    let defaults = ServerConfig::default();
    let in_range =
        |key, value: usize, min: usize, max: usize| within(file_origin(key), value, min, max);
    let max_aors = in_range(
        "limits.max_aors",
        limits.max_aors.unwrap_or(defaults.max_aors),
        1,
        100_000_000,
    )?;
    let max_bindings_per_aor = in_range(
        "limits.max_bindings_per_aor",
        limits
            .max_bindings_per_aor
            .unwrap_or(defaults.max_bindings_per_aor),
        1,
        1_000,
    )?;
    let max_transactions = in_range(
        "limits.max_transactions",
        limits.max_transactions.unwrap_or(defaults.max_transactions),
        1,
        100_000_000,
    )?;
    let max_bindings_per_source = in_range(
        "limits.max_bindings_per_source",
        limits
            .max_bindings_per_source
            .unwrap_or(defaults.max_bindings_per_source),
        1,
        100_000_000,
    )?;
    let max_failures_per_account = within(
        file_origin("limits.max_failures_per_account"),
        limits
            .max_failures_per_account
            .unwrap_or(defaults.max_failures_per_account),
        1,
        1_000_000,
    )?;
    let max_requests_per_source = within(
        file_origin("limits.max_requests_per_source"),
        limits
            .max_requests_per_source
            .unwrap_or(defaults.max_requests_per_source),
        0,
        10_000_000,
    )?;
    let trusted_sources = parse_list(
        (&args.trusted_peer, "trusted-peer"),
        (file.trusted_peers.as_deref(), file_origin("trusted_peers")),
        parse_trusted_peer,
    )?;
    let max_connections = in_range(
        "limits.max_connections",
        limits.max_connections.unwrap_or(10_000),
        1,
        1_000_000,
    )?;
    let max_message_size = in_range(
        "limits.max_message_size",
        limits.max_message_size.unwrap_or(65_535),
        1_024,
        16 * 1024 * 1024,
    )?;
    let max_connections_per_ip = in_range(
        "limits.max_connections_per_ip",
        limits
            .max_connections_per_ip
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_IP),
        1,
        1_000_000,
    )?;
    let seconds = |key, value: Option<u64>, default: Duration, max: u64| match value {
        None => Ok(default),
        Some(secs) if (1..=max).contains(&secs) => Ok(Duration::from_secs(secs)),
        Some(secs) => Err(invalid(
            file_origin(key),
            secs,
            format_args!("must be between 1 and {max} (seconds)"),
        )),
    };
    let tcp_idle_timeout = seconds(
        "limits.tcp_idle_timeout",
        limits.tcp_idle_timeout,
        DEFAULT_TCP_IDLE_TIMEOUT,
        7 * 24 * 3600,
    )?;
    let tcp_message_timeout = seconds(
        "limits.tcp_message_timeout",
        limits.tcp_message_timeout,
        DEFAULT_TCP_MESSAGE_TIMEOUT,
        3600,
    )?;

    let min_expires = limits.min_expires.unwrap_or(defaults.min_expires);
    let max_expires = limits.max_expires.unwrap_or(defaults.max_expires);
    let default_expires = limits.default_expires.unwrap_or(defaults.default_expires);
    if max_expires == 0 {
        return Err(invalid(
            file_origin("limits.max_expires"),
            max_expires,
            "must be positive",
        ));
    }
    if min_expires > max_expires {
        return Err(invalid(
            file_origin("limits.min_expires"),
            min_expires,
            format_args!("must not exceed limits.max_expires ({max_expires})"),
        ));
    }
    if !(min_expires..=max_expires).contains(&default_expires) {
        return Err(invalid(
            file_origin("limits.default_expires"),
            default_expires,
            format_args!("must be between limits.min_expires ({min_expires}) and limits.max_expires ({max_expires})"),
        ));
    }

    let millis = |key, value: Option<u64>, default: Duration| match value {
        None => Ok(default),
        Some(0) => Err(invalid(file_origin(key), 0, "must be positive")),
        Some(ms) if ms > 3_600_000 => Err(invalid(
            file_origin(key),
            ms,
            "must be at most 3600000 (one hour)",
        )),
        Some(ms) => Ok(Duration::from_millis(ms)),
    };
    let t1 = millis("timers.t1_ms", timers.t1_ms, defaults.t1)?;
    let t2 = millis("timers.t2_ms", timers.t2_ms, defaults.t2)?;
    let t4 = millis("timers.t4_ms", timers.t4_ms, defaults.t4)?;
    if t2 < t1 {
        return Err(invalid(
            file_origin("timers.t2_ms"),
            t2.as_millis(),
            format_args!("must not be below timers.t1_ms ({})", t1.as_millis()),
        ));
    }

    let (algorithm_names, algorithms_origin) = if !args.digest_algorithms.is_empty() {
        (
            args.digest_algorithms.clone(),
            Origin::Flag("digest-algorithms"),
        )
    } else {
        (
            file.digest_algorithms.unwrap_or_default(),
            file_origin("digest_algorithms"),
        )
    };
    let digest_algorithms = algorithm_names
        .iter()
        .map(|name| {
            sip::auth::Algorithm::from_token(name.trim()).ok_or_else(|| {
                invalid(
                    algorithms_origin,
                    name,
                    "expected SHA-256, MD5, SHA-256-sess or MD5-sess",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let aliases = file.aliases.clone().unwrap_or_default();
    for alias in &aliases {
        if !crate::routing::is_host(alias) {
            return Err(invalid(
                file_origin("aliases"),
                alias,
                "expected a host name or an IP address",
            ));
        }
    }

    let server = ServerConfig {
        domains,
        open: args.open || file.open.unwrap_or(false),
        digest_algorithms,
        max_aors,
        max_bindings_per_aor,
        min_expires,
        max_expires,
        default_expires,
        max_transactions,
        t1,
        t2,
        t4,
        trusted_sources,
        max_bindings_per_source,
        max_failures_per_account,
        max_requests_per_source,
        aliases,
        ..Default::default()
    };

    let routing = routing::resolve_routing(
        &file.routing,
        overlay
            .as_ref()
            .map_or(&[][..], |o| o.authority.dns_servers.as_slice()),
        file_path.and_then(Path::parent).unwrap_or(Path::new("")),
        &file_origin,
    )?;

    Ok(NodeConfig {
        routing,
        tls_ca: file.tls_ca.clone().unwrap_or_default(),
        listen,
        data_dir,
        users_file: args.users.clone().or(file.users),
        log,
        tls_files,
        workers,
        max_connections,
        max_message_size,
        max_connections_per_ip,
        tcp_idle_timeout,
        tcp_message_timeout,
        server,
        overlay,
    })
}

/// The overlay settings: `None` when it is turned off.
fn resolve_overlay<'a>(
    args: &NodeArgs,
    file: &FileConfig,
    file_origin: &dyn Fn(&'static str) -> Origin<'a>,
) -> Result<Option<OverlaySettings>, ConfigError> {
    let enabled = !args.no_overlay && file.overlay.unwrap_or(true);
    if !enabled {
        let off = if args.no_overlay {
            "--no-overlay".to_string()
        } else {
            file_origin("overlay").to_string() + " = false"
        };
        for (flag, set) in [
            ("--p2p-listen", !args.p2p_listen.is_empty()),
            ("--bootstrap", !args.bootstrap.is_empty()),
            ("--trust-anchor", !args.trust_anchor.is_empty()),
            ("--dns-server", !args.dns_server.is_empty()),
            ("--delegation", !args.delegation.is_empty()),
            ("--authority-mode", args.authority_mode.is_some()),
            ("--role", args.role.is_some()),
            ("--promote-after", args.promote_after.is_some()),
        ] {
            if set {
                return Err(ConfigError(format!(
                    "{flag} is set but the overlay is off ({off})"
                )));
            }
        }
        return Ok(None);
    }
    let parse_all =
        |values: &[String], origin: Origin<'_>, parse: fn(&str) -> Result<Multiaddr, String>| {
            values
                .iter()
                .map(|value| parse(value).map_err(|reason| invalid(origin, value, reason)))
                .collect::<Result<Vec<_>, _>>()
        };
    let listen = if !args.p2p_listen.is_empty() {
        parse_all(
            &args.p2p_listen,
            Origin::Flag("p2p-listen"),
            parse_p2p_listen,
        )?
    } else if let Some(listen) = &file.p2p_listen {
        if listen.is_empty() {
            return Err(invalid(
                file_origin("p2p_listen"),
                listen,
                "needs at least one address",
            ));
        }
        parse_all(listen, file_origin("p2p_listen"), parse_p2p_listen)?
    } else {
        vec![default_p2p_listen()]
    };
    let bootstrap = if !args.bootstrap.is_empty() {
        parse_all(&args.bootstrap, Origin::Flag("bootstrap"), parse_bootstrap)?
    } else {
        parse_all(
            file.bootstrap.as_deref().unwrap_or_default(),
            file_origin("bootstrap"),
            parse_bootstrap,
        )?
    };
    let anchors = if !args.trust_anchor.is_empty() {
        parse_trust_anchors(&args.trust_anchor, Origin::Flag("trust-anchor"))?
    } else {
        parse_trust_anchors(
            file.trust_anchors.as_deref().unwrap_or_default(),
            file_origin("trust_anchors"),
        )?
    };
    let dns_servers = parse_list(
        (&args.dns_server, "dns-server"),
        (file.dns_servers.as_deref(), file_origin("dns_servers")),
        parse_dns_server,
    )?;
    let mode = match (&args.authority_mode, &file.authority_mode) {
        (Some(mode), _) => parse_authority_mode(mode)
            .map_err(|reason| invalid(Origin::Flag("authority-mode"), mode, reason))?,
        (None, Some(mode)) => parse_authority_mode(mode)
            .map_err(|reason| invalid(file_origin("authority_mode"), mode, reason))?,
        (None, None) => AuthorityMode::Open,
    };
    let delegation_files = if !args.delegation.is_empty() {
        args.delegation.clone()
    } else {
        file.delegations.clone().unwrap_or_default()
    };
    let role = match (&args.role, &file.role) {
        (Some(role), _) => role
            .parse()
            .map_err(|e| invalid(Origin::Flag("role"), role, e))?,
        (None, Some(role)) => role
            .parse()
            .map_err(|e| invalid(file_origin("role"), role, e))?,
        (None, None) => RoleSetting::Auto,
    };
    let promote_after = match (args.promote_after, file.promote_after) {
        (Some(secs), _) => promote_after(secs, Origin::Flag("promote-after"))?,
        (None, Some(secs)) => promote_after(secs, file_origin("promote_after"))?,
        (None, None) => DEFAULT_PROMOTE_AFTER,
    };
    Ok(Some(OverlaySettings {
        listen,
        bootstrap,
        mdns: !args.no_mdns && file.mdns.unwrap_or(true),
        authority: AuthoritySettings {
            mode,
            anchors,
            delegation_files,
            dns_servers,
        },
        role,
        promote_after,
    }))
}

fn promote_after(secs: u64, origin: Origin<'_>) -> Result<Duration, ConfigError> {
    if secs > MAX_PROMOTE_AFTER_SECS {
        return Err(invalid(
            origin,
            secs,
            format_args!("must be at most {MAX_PROMOTE_AFTER_SECS} (a week)"),
        ));
    }
    Ok(Duration::from_secs(secs))
}

fn parse_listeners(values: &[String], origin: Origin<'_>) -> Result<Vec<ListenAddr>, ConfigError> {
    values
        .iter()
        .map(|value| ListenAddr::parse(value).map_err(|reason| invalid(origin, value, reason)))
        .collect()
}

/// `$P2PSIP_DATA_DIR`, else `$XDG_DATA_HOME/p2psip`, else `$HOME/.local/share/p2psip`,
/// else `./p2psip-data`.
pub fn default_data_dir(env: &Environment) -> PathBuf {
    if let Some(dir) = &env.p2psip_data_dir {
        return PathBuf::from(dir);
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(xdg) = env.xdg_data_home.as_deref().map(Path::new) {
        if xdg.is_absolute() {
            return xdg.join("p2psip");
        }
    }
    if let Some(home) = &env.home {
        return Path::new(home).join(".local/share/p2psip");
    }
    PathBuf::from("p2psip-data")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
