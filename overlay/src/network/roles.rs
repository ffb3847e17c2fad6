//! Node roles: a `peer` or a `supernode`, the rule by which a node configured as `auto`
//! moves between them, and what each role means for the DHT.
//!
//! The rule is a small state machine with no clock and no I/O of its own: the network task
//! feeds it the confirmations and expiries of external addresses and the node's uptime, and
//! applies the role it answers (Kademlia mode, relay server, relay reservation).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

use super::config::DhtMode;

/// The role a node is configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoleSetting {
    /// Starts as a peer; becomes a supernode once a public address is confirmed and the node
    /// has been up for [`OverlayConfig::promote_after`](super::OverlayConfig::promote_after),
    /// and a peer again when the confirmation is lost.
    #[default]
    Auto,
    /// Always a peer.
    Peer,
    /// Always a supernode, whether or not a public address is confirmed.
    Supernode,
}

impl RoleSetting {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleSetting::Auto => "auto",
            RoleSetting::Peer => "peer",
            RoleSetting::Supernode => "supernode",
        }
    }
}

impl fmt::Display for RoleSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not `auto`, `peer` or `supernode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected auto, peer or supernode")]
pub struct BadRoleSetting;

impl FromStr for RoleSetting {
    type Err = BadRoleSetting;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(RoleSetting::Auto),
            "peer" => Ok(RoleSetting::Peer),
            "supernode" => Ok(RoleSetting::Supernode),
            _ => Err(BadRoleSetting),
        }
    }
}

/// The role a node plays now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeRole {
    /// Keeps a relay reservation on a supernode so that it can be reached behind NAT, and
    /// is a DHT client once a supernode is known (see [`dht_server`]).
    #[default]
    Peer,
    /// A DHT server and a circuit relay for peers.
    Supernode,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Peer => "peer",
            NodeRole::Supernode => "supernode",
        }
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Confirmed external addresses remembered. More add nothing to the decision; one that is
/// not remembered counts again the next time AutoNAT confirms it (every successful probe
/// does).
const MAX_CONFIRMED: usize = 16;

/// Whether `address` goes through a circuit relay. A relayed address is confirmed as soon
/// as a relay accepts a reservation; it says nothing about this node being reachable.
pub(crate) fn is_relayed(address: &Multiaddr) -> bool {
    address
        .iter()
        .any(|protocol| matches!(protocol, Protocol::P2pCircuit))
}

/// The promotion rule. Every input carries the node's uptime; an input that changes the
/// role returns the new one.
///
/// `auto`: supernode while at least one direct (not relayed) external address is confirmed
/// and the uptime is at least `promote_after`; peer otherwise. `peer` and `supernode` never
/// change.
#[derive(Debug, Clone)]
pub(crate) struct RoleMachine {
    setting: RoleSetting,
    promote_after: Duration,
    confirmed: HashSet<Multiaddr>,
    role: NodeRole,
}

impl RoleMachine {
    pub(crate) fn new(setting: RoleSetting, promote_after: Duration) -> Self {
        RoleMachine {
            setting,
            promote_after,
            confirmed: HashSet::new(),
            role: match setting {
                RoleSetting::Supernode => NodeRole::Supernode,
                RoleSetting::Auto | RoleSetting::Peer => NodeRole::Peer,
            },
        }
    }

    pub(crate) fn role(&self) -> NodeRole {
        self.role
    }

    pub(crate) fn setting(&self) -> RoleSetting {
        self.setting
    }

    /// Others confirmed that this node is reachable at `address` (AutoNAT). Relayed
    /// addresses are ignored.
    pub(crate) fn address_confirmed(
        &mut self,
        address: &Multiaddr,
        uptime: Duration,
    ) -> Option<NodeRole> {
        if !is_relayed(address) && self.confirmed.len() < MAX_CONFIRMED {
            self.confirmed.insert(address.clone());
        }
        self.decide(uptime)
    }

    /// `address` is no longer confirmed.
    pub(crate) fn address_expired(
        &mut self,
        address: &Multiaddr,
        uptime: Duration,
    ) -> Option<NodeRole> {
        self.confirmed.remove(address);
        self.decide(uptime)
    }

    /// AutoNAT found the node not reachable: every confirmation is void.
    pub(crate) fn reachability_lost(&mut self, uptime: Duration) -> Option<NodeRole> {
        self.confirmed.clear();
        self.decide(uptime)
    }

    /// Time passed: a node with a confirmed address may have been up long enough now.
    pub(crate) fn tick(&mut self, uptime: Duration) -> Option<NodeRole> {
        self.decide(uptime)
    }

    fn decide(&mut self, uptime: Duration) -> Option<NodeRole> {
        let wanted = match self.setting {
            RoleSetting::Peer => NodeRole::Peer,
            RoleSetting::Supernode => NodeRole::Supernode,
            RoleSetting::Auto if !self.confirmed.is_empty() && uptime >= self.promote_after => {
                NodeRole::Supernode
            }
            RoleSetting::Auto => NodeRole::Peer,
        };
        if wanted == self.role {
            return None;
        }
        self.role = wanted;
        Some(wanted)
    }
}

/// Whether the node answers DHT requests and stores records for others (Kademlia server
/// mode) rather than only querying (client mode).
///
/// [`DhtMode::Server`] and [`DhtMode::Client`] force the mode. Otherwise a supernode is a
/// server and a configured `peer` a client. A node in `auto` that is a peer is a client only
/// while it is connected to a supernode: in an overlay with no supernode (a LAN, a test
/// mesh, where nobody gets a confirmed public address) every `auto` node stays a server, so
/// the DHT always has nodes that store records.
pub(crate) fn dht_server(
    mode: DhtMode,
    setting: RoleSetting,
    role: NodeRole,
    supernode_connected: bool,
) -> bool {
    match (mode, role, setting) {
        (DhtMode::Server, _, _) => true,
        (DhtMode::Client, _, _) => false,
        (DhtMode::ByRole, NodeRole::Supernode, _) => true,
        (DhtMode::ByRole, NodeRole::Peer, RoleSetting::Auto) => !supernode_connected,
        (DhtMode::ByRole, NodeRole::Peer, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMOTE_AFTER: Duration = Duration::from_secs(600);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn auto_is_promoted_only_when_public_and_up_long_enough() {
        let public = addr("/ip4/198.51.100.7/tcp/4001");
        let mut machine = RoleMachine::new(RoleSetting::Auto, PROMOTE_AFTER);
        assert_eq!(machine.role(), NodeRole::Peer);
        // Up long enough but nothing confirmed.
        assert_eq!(machine.tick(secs(3600)), None);
        // Confirmed early: stays a peer until the uptime is reached.
        let mut machine = RoleMachine::new(RoleSetting::Auto, PROMOTE_AFTER);
        assert_eq!(machine.address_confirmed(&public, secs(30)), None);
        assert_eq!(machine.tick(secs(599)), None);
        assert_eq!(machine.role(), NodeRole::Peer);
        assert_eq!(machine.tick(secs(600)), Some(NodeRole::Supernode));
        assert_eq!(machine.tick(secs(601)), None);
        assert_eq!(machine.role(), NodeRole::Supernode);
        // Confirmed late: promoted at once.
        let mut machine = RoleMachine::new(RoleSetting::Auto, PROMOTE_AFTER);
        assert_eq!(
            machine.address_confirmed(&public, secs(900)),
            Some(NodeRole::Supernode)
        );
    }

    #[test]
    fn auto_is_demoted_when_the_confirmation_is_lost() {
        let first = addr("/ip4/198.51.100.7/tcp/4001");
        let second = addr("/ip6/2001:db8::7/tcp/4001");
        let mut machine = RoleMachine::new(RoleSetting::Auto, PROMOTE_AFTER);
        machine.address_confirmed(&first, secs(700));
        machine.address_confirmed(&second, secs(701));
        assert_eq!(machine.role(), NodeRole::Supernode);
        // One of two addresses expiring changes nothing; the last one does.
        assert_eq!(machine.address_expired(&first, secs(800)), None);
        assert_eq!(
            machine.address_expired(&second, secs(801)),
            Some(NodeRole::Peer)
        );
        // Confirmed again: promoted again (the uptime is still enough).
        assert_eq!(
            machine.address_confirmed(&first, secs(900)),
            Some(NodeRole::Supernode)
        );
        // AutoNAT saying private voids every confirmation at once.
        machine.address_confirmed(&second, secs(901));
        assert_eq!(machine.reachability_lost(secs(950)), Some(NodeRole::Peer));
        assert_eq!(machine.tick(secs(5000)), None);
        // Expiry of an address never confirmed is harmless.
        assert_eq!(machine.address_expired(&first, secs(5001)), None);
    }

    #[test]
    fn relayed_addresses_do_not_count() {
        let relayed = addr(
            "/ip4/198.51.100.7/tcp/4001/p2p/12D3KooWLy8mUBeyYGqzYFF4Urj2aPAyUoPmW5b4UebmEgv6gFVE/p2p-circuit",
        );
        assert!(is_relayed(&relayed));
        let mut machine = RoleMachine::new(RoleSetting::Auto, Duration::ZERO);
        assert_eq!(machine.address_confirmed(&relayed, secs(1)), None);
        assert_eq!(machine.role(), NodeRole::Peer);
    }

    #[test]
    fn forced_roles_never_change() {
        let public = addr("/ip4/198.51.100.7/tcp/4001");
        let mut peer = RoleMachine::new(RoleSetting::Peer, Duration::ZERO);
        assert_eq!(peer.address_confirmed(&public, secs(10_000)), None);
        assert_eq!(peer.role(), NodeRole::Peer);
        let mut supernode = RoleMachine::new(RoleSetting::Supernode, PROMOTE_AFTER);
        assert_eq!(supernode.role(), NodeRole::Supernode);
        assert_eq!(supernode.reachability_lost(secs(0)), None);
        assert_eq!(supernode.address_expired(&public, secs(1)), None);
        assert_eq!(supernode.role(), NodeRole::Supernode);
    }

    #[test]
    fn confirmed_addresses_are_bounded() {
        let mut machine = RoleMachine::new(RoleSetting::Auto, Duration::ZERO);
        for port in 0..100u16 {
            let address = addr(&format!("/ip4/198.51.100.7/tcp/{port}"));
            machine.address_confirmed(&address, secs(1));
        }
        assert_eq!(machine.confirmed.len(), MAX_CONFIRMED);
        assert_eq!(machine.role(), NodeRole::Supernode);
    }

    #[test]
    fn dht_mode_follows_the_role() {
        use NodeRole::{Peer, Supernode};
        // Forced modes win.
        assert!(dht_server(DhtMode::Server, RoleSetting::Peer, Peer, true));
        assert!(!dht_server(
            DhtMode::Client,
            RoleSetting::Supernode,
            Supernode,
            false
        ));
        // Supernodes serve, configured peers do not.
        assert!(dht_server(
            DhtMode::ByRole,
            RoleSetting::Auto,
            Supernode,
            true
        ));
        assert!(!dht_server(DhtMode::ByRole, RoleSetting::Peer, Peer, false));
        // An `auto` peer serves until it is connected to a supernode.
        assert!(dht_server(DhtMode::ByRole, RoleSetting::Auto, Peer, false));
        assert!(!dht_server(DhtMode::ByRole, RoleSetting::Auto, Peer, true));
    }

    #[test]
    fn settings_parse() {
        for setting in [RoleSetting::Auto, RoleSetting::Peer, RoleSetting::Supernode] {
            assert_eq!(setting.as_str().parse::<RoleSetting>(), Ok(setting));
        }
        assert_eq!("Supernode".parse::<RoleSetting>(), Err(BadRoleSetting));
        assert_eq!(NodeRole::Supernode.to_string(), "supernode");
    }
}
