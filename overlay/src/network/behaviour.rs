//! The composed libp2p behaviour of an overlay node and how the swarm is built.

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    autonat, dcutr, identify, identity::Keypair, kad, mdns, noise, ping, relay, tcp, yamux,
    StreamProtocol, Swarm,
};

use super::config::{OverlayConfig, OverlayTransport};
use super::keep_alive::RecheckKeepAlive;

/// Kademlia protocol of the overlay; distinct from the IPFS DHT so the two never mix.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/p2psip/kad/1.0.0");
/// Sent as identify's `protocolVersion`: nodes speaking another version are not added to the DHT.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/p2psip/id/1.0.0";
/// SIP messages between nodes, framed as on a SIP TCP connection.
pub const SIP_PROTOCOL: StreamProtocol = StreamProtocol::new("/p2psip/sip/1.0.0");

/// `p2psip/<crate version>`, sent as identify's agent version.
pub fn agent_version() -> String {
    format!("p2psip/{}", env!("CARGO_PKG_VERSION"))
}

#[derive(NetworkBehaviour)]
pub(crate) struct OverlayBehaviour {
    pub kademlia: kad::Behaviour<kad::store::MemoryStore>,
    pub identify: identify::Behaviour,
    /// Off when [`OverlayConfig::ping_interval`] is `None`.
    pub ping: Toggle<ping::Behaviour>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Off when [`OverlayConfig::autonat`] is false.
    pub autonat: Toggle<autonat::Behaviour>,
    pub relay_client: relay::client::Behaviour,
    /// Always present; whether it advertises the hop protocol and accepts reservations is
    /// switched at runtime with [`relay::Behaviour::set_status`] as the role changes.
    pub relay_server: RecheckKeepAlive<relay::Behaviour>,
    pub dcutr: dcutr::Behaviour,
    pub sip_streams: libp2p_stream::Behaviour,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot set up the noise handshake: {0}")]
    Noise(#[from] noise::Error),
    #[error("cannot read the system DNS configuration: {0}")]
    Dns(#[source] std::io::Error),
    #[error("cannot start multicast DNS discovery: {0}")]
    Mdns(#[source] std::io::Error),
}

/// How the behaviours start out; the network task changes both as the role changes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitialModes {
    /// Kademlia server (else client) mode.
    pub dht_server: bool,
    /// The relay server advertises the hop protocol and accepts reservations.
    pub relay_server: bool,
}

/// Builds the swarm: TCP with noise and yamux, DNS resolution, the relay client transport, and
/// every behaviour. Must run inside a tokio runtime (mDNS and TCP spawn on it).
pub(crate) fn build_swarm(
    config: &OverlayConfig,
    modes: InitialModes,
) -> Result<Swarm<OverlayBehaviour>, BuildError> {
    // The behaviour constructor cannot return our error type, so mDNS is created first.
    let local_peer_id = config.keypair.public().to_peer_id();
    let mdns = if config.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), local_peer_id)
                .map_err(BuildError::Mdns)?,
        )
    } else {
        None
    };
    let kademlia_config = kademlia_config(config);
    let store_config = kad::store::MemoryStoreConfig {
        max_records: config.max_stored_records,
        // The store refuses values of exactly this size, hence the + 1.
        max_value_bytes: config.max_record_size.saturating_add(1),
        ..Default::default()
    };
    let idle_timeout = config.idle_connection_timeout;
    let liveness = Liveness {
        ping_interval: config.ping_interval,
        autonat: config.autonat,
    };

    let behaviour = |keypair: &Keypair, relay_client| {
        new_behaviour(
            keypair,
            relay_client,
            mdns,
            kademlia_config,
            store_config,
            modes,
            liveness,
        )
    };
    let swarm_config = |swarm_config: libp2p::swarm::Config| {
        swarm_config.with_idle_connection_timeout(idle_timeout)
    };
    let builder = libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone()).with_tokio();
    let swarm = match &config.transport {
        OverlayTransport::Tcp => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_dns()
            .map_err(BuildError::Dns)?
            .with_relay_client(noise::Config::new, yamux::Config::default)?
            .with_behaviour(behaviour)
            .unwrap_or_else(|never| match never {})
            .with_swarm_config(swarm_config)
            .build(),
        OverlayTransport::Custom(factory) => builder
            .with_other_transport(|keypair| factory(keypair))
            .unwrap_or_else(|never| match never {})
            .with_relay_client(noise::Config::new, yamux::Config::default)?
            .with_behaviour(behaviour)
            .unwrap_or_else(|never| match never {})
            .with_swarm_config(swarm_config)
            .build(),
    };
    Ok(swarm)
}

