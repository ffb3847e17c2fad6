//! What the handle can ask for: the routing table and the node's counters.

use std::sync::atomic::Ordering;

use libp2p::kad::store::RecordStore as _;

use super::Driver;
use crate::network::{OverlayStats, PeerStatus};

impl Driver {
    pub(super) fn routing_table(&mut self) -> Vec<PeerStatus> {
        let mut peers = Vec::new();
        for bucket in self.swarm.behaviour_mut().kademlia.kbuckets() {
            for entry in bucket.iter() {
                peers.push((
                    *entry.node.key.preimage(),
                    entry.node.value.iter().cloned().collect::<Vec<_>>(),
                ));
            }
        }
        peers
            .into_iter()
            .map(|(peer, addresses)| PeerStatus {
                peer,
                addresses,
                connected: self.swarm.is_connected(&peer),
            })
            .collect()
    }

    pub(super) fn routing_table_size(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kademlia
            .kbuckets()
            .map(|bucket| bucket.num_entries())
            .sum()
    }

    pub(super) fn stats(&mut self) -> OverlayStats {
        OverlayStats {
            role: self.roles.role(),
            dht_server: self.dht_server,
            relay_reservation: self
                .relay
                .listener
                .filter(|_| self.relay.accepted)
                .map(|(_, relay)| relay),
            connected_supernodes: self.supernodes.len(),
            validation: self.validator.counters(),
            refused_unsupported_kind: self.refused_unsupported_kind,
            stored_records: self
                .swarm
                .behaviour_mut()
                .kademlia
                .store_mut()
                .records()
                .count(),
            own_publications: self.own_entries.len(),
            pinned_authorities: self.validator.pinned().len(),
            sip_messages_dropped: self.sip_dropped.load(Ordering::Relaxed),
            connected_peers: self.swarm.connected_peers().count(),
            bootstrapped: self.bootstrapped,
        }
    }
}
