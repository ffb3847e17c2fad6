//! Command-line surface. Values are kept raw here (strings, options) and validated in
//! [`crate::config`], so that a bad value in a flag and the same value in the config file
//! produce errors worded the same way.

use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The node's commands alone, for tests; the binary adds `sim` to them.
#[cfg(test)]
#[derive(Debug, clap::Parser)]
#[command(name = "p2psip", version, about = "A peer-to-peer SIP node")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The node's subcommands (the binary adds `sim`). Each variant takes its own argument
/// struct so that later ones can be added without touching the others.
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Show how a node with this configuration routes a URI: each step of the routing
    /// chain (ENUM NAPTR, RFC 3263 NAPTR/SRV/A, peering route), the authorisation a caller
    /// needs, and the target sets in order, or why there is none. The overlay is not
    /// consulted. Exit status: 0 when routed, 1 when not, 2 for a usage error.
    Route(RouteArgs),
    /// Look an E.164 number up in ENUM as a node with this configuration does, and print
    /// the NAPTR records used and the URI. Exit status: 0 when found, 1 when not, 2 for a
    /// usage error.
    Enum(EnumArgs),
    /// Domain authority: create a domain's key, delegate the domain to a node, show the
    /// key. Exit status: 0 on success, 2 when an argument or input file is wrong (a missing
    /// key, a key that would be overwritten, a bad peer id), 1 when a file cannot be
    /// written.
    #[command(subcommand)]
    Domain(DomainCommand),
}

/// Arguments of `p2psip route`: the URI, and the node's own options.
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The Request-URI to route (sip:, sips: or tel:).
    pub uri: String,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Arguments of `p2psip enum`: the number, and the node's own options.
#[derive(Debug, Args)]
pub struct EnumArgs {
    /// The number, in E.164 form (+4312345).
    pub number: String,
    #[command(flatten)]
    pub node: NodeArgs,
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

    /// Accept REGISTER without authentication (a LAN without accounts): an
    /// address-of-record then belongs to the source address holding its live bindings, and
    /// nothing is relayed outside the served domains except for --trusted-peer sources.
    #[arg(long)]
    pub open: bool,

    /// A source trusted like an overlay node (a provider's, gateway's or peer proxy's
    /// address or prefix, e.g. 192.0.2.10 or 192.0.2.0/24; repeatable): it may send
    /// requests to any destination and its P-Asserted-Identity is kept.
    #[arg(long = "trusted-peer", value_name = "ADDR[/PREFIX]")]
    pub trusted_peer: Vec<String>,

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

    /// A domain authority's public key, as DOMAIN=KEY (the "trust anchor" line of
    /// `p2psip domain init`). Repeatable; several keys for one domain allow a rotation.
    /// Registrations of a domain with anchors count only with a delegation signed by one.
    #[arg(long = "trust-anchor", value_name = "DOMAIN=KEY")]
    pub trust_anchor: Vec<String>,

    /// Name server asked for the authority key of each served domain (--domain) that has no
    /// --trust-anchor: `TXT _p2psip.<domain>` holding `v=p2psip1; k=<key>`, looked up at
    /// start-up and every 10 minutes. IP:PORT, or IP for port 53. Repeatable. Default: the
    /// system's name servers (/etc/resolv.conf).
    #[arg(long = "dns-server", value_name = "IP:PORT")]
    pub dns_server: Vec<String>,

    /// File of delegations for this node, from `p2psip domain delegate`. Repeatable.
    /// Checked at start-up: each must name this node and, when its domain has trust
    /// anchors, be signed by one of them.
    #[arg(long = "delegation", value_name = "FILE")]
    pub delegation: Vec<PathBuf>,

    /// Domains without a trust anchor: "open" accepts registrations signed by their serving
    /// node alone, "closed" refuses them. Default: open.
    #[arg(long, value_name = "MODE")]
    pub authority_mode: Option<String>,

    /// Overlay role: "supernode" (DHT server and relay for peers behind NAT), "peer" (DHT
    /// client holding a relay reservation on a supernode), or "auto": a peer that becomes a
    /// supernode once AutoNAT confirms a public address and the node has been up for
    /// --promote-after, and a peer again when the confirmation is lost. An auto node stores
    /// records (DHT server) as long as it is connected to no supernode. Default: auto.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,

    /// With --role auto, seconds the node must have been up before it can become a
    /// supernode. Default: 600.
    #[arg(long, value_name = "SECONDS")]
    pub promote_after: Option<u64>,
}

/// `p2psip domain` subcommands.
#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Create the authority key of a domain and print its public key, the DNS TXT record
    /// and the trust-anchor line for node configurations. Never overwrites a key.
    Init(DomainInitArgs),
    /// Delegate a domain to a node: sign a delegation for its peer id, append it to a
    /// delegation file (for `p2psip node --delegation`) and print it.
    Delegate(DomainDelegateArgs),
    /// Print the public key, DNS TXT record and trust-anchor line of an authority key.
    ShowKey(DomainShowKeyArgs),
    /// Sign the domain's authority record and publish it in the overlay's DHT, where it is
    /// kept first-come (open mode): from then on nodes want a delegation from this key for
    /// the domain's registrations. Exit status 0: put to at least one node; 1: not; 2:
    /// usage.
    Publish(DomainPublishArgs),
}

