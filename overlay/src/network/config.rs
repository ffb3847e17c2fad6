//! Settings of one overlay node and the persistent node identity.

use std::fs;
use std::io::{self, Write as _};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};

use super::roles::RoleSetting;
use crate::authority::{Delegation, TrustAnchors};
use crate::record::MAX_RECORD_BYTES;
use crate::validate::{AuthorityMode, RecordValidator};

/// File name of the node keypair inside the data directory.
pub const NODE_KEY_FILE: &str = "node.key";

/// How this node takes part in the Kademlia DHT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DhtMode {
    /// As the node's role says: a supernode answers DHT requests and stores records for
    /// others, a configured `peer` only queries, and an `auto` node that is a peer stores
    /// records until it is connected to a supernode (so an overlay of `auto` nodes with no
    /// supernode, such as a LAN, still stores records).
    #[default]
    ByRole,
    /// Always answers DHT requests and stores records for others, whatever the role.
    Server,
    /// Only queries the DHT, whatever the role; for short-lived clients. Nodes in client
    /// mode never store anything for others, so an overlay needs some servers.
    Client,
}

/// Builds an authenticated, multiplexed transport for the node with this keypair.
pub type TransportFactory = Arc<dyn Fn(&Keypair) -> Boxed<(PeerId, StreamMuxerBox)> + Send + Sync>;

/// What carries the node's connections.
#[derive(Clone, Default)]
pub enum OverlayTransport {
    /// TCP with noise and yamux, and DNS resolution of `/dns*` addresses.
    #[default]
    Tcp,
    /// A transport the embedder supplies (the simulator's in-memory network). The relay
    /// client transport is layered over it exactly as over TCP, so relayed connections work.
    Custom(TransportFactory),
}

impl std::fmt::Debug for OverlayTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverlayTransport::Tcp => f.write_str("Tcp"),
            OverlayTransport::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// Everything [`Overlay::start`](super::Overlay::start) needs.
