//! The nodes of a run: identities, which are alive, starting and stopping them.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::adversary::{spawn_adversary, AdversaryConfig, AdversaryHandle, AdversaryKind};
use crate::net::{node_address, NodeIndex};
use crate::node::{NodeContext, SimNode};
use overlay::key::Aor;

/// Nodes a new node bootstraps from.
const BOOTSTRAP_PEERS: usize = 3;
/// Nodes an adversary dials at start, to get into many routing tables.
const ADVERSARY_BOOTSTRAP_PEERS: usize = 8;
/// How often a forger puts forged records, and how many per round.
const FORGE_INTERVAL: Duration = Duration::from_secs(2);
const FORGED_PUTS_PER_INTERVAL: usize = 4;

/// A node slot's identity: the same seed gives the same keys, hence the same DHT ids.
pub fn slot_keypair(seed: u64, index: NodeIndex) -> Keypair {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(index) << 20) ^ 0x6b65_7973);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    // Any 32 bytes are a valid Ed25519 secret key; the fallback is never taken.
    Keypair::ed25519_from_bytes(secret).unwrap_or_else(|_| Keypair::generate_ed25519())
}

enum Running {
    Honest(Arc<SimNode>),
    Adversary(AdversaryHandle),
}

/// Every node of the run and the state of each.
pub struct Population {
    context: NodeContext,
    seed: u64,
    /// Indexed by node index; `None` once stopped (indexes are never reused, so a
    /// replacement node is a new identity).
    running: Vec<Option<Running>>,
    live_honest: BTreeSet<NodeIndex>,
    live_public: BTreeSet<NodeIndex>,
    adversary_peers: HashSet<PeerId>,
    adversary_targets: Arc<Vec<Aor>>,
    pub started: usize,
    pub left: usize,
    pub crashed: usize,
    pub max_live: usize,
    node_seconds: f64,
    last_change: Instant,
}

impl Population {
    pub fn new(context: NodeContext, seed: u64, adversary_targets: Vec<Aor>) -> Population {
        Population {
            context,
            seed,
            running: Vec::new(),
            live_honest: BTreeSet::new(),
            live_public: BTreeSet::new(),
            adversary_peers: HashSet::new(),
            adversary_targets: Arc::new(adversary_targets),
            started: 0,
            left: 0,
            crashed: 0,
            max_live: 0,
            node_seconds: 0.0,
            last_change: Instant::now(),
        }
    }

    pub fn live_count(&self) -> usize {
        self.live_honest.len() + self.adversary_peers.len()
    }

    /// Node-seconds lived so far by all nodes, for per-node rates.
    pub fn node_seconds(&mut self) -> f64 {
        self.account();
        self.node_seconds
    }

    fn account(&mut self) {
        let now = Instant::now();
        self.node_seconds +=
            self.live_count() as f64 * now.duration_since(self.last_change).as_secs_f64();
        self.last_change = now;
    }

    pub fn adversary_peer_ids(&self) -> HashSet<PeerId> {
        self.adversary_peers.clone()
    }

    pub fn honest(&self, index: NodeIndex) -> Option<Arc<SimNode>> {
        match self.running.get(index as usize)? {
            Some(Running::Honest(node)) => Some(Arc::clone(node)),
            _ => None,
        }
    }

    /// A random live honest node.
    pub fn random_honest(&self, rng: &mut impl Rng) -> Option<Arc<SimNode>> {
        let index = pick(&self.live_honest, rng)?;
        self.honest(index)
    }

    /// A random live honest node other than `except` (or `except` when it is the only
    /// one): a caller or asker for a user served at `except`.
    pub fn random_honest_except(
        &self,
        except: NodeIndex,
        rng: &mut impl Rng,
    ) -> Option<Arc<SimNode>> {
        if self.live_honest.len() == 1 {
            return self.random_honest(rng);
        }
        let others = self.live_honest.len() - usize::from(self.live_honest.contains(&except));
        let chosen = self
            .live_honest
            .iter()
            .filter(|&&index| index != except)
            .nth(rng.gen_range(0..others.max(1)))
            .copied()?;
        self.honest(chosen)
    }

    /// `count` distinct random live supernodes (fewer when there are fewer).
    pub fn random_public(&self, rng: &mut impl Rng, count: usize) -> Vec<NodeIndex> {
        let all: Vec<NodeIndex> = self.live_public.iter().copied().collect();
        all.choose_multiple(rng, count).copied().collect()
    }

    fn bootstrap_for(&self, rng: &mut impl Rng, count: usize) -> Vec<Multiaddr> {
        self.random_public(rng, count)
            .into_iter()
            .filter_map(|index| self.honest(index))
            .map(|node| node.bootstrap_address())
            .collect()
    }

