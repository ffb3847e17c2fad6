//! Command-line surface. Values are kept raw here (strings, options) and validated in
//! [`crate::config`], so that a bad value in a flag and the same value in the config file
//! produce errors worded the same way.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "p2psip", version, about = "A peer-to-peer SIP node")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands. Each variant takes its own argument struct so that later ones (`domain`,
/// `sim`) can be added without touching the others.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: SIP registrar and proxy on the configured listeners.
    Node(NodeArgs),
    /// Look an address-of-record up in the overlay and print its registration record.
    /// Exit status: 0 when it has live bindings, 1 when it has none or the lookup failed,
    /// 2 for a usage error.
    Lookup(LookupArgs),
    /// Print the overlay peers a short-lived client learns from the bootstrap nodes.
    Peers(ClientArgs),
}

/// Arguments of `p2psip node`. Every option can also be set in the `--config` file; values
/// given here override the file.
#[derive(Debug, Default, Args)]
pub struct NodeArgs {
    /// Address to listen on, as TRANSPORT:IP:PORT with TRANSPORT one of udp, tcp, tls
    /// (IPv6 as udp:[::1]:5060). Repeatable. Default: udp:0.0.0.0:5060, tcp:0.0.0.0:5060,
    /// tls:0.0.0.0:5061.
    #[arg(long = "listen", value_name = "TRANSPORT:IP:PORT")]
    pub listen: Vec<String>,

    /// Directory for node state (node.json, generated TLS certificate). Default:
    /// $P2PSIP_DATA_DIR, else $XDG_DATA_HOME/p2psip, else $HOME/.local/share/p2psip,
    /// else ./p2psip-data.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// SIP domain this node serves (repeatable). None: accept any domain.
    #[arg(long = "domain", value_name = "NAME")]
    pub domain: Vec<String>,

    /// TOML file of users allowed to register ([[user]] tables).
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,

    /// Accept REGISTER without authentication.
    #[arg(long)]
    pub open: bool,

    /// Digest algorithms to challenge with, most preferred first (comma-separated:
    /// SHA-256, MD5). Default: SHA-256,MD5. Put MD5 first for phones that only answer the
    /// first challenge and cannot do SHA-256.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub digest_algorithms: Vec<String>,

    /// Log filter (tracing EnvFilter syntax). Default: $RUST_LOG, else the config file,
    /// else "info".
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,

    /// PEM certificate chain for TLS listeners. Without it a self-signed certificate is
    /// generated into DATA_DIR/tls/.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key matching --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Runtime worker threads. Default: 2.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Overlay (libp2p) listen address as a multiaddr, e.g. /ip4/0.0.0.0/tcp/4001.
    /// Repeatable. Default: /ip4/0.0.0.0/tcp/0 (a free port).
    #[arg(long = "p2p-listen", value_name = "MULTIADDR")]
    pub p2p_listen: Vec<String>,

    /// Overlay node to join through, as a multiaddr ending in /p2p/<peer id> (see the
    /// p2p_addrs of another node's node.json). Repeatable.
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,

    /// Single-node mode: no overlay, no libp2p at all.
    #[arg(long)]
    pub no_overlay: bool,

    /// Do not discover overlay nodes on the local network by multicast DNS.
    #[arg(long)]
    pub no_mdns: bool,
}

/// How the short-lived overlay client of `lookup` and `peers` finds the overlay.
#[derive(Debug, Default, Args)]
pub struct ClientArgs {
    /// Overlay node to ask, as a multiaddr ending in /p2p/<peer id>. Repeatable. Default: the
    /// p2p_addrs of DATA_DIR/node.json (the local node).
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,

    /// Data directory of the local node, whose node.json gives the bootstrap addresses when
    /// --bootstrap is not given. Default: as for `p2psip node`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Also discover overlay nodes on the local network by multicast DNS.
    #[arg(long)]
    pub mdns: bool,

    /// Give up after this many seconds. Default: 15.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub timeout: u64,

    /// Log filter (tracing EnvFilter syntax). Default: $RUST_LOG, else "warn".
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
}

/// Arguments of `p2psip lookup`.
#[derive(Debug, Args)]
pub struct LookupArgs {
    /// The address-of-record: user@domain or a sip:/sips: URI.
    #[arg(value_name = "AOR")]
    pub aor: String,

    #[command(flatten)]
    pub client: ClientArgs,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn node_flags_parse() {
        let cli = Cli::try_parse_from([
            "p2psip",
            "node",
            "--listen",
            "udp:127.0.0.1:0",
            "--listen",
            "tcp:[::1]:5070",
            "--domain",
            "a.example",
            "--open",
            "--workers",
            "4",
        ])
        .unwrap();
        let Command::Node(args) = cli.command else {
            panic!("not the node subcommand");
        };
        assert_eq!(args.listen, ["udp:127.0.0.1:0", "tcp:[::1]:5070"]);
        assert_eq!(args.domain, ["a.example"]);
        assert!(args.open);
        assert_eq!(args.workers, Some(4));
        assert_eq!(args.config, None);
        assert!(!args.no_overlay);
        assert!(!args.no_mdns);
    }

    #[test]
    fn overlay_flags_parse() {
        let cli = Cli::try_parse_from([
            "p2psip",
            "node",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--p2p-listen",
            "/ip6/::1/tcp/4001",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWA",
            "--no-mdns",
            "--no-overlay",
        ])
        .unwrap();
        let Command::Node(args) = cli.command else {
            panic!("not the node subcommand");
        };
        assert_eq!(args.p2p_listen.len(), 2);
        assert_eq!(args.bootstrap.len(), 1);
        assert!(args.no_mdns);
        assert!(args.no_overlay);
    }

    #[test]
    fn lookup_and_peers_parse() {
        let cli = Cli::try_parse_from([
            "p2psip",
            "lookup",
            "alice@example.com",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWA",
            "--data-dir",
            "/tmp/x",
        ])
        .unwrap();
        let Command::Lookup(args) = cli.command else {
            panic!("not the lookup subcommand");
        };
        assert_eq!(args.aor, "alice@example.com");
        assert_eq!(args.client.bootstrap.len(), 1);
        assert_eq!(args.client.timeout, 15);
        assert!(!args.client.mdns);
        let cli = Cli::try_parse_from(["p2psip", "peers", "--mdns", "--timeout", "3"]).unwrap();
        let Command::Peers(args) = cli.command else {
            panic!("not the peers subcommand");
        };
        assert!(args.mdns);
        assert_eq!(args.timeout, 3);
        assert!(Cli::try_parse_from(["p2psip", "lookup"]).is_err());
    }
}
