//! The node's role: the supernodes it knows, promotion and demotion, and the DHT mode that
//! follows from both.

use libp2p::{Multiaddr, PeerId};

use super::Driver;
use crate::network::behaviour::{kad_mode, relay_status};
use crate::network::roles::{dht_server, is_relayed, NodeRole, RoleSetting};
use crate::network::OverlayEvent;

/// Supernodes remembered: connected overlay nodes that advertise the relay hop protocol.
pub(super) const MAX_KNOWN_SUPERNODES: usize = 64;
/// Addresses remembered per supernode.
const MAX_SUPERNODE_ADDRS: usize = 8;

impl Driver {
    /// Remembers or forgets `peer` as a supernode, then re-decides the DHT mode and the
    /// relay reservation.
    pub(super) fn note_supernode(
        &mut self,
        peer: PeerId,
        relay: bool,
        mut addresses: Vec<Multiaddr>,
    ) {
        addresses.retain(|address| !is_relayed(address));
        addresses.truncate(MAX_SUPERNODE_ADDRS);
        if relay && !addresses.is_empty() && self.swarm.is_connected(&peer) {
            if !self.supernodes.contains_key(&peer) {
                if self.supernodes.len() >= MAX_KNOWN_SUPERNODES {
                    tracing::debug!(%peer, "supernode table full; not remembering this one");
                    return;
                }
                tracing::info!(%peer, "supernode found");
            }
            self.supernodes.insert(peer, addresses);
        } else if self.supernodes.remove(&peer).is_some() {
            tracing::info!(%peer, "peer is no longer a supernode");
            if matches!(self.relay.listener, Some((_, relay)) if relay == peer) {
                self.drop_relay_reservation("the relay is no longer a supernode");
            }
        }
        self.update_dht_mode();
        self.maintain_relay_reservation();
    }

    /// Periodic: promotion by uptime, then the DHT mode and the relay reservation.
    pub(super) fn on_role_check(&mut self) {
        let changed = self.roles.tick(self.started.elapsed());
        self.apply_role_change(changed);
        self.update_dht_mode();
        self.maintain_relay_reservation();
    }

    /// AutoNAT found this node not reachable: its direct external addresses are void (a
    /// supernode by configuration keeps its own), and so is the promotion they gave.
    pub(super) fn on_reachability_lost(&mut self) {
        if self.roles.setting() != RoleSetting::Supernode {
            let stale: Vec<Multiaddr> = self
                .swarm
                .external_addresses()
                .filter(|address| !is_relayed(address))
                .cloned()
                .collect();
            for address in &stale {
                tracing::info!(%address, "external address no longer confirmed");
                self.swarm.remove_external_address(address);
            }
        }
        let changed = self.roles.reachability_lost(self.started.elapsed());
        self.apply_role_change(changed);
    }

    /// Applies a new role: relay server on or off, DHT mode, relay reservation; reported
    /// as [`OverlayEvent::RoleChanged`].
    pub(super) fn apply_role_change(&mut self, changed: Option<NodeRole>) {
        let Some(role) = changed else {
            return;
        };
        tracing::info!(%role, setting = %self.roles.setting(), "node role changed");
        // Connected nodes learn of it by an identify push (the hop protocol comes or goes).
        self.swarm
            .behaviour_mut()
            .relay_server
            .inner_mut()
            .set_status(Some(relay_status(role == NodeRole::Supernode)));
        self.update_dht_mode();
        self.maintain_relay_reservation();
        self.emit(OverlayEvent::RoleChanged { role });
    }

    /// Switches Kademlia between server and client mode as [`dht_server`] says. A node
    /// becoming a client hands its stored records over first: nobody will ask it for them.
    pub(super) fn update_dht_mode(&mut self) {
        if self.leaving {
            return;
        }
        let server = dht_server(
            self.config.dht_mode,
            self.roles.setting(),
            self.roles.role(),
            !self.supernodes.is_empty(),
        );
        if server == self.dht_server {
            return;
        }
        self.dht_server = server;
        tracing::debug!(
            server,
            role = %self.roles.role(),
            supernodes = self.supernodes.len(),
            "switching DHT mode"
        );
        self.swarm
            .behaviour_mut()
            .kademlia
            .set_mode(Some(kad_mode(server)));
        if !server {
            self.hand_off_stored_records();
        }
    }
}
