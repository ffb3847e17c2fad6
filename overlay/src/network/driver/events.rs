//! Swarm events: listeners, connections, discovery (identify, mDNS, Kademlia) and the
//! behaviours' events, each handed to the part of the driver that acts on it.

use std::collections::HashMap;

use libp2p::core::transport::ListenerId;
use libp2p::swarm::SwarmEvent;
use libp2p::{autonat, dcutr, identify, kad, mdns, relay, Multiaddr, PeerId};

use super::Driver;
use crate::network::behaviour::{OverlayBehaviourEvent, IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL};
use crate::network::records::is_dialable;
use crate::network::roles::{is_relayed, RoleSetting};
use crate::network::{Discovery, OverlayEvent, StartError};

impl Driver {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<OverlayBehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                self.listener_ready(listener_id);
                if self.roles.setting() == RoleSetting::Supernode && !is_relayed(&address) {
                    // A relay hands its external addresses to the peers it accepts, and peers
                    // refuse a reservation without any. A supernode by configuration has no
                    // confirmation to wait for: its listen addresses are its external ones.
                    self.swarm.add_external_address(address.clone());
                }
                self.emit(OverlayEvent::ListenAddr { address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                if self.roles.setting() == RoleSetting::Supernode && !is_relayed(&address) {
                    self.swarm.remove_external_address(&address);
                }
                self.emit(OverlayEvent::ListenAddrExpired { address });
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let reason = reason.map_err(|error| error.to_string());
                if !self.relay_listener_closed(listener_id, &reason) {
                    if let Err(error) = reason {
                        self.listener_failed(listener_id, error);
                    }
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                self.listener_failed(listener_id, error.to_string());
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                tracing::debug!(peer = %peer_id, address = %endpoint.get_remote_address(), "connected");
                if num_established.get() == 1 {
                    self.emit(OverlayEvent::PeerConnected { peer: peer_id });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, cause = ?cause, "connection closed");
                if num_established == 0 {
                    if self.supernodes.remove(&peer_id).is_some() {
                        tracing::debug!(peer = %peer_id, "disconnected from supernode");
                        self.update_dht_mode();
                    }
                    self.emit(OverlayEvent::PeerDisconnected { peer: peer_id });
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
                self.redial_after_handshake_failure(peer_id, &error);
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
                let changed = self
                    .roles
                    .address_confirmed(&address, self.started.elapsed());
                self.apply_role_change(changed);
                self.emit(OverlayEvent::ExternalAddrConfirmed { address });
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!(%address, "external address expired");
                let changed = self.roles.address_expired(&address, self.started.elapsed());
                self.apply_role_change(changed);
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: OverlayBehaviourEvent) {
        match event {
            OverlayBehaviourEvent::Kademlia(event) => self.on_kademlia_event(event),
            OverlayBehaviourEvent::Identify(identify::Event::Received {
                peer_id, info, ..
            }) => {
                self.on_identified(peer_id, info);
            }
            OverlayBehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                self.on_mdns_discovered(found);
            }
            OverlayBehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                tracing::info!(?old, ?new, "NAT status changed");
                if matches!(new, autonat::NatStatus::Private) {
                    self.on_reachability_lost();
                }
            }
            OverlayBehaviourEvent::RelayClient(event) => self.on_relay_client_event(event),
            OverlayBehaviourEvent::RelayServer(event) => on_relay_server_event(event),
            OverlayBehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(_) => {
                    tracing::info!(peer = %remote_peer_id, "relayed connection upgraded to a direct one");
                }
                Err(error) => {
                    tracing::debug!(peer = %remote_peer_id, %error, "direct connection upgrade failed");
                }
            },
            _ => {}
        }
    }

