//! Adversarial nodes for the simulator: libp2p nodes that join the overlay like honest ones
//! (identify with the overlay's protocol version, the overlay's Kademlia protocol) and then
//! misbehave, so that a scenario can measure what honest nodes withstand.
//!
//! - [`AdversaryKind::Drop`], a black hole: it advertises the Kademlia protocol, so honest
//!   nodes put it into their routing tables, then reads every DHT request and never answers.
//!   Honest queries that reach it must wait for their own timeouts.
//! - [`AdversaryKind::Forge`]: a real Kademlia server that routes honestly (so it stays in
//!   routing tables) but answers every fetch of a target user's registration with a forged
//!   record, and periodically puts forged records of the targets. Every forged value is one
//!   a validator must refuse (the tricks are described in `forgery.rs`); the simulator
//!   checks that none is ever accepted. Every binding an adversary makes up has its contact
//!   at [`FORGED_CONTACT_HOST`], so an accepted forgery is easy to spot.
//!
//! An adversary runs on its own tokio task; [`AdversaryHandle::stop`] aborts it at once, as
//! a crash would, and dropping the handle does the same.

mod black_hole;
mod forge;
mod forgery;
mod store;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, ping, Multiaddr, PeerId, Swarm};
use overlay::key::Aor;
use overlay::network::{agent_version, peer_id_of, IDENTIFY_PROTOCOL_VERSION};

/// Host of every contact an adversary makes up: `sip:<user>@forged.invalid`. A binding at
/// this host in an honest node's answer means a forgery was accepted.
pub const FORGED_CONTACT_HOST: &str = "forged.invalid";

/// Like honest nodes: a connection without streams is closed after this long.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on waiting for the listener to report its address at start.
const LISTEN_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How an adversary misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdversaryKind {
    /// Accepts DHT requests and never answers them.
    Drop,
    /// Answers fetches of the targets with forged records and puts forged records.
    Forge,
}

impl AdversaryKind {
    pub const ALL: [AdversaryKind; 2] = [AdversaryKind::Drop, AdversaryKind::Forge];

    pub fn as_str(self) -> &'static str {
        match self {
            AdversaryKind::Drop => "drop",
            AdversaryKind::Forge => "forge",
        }
    }
}

impl fmt::Display for AdversaryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An adversary kind name that is neither `drop` nor `forge`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown adversary kind {0:?} (expected \"drop\" or \"forge\")")]
pub struct UnknownAdversaryKind(pub String);

impl FromStr for AdversaryKind {
    type Err = UnknownAdversaryKind;

    fn from_str(text: &str) -> Result<AdversaryKind, UnknownAdversaryKind> {
        AdversaryKind::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownAdversaryKind(text.to_owned()))
    }
}

/// Everything [`spawn_adversary`] needs.
pub struct AdversaryConfig {
    pub kind: AdversaryKind,
    pub keypair: Keypair,
    /// Already authenticated and multiplexed (the simulator's in-memory network, or TCP with
    /// noise and yamux).
    pub transport: Boxed<(PeerId, StreamMuxerBox)>,
    pub listen: Multiaddr,
    /// Honest nodes to join through; each ends in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// The users to attack (used by [`AdversaryKind::Forge`]).
    pub targets: Arc<Vec<Aor>>,
    /// How often a forger puts forged records.
    pub forge_interval: Duration,
    /// Targets whose forged record is put per interval, round robin.
    pub forged_puts_per_interval: usize,
}

impl fmt::Debug for AdversaryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Spelled out so that the private key never reaches a log.
        f.debug_struct("AdversaryConfig")
            .field("kind", &self.kind)
            .field("peer_id", &self.keypair.public().to_peer_id())
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field("targets", &self.targets.len())
            .field("forge_interval", &self.forge_interval)
            .field("forged_puts_per_interval", &self.forged_puts_per_interval)
            .finish_non_exhaustive()
    }
}

/// What an adversary has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdversaryStats {
    /// DHT requests read and never answered (drop).
    pub requests_dropped: u64,
    /// Fetches of a target's registration answered with a forged record (forge).
    pub forged_answers: u64,
    /// Forged records put that reached at least one node (forge). Honest nodes acknowledge
    /// a put before validating it, so this says nothing about acceptance.
    pub forged_puts: u64,
}

/// Shared between the adversary's task (and its record store) and its handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests_dropped: AtomicU64,
    forged_answers: AtomicU64,
    forged_puts: AtomicU64,
}

