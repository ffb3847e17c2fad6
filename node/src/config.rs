//! Node configuration: the `--config` TOML file merged with command-line flags (flags win),
//! validated into a [`NodeConfig`]. Every error names where the bad value came from (the
//! flag, or the file and key) so the user can fix it without guessing.

use crate::cli::NodeArgs;
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
    log: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    workers: Option<usize>,
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
    max_connections: Option<usize>,
    max_message_size: Option<usize>,
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
    pub workers: usize,
    /// Bound on concurrent stream connections (inbound and outbound).
    pub max_connections: usize,
    /// Largest message accepted on a stream before the connection is closed.
    pub max_message_size: usize,
    /// Server settings except `listeners` and `users`, which are filled in at start-up.
    pub server: ServerConfig,
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
    let in_range = |key, value: usize, min: usize, max: usize| {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(
                file_origin(key),
                value,
                format_args!("must be between {min} and {max}"),
            ))
        }
    };
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

    let server = ServerConfig {
        domains,
        open: args.open || file.open.unwrap_or(false),
        max_aors,
        max_bindings_per_aor,
        min_expires,
        max_expires,
        default_expires,
        max_transactions,
        t1,
        t2,
        t4,
        ..Default::default()
    };

    Ok(NodeConfig {
        listen,
        data_dir,
        users_file: args.users.clone().or(file.users),
        log,
        tls_files,
        workers,
        max_connections,
        max_message_size,
        server,
    })
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
mod tests {
    use super::*;
    use std::io::Write;

    fn no_flags() -> NodeArgs {
        NodeArgs::default()
    }

    fn write_config(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("node.toml");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
        path
    }

    fn resolve_file(text: &str) -> (tempfile::TempDir, Result<NodeConfig, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(&dir, text);
        let args = NodeArgs {
            config: Some(path),
            ..no_flags()
        };
        let result = resolve(&args, &Environment::default());
        (dir, result)
    }

    #[test]
    fn listen_parses_v4_v6_and_transports() {
        let a = ListenAddr::parse("udp:0.0.0.0:5060").unwrap();
        assert_eq!(a.transport, Transport::Udp);
        assert_eq!(a.addr, "0.0.0.0:5060".parse().unwrap());
        let b = ListenAddr::parse("TLS:[::1]:5061").unwrap();
        assert_eq!(b.transport, Transport::Tls);
        assert_eq!(b.addr, "[::1]:5061".parse().unwrap());
        assert_eq!(b.to_string(), "tls:[::1]:5061");
        let c = ListenAddr::parse("tcp:127.0.0.1:0").unwrap();
        assert_eq!(c.addr.port(), 0);
    }

    #[test]
    fn listen_rejects_bad_values() {
        assert_eq!(
            ListenAddr::parse("udp:1.2.3:5060").unwrap_err(),
            "bad address"
        );
        assert_eq!(
            ListenAddr::parse("udp:::1:5060").unwrap_err(),
            "bad address"
        );
        assert_eq!(ListenAddr::parse("udp:1.2.3.4").unwrap_err(), "bad address");
        assert!(ListenAddr::parse("sctp:1.2.3.4:5060")
            .unwrap_err()
            .contains("unknown transport \"sctp\""));
        assert!(ListenAddr::parse("1.2.3.4")
            .unwrap_err()
            .contains("expected"));
    }

    #[test]
    fn bad_listen_flag_names_flag_and_value() {
        let args = NodeArgs {
            listen: vec!["udp:1.2.3:5060".to_string()],
            ..no_flags()
        };
        let err = resolve(&args, &Environment::default()).unwrap_err();
        assert_eq!(err.0, "--listen \"udp:1.2.3:5060\": bad address");
    }

    #[test]
    fn defaults_without_file() {
        let env = Environment {
            home: Some("/home/u".into()),
            ..Default::default()
        };
        let config = resolve(&no_flags(), &env).unwrap();
        assert_eq!(config.listen, default_listeners());
        assert_eq!(
            config.data_dir,
            PathBuf::from("/home/u/.local/share/p2psip")
        );
        assert_eq!(config.log, "info");
        assert_eq!(config.workers, 2);
        assert_eq!(config.max_connections, 10_000);
        assert!(!config.server.open);
        assert!(config.server.domains.is_empty());
        assert_eq!(config.tls_files, None);
    }

    #[test]
    fn data_dir_fallback_chain() {
        let mut env = Environment {
            p2psip_data_dir: Some("/d".into()),
            xdg_data_home: Some("/x".into()),
            home: Some("/h".into()),
            rust_log: None,
        };
        assert_eq!(default_data_dir(&env), PathBuf::from("/d"));
        env.p2psip_data_dir = None;
        assert_eq!(default_data_dir(&env), PathBuf::from("/x/p2psip"));
        env.xdg_data_home = Some("relative".into());
        assert_eq!(
            default_data_dir(&env),
            PathBuf::from("/h/.local/share/p2psip")
        );
        env.home = None;
        assert_eq!(default_data_dir(&env), PathBuf::from("p2psip-data"));
    }