/// Arguments of `p2psip domain publish`.
#[derive(Debug, Args)]
pub struct DomainPublishArgs {
    /// The domain. Default: the file name of --key (`<domain>.key`), else the domain of
    /// the only key in DATA_DIR/authority/.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,

    /// The authority key file. Default: DATA_DIR/authority/<domain>.key.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// How to reach the overlay; --data-dir also locates the default key.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Where the authority key file is.
#[derive(Debug, Default, Args)]
pub struct AuthorityKeyArgs {
    /// The authority key file. Default: DATA_DIR/authority/<domain>.key.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Data directory holding authority/. Default: as for `p2psip node`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Arguments of `p2psip domain init`.
#[derive(Debug, Args)]
pub struct DomainInitArgs {
    /// The domain, e.g. example.com.
    #[arg(value_name = "DOMAIN")]
    pub domain: String,

    #[command(flatten)]
    pub key: AuthorityKeyArgs,
}

/// Arguments of `p2psip domain delegate`.
#[derive(Debug, Args)]
pub struct DomainDelegateArgs {
    /// The node's peer id (the peer_id of its node.json).
    #[arg(value_name = "PEER_ID")]
    pub peer_id: String,

    /// The domain delegated.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: String,

    #[command(flatten)]
    pub key: AuthorityKeyArgs,

    /// Days the delegation is valid, from now.
    #[arg(long, value_name = "N", default_value_t = 365,
          value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub days: u64,

    /// Delegation file to append to (created if missing; it must hold delegations for the
    /// same node only). Default: DATA_DIR/authority/<peer id>.delegations.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Arguments of `p2psip domain show-key`.
#[derive(Debug, Args)]
pub struct DomainShowKeyArgs {
    /// The key's domain, for the default key file and the printed lines. Default: the
    /// domain of the only key in DATA_DIR/authority/.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,

    #[command(flatten)]
    pub key: AuthorityKeyArgs,
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

    /// Trusted authority key of a domain, as DOMAIN=KEY (as printed by `p2psip domain
    /// init`). Repeatable. Entries of that domain without a delegation from this key are
    /// ignored, as the nodes themselves do.
    #[arg(long = "trust-anchor", value_name = "DOMAIN=KEY")]
    pub trust_anchor: Vec<String>,

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

    /// Look the AoR up this many times (at most 10000) over one overlay connection, one
    /// lookup at a time, and print latency percentiles instead of the record. Exit status 0
    /// only when every lookup found live bindings. All of it is bounded by --timeout.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: u32,

    #[command(flatten)]
    pub client: ClientArgs,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

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

    #[test]
    fn authority_flags_and_domain_subcommands_parse() {
        let cli = Cli::try_parse_from([
            "p2psip",
            "node",
            "--trust-anchor",
            "a.example=K1",
            "--trust-anchor",
            "b.example=K2",
            "--delegation",
            "node.delegations",
            "--authority-mode",
            "closed",
        ])
        .unwrap();
        let Command::Node(args) = cli.command else {
            panic!("not the node subcommand");
        };
        assert_eq!(args.trust_anchor, ["a.example=K1", "b.example=K2"]);
        assert_eq!(args.delegation, [PathBuf::from("node.delegations")]);
        assert_eq!(args.authority_mode.as_deref(), Some("closed"));
        assert_eq!((args.role, args.promote_after), (None, None));

        let cli = Cli::try_parse_from([
            "p2psip",
            "node",
            "--role",
            "supernode",
            "--promote-after",
            "30",
        ])
        .unwrap();
        let Command::Node(args) = cli.command else {
            panic!("not the node subcommand");
        };
        assert_eq!(args.role.as_deref(), Some("supernode"));
        assert_eq!(args.promote_after, Some(30));

        let cli = Cli::try_parse_from([
            "p2psip",
            "domain",
            "delegate",
            "12D3KooWA",
            "--domain",
            "a.example",
        ])
        .unwrap();
        let Command::Domain(DomainCommand::Delegate(args)) = cli.command else {
            panic!("not domain delegate");
        };
        assert_eq!((args.peer_id.as_str(), args.days), ("12D3KooWA", 365));
        assert_eq!((args.out, args.key.key), (None, None));
        for bad in [
            &["p2psip", "domain", "delegate", "12D3KooWA"][..],
            &[
                "p2psip", "domain", "delegate", "P", "--domain", "d", "--days", "0",
            ],
            &["p2psip", "domain", "init"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from(["p2psip", "domain", "show-key", "--key", "k"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Domain(DomainCommand::ShowKey(_))
        ));

        let cli = Cli::try_parse_from([
            "p2psip",
            "domain",
            "publish",
            "--key",
            "k",
            "--domain",
            "a.example",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/1/p2p/P",
            "--data-dir",
            "d",
        ])
        .unwrap();
        let Command::Domain(DomainCommand::Publish(args)) = cli.command else {
            panic!("not domain publish");
        };
        assert_eq!(args.domain.as_deref(), Some("a.example"));
        assert_eq!(args.key, Some(PathBuf::from("k")));
        assert_eq!(args.client.bootstrap.len(), 1);
        assert_eq!(args.client.data_dir, Some(PathBuf::from("d")));
        assert_eq!(args.client.timeout, 15);
    }
}