#[derive(Clone)]
pub struct OverlayConfig {
    /// Node identity; see [`load_or_create_keypair`].
    pub keypair: Keypair,
    pub transport: OverlayTransport,
    /// Addresses to listen on. Port 0 picks a free port; the actual addresses are reported by
    /// [`Overlay::listen_addrs`](super::Overlay::listen_addrs).
    pub listen: Vec<Multiaddr>,
    /// Known overlay nodes, each ending in `/p2p/<peer id>`, dialled at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover nodes on the local link by multicast DNS and add them to the DHT, so a LAN mesh
    /// needs no bootstrap list.
    pub mdns: bool,
    pub dht_mode: DhtMode,
    /// The role this node is configured for. A supernode is a DHT server and a circuit relay
    /// for peers; a peer keeps a relay reservation on a supernode it is connected to (when it
    /// listens anywhere), so that nodes can reach it behind NAT through the relay, and
    /// DCUtR upgrades such relayed connections to direct ones where it can.
    pub role: RoleSetting,
    /// With [`RoleSetting::Auto`], how long the node must have been up before a confirmed
    /// public address makes it a supernode.
    pub promote_after: Duration,
    /// Checks every record before it is stored and after it is fetched (authority mode, trust
    /// anchors, pinned authorities).
    pub validator: RecordValidator,
    /// This node's delegations from domain authorities; publishing an AoR attaches the one
    /// for its domain that is valid at the time.
    pub delegations: Vec<Delegation>,
    /// How many nodes closest to a key hold its record (Kademlia's k for records).
    pub replication_factor: NonZeroUsize,
    /// Upper bound of the write quorum: a publish succeeds once this many nodes (or every
    /// known node, when fewer are known) acknowledged the record.
    pub write_quorum: NonZeroUsize,
    /// Bound on one DHT lookup.
    pub lookup_timeout: Duration,
    /// A lookup ends once this many nodes (this node's own store counting as one) returned
    /// a valid value, rather than when Kademlia has asked every one of the closest nodes:
    /// one slow or silent node then no longer holds every lookup up to the timeout.
    /// Values are merged, so a few answers already give the newest entry of each serving
    /// node unless every one of them missed the latest put. Distinct nodes are counted as
    /// in [`LookupAnswer::answered_by`](super::LookupAnswer::answered_by), at most 32; a
    /// larger quorum means the lookup always runs to its end.
    pub lookup_quorum: NonZeroUsize,
    /// Lookups and publishes running at the same time; beyond it lookups fail with
    /// `LookupError::Busy` and publishes are deferred (`PublishError::Busy`).
    pub max_concurrent_queries: usize,
    /// Bound on one DHT publish.
    pub publish_timeout: Duration,
    /// How often this node puts its own records again, so that they survive the loss of the
    /// nodes that stored them and reach nodes that joined since.
    pub republish_interval: Duration,
    /// How often stored records (of any publisher) are re-replicated to the closest nodes.
    pub replication_interval: Duration,
    /// Longest lifetime of any stored record, whatever the record itself says.
    pub max_record_ttl: Duration,
    /// Records this node stores for the overlay; a new key beyond this is refused.
    pub max_stored_records: usize,
    /// Largest record value stored or published.
    pub max_record_size: usize,
    /// Largest SIP message accepted on an overlay stream; a larger one closes the stream.
    pub max_sip_message_size: usize,
    /// Messages waiting per peer for the outbound SIP stream; when full, `send_sip` fails
    /// at once with [`SendError::QueueFull`](super::SendError::QueueFull).
    pub sip_send_queue_len: usize,
    /// Peers with an outbound SIP stream at the same time.
    pub max_sip_peers: usize,
    /// Inbound SIP streams read at the same time; further streams are closed.
    pub max_inbound_sip_streams: usize,
    /// Bound on dialling a peer and opening a SIP stream to it.
    pub sip_open_timeout: Duration,
    /// Bound on writing one SIP message.
    pub sip_write_timeout: Duration,
    /// An outbound SIP stream unused for this long is closed.
    pub sip_idle_timeout: Duration,
    /// Capacity of the event channel returned by `start`; when it is full, inbound SIP
    /// messages and events are dropped (with a warning).
    pub event_queue_len: usize,
    /// Capacity of the command channel from the handles to the network task; when full,
    /// callers wait.
    pub command_queue_len: usize,
    /// A connection with no open stream is closed after this long.
    pub idle_connection_timeout: Duration,
    /// How often every connection is pinged (libp2p ping: a connection whose pings fail is
    /// closed); `None` runs no pings. Each ping costs a little CPU on both ends, which adds
    /// up when one process holds many nodes: the simulator, whose links report a crashed
    /// node at once, runs none.
    pub ping_interval: Option<Duration>,
    /// How often Kademlia refreshes the routing table (a lookup of the node's own id, then
    /// one of a random id in every farther bucket); `None` refreshes only at start and when
    /// the table has fewer than 20 entries. Each of those lookups asks until 20 nodes have
    /// answered, so a refresh is hundreds of DHT requests in a large network; the simulator,
    /// which holds every node in one process, refreshes less often.
    pub routing_refresh_interval: Option<Duration>,
    /// Run AutoNAT: ask other nodes to dial back, to confirm public addresses. `--role auto`
    /// needs it to promote a node; with a configured role it only confirms external
    /// addresses (the simulator, whose addresses are all known, turns it off).
    pub autonat: bool,
}

impl OverlayConfig {
    /// Defaults suitable for a node on the public internet or a LAN: listen on all IPv4
    /// interfaces on a free TCP port, role `auto` (promoted after ten minutes), DHT mode by
    /// role, no mDNS.
    pub fn new(keypair: Keypair) -> Self {
        Self {
            keypair,
            transport: OverlayTransport::Tcp,
            listen: vec![default_listen_addr()],
            bootstrap: Vec::new(),
            mdns: false,
            dht_mode: DhtMode::default(),
            role: RoleSetting::default(),
            promote_after: Duration::from_secs(600),
            validator: RecordValidator::new(AuthorityMode::Open, TrustAnchors::new()),
            delegations: Vec::new(),
            replication_factor: NonZeroUsize::new(20).unwrap_or(NonZeroUsize::MIN),
            write_quorum: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
            lookup_timeout: Duration::from_secs(10),
            lookup_quorum: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
            max_concurrent_queries: 512,
            publish_timeout: Duration::from_secs(15),
            republish_interval: Duration::from_secs(10 * 60),
            replication_interval: Duration::from_secs(30 * 60),
            max_record_ttl: Duration::from_secs(24 * 60 * 60),
            max_stored_records: 65_536,
            max_record_size: MAX_RECORD_BYTES,
            max_sip_message_size: 64 * 1024,
            sip_send_queue_len: 64,
            max_sip_peers: 1024,
            max_inbound_sip_streams: 1024,
            sip_open_timeout: Duration::from_secs(10),
            sip_write_timeout: Duration::from_secs(10),
            sip_idle_timeout: Duration::from_secs(5 * 60),
            event_queue_len: 1024,
            command_queue_len: 256,
            idle_connection_timeout: Duration::from_secs(60),
            ping_interval: Some(Duration::from_secs(15)),
            routing_refresh_interval: Some(Duration::from_secs(5 * 60)),
            autonat: true,
        }
    }
}

