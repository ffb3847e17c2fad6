//! Overlay peers, sans-IO: other nodes are named by overlay host names (chosen by the node,
//! e.g. derived from the libp2p peer id); the server maps each name to a [`ConnectionId`] in
//! a reserved range so that overlay peers travel through the same [`Peer`] plumbing as
//! stream connections.

use super::SipServer;
use crate::transport::{ConnectionId, Peer, Transport};
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

/// Connection ids at or above this value name overlay peers, not sockets.
const OVERLAY_CONNECTION_BASE: u64 = 1 << 62;

/// Overlay host names and their connection ids. Bounded: beyond `capacity` names the oldest
/// mapping is forgotten (a request routed to it later gets a fresh id; one that was in
/// flight fails like a closed connection).
#[derive(Debug, Default)]
pub(crate) struct OverlayPeers {
    by_name: HashMap<String, ConnectionId>,
    by_id: HashMap<ConnectionId, String>,
    order: VecDeque<ConnectionId>,
    next: u64,
}

/// How many overlay peer names are remembered.
const OVERLAY_PEERS_CAPACITY: usize = 65_536;

impl OverlayPeers {
    fn connection(&mut self, name: &str) -> ConnectionId {
        let name = name.to_ascii_lowercase();
        if let Some(id) = self.by_name.get(&name) {
            return *id;
        }
        if self.order.len() >= OVERLAY_PEERS_CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                if let Some(old_name) = self.by_id.remove(&oldest) {
                    self.by_name.remove(&old_name);
                }
            }
        }
        self.next += 1;
        let id = ConnectionId(OVERLAY_CONNECTION_BASE + self.next);
        self.by_name.insert(name.clone(), id);
        self.by_id.insert(id, name);
        self.order.push_back(id);
        id
    }

    fn name(&self, id: ConnectionId) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }
}

/// The address placeholder of overlay peers (they have no socket address).
const NO_ADDRESS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

impl SipServer {
    /// The [`Peer`] for a message that arrived from the overlay node named `host`. The node
    /// calls this for inbound overlay messages before [`SipServer::handle_input`].
    pub fn overlay_peer(&mut self, host: &str) -> Peer {
        Peer {
            transport: Transport::Overlay,
            remote: NO_ADDRESS,
            local: NO_ADDRESS,
            connection: Some(self.overlay_peers.connection(host)),
        }
    }

    /// The overlay host name behind a [`Transport::Overlay`] transmit's connection id, for
    /// the node to send it on.
    pub fn overlay_host_of(&self, connection: ConnectionId) -> Option<&str> {
        self.overlay_peers.name(connection)
    }

    /// The node could not deliver to the overlay node `host`: requests pending on it are
    /// answered now (500 upstream) instead of after Timer B.
    pub fn overlay_peer_unreachable(&mut self, now: Instant, host: &str) {
        let known = self
            .overlay_peers
            .by_name
            .get(&host.to_ascii_lowercase())
            .copied();
        if let Some(connection) = known {
            self.connection_failed(now, connection);
        }
    }
}
