//! Recovering from TCP simultaneous open.
//!
//! A TCP dial leaves from the node's listening port (so that a NAT maps it like the
//! listener, which hole punching and address discovery rely on). When two nodes dial each
//! other at the same moment, as two nodes on one LAN do when mDNS tells both about the
//! other at once, both SYNs cross and TCP joins them into one connection that each side
//! thinks it opened. Both then start the security handshake as its initiator and both
//! dials fail. Left alone, they keep failing: each side's Kademlia retries on the same
//! events at the same moments.
//!
//! So a TCP dial that reached the other node (no operating-system error: the connection
//! was made) but failed in its handshake is tried once more from a fresh port, which
//! cannot collide with the other side's dial.

use std::collections::HashMap;
use std::error::Error;
use std::io;
use std::time::Duration;

use libp2p::core::transport::TransportError;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::DialError;
use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;

use super::Driver;

/// A peer is dialled again from a fresh port at most this often.
const REDIAL_BACKOFF: Duration = Duration::from_secs(60);
/// Peers remembered as recently redialled; when full (after forgetting those whose backoff
/// is over), further handshake failures are not retried until entries age out.
const MAX_REDIALLED_PEERS: usize = 1024;

/// When each peer was last dialled again from a fresh port.
#[derive(Default)]
pub(super) struct FreshPortRedials {
    last: HashMap<PeerId, Instant>,
}

impl FreshPortRedials {
    /// Whether `peer` may be redialled now; if so, notes that it is.
    fn admit(&mut self, peer: PeerId, now: Instant) -> bool {
        if let Some(last) = self.last.get(&peer) {
            if now.saturating_duration_since(*last) < REDIAL_BACKOFF {
                return false;
            }
        }
        if self.last.len() >= MAX_REDIALLED_PEERS && !self.last.contains_key(&peer) {
            self.last
                .retain(|_, last| now.saturating_duration_since(*last) < REDIAL_BACKOFF);
            if self.last.len() >= MAX_REDIALLED_PEERS {
                return false;
            }
        }
        self.last.insert(peer, now);
        true
    }
}

impl Driver {
    /// Dials `peer` again from a fresh port if a TCP dial to it failed in its handshake.
    pub(super) fn redial_after_handshake_failure(
        &mut self,
        peer: Option<PeerId>,
        error: &DialError,
    ) {
        let Some(peer) = peer else {
            return;
        };
        let addresses = handshake_failed_tcp_addresses(error);
        if addresses.is_empty() || self.swarm.is_connected(&peer) {
            return;
        }
        if !self.redials.admit(peer, Instant::now()) {
            return;
        }
        tracing::debug!(%peer, "TCP handshake failed (simultaneous open?); dialling again from a fresh port");
        let dial = DialOpts::peer_id(peer)
            .addresses(addresses)
            .allocate_new_port()
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(error) = self.swarm.dial(dial) {
            tracing::debug!(%peer, %error, "fresh-port redial not started");
        }
    }
}

/// The TCP addresses of `error` whose dial failed after the connection was made.
fn handshake_failed_tcp_addresses(error: &DialError) -> Vec<Multiaddr> {
    let DialError::Transport(attempts) = error else {
        return Vec::new();
    };
    attempts
        .iter()
        .filter(|(address, _)| is_tcp(address))
        .filter(|(_, error)| match error {
            TransportError::Other(error) => is_handshake_failure(error),
            TransportError::MultiaddrNotSupported(_) => false,
        })
        .map(|(address, _)| address.clone())
        .collect()
}

fn is_tcp(address: &Multiaddr) -> bool {
    let mut tcp = false;
    for protocol in address.iter() {
        match protocol {
            Protocol::Tcp(_) => tcp = true,
            // A relayed address: the TCP part is the relay's, already connected.
            Protocol::P2pCircuit => return false,
            _ => {}
        }
    }
    tcp
}

/// Whether a dial error is a failed handshake rather than a failed connect: nothing in its
/// chain is an operating-system error (refused, unreachable, reset) and it is no timeout.
fn is_handshake_failure(error: &io::Error) -> bool {
    let mut next: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(io_error) = current.downcast_ref::<io::Error>() {
            if io_error.raw_os_error().is_some() || io_error.kind() == io::ErrorKind::TimedOut {
                return false;
            }
            // `io::Error::source` skips the error it wraps; look at that one too.
            if let Some(inner) = io_error.get_ref() {
                next = Some(inner);
                continue;
            }
        }
        next = current.source();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "upgrade failed")
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    fn nested(inner: io::Error) -> io::Error {
        io::Error::other(Wrapped(io::Error::other(Wrapped(inner))))
    }

    #[test]
    fn a_handshake_that_read_garbage_is_a_handshake_failure() {
        let error = nested(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected input",
        ));
        assert!(is_handshake_failure(&error));
    }

    #[test]
    fn refused_reset_and_timed_out_connects_are_not() {
        // 111 is ECONNREFUSED on Linux; any operating-system error counts.
        for inner in [
            io::Error::from_raw_os_error(111),
            io::Error::from(io::ErrorKind::TimedOut),
        ] {
            assert!(!is_handshake_failure(&nested(inner)));
        }
    }

    #[test]
    fn only_direct_tcp_addresses_are_redialled() {
        let tcp: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        let relayed: Multiaddr = format!(
            "/ip4/10.0.0.1/tcp/4001/p2p/{}/p2p-circuit",
            PeerId::random()
        )
        .parse()
        .unwrap();
        let memory: Multiaddr = "/memory/7".parse().unwrap();
        assert!(is_tcp(&tcp));
        assert!(!is_tcp(&relayed));
        assert!(!is_tcp(&memory));
    }

    #[test]
    fn a_peer_is_redialled_once_per_backoff() {
        let mut redials = FreshPortRedials::default();
        let peer = PeerId::random();
        let start = Instant::now();
        assert!(redials.admit(peer, start));
        assert!(!redials.admit(peer, start + REDIAL_BACKOFF / 2));
        assert!(redials.admit(peer, start + REDIAL_BACKOFF));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut redials = FreshPortRedials::default();
        let start = Instant::now();
        for _ in 0..MAX_REDIALLED_PEERS {
            assert!(redials.admit(PeerId::random(), start));
        }
        assert!(
            !redials.admit(PeerId::random(), start),
            "full, nothing aged out"
        );
        assert!(
            redials.admit(PeerId::random(), start + REDIAL_BACKOFF),
            "aged-out entries make room"
        );
        assert_eq!(redials.last.len(), 1);
    }
}