impl std::fmt::Debug for OverlayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Spelled out so that the private key never reaches a log.
        f.debug_struct("OverlayConfig")
            .field("peer_id", &self.keypair.public().to_peer_id())
            .field("transport", &self.transport)
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field("mdns", &self.mdns)
            .field("dht_mode", &self.dht_mode)
            .field("role", &self.role)
            .field("promote_after", &self.promote_after)
            .field("authority_mode", &self.validator.mode())
            .field("delegations", &self.delegations.len())
            .field("replication_factor", &self.replication_factor)
            .field("write_quorum", &self.write_quorum)
            .field("lookup_timeout", &self.lookup_timeout)
            .field("publish_timeout", &self.publish_timeout)
            .field("republish_interval", &self.republish_interval)
            .finish_non_exhaustive()
    }
}

/// `/ip4/0.0.0.0/tcp/0`.
pub fn default_listen_addr() -> Multiaddr {
    use libp2p::multiaddr::Protocol;
    Multiaddr::empty()
        .with(Protocol::Ip4(std::net::Ipv4Addr::UNSPECIFIED))
        .with(Protocol::Tcp(0))
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read node key {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("node key {path} is not a valid protobuf-encoded libp2p keypair: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("cannot write node key {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot encode the new node key for {path}: {reason}")]
    Encode { path: PathBuf, reason: String },
}

/// Loads the node keypair from `<data_dir>/node.key`, or creates an Ed25519 keypair there
/// (protobuf encoding, file mode 0600) when the file does not exist. The data directory is
/// created if needed. The same file gives the same `PeerId` on every start.
pub fn load_or_create_keypair(data_dir: &Path) -> Result<Keypair, KeyFileError> {
    let path = data_dir.join(NODE_KEY_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            warn_if_readable_by_others(&path);
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| KeyFileError::Decode {
                path,
                reason: e.to_string(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_keypair_file(data_dir, path),
        Err(source) => Err(KeyFileError::Read { path, source }),
    }
}

fn create_keypair_file(data_dir: &Path, path: PathBuf) -> Result<Keypair, KeyFileError> {
    fs::create_dir_all(data_dir).map_err(|source| KeyFileError::CreateDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let keypair = Keypair::generate_ed25519();
    let encoded = keypair
        .to_protobuf_encoding()
        .map_err(|e| KeyFileError::Encode {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    // Written under a temporary name and renamed, so that a crash never leaves a truncated
    // key behind that would fail every later start.
    let temporary = data_dir.join(format!("{NODE_KEY_FILE}.tmp"));
    write_private_file(&temporary, &encoded).map_err(|source| KeyFileError::Write {
        path: temporary.clone(),
        source,
    })?;
    fs::rename(&temporary, &path).map_err(|source| KeyFileError::Write {
        path: path.clone(),
        source,
    })?;
    tracing::info!(path = %path.display(), peer_id = %keypair.public().to_peer_id(), "created node key");
    Ok(keypair)
}

fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    // `mode` applies only when the file is created; a leftover temporary file keeps its mode.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(metadata) = fs::metadata(path) {
            if metadata.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "node key is readable by other users; chmod 600 it");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keypair_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let first = load_or_create_keypair(&data_dir).unwrap();
        let second = load_or_create_keypair(&data_dir).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(data_dir.join(NODE_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn corrupt_key_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(NODE_KEY_FILE), b"not a key").unwrap();
        let error = load_or_create_keypair(dir.path()).unwrap_err();
        assert!(matches!(error, KeyFileError::Decode { .. }));
        assert!(error.to_string().contains(NODE_KEY_FILE), "{error}");
    }
}