    #[test]
    fn full_file_maps_onto_server_config() {
        let (dir, result) = resolve_file(
            r#"
listen = ["udp:127.0.0.1:5070", "tcp:[::1]:5070"]
data_dir = "state"
domain = ["a.example", "b.example"]
users = "users.toml"
open = true
log = "debug"
workers = 3

[limits]
max_aors = 10
max_bindings_per_aor = 2
min_expires = 30
max_expires = 600
default_expires = 120
max_transactions = 99
max_connections = 7
max_message_size = 4096

[timers]
t1_ms = 100
t2_ms = 800
t4_ms = 1000
"#,
        );
        let config = result.unwrap();
        assert_eq!(config.listen.len(), 2);
        assert_eq!(config.listen[1].addr, "[::1]:5070".parse().unwrap());
        assert_eq!(config.data_dir, dir.path().join("state"));
        assert_eq!(config.users_file, Some(dir.path().join("users.toml")));
        assert_eq!(config.log, "debug");
        assert_eq!(config.workers, 3);
        assert_eq!(config.max_connections, 7);
        assert_eq!(config.max_message_size, 4096);
        let server = &config.server;
        assert_eq!(server.domains, ["a.example", "b.example"]);
        assert!(server.open);
        assert_eq!(server.max_aors, 10);
        assert_eq!(server.max_bindings_per_aor, 2);
        assert_eq!(
            (
                server.min_expires,
                server.max_expires,
                server.default_expires
            ),
            (30, 600, 120)
        );
        assert_eq!(server.max_transactions, 99);
        assert_eq!(server.t1, Duration::from_millis(100));
        assert_eq!(server.t2, Duration::from_millis(800));
        assert_eq!(server.t4, Duration::from_millis(1000));
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            &dir,
            "listen = [\"udp:127.0.0.1:1\"]\nworkers = 3\nlog = \"debug\"\ndomain = [\"f.example\"]\n",
        );
        let args = NodeArgs {
            config: Some(path),
            listen: vec!["tcp:127.0.0.1:2".into()],
            workers: Some(1),
            log: Some("warn".into()),
            domain: vec!["c.example".into()],
            data_dir: Some("/flag".into()),
            ..no_flags()
        };
        let config = resolve(&args, &Environment::default()).unwrap();
        assert_eq!(config.listen[0].to_string(), "tcp:127.0.0.1:2");
        assert_eq!(config.workers, 1);
        assert_eq!(config.log, "warn");
        assert_eq!(config.server.domains, ["c.example"]);
        assert_eq!(config.data_dir, PathBuf::from("/flag"));
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let (dir, result) = resolve_file("lissen = [\"udp:0.0.0.0:5060\"]\n");
        let err = result.unwrap_err().0;
        let path = dir.path().join("node.toml");
        assert!(
            err.starts_with(&format!(
                "config {}: unknown field `lissen`",
                path.display()
            )),
            "{err}"
        );
        assert!(err.contains("expected one of"), "{err}");
        assert!(err.contains("(line 1)"), "{err}");
    }

    #[test]
    fn unknown_key_in_limits_is_named() {
        let (_dir, result) = resolve_file("[limits]\nmax_aor = 3\n");
        let err = result.unwrap_err().0;
        assert!(err.contains("unknown field `max_aor`"), "{err}");
        assert!(err.contains("(line 2)"), "{err}");
    }

    #[test]
    fn wrong_type_is_reported() {
        let (_dir, result) = resolve_file("workers = \"two\"\n");
        let err = result.unwrap_err().0;
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn bad_values_in_file_name_key() {
        let (_dir, result) = resolve_file("listen = [\"udp:1.2.3:5060\"]\n");
        let err = result.unwrap_err().0;
        assert!(
            err.ends_with(": listen \"udp:1.2.3:5060\": bad address"),
            "{err}"
        );
        let (_dir, result) = resolve_file("[limits]\nmin_expires = 900\nmax_expires = 600\n");
        let err = result.unwrap_err().0;
        assert!(err.contains("limits.min_expires 900"), "{err}");
        let (_dir, result) = resolve_file("[timers]\nt1_ms = 0\n");
        assert!(result
            .unwrap_err()
            .0
            .contains("timers.t1_ms 0: must be positive"));
        let (_dir, result) = resolve_file("workers = 0\n");
        assert!(result.unwrap_err().0.contains("workers 0:"));
        let (_dir, result) = resolve_file("[limits]\nmax_connections = 0\n");
        assert!(result.unwrap_err().0.contains("limits.max_connections 0"));
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let args = NodeArgs {
            config: Some("/nonexistent/p2psip.toml".into()),
            ..no_flags()
        };
        let err = resolve(&args, &Environment::default()).unwrap_err().0;
        assert!(
            err.starts_with("config /nonexistent/p2psip.toml: "),
            "{err}"
        );
    }

    #[test]
    fn tls_files_need_both() {
        let args = NodeArgs {
            tls_cert: Some("c.pem".into()),
            ..no_flags()
        };
        assert!(resolve(&args, &Environment::default()).is_err());
        let args = NodeArgs {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..no_flags()
        };
        let config = resolve(&args, &Environment::default()).unwrap();
        assert_eq!(
            config.tls_files,
            Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
    }

    #[test]
    fn log_precedence_and_validation() {
        let env = Environment {
            rust_log: Some("trace".into()),
            ..Default::default()
        };
        assert_eq!(resolve(&no_flags(), &env).unwrap().log, "trace");
        let flagged = NodeArgs {
            log: Some("warn".into()),
            ..no_flags()
        };
        assert_eq!(resolve(&flagged, &env).unwrap().log, "warn");
        let bad = NodeArgs {
            log: Some("p2psip=notalevel".into()),
            ..no_flags()
        };
        let err = resolve(&bad, &Environment::default()).unwrap_err().0;
        assert!(err.starts_with("--log \"p2psip=notalevel\": "), "{err}");
    }

    #[test]
    fn bad_domain_is_rejected() {
        let args = NodeArgs {
            domain: vec!["a b".into()],
            ..no_flags()
        };
        let err = resolve(&args, &Environment::default()).unwrap_err().0;
        assert_eq!(err, "--domain \"a b\": not a domain name");
    }
}