    fn on_kademlia_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => self.on_inbound_put(source, record),
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            } => match result {
                kad::QueryResult::GetRecord(result) => self.on_get_result(id, result, step, &stats),
                kad::QueryResult::PutRecord(result) => self.on_put_result(id, result),
                kad::QueryResult::Bootstrap(Ok(ok)) if ok.num_remaining == 0 => {
                    tracing::debug!("bootstrap done");
                    if !self.bootstrapped {
                        // Entries put while the routing table was still filling went to the
                        // closest nodes known then, which may not be the closest ones: put
                        // them again now that the node knows its neighbourhood.
                        self.bootstrapped = true;
                        self.make_own_entries_due();
                    }
                }
                _ => {}
            },
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer: true,
                addresses,
                ..
            } => {
                tracing::debug!(%peer, "peer added to routing table");
                if self.routing_table_size() == 1 {
                    // Entries published while alone reach the overlay now.
                    self.make_own_entries_due();
                }
                self.emit(OverlayEvent::PeerDiscovered {
                    peer,
                    addresses: addresses.into_vec(),
                    via: Discovery::Dht,
                });
            }
            kad::Event::ModeChanged { new_mode } => {
                tracing::info!(mode = %new_mode, "DHT mode changed");
            }
            _ => {}
        }
    }

    /// Adds an identified DHT server's listen addresses to the routing table (Kademlia
    /// cannot know on which address a peer that dialled in accepts connections), removes an
    /// overlay node that stopped being one, and notes whether the node is a supernode.
    /// Identify runs on connecting and again whenever the node's protocols change (a role
    /// or DHT mode switch).
    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        if info.protocol_version != IDENTIFY_PROTOCOL_VERSION {
            return;
        }
        let addresses: Vec<Multiaddr> = info.listen_addrs.into_iter().filter(is_dialable).collect();
        let kademlia = &mut self.swarm.behaviour_mut().kademlia;
        if info.protocols.contains(&KAD_PROTOCOL) {
            for address in &addresses {
                kademlia.add_address(&peer, address.clone());
            }
        } else if kademlia.remove_peer(&peer).is_some() {
            // A DHT client answers no DHT request: asking it only slows queries down.
            tracing::debug!(%peer, "peer is a DHT client now; removed from the routing table");
        }
        let relay = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
        self.note_supernode(peer, relay, addresses);
    }

    fn on_mdns_discovered(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, address) in found {
            by_peer.entry(peer).or_default().push(address);
        }
        let was_alone = self.routing_table_size() == 0;
        for (peer, addresses) in by_peer {
            let kademlia = &mut self.swarm.behaviour_mut().kademlia;
            for address in &addresses {
                kademlia.add_address(&peer, address.clone());
            }
            tracing::debug!(%peer, "found by mDNS");
            self.emit(OverlayEvent::PeerDiscovered {
                peer,
                addresses,
                via: Discovery::Mdns,
            });
        }
        if was_alone {
            // Joining a mesh found on the LAN: learn the rest of it.
            let _ = self.swarm.behaviour_mut().kademlia.bootstrap();
        }
    }

    fn listener_ready(&mut self, listener: ListenerId) {
        if self.listeners_pending.remove(&listener) && self.listeners_pending.is_empty() {
            self.answer_ready();
        }
    }

    fn listener_failed(&mut self, listener: ListenerId, reason: String) {
        tracing::warn!(%reason, "listener failed");
        if self.listeners_pending.remove(&listener) {
            if let Some(address) = self.listener_addrs.get(&listener) {
                self.listeners_failed.push((address.clone(), reason));
            }
            if self.listeners_pending.is_empty() {
                self.answer_ready();
            }
        }
    }

    /// Start succeeds when at least one listener works (or none was asked for).
    pub(super) fn answer_ready(&mut self) {
        let Some(ready) = self.ready.take() else {
            return;
        };
        let answer = match self.listeners_failed.first() {
            Some((address, reason)) if self.listeners_failed.len() == self.listener_addrs.len() => {
                Err(StartError::Listen {
                    address: address.clone(),
                    reason: reason.clone(),
                })
            }
            _ => Ok(()),
        };
        let _ = ready.send(answer);
    }
}

fn on_relay_server_event(event: relay::Event) {
    match event {
        relay::Event::ReservationReqAccepted {
            src_peer_id,
            renewed,
        } => {
            if renewed {
                tracing::debug!(peer = %src_peer_id, "relay reservation renewed for peer");
            } else {
                tracing::info!(peer = %src_peer_id, "relay reservation accepted for peer");
            }
        }
        relay::Event::ReservationReqDenied {
            src_peer_id,
            status,
        } => {
            tracing::debug!(peer = %src_peer_id, ?status, "relay reservation denied");
        }
        relay::Event::CircuitReqAccepted {
            src_peer_id,
            dst_peer_id,
        } => {
            tracing::debug!(peer = %src_peer_id, to = %dst_peer_id, "relaying a connection");
        }
        relay::Event::CircuitReqDenied {
            src_peer_id,
            dst_peer_id,
            status,
        } => {
            tracing::debug!(peer = %src_peer_id, to = %dst_peer_id, ?status, "relay circuit denied");
        }
        other => tracing::trace!(event = ?other, "relay server"),
    }
}
