//! Free loopback ports.

use anyhow::{bail, Result};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A port that is free on 127.0.0.1 for both UDP and TCP at the time of the call: the
/// system picks a UDP port (bind to port 0) and the TCP side is checked with a bind of the
/// same number. Another process can still take it before the caller binds it, so callers
/// retry when their bind fails.
pub fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let udp = UdpSocket::bind((LOOPBACK, 0))?;
        let port = udp.local_addr()?.port();
        // Ports in the range SIPp likes to take by default are avoided.
        if (5060..=5070).contains(&port) {
            continue;
        }
        if TcpListener::bind((LOOPBACK, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free UDP+TCP port pair on 127.0.0.1 after 100 tries")
}

/// Waits until something has bound `port` on 127.0.0.1 for `transport` (a bind of our own
/// fails), at most `limit`. Used to know that a SIPp server is listening before traffic
/// is sent to it.
pub fn wait_until_bound(port: u16, transport: crate::Transport, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let addr = SocketAddr::from((LOOPBACK, port));
        let bound = match transport {
            crate::Transport::Udp => UdpSocket::bind(addr).is_err(),
            crate::Transport::Tcp => TcpListener::bind(addr).is_err(),
        };
        if bound {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("nothing bound {transport} port {port} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
