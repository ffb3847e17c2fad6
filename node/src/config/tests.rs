//! Tests of configuration merging, validation and error messages.

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

/// The error message of resolving `args` in an empty environment.
fn resolve_error(args: &NodeArgs) -> String {
    resolve(args, &Environment::default()).unwrap_err().0
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
    let err = resolve_error(&args);
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
    let err = resolve_error(&args);
    assert_eq!(err, "--domain \"a b\": not a domain name");
}

#[test]
fn documented_example_parses() {
    let doc = include_str!("mod.rs");
    let example: String = doc
        .lines()
        .skip_while(|l| !l.starts_with("//! ```toml"))
        .skip(1)
        .take_while(|l| !l.starts_with("//! ```"))
        .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
        .collect();
    assert!(example.contains("[timers]"));
    let (_dir, result) = resolve_file(&example);
    let config = result.unwrap();
    assert_eq!(config.listen.len(), 3);
    assert_eq!(config.max_connections, 10_000);
}

#[test]
fn digest_algorithms_from_flag_and_file() {
    use sip::auth::Algorithm;
    let (_dir, result) = resolve_file("digest_algorithms = [\"md5\", \"SHA-256\"]\n");
    assert_eq!(
        result.unwrap().server.digest_algorithms,
        [Algorithm::Md5, Algorithm::Sha256]
    );
    let (_dir, result) = resolve_file("digest_algorithms = [\"SHA-512\"]\n");
    let err = result.unwrap_err().0;
    assert!(
        err.contains("digest_algorithms \"SHA-512\": expected"),
        "{err}"
    );
    let args = NodeArgs {
        digest_algorithms: vec!["MD5".into()],
        ..no_flags()
    };
    let config = resolve(&args, &Environment::default()).unwrap();
    assert_eq!(config.server.digest_algorithms, [Algorithm::Md5]);
    assert!(resolve_file("")
        .1
        .unwrap()
        .server
        .digest_algorithms
        .is_empty());
}

const PEER: &str = "12D3KooWLy8mUBeyYGqzYFF4Urj2aPAyUoPmW5b4UebmEgv6gFVE";

#[test]
fn overlay_defaults_on_with_mdns() {
    let config = resolve(&no_flags(), &Environment::default()).unwrap();
    let overlay = config.overlay.unwrap();
    assert_eq!(overlay.listen, [default_p2p_listen()]);
    assert_eq!(overlay.listen[0].to_string(), "/ip4/0.0.0.0/tcp/0");
    assert!(overlay.bootstrap.is_empty());
    assert!(overlay.mdns);
}

#[test]
fn overlay_flags() {
    let args = NodeArgs {
        p2p_listen: vec!["/ip4/127.0.0.1/tcp/4001".into(), "/ip6/::1/tcp/0".into()],
        bootstrap: vec![format!("/ip4/192.0.2.1/tcp/4001/p2p/{PEER}")],
        no_mdns: true,
        ..no_flags()
    };
    let overlay = resolve(&args, &Environment::default())
        .unwrap()
        .overlay
        .unwrap();
    assert_eq!(overlay.listen.len(), 2);
    assert_eq!(overlay.listen[1].to_string(), "/ip6/::1/tcp/0");
    assert_eq!(
        overlay.bootstrap[0].to_string(),
        format!("/ip4/192.0.2.1/tcp/4001/p2p/{PEER}")
    );
    assert!(!overlay.mdns);
}

#[test]
fn overlay_keys_in_file_and_flags_win() {
    let text = format!(
        "p2p_listen = [\"/ip4/127.0.0.1/tcp/4001\"]\n\
         bootstrap = [\"/dns4/seed.example/tcp/4001/p2p/{PEER}\"]\n\
         mdns = false\n"
    );
    let (_dir, result) = resolve_file(&text);
    let overlay = result.unwrap().overlay.unwrap();
    assert_eq!(overlay.listen[0].to_string(), "/ip4/127.0.0.1/tcp/4001");
    assert_eq!(overlay.bootstrap.len(), 1);
    assert!(!overlay.mdns);

    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &text);
    let args = NodeArgs {
        config: Some(path),
        p2p_listen: vec!["/ip4/127.0.0.1/tcp/5001".into()],
        ..no_flags()
    };
    let overlay = resolve(&args, &Environment::default())
        .unwrap()
        .overlay
        .unwrap();
    assert_eq!(overlay.listen[0].to_string(), "/ip4/127.0.0.1/tcp/5001");
    assert_eq!(
        overlay.bootstrap.len(),
        1,
        "the file's bootstrap list stays"
    );
}