    fn next_index(&self) -> Result<NodeIndex, String> {
        NodeIndex::try_from(self.running.len()).map_err(|_| "node index space exhausted".to_owned())
    }

    /// Starts a new honest node; bootstraps from random live supernodes.
    pub async fn start_honest(
        &mut self,
        public: bool,
        rng: &mut impl Rng,
    ) -> Result<Arc<SimNode>, String> {
        let index = self.next_index()?;
        let bootstrap = self.bootstrap_for(rng, BOOTSTRAP_PEERS);
        let keypair = slot_keypair(self.seed, index);
        let node =
            Arc::new(SimNode::start(&self.context, index, keypair, public, bootstrap).await?);
        self.account();
        self.running.push(Some(Running::Honest(Arc::clone(&node))));
        self.live_honest.insert(index);
        if public {
            self.live_public.insert(index);
        }
        self.started += 1;
        self.max_live = self.max_live.max(self.live_count());
        Ok(node)
    }

    /// Starts an adversary of `kind`.
    pub async fn start_adversary(
        &mut self,
        kind: AdversaryKind,
        rng: &mut impl Rng,
    ) -> Result<(), String> {
        let index = self.next_index()?;
        let keypair = slot_keypair(self.seed, index);
        let network = &self.context.network;
        network.set_reachable(index, true);
        let transport = network.authenticated_transport(index, &keypair, self.context.security);
        let config = AdversaryConfig {
            kind,
            keypair,
            transport,
            listen: node_address(index),
            bootstrap: self.bootstrap_for(rng, ADVERSARY_BOOTSTRAP_PEERS),
            targets: Arc::clone(&self.adversary_targets),
            forge_interval: FORGE_INTERVAL,
            forged_puts_per_interval: FORGED_PUTS_PER_INTERVAL,
        };
        let handle = spawn_adversary(config)
            .await
            .map_err(|error| format!("adversary {index} did not start: {error}"))?;
        self.account();
        self.adversary_peers.insert(handle.peer_id());
        self.running.push(Some(Running::Adversary(handle)));
        self.started += 1;
        self.max_live = self.max_live.max(self.live_count());
        Ok(())
    }

    /// Stops an honest node: a crash at once, or a graceful leave (hand-off) on a task.
    pub fn stop_honest(&mut self, index: NodeIndex, crash: bool) -> Option<Arc<SimNode>> {
        let slot = self.running.get_mut(index as usize)?;
        let Some(Running::Honest(node)) = slot.take() else {
            return None;
        };
        self.account();
        self.live_honest.remove(&index);
        self.live_public.remove(&index);
        if crash {
            node.crash();
            self.crashed += 1;
        } else {
            let leaving = Arc::clone(&node);
            tokio::spawn(async move { leaving.leave().await });
            self.left += 1;
        }
        Some(node)
    }

    /// Sums of the adversaries' action counters.
    pub fn adversary_actions(&self) -> u64 {
        self.running
            .iter()
            .flatten()
            .filter_map(|running| match running {
                Running::Adversary(handle) => {
                    let stats = handle.stats();
                    Some(stats.requests_dropped + stats.forged_answers + stats.forged_puts)
                }
                Running::Honest(_) => None,
            })
            .sum()
    }

    /// Live honest nodes.
    pub fn honest_nodes(&self) -> Vec<Arc<SimNode>> {
        self.live_honest
            .iter()
            .filter_map(|&index| self.honest(index))
            .collect()
    }

    /// Stops everything at once (the run is over; nothing is handed off).
    pub fn stop_all(&mut self) {
        self.account();
        for slot in &mut self.running {
            match slot.take() {
                Some(Running::Honest(node)) => node.crash(),
                Some(Running::Adversary(handle)) => handle.stop(),
                None => {}
            }
        }
        self.live_honest.clear();
        self.live_public.clear();
        self.adversary_peers.clear();
    }
}

/// A uniformly random element of `set`.
fn pick(set: &BTreeSet<NodeIndex>, rng: &mut impl Rng) -> Option<NodeIndex> {
    if set.is_empty() {
        return None;
    }
    set.iter().nth(rng.gen_range(0..set.len())).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_follow_the_seed() {
        let a = slot_keypair(1, 5).public().to_peer_id();
        assert_eq!(a, slot_keypair(1, 5).public().to_peer_id());
        assert_ne!(a, slot_keypair(2, 5).public().to_peer_id());
        assert_ne!(a, slot_keypair(1, 6).public().to_peer_id());
    }
}
