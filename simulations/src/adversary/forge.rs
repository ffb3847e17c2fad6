//! The forge adversary: a Kademlia server on the overlay's protocol that routes honestly,
//! answers fetches of its targets with forged records (see [`super::store`]) and puts forged
//! records of its targets, round robin, every interval. It also fetches the targets' real
//! records, to learn honest entries and delegations for the tricks that need them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt as _;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, kad, ping, Multiaddr, PeerId, Swarm};
use overlay::key::{Aor, RecordKind};
use overlay::network::{
    now_unix, now_unix_millis, without_peer_id, IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL,
};
use overlay::record::KAD_MAX_PACKET_BYTES;

use super::forgery::{Forger, Variant, PUT_VARIANTS};
use super::store::ForgingStore;
use super::{identify_behaviour, ping_behaviour, swarm_config, Counters};

/// Fetches of targets' real records running at once, at most.
const MAX_PENDING_GETS: usize = 64;
/// Forged puts running at once, at most; a round with no room skips its puts.
const MAX_PENDING_PUTS: usize = 256;
/// Bound on one of the forger's own queries.
const QUERY_TIMEOUT: Duration = Duration::from_secs(20);
/// The shortest forge interval honoured; a zero interval would spin.
const MIN_FORGE_INTERVAL: Duration = Duration::from_millis(10);
/// Expiry sent with a forged put (Kademlia's TTL); validators judge by the entries anyway.
const FORGED_PUT_TTL: Duration = Duration::from_secs(3600);

#[derive(NetworkBehaviour)]
pub(crate) struct ForgeBehaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kademlia: kad::Behaviour<ForgingStore>,
}

pub(crate) struct Settings {
    pub targets: Arc<Vec<Aor>>,
    pub interval: Duration,
    pub puts_per_interval: usize,
}

pub(crate) fn build(
    keypair: Keypair,
    transport: Boxed<(PeerId, StreamMuxerBox)>,
    settings: &Settings,
    counters: &Arc<Counters>,
) -> Swarm<ForgeBehaviour> {
    let targets = Arc::clone(&settings.targets);
    libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| transport)
        .unwrap_or_else(|never| match never {})
        .with_behaviour(|keypair| {
            let local = keypair.public().to_peer_id();
            let store = ForgingStore::new(
                local,
                Forger::new(keypair.clone(), targets),
                Arc::clone(counters),
            );
            let mut kademlia = kad::Behaviour::with_config(local, store, kademlia_config());
            // A server from the start, so that honest nodes route to it.
            kademlia.set_mode(Some(kad::Mode::Server));
            ForgeBehaviour {
                identify: identify_behaviour(keypair),
                ping: ping_behaviour(),
                kademlia,
            }
        })
        .unwrap_or_else(|never| match never {})
        .with_swarm_config(swarm_config)
        .build()
}

/// Like an honest node's: same protocol and packet limit, inbound puts handed to the
/// behaviour's owner (and ignored here), no write-back caching. No replication or
/// republication jobs: every put the forger makes is one it counts.
fn kademlia_config() -> kad::Config {
    let mut config = kad::Config::new(KAD_PROTOCOL);
    config
        .set_query_timeout(QUERY_TIMEOUT)
        .set_max_packet_size(KAD_MAX_PACKET_BYTES)
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_caching(kad::Caching::Disabled)
        .set_replication_interval(None)
        .set_publication_interval(None)
        .set_provider_publication_interval(None);
    config
}

/// Joins through the bootstrap nodes: adds them to Kademlia, dials them and bootstraps.
/// `listen_addrs` go into the forger's made-up entries.
pub(crate) fn join(
    swarm: &mut Swarm<ForgeBehaviour>,
    bootstrap: &[(PeerId, Multiaddr)],
    listen_addrs: &[Multiaddr],
) {
    let kademlia = &mut swarm.behaviour_mut().kademlia;
    kademlia
        .store_mut()
        .forger_mut()
        .set_addrs(listen_addrs.iter().map(without_peer_id));
    for (peer, address) in bootstrap {
        kademlia.add_address(peer, without_peer_id(address));
    }
    for (_, address) in bootstrap {
        if let Err(error) = swarm.dial(address.clone()) {
            tracing::debug!(%address, %error, "forger cannot dial bootstrap node");
        }
    }
    if !bootstrap.is_empty() {
        // Fails only without known peers, which the loop above rules out.
        let _ = swarm.behaviour_mut().kademlia.bootstrap();
    }
}

/// The forger's state on its task.
struct Forge {
    swarm: Swarm<ForgeBehaviour>,
    counters: Arc<Counters>,
    targets: Arc<Vec<Aor>>,
    puts_per_interval: usize,
    /// Next target of the round robin.
    cursor: usize,
    /// Passes over the targets so far; every target is put as `PUT_VARIANTS[lap % 4]` in a
    /// lap, so each one meets every variant in turn.
    lap: usize,
    /// Own fetches of targets' records, to the target index.
    pending_gets: HashMap<kad::QueryId, usize>,
    pending_puts: HashSet<kad::QueryId>,
}