#[test]
fn overlay_off_by_flag_or_key() {
    let args = NodeArgs {
        no_overlay: true,
        ..no_flags()
    };
    assert_eq!(
        resolve(&args, &Environment::default()).unwrap().overlay,
        None
    );
    let (_dir, result) = resolve_file("overlay = false\n");
    assert_eq!(result.unwrap().overlay, None);
    // The file describes the overlay for when it is on; --no-overlay just ignores it.
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        &format!("bootstrap = [\"/ip4/192.0.2.1/tcp/4001/p2p/{PEER}\"]\n"),
    );
    let args = NodeArgs {
        config: Some(path),
        no_overlay: true,
        ..no_flags()
    };
    assert_eq!(
        resolve(&args, &Environment::default()).unwrap().overlay,
        None
    );
}

#[test]
fn overlay_flags_contradicting_no_overlay_are_errors() {
    let args = NodeArgs {
        no_overlay: true,
        bootstrap: vec![format!("/ip4/192.0.2.1/tcp/4001/p2p/{PEER}")],
        ..no_flags()
    };
    let err = resolve_error(&args);
    assert_eq!(
        err,
        "--bootstrap is set but the overlay is off (--no-overlay)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "overlay = false\n");
    let args = NodeArgs {
        config: Some(path.clone()),
        p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        ..no_flags()
    };
    let err = resolve_error(&args);
    assert_eq!(
        err,
        format!(
            "--p2p-listen is set but the overlay is off (config {}: overlay = false)",
            path.display()
        )
    );
}

#[test]
fn bad_bootstrap_names_flag_or_key() {
    let args = NodeArgs {
        bootstrap: vec!["/ip4/192.0.2.1/tcp/4001".into()],
        ..no_flags()
    };
    let err = resolve_error(&args);
    assert_eq!(
        err,
        "--bootstrap \"/ip4/192.0.2.1/tcp/4001\": must end in /p2p/<peer id>"
    );
    let args = NodeArgs {
        bootstrap: vec!["not-a-multiaddr".into()],
        ..no_flags()
    };
    let err = resolve_error(&args);
    assert!(
        err.starts_with("--bootstrap \"not-a-multiaddr\": not a multiaddr"),
        "{err}"
    );
    let (dir, result) = resolve_file(&format!("bootstrap = [\"/p2p/{PEER}\"]\n"));
    let err = result.unwrap_err().0;
    assert_eq!(
        err,
        format!(
            "config {}: bootstrap \"/p2p/{PEER}\": needs an address before /p2p/<peer id>",
            dir.path().join("node.toml").display()
        )
    );
}

#[test]
fn bad_p2p_listen_names_flag_or_key() {
    let args = NodeArgs {
        p2p_listen: vec!["/ip4/127.0.0.1/udp/4001".into()],
        ..no_flags()
    };
    let err = resolve_error(&args);
    assert_eq!(
        err,
        "--p2p-listen \"/ip4/127.0.0.1/udp/4001\": expected /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port>"
    );
    let (_dir, result) = resolve_file("p2p_listen = [\"udp:1.2.3.4:5\"]\n");
    let err = result.unwrap_err().0;
    assert!(
        err.contains(": p2p_listen \"udp:1.2.3.4:5\": not a multiaddr"),
        "{err}"
    );
    let (_dir, result) = resolve_file("p2p_listen = []\n");
    let err = result.unwrap_err().0;
    assert!(
        err.ends_with(": p2p_listen []: needs at least one address"),
        "{err}"
    );
    let (_dir, result) = resolve_file("mdns = \"yes\"\n");
    assert!(result.unwrap_err().0.contains("invalid type"));
}

/// The text form of the authority key `02` × 32 (`overlay/WIRE.md`).
const AUTHORITY_KEY: &str = "4XTTM9qVEgiAJCAMuuMhXYiuRy8oUBPghqDDjpqVuP5du8Dgw";

#[test]
fn authority_defaults_to_open_without_anchors() {
    let config = resolve(&no_flags(), &Environment::default()).unwrap();
    let authority = config.overlay.unwrap().authority;
    assert_eq!(authority, AuthoritySettings::default());
    assert_eq!(authority.mode, AuthorityMode::Open);
    assert!(authority.anchors.is_empty());
}

#[test]
fn authority_from_file_and_flags_win() {
    let (dir, result) = resolve_file(&format!(
        "trust_anchors = [\"Example.COM={AUTHORITY_KEY}\"]\n\
         delegations = [\"node.delegations\", \"/abs/other.delegations\"]\n\
         authority_mode = \"closed\"\n"
    ));
    let authority = result.unwrap().overlay.unwrap().authority;
    assert_eq!(authority.mode, AuthorityMode::Closed);
    assert_eq!(authority.anchors.keys_for("example.com").len(), 1);
    assert_eq!(
        authority.delegation_files,
        [
            dir.path().join("node.delegations"),
            PathBuf::from("/abs/other.delegations")
        ]
    );

    let args = NodeArgs {
        config: Some(dir.path().join("node.toml")),
        trust_anchor: vec![
            format!("example.org={AUTHORITY_KEY}"),
            format!(" example.net = {AUTHORITY_KEY} "),
        ],
        delegation: vec![PathBuf::from("here.delegations")],
        authority_mode: Some("open".into()),
        ..no_flags()
    };
    let authority = resolve(&args, &Environment::default())
        .unwrap()
        .overlay
        .unwrap()
        .authority;
    assert_eq!(authority.mode, AuthorityMode::Open);
    assert!(authority.anchors.keys_for("example.com").is_empty());
    assert_eq!(
        authority.anchors.domains().collect::<Vec<_>>(),
        ["example.net", "example.org"]
    );
    assert_eq!(
        authority.delegation_files,
        [PathBuf::from("here.delegations")]
    );
}

#[test]
fn bad_authority_settings_name_flag_or_key() {
    let args = NodeArgs {
        trust_anchor: vec!["example.com".into()],
        ..no_flags()
    };
    let err = resolve_error(&args);
    assert_eq!(
        err,
        "--trust-anchor \"example.com\": expected domain=<public key>"
    );
    let args = NodeArgs {
        trust_anchor: vec!["example.com=notakey".into()],
        ..no_flags()
    };
    let err = resolve_error(&args);
    assert!(
        err.starts_with("--trust-anchor \"example.com=notakey\": public key"),
        "{err}"
    );
    let args = NodeArgs {
        authority_mode: Some("strict".into()),
        ..no_flags()
    };
    let err = resolve_error(&args);
    assert_eq!(err, "--authority-mode \"strict\": expected open or closed");

    let (dir, result) = resolve_file(&format!("trust_anchors = [\"bad host={AUTHORITY_KEY}\"]\n"));
    let err = result.unwrap_err().0;
    assert!(
        err.starts_with(&format!(
            "config {}: trust_anchors \"bad host=",
            dir.path().join("node.toml").display()
        )),
        "{err}"
    );
    let (dir, result) = resolve_file("authority_mode = \"Closed\"\n");
    assert_eq!(
        result.unwrap_err().0,
        format!(
            "config {}: authority_mode \"Closed\": expected open or closed",
            dir.path().join("node.toml").display()
        )
    );
}

#[test]
fn authority_flags_contradicting_no_overlay_are_errors() {
    for (args, flag) in [
        (
            NodeArgs {
                trust_anchor: vec![format!("example.com={AUTHORITY_KEY}")],
                ..no_flags()
            },
            "--trust-anchor",
        ),
        (
            NodeArgs {
                delegation: vec![PathBuf::from("x.delegations")],
                ..no_flags()
            },
            "--delegation",
        ),
        (
            NodeArgs {
                authority_mode: Some("closed".into()),
                ..no_flags()
            },
            "--authority-mode",
        ),
        (
            NodeArgs {
                dns_server: vec!["127.0.0.1:53".into()],
                ..no_flags()
            },
            "--dns-server",
        ),
    ] {
        let args = NodeArgs {
            no_overlay: true,
            ..args
        };
        let err = resolve_error(&args);
        assert_eq!(
            err,
            format!("{flag} is set but the overlay is off (--no-overlay)")
        );
    }
    // The file's settings are for when the overlay is on.
    let (_dir, result) = resolve_file(&format!(
        "overlay = false\ntrust_anchors = [\"example.com={AUTHORITY_KEY}\"]\n"
    ));
    assert_eq!(result.unwrap().overlay, None);
}

#[test]
fn role_defaults_to_auto_and_flags_win() {
    let overlay = resolve(&no_flags(), &Environment::default())
        .unwrap()
        .overlay
        .unwrap();
    assert_eq!(overlay.role, RoleSetting::Auto);
    assert_eq!(overlay.promote_after, DEFAULT_PROMOTE_AFTER);

    let (dir, result) = resolve_file("role = \"peer\"\npromote_after = 0\n");
    let overlay = result.unwrap().overlay.unwrap();
    assert_eq!(overlay.role, RoleSetting::Peer);
    assert_eq!(overlay.promote_after, Duration::ZERO);

    let args = NodeArgs {
        config: Some(dir.path().join("node.toml")),
        role: Some("supernode".into()),
        promote_after: Some(30),
        ..no_flags()
    };
    let overlay = resolve(&args, &Environment::default())
        .unwrap()
        .overlay
        .unwrap();
    assert_eq!(overlay.role, RoleSetting::Supernode);
    assert_eq!(overlay.promote_after, Duration::from_secs(30));
}

#[test]
fn bad_role_settings_name_flag_or_key() {
    let args = NodeArgs {
        role: Some("relay".into()),
        ..no_flags()
    };
    let err = resolve_error(&args);
    assert_eq!(err, "--role \"relay\": expected auto, peer or supernode");
    let args = NodeArgs {
        promote_after: Some(604_801),
        ..no_flags()
    };
    let err = resolve_error(&args);
    assert_eq!(
        err,
        "--promote-after 604801: must be at most 604800 (a week)"
    );
    let (dir, result) = resolve_file("role = \"Peer\"\n");
    assert_eq!(
        result.unwrap_err().0,
        format!(
            "config {}: role \"Peer\": expected auto, peer or supernode",
            dir.path().join("node.toml").display()
        )
    );
    let (_dir, result) = resolve_file("promote_after = -1\n");
    assert!(result.is_err());
    for (args, flag) in [
        (
            NodeArgs {
                role: Some("peer".into()),
                ..no_flags()
            },
            "--role",
        ),
        (
            NodeArgs {
                promote_after: Some(1),
                ..no_flags()
            },
            "--promote-after",
        ),
    ] {
        let args = NodeArgs {
            no_overlay: true,
            ..args
        };
        let err = resolve_error(&args);
        assert_eq!(
            err,
            format!("{flag} is set but the overlay is off (--no-overlay)")
        );
    }
}

#[test]
fn dns_servers_from_file_and_flags_win() {
    let (dir, result) = resolve_file("dns_servers = [\"192.0.2.53\", \"[2001:db8::53]:5353\"]\n");
    let authority = result.unwrap().overlay.unwrap().authority;
    assert_eq!(
        authority.dns_servers,
        [
            "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
            "[2001:db8::53]:5353".parse().unwrap()
        ]
    );

    let args = NodeArgs {
        config: Some(dir.path().join("node.toml")),
        dns_server: vec!["127.0.0.1:10053".into()],
        ..no_flags()
    };
    let authority = resolve(&args, &Environment::default())
        .unwrap()
        .overlay
        .unwrap()
        .authority;
    assert_eq!(
        authority.dns_servers,
        ["127.0.0.1:10053".parse::<SocketAddr>().unwrap()]
    );

    let args = NodeArgs {
        dns_server: vec!["ns.example:53".into()],
        ..no_flags()
    };
    let err = resolve_error(&args);
    assert!(
        err.starts_with("--dns-server \"ns.example:53\": expected IP:PORT"),
        "{err}"
    );
    let (_dir, result) = resolve_file("dns_servers = [\"nope\"]\n");
    let err = result.unwrap_err().0;
    assert!(
        err.contains("dns_servers \"nope\": expected IP:PORT"),
        "{err}"
    );
}

#[test]
fn stream_limits_have_defaults_and_are_checked() {
    let (_dir, result) = resolve_file("");
    let config = result.unwrap();
    assert_eq!(
        config.max_connections_per_ip,
        DEFAULT_MAX_CONNECTIONS_PER_IP
    );
    assert_eq!(config.tcp_idle_timeout, DEFAULT_TCP_IDLE_TIMEOUT);
    assert_eq!(config.tcp_message_timeout, DEFAULT_TCP_MESSAGE_TIMEOUT);
    // Fewer per address than in total, so that a few addresses cannot take them all.
    assert!(config.max_connections_per_ip * 100 < config.max_connections);

    let (_dir, result) = resolve_file(
        "[limits]\nmax_connections_per_ip = 5\ntcp_idle_timeout = 30\ntcp_message_timeout = 3\n",
    );
    let config = result.unwrap();
    assert_eq!(config.max_connections_per_ip, 5);
    assert_eq!(config.tcp_idle_timeout, Duration::from_secs(30));
    assert_eq!(config.tcp_message_timeout, Duration::from_secs(3));

    for (text, expected) in [
        (
            "max_connections_per_ip = 0",
            "limits.max_connections_per_ip 0: must be between 1 and",
        ),
        (
            "tcp_idle_timeout = 0",
            "limits.tcp_idle_timeout 0: must be between 1 and 604800",
        ),
        (
            "tcp_message_timeout = 3601",
            "limits.tcp_message_timeout 3601: must be between 1 and 3600",
        ),
    ] {
        let (_dir, result) = resolve_file(&format!("[limits]\n{text}\n"));
        let err = result.unwrap_err().0;
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn security_keys_in_file_and_flags() {
    let (_dir, result) = resolve_file(
        "trusted_peers = [\"192.0.2.10\", \"198.51.100.7/24\"]\n\
         [limits]\nmax_bindings_per_source = 50\nmax_failures_per_account = 5\n\
         max_requests_per_source = 0\n",
    );
    let config = result.unwrap();
    let peers: Vec<String> = config
        .server
        .trusted_sources
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(peers, ["192.0.2.10/32", "198.51.100.0/24"]);
    assert_eq!(config.server.max_bindings_per_source, 50);
    assert_eq!(config.server.max_failures_per_account, 5);
    assert_eq!(config.server.max_requests_per_source, 0);

    let defaults = resolve(&no_flags(), &Environment::default())
        .unwrap()
        .server;
    assert!(defaults.trusted_sources.is_empty());
    assert_eq!(defaults.max_requests_per_source, 2_000);

    let args = NodeArgs {
        trusted_peer: vec!["2001:db8::1".into()],
        ..no_flags()
    };
    let config = resolve(&args, &Environment::default()).unwrap();
    assert_eq!(config.server.trusted_sources.len(), 1);
}

#[test]
fn bad_security_keys_name_the_key() {
    let (_dir, result) = resolve_file("trusted_peers = [\"not-an-address\"]\n");
    let err = result.unwrap_err().0;
    assert!(
        err.contains("trusted_peers \"not-an-address\": expected an IP address or prefix"),
        "{err}"
    );
    let args = NodeArgs {
        trusted_peer: vec!["10.0.0.0/33".into()],
        ..no_flags()
    };
    assert!(resolve_error(&args).starts_with("--trusted-peer \"10.0.0.0/33\""));
    let (_dir, result) = resolve_file("[limits]\nmax_failures_per_account = 0\n");
    assert!(result
        .unwrap_err()
        .0
        .contains("limits.max_failures_per_account 0: must be between 1 and 1000000"));
    let (_dir, result) = resolve_file("[limits]\nmax_bindings_per_source = 0\n");
    assert!(result
        .unwrap_err()
        .0
        .contains("limits.max_bindings_per_source 0"));
}