fn kademlia_config(config: &OverlayConfig) -> kad::Config {
    let mut kademlia = kad::Config::new(KAD_PROTOCOL);
    kademlia
        .set_query_timeout(config.lookup_timeout.max(config.publish_timeout))
        .set_replication_factor(config.replication_factor)
        // Room for a largest record plus the closer-peer list that travels with it.
        .set_max_packet_size(
            crate::record::KAD_MAX_PACKET_BYTES
                .max(config.max_record_size.saturating_add(8 * 1024)),
        )
        // Every inbound record is validated and merged before it is stored (see `records`).
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        // An upper bound only: each record is stored with the expiry of its own bindings.
        // Without a TTL here, inbound records would lose their expiry altogether.
        .set_record_ttl(Some(config.max_record_ttl))
        .set_replication_interval(Some(config.replication_interval))
        // Own records are republished by the network task's timer, which re-signs nothing but
        // puts the current merged value; Kademlia's publication job would put a stale copy.
        .set_publication_interval(None)
        .set_provider_publication_interval(None)
        // Lookups merge every value found; write-back of one of them is not wanted.
        .set_caching(kad::Caching::Disabled)
        .set_periodic_bootstrap_interval(config.routing_refresh_interval);
    kademlia
}

/// How a node checks its connections and its own reachability.
#[derive(Debug, Clone, Copy)]
struct Liveness {
    ping_interval: Option<std::time::Duration>,
    autonat: bool,
}

fn new_behaviour(
    keypair: &Keypair,
    relay_client: relay::client::Behaviour,
    mdns: Option<mdns::tokio::Behaviour>,
    kademlia_config: kad::Config,
    store_config: kad::store::MemoryStoreConfig,
    modes: InitialModes,
    liveness: Liveness,
) -> OverlayBehaviour {
    let local_peer_id = keypair.public().to_peer_id();
    let mut kademlia = kad::Behaviour::with_config(
        local_peer_id,
        kad::store::MemoryStore::with_config(local_peer_id, store_config),
        kademlia_config,
    );
    // Never left to Kademlia's own choice (server once an external address is confirmed):
    // the role decides, and a relayed address must not make a node a server.
    kademlia.set_mode(Some(kad_mode(modes.dht_server)));
    let mut relay_server = relay::Behaviour::new(local_peer_id, relay::Config::default());
    // Set explicitly: left alone, the relay turns itself on with any confirmed external
    // address, a relayed one included.
    relay_server.set_status(Some(relay_status(modes.relay_server)));
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), keypair.public())
            .with_agent_version(agent_version()),
    );
    OverlayBehaviour {
        kademlia,
        identify,
        ping: Toggle::from(
            liveness
                .ping_interval
                .map(|interval| ping::Behaviour::new(ping::Config::new().with_interval(interval))),
        ),
        mdns: Toggle::from(mdns),
        autonat: Toggle::from(
            liveness
                .autonat
                .then(|| autonat::Behaviour::new(local_peer_id, autonat::Config::default())),
        ),
        relay_client,
        // Its handlers keep each connection open for a while without waking it when that while
        // ends; without the wrapper, idle connections were never closed.
        relay_server: RecheckKeepAlive::new(relay_server),
        dcutr: dcutr::Behaviour::new(local_peer_id),
        sip_streams: libp2p_stream::Behaviour::new(),
    }
}

pub(crate) fn kad_mode(server: bool) -> kad::Mode {
    if server {
        kad::Mode::Server
    } else {
        kad::Mode::Client
    }
}

pub(crate) fn relay_status(enabled: bool) -> relay::Status {
    if enabled {
        relay::Status::Enable
    } else {
        relay::Status::Disable
    }
}