impl Counters {
    pub(crate) fn request_dropped(&self) {
        self.requests_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn forged_answer(&self) {
        self.forged_answers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn forged_put(&self) {
        self.forged_puts.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> AdversaryStats {
        AdversaryStats {
            requests_dropped: self.requests_dropped.load(Ordering::Relaxed),
            forged_answers: self.forged_answers.load(Ordering::Relaxed),
            forged_puts: self.forged_puts.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdversaryError {
    #[error("bootstrap address {address} does not end in /p2p/<peer id>")]
    BootstrapWithoutPeerId { address: Multiaddr },
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: Multiaddr, reason: String },
    #[error("no listen address became available within {0:?}")]
    NotListening(Duration),
    #[error("cannot accept streams of the DHT protocol: {0}")]
    Accept(String),
}

/// A running adversary. Stops (aborted, like a crash) on [`AdversaryHandle::stop`] or when
/// dropped.
#[derive(Debug)]
pub struct AdversaryHandle {
    kind: AdversaryKind,
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl AdversaryHandle {
    pub fn kind(&self) -> AdversaryKind {
        self.kind
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses it listened on at start, each ending in `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// Counters so far; still readable after a stop.
    pub fn stats(&self) -> AdversaryStats {
        self.counters.snapshot()
    }

    /// Aborts the adversary's task at once: connections and held streams drop without any
    /// goodbye, as in a crash.
    pub fn stop(&self) {
        self.task.abort();
    }

    pub fn is_stopped(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for AdversaryHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Builds the adversary's swarm, listens (waiting until the listener has an address), dials
/// the bootstrap nodes and runs the adversary on a new tokio task. Must be called inside a
/// tokio runtime.
pub async fn spawn_adversary(config: AdversaryConfig) -> Result<AdversaryHandle, AdversaryError> {
    let bootstrap = bootstrap_peers(&config.bootstrap)?;
    let peer_id = config.keypair.public().to_peer_id();
    let counters = Arc::new(Counters::default());
    let kind = config.kind;
    let (listen_addrs, task) = match kind {
        AdversaryKind::Drop => {
            let (mut swarm, incoming) = black_hole::build(config.keypair, config.transport)?;
            let listen_addrs = start_listening(&mut swarm, config.listen).await?;
            for (_, address) in &bootstrap {
                dial(&mut swarm, address);
            }
            let task = tokio::spawn(black_hole::run(swarm, incoming, Arc::clone(&counters)));
            (listen_addrs, task)
        }
        AdversaryKind::Forge => {
            let settings = forge::Settings {
                targets: config.targets,
                interval: config.forge_interval,
                puts_per_interval: config.forged_puts_per_interval,
            };
            let mut swarm = forge::build(config.keypair, config.transport, &settings, &counters);
            let listen_addrs = start_listening(&mut swarm, config.listen).await?;
            forge::join(&mut swarm, &bootstrap, &listen_addrs);
            let task = tokio::spawn(forge::run(swarm, settings, Arc::clone(&counters)));
            (listen_addrs, task)
        }
    };
    let listen_addrs = listen_addrs
        .into_iter()
        .map(|address| address.with(Protocol::P2p(peer_id)))
        .collect();
    tracing::debug!(%peer_id, %kind, "adversary started");
    Ok(AdversaryHandle {
        kind,
        peer_id,
        listen_addrs,
        counters,
        task,
    })
}

/// The peer id of each bootstrap address; every one must name its peer.
fn bootstrap_peers(addresses: &[Multiaddr]) -> Result<Vec<(PeerId, Multiaddr)>, AdversaryError> {
    addresses
        .iter()
        .map(|address| {
            peer_id_of(address)
                .map(|peer| (peer, address.clone()))
                .ok_or_else(|| AdversaryError::BootstrapWithoutPeerId {
                    address: address.clone(),
                })
        })
        .collect()
}

fn dial<B: NetworkBehaviour>(swarm: &mut Swarm<B>, address: &Multiaddr) {
    if let Err(error) = swarm.dial(address.clone()) {
        tracing::debug!(%address, %error, "adversary cannot dial bootstrap node");
    }
}

/// Identify as an honest overlay node does, so honest nodes take the adversary for one.
pub(crate) fn identify_behaviour(keypair: &Keypair) -> identify::Behaviour {
    identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), keypair.public())
            .with_agent_version(agent_version()),
    )
}

pub(crate) fn ping_behaviour() -> ping::Behaviour {
    ping::Behaviour::default()
}

pub(crate) fn swarm_config(config: libp2p::swarm::Config) -> libp2p::swarm::Config {
    config.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT)
}

/// Listens on `address` and waits until the listener reports its address(es), so that
/// identify advertises them from the first connection on. Other events cannot occur yet:
/// nothing has been dialled.
async fn start_listening<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    address: Multiaddr,
) -> Result<Vec<Multiaddr>, AdversaryError> {
    let listener = swarm
        .listen_on(address.clone())
        .map_err(|error| AdversaryError::Listen {
            address: address.clone(),
            reason: error.to_string(),
        })?;
    let ready = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { listener_id, .. } if listener_id == listener => {
                    return Ok(());
                }
                SwarmEvent::ListenerError { listener_id, error } if listener_id == listener => {
                    return Err(error.to_string());
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason,
                    ..
                } if listener_id == listener => {
                    return Err(match reason {
                        Ok(()) => "listener closed".to_owned(),
                        Err(error) => error.to_string(),
                    });
                }
                _ => {}
            }
        }
    };
    match tokio::time::timeout(LISTEN_READY_TIMEOUT, ready).await {
        Ok(Ok(())) => Ok(swarm.listeners().cloned().collect()),
        Ok(Err(reason)) => Err(AdversaryError::Listen { address, reason }),
        Err(_) => Err(AdversaryError::NotListening(LISTEN_READY_TIMEOUT)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        for kind in AdversaryKind::ALL {
            assert_eq!(kind.to_string().parse::<AdversaryKind>().unwrap(), kind);
        }
        assert_eq!(" Forge ".parse::<AdversaryKind>(), Ok(AdversaryKind::Forge));
        let error = "eclipse".parse::<AdversaryKind>().unwrap_err();
        assert!(error.to_string().contains("\"eclipse\""), "{error}");
    }

    #[test]
    fn bootstrap_addresses_must_name_their_peer() {
        let peer = PeerId::random();
        let good: Multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}").parse().unwrap();
        let found = bootstrap_peers(std::slice::from_ref(&good)).unwrap();
        assert_eq!(found, vec![(peer, good.clone())]);
        let bad: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        assert!(matches!(
            bootstrap_peers(&[good, bad]),
            Err(AdversaryError::BootstrapWithoutPeerId { .. })
        ));
    }
}
