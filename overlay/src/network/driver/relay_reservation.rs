//! A peer's reservation on a supernode's relay, so that nodes can reach it through the
//! relay.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{kad, relay, Multiaddr, PeerId};
use tokio::time::Instant;

use super::Driver;
use crate::network::records::{is_loopback, without_peer_id};
use crate::network::roles::NodeRole;

/// A relay whose reservation failed or ended is not asked again for this long.
const RELAY_RETRY_BACKOFF: Duration = Duration::from_secs(5);

/// This peer's reservation on a relay, so that nodes can reach it through the relay.
#[derive(Default)]
pub(super) struct RelayReservation {
    /// The `/p2p-circuit` listener and the relay it reserves on. The relay client renews an
    /// accepted reservation itself; when it fails or the connection to the relay closes, the
    /// listener closes and a relay is chosen again.
    pub(super) listener: Option<(ListenerId, PeerId)>,
    /// The relay accepted the reservation.
    pub(super) accepted: bool,
    /// Relays whose reservation failed or ended recently, skipped until then. Entries are
    /// dropped once past, so there are at most a few.
    backoff: HashMap<PeerId, Instant>,
}

impl Driver {
    /// A peer that listens anywhere keeps one reservation on a connected supernode; a
    /// supernode (or a node that listens nowhere, such as a short-lived client) keeps none.
    pub(super) fn maintain_relay_reservation(&mut self) {
        if self.leaving {
            return;
        }
        let wanted = self.roles.role() == NodeRole::Peer && !self.config.listen.is_empty();
        if !wanted {
            self.drop_relay_reservation("not a peer");
            return;
        }
        if self.relay.listener.is_some() {
            return;
        }
        let now = Instant::now();
        self.relay.backoff.retain(|_, until| *until > now);
        let backoff = &self.relay.backoff;
        let candidates = self
            .supernodes
            .iter()
            .filter(|(peer, _)| !backoff.contains_key(*peer));
        let Some((relay, address)) = choose_relay(*self.swarm.local_peer_id(), candidates) else {
            return;
        };
        let circuit = without_peer_id(&address)
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(listener) => {
                tracing::info!(%relay, address = %circuit, "asking for a relay reservation");
                self.relay.listener = Some((listener, relay));
                self.relay.accepted = false;
            }
            Err(error) => {
                tracing::warn!(%relay, %error, "cannot listen through the relay");
                self.relay.backoff.insert(relay, now + RELAY_RETRY_BACKOFF);
            }
        }
    }

    pub(super) fn drop_relay_reservation(&mut self, why: &'static str) {
        if let Some((listener, relay)) = self.relay.listener.take() {
            tracing::info!(%relay, reason = why, "dropping the relay reservation");
            self.relay.accepted = false;
            self.swarm.remove_listener(listener);
        }
    }

    /// Whether `listener` was the relay reservation's; if so, it is gone and another relay
    /// (or the same one after [`RELAY_RETRY_BACKOFF`]) is asked at the next role check.
    pub(super) fn relay_listener_closed(
        &mut self,
        listener: ListenerId,
        reason: &Result<(), String>,
    ) -> bool {
        let Some((id, relay)) = self.relay.listener else {
            return false;
        };
        if id != listener {
            return false;
        }
        self.relay.listener = None;
        self.relay.accepted = false;
        match reason {
            Ok(()) => tracing::info!(%relay, "relay reservation ended"),
            Err(error) => tracing::warn!(%relay, %error, "relay reservation failed"),
        }
        self.relay
            .backoff
            .insert(relay, Instant::now() + RELAY_RETRY_BACKOFF);
        true
    }

    pub(super) fn on_relay_client_event(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                if matches!(self.relay.listener, Some((_, relay)) if relay == relay_peer_id) {
                    self.relay.accepted = true;
                }
                if renewal {
                    tracing::debug!(relay = %relay_peer_id, "relay reservation renewed");
                } else {
                    tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
                }
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "relayed connection from peer");
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "relayed connection through relay");
            }
        }
    }
}

/// The relay for `local` among `supernodes`: the one closest to it by XOR distance (as
/// Kademlia measures it) that has an address. The choice depends on the peer ids only, not
/// on a map's order, so a simulation repeats; and since ids are uniformly spread, so are
/// the peers of a network over its relays.
fn choose_relay<'a>(
    local: PeerId,
    supernodes: impl Iterator<Item = (&'a PeerId, &'a Vec<Multiaddr>)>,
) -> Option<(PeerId, Multiaddr)> {
    let local = kad::KBucketKey::from(local);
    supernodes
        .filter_map(|(peer, addresses)| preferred_addr(addresses).map(|a| (*peer, a)))
        .min_by_key(|(peer, _)| local.distance(&kad::KBucketKey::from(*peer)))
}

/// The address to reach a relay at: a routable one when it has any.
fn preferred_addr(addresses: &[Multiaddr]) -> Option<Multiaddr> {
    addresses
        .iter()
        .find(|address| !is_loopback(address))
        .or_else(|| addresses.first())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> Multiaddr {
        format!("/ip4/192.0.2.1/tcp/{port}")
            .parse()
            .unwrap_or_else(|_| Multiaddr::empty())
    }

    #[test]
    fn the_xor_closest_supernode_with_an_address_is_chosen_whatever_the_order() {
        let local = PeerId::random();
        let peers: Vec<PeerId> = (0..20).map(|_| PeerId::random()).collect();
        let local_key = kad::KBucketKey::from(local);
        let closest = *peers
            .iter()
            .min_by_key(|peer| local_key.distance(&kad::KBucketKey::from(**peer)))
            .unwrap_or(&peers[0]);
        let mut supernodes: Vec<(PeerId, Vec<Multiaddr>)> = peers
            .iter()
            .enumerate()
            .map(|(i, peer)| (*peer, vec![address(4000 + i as u16)]))
            .collect();
        for _ in 0..2 {
            let chosen = choose_relay(local, supernodes.iter().map(|(p, a)| (p, a)));
            assert_eq!(chosen.map(|(peer, _)| peer), Some(closest));
            supernodes.reverse();
        }
        // Without an address it cannot be used; the next closest is.
        for (peer, addresses) in &mut supernodes {
            if *peer == closest {
                addresses.clear();
            }
        }
        let chosen = choose_relay(local, supernodes.iter().map(|(p, a)| (p, a)));
        assert!(chosen.is_some_and(|(peer, _)| peer != closest));
        assert_eq!(choose_relay(local, std::iter::empty()), None);
    }
}
