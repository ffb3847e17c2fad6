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

/// Subcommands. Each variant takes its own argument struct so that later ones (`lookup`,
/// `peers`, `domain`, `sim`) can be added without touching `node`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: SIP registrar and proxy on the configured listeners.
    Node(NodeArgs),
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
        let Command::Node(args) = cli.command;
        assert_eq!(args.listen, ["udp:127.0.0.1:0", "tcp:[::1]:5070"]);
        assert_eq!(args.domain, ["a.example"]);
        assert!(args.open);
        assert_eq!(args.workers, Some(4));
        assert_eq!(args.config, None);
    }
}
