//! UDP sockets of the core task: binding with large kernel buffers, batched non-blocking
//! receive, and sending with a fallback when the send buffer is full.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use tokio::net::UdpSocket;

/// Kernel socket buffer size asked for (the kernel caps it at net.core.[rw]mem_max). Large
/// buffers absorb bursts while the core is busy with a batch.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Datagrams read from one socket per batch, so one busy socket cannot starve the rest.
pub const RECV_BATCH: usize = 64;

/// One bound UDP socket.
pub struct UdpEndpoint {
    pub socket: UdpSocket,
    /// The bound address (port resolved), used as [`sip::transport::Peer::local`].
    pub local: SocketAddr,
}

impl UdpEndpoint {
    /// Binds with large buffers. Must run inside the tokio runtime.
    ///
    /// No SO_REUSEADDR: on Linux it lets a second UDP socket bind the very same address, so
    /// two nodes would silently split one port's traffic instead of the second failing.
    /// (UDP has no TIME_WAIT, so a restarted node rebinds without it.)
    pub fn bind(addr: SocketAddr) -> io::Result<UdpEndpoint> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // Best effort: a smaller buffer still works, just drops more under bursts.
        if let Err(error) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
            tracing::debug!(%error, "cannot set SO_RCVBUF");
        }
        if let Err(error) = socket.set_send_buffer_size(SOCKET_BUFFER) {
            tracing::debug!(%error, "cannot set SO_SNDBUF");
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let local = socket.local_addr()?;
        Ok(UdpEndpoint { socket, local })
    }

    pub fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        // An error here resurfaces from try_recv_from, where it is handled.
        self.socket.poll_recv_ready(cx).map(|_| ())
    }

    /// Sends one datagram: without waiting if the send buffer has room, else waiting for it.
    /// False when the operating system refused it (logged; the caller tells the server, so
    /// a request toward an unreachable address fails at once).
    pub async fn send(&self, payload: &[u8], to: SocketAddr) -> bool {
        let result = match self.socket.try_send_to(payload, to) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                self.socket.send_to(payload, to).await
            }
            other => other,
        };
        match result {
            Ok(_) => true,
            Err(error) => {
                tracing::debug!(%error, %to, local = %self.local, "UDP send failed");
                false
            }
        }
    }
}

/// Picks the socket to send from: the one bound to `local`, else one on the same port and
/// address family (the server may name the advertised address of a wildcard socket), else
/// any of the same family.
pub fn pick(endpoints: &[UdpEndpoint], local: SocketAddr, to: SocketAddr) -> Option<&UdpEndpoint> {
    let family = |e: &&UdpEndpoint| e.local.is_ipv4() == to.is_ipv4();
    endpoints
        .iter()
        .filter(family)
        .find(|e| e.local == local)
        .or_else(|| {
            endpoints
                .iter()
                .filter(family)
                .find(|e| e.local.port() == local.port())
        })
        .or_else(|| endpoints.iter().find(family))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_resolves_port_and_picks_by_local() {
        let a = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(a.local.port(), 0);
        let (a_local, b_local) = (a.local, b.local);
        let endpoints = [a, b];
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(pick(&endpoints, b_local, to).unwrap().local, b_local);
        let elsewhere: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(pick(&endpoints, elsewhere, to).unwrap().local, a_local);
        assert!(pick(&endpoints, b_local, "[::1]:9".parse().unwrap()).is_none());
    }

    #[tokio::test]
    async fn second_bind_of_same_port_fails() {
        let a = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(UdpEndpoint::bind(a.local).is_err());
    }

    #[tokio::test]
    async fn sends_and_receives() {
        let a = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        a.send(b"hello", b.local).await;
        let mut buf = [0u8; 16];
        let (n, from) = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            b.socket.recv_from(&mut buf),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, a.local);
    }
}
