//! Where a message came from or goes to. Shared by every layer so that the node can map a
//! [`Peer`] back to a socket or a stream connection.

use std::fmt;
use std::net::SocketAddr;

/// The transport protocol a message travels over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    /// A SIP stream between two p2psip nodes over the overlay (libp2p, encrypted and
    /// authenticated). The far end is named by an overlay host name (see
    /// [`crate::server::SipServer::overlay_connection`]), not an IP address.
    Overlay,
}

impl Transport {
    /// Reliable transports get no retransmissions (RFC 3261 17.1.1.2, 17.2.1).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The token used in a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Overlay => "P2P",
        }
    }

    /// The value of a URI `transport=` parameter, lower case.
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Overlay => "p2p",
        }
    }

    /// Parses a Via transport token or URI transport parameter, case-insensitively.
    pub fn from_token(token: &str) -> Option<Transport> {
        if token.eq_ignore_ascii_case("udp") {
            Some(Transport::Udp)
        } else if token.eq_ignore_ascii_case("tcp") {
            Some(Transport::Tcp)
        } else if token.eq_ignore_ascii_case("tls") {
            Some(Transport::Tls)
        } else if token.eq_ignore_ascii_case("p2p") {
            Some(Transport::Overlay)
        } else {
            None
        }
    }

    /// The well-known port for this transport (RFC 3261 19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            Transport::Overlay => 0,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// Identifies one stream connection (TCP or TLS) owned by the I/O layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// The far end of a message: transport, remote address and, for streams, the connection it
/// arrived on (so responses and requests to a registered phone reuse that connection, as
/// phones behind NAT need).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub remote: SocketAddr,
    /// The local address the message arrived on (or should leave from).
    pub local: SocketAddr,
    pub connection: Option<ConnectionId>,
}

/// Bytes the I/O layer must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub payload: bytes::Bytes,
}

/// True for addresses of private networks, which a host elsewhere cannot reach: RFC 1918,
/// the shared address space of carrier-grade NAT (100.64.0.0/10), unique-local IPv6
/// (fc00::/7) and link-local addresses. The SIP NAT handling and the node's start-up
/// checks classify addresses with it.
pub fn is_private_address(ip: std::net::IpAddr) -> bool {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (b & 0xc0) == 64)
        }
        std::net::IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}