pub(crate) async fn run(swarm: Swarm<ForgeBehaviour>, settings: Settings, counters: Arc<Counters>) {
    let mut forge = Forge {
        swarm,
        counters,
        targets: settings.targets,
        puts_per_interval: settings.puts_per_interval,
        cursor: 0,
        lap: 0,
        pending_gets: HashMap::new(),
        pending_puts: HashSet::new(),
    };
    let mut ticker = tokio::time::interval(settings.interval.max(MIN_FORGE_INTERVAL));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = forge.swarm.select_next_some() => forge.on_swarm_event(event),
            _ = ticker.tick() => forge.round(),
        }
    }
}

impl Forge {
    /// One interval: for the next targets, a forged put, and a fetch of the real record to
    /// learn from.
    fn round(&mut self) {
        let count = self.puts_per_interval.min(self.targets.len());
        for _ in 0..count {
            let index = self.cursor;
            self.cursor = (self.cursor + 1) % self.targets.len().max(1);
            let lap = self.lap;
            if self.cursor == 0 {
                self.lap = self.lap.wrapping_add(1);
            }
            let Some(aor) = self.targets.get(index) else {
                continue;
            };
            let key = kad::RecordKey::new(&aor.dht_key(RecordKind::Registration));
            if self.pending_gets.len() < MAX_PENDING_GETS {
                let kademlia = &mut self.swarm.behaviour_mut().kademlia;
                kademlia.store_mut().set_own_lookup(true);
                let query = kademlia.get_record(key.clone());
                kademlia.store_mut().set_own_lookup(false);
                self.pending_gets.insert(query, index);
            }
            if self.pending_puts.len() < MAX_PENDING_PUTS {
                self.put_forged(index, key, lap);
            }
        }
    }

    fn put_forged(&mut self, index: usize, key: kad::RecordKey, lap: usize) {
        let variant = PUT_VARIANTS
            .get(lap % PUT_VARIANTS.len())
            .copied()
            .unwrap_or(Variant::Combined);
        let (now_secs, now_millis) = (now_unix(), now_unix_millis());
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        let Some(value) = kademlia
            .store_mut()
            .forger()
            .forge(index, variant, now_secs, now_millis)
        else {
            return;
        };
        let record = kad::Record {
            key,
            value,
            publisher: None,
            expires: Instant::now().checked_add(FORGED_PUT_TTL),
        };
        match kademlia.put_record(record, kad::Quorum::One) {
            Ok(query) => {
                self.pending_puts.insert(query);
            }
            Err(error) => tracing::debug!(%error, "forger cannot start a put"),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<ForgeBehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(ForgeBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.on_identified(peer_id, info),
            SwarmEvent::Behaviour(ForgeBehaviourEvent::Kademlia(
                kad::Event::OutboundQueryProgressed {
                    id, result, step, ..
                },
            )) => match result {
                kad::QueryResult::GetRecord(result) => self.on_get_result(id, result, step.last),
                kad::QueryResult::PutRecord(result) => self.on_put_result(id, result),
                _ => {}
            },
            // Inbound puts (honest publications) arrive as events with record filtering on,
            // and are dropped here: nothing is stored.
            _ => {}
        }
    }

    /// As an honest node does: an identified overlay DHT server's listen addresses go into
    /// the routing table (an inbound connection's address is not one it listens on).
    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        if info.protocol_version != IDENTIFY_PROTOCOL_VERSION
            || !info.protocols.contains(&KAD_PROTOCOL)
        {
            return;
        }
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        for address in info.listen_addrs {
            if !is_unspecified(&address) {
                kademlia.add_address(&peer, address);
            }
        }
    }

    fn on_get_result(&mut self, query: kad::QueryId, result: kad::GetRecordResult, last: bool) {
        let Some(&index) = self.pending_gets.get(&query) else {
            return;
        };
        if let Ok(kad::GetRecordOk::FoundRecord(found)) = result {
            if found.peer.is_some() {
                let now_secs = now_unix();
                self.swarm
                    .behaviour_mut()
                    .kademlia
                    .store_mut()
                    .forger_mut()
                    .learn(index, &found.record.value, now_secs);
            }
        }
        if last {
            self.pending_gets.remove(&query);
        }
    }

    fn on_put_result(&mut self, query: kad::QueryId, result: kad::PutRecordResult) {
        if !self.pending_puts.remove(&query) {
            return;
        }
        let reached = match result {
            Ok(_) => true,
            Err(
                kad::PutRecordError::QuorumFailed { success, .. }
                | kad::PutRecordError::Timeout { success, .. },
            ) => !success.is_empty(),
        };
        if reached {
            self.counters.forged_put();
        }
    }
}

fn is_unspecified(address: &Multiaddr) -> bool {
    address.iter().any(|protocol| match protocol {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}
