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

/// Waits until something has bound `port` on 127.0.0.1 for `transport`, at most `limit`.
/// Used to know that a SIPp server is listening before traffic is sent to it. On Linux the
/// kernel's socket tables are read, so the check never holds the port itself; elsewhere a
/// bind of our own is attempted (which fails once the port is taken).
pub fn wait_until_bound(port: u16, transport: crate::Transport, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let bound = match listed_in_proc(port, transport) {
            Some(listed) => listed,
            None => {
                let addr = SocketAddr::from((LOOPBACK, port));
                match transport {
                    crate::Transport::Udp => UdpSocket::bind(addr).is_err(),
                    crate::Transport::Tcp => TcpListener::bind(addr).is_err(),
                }
            }
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

/// Whether /proc/net/{udp,tcp} lists a socket bound to 127.0.0.1 or 0.0.0.0 on `port`
/// (for TCP: listening); `None` if the table cannot be read.
fn listed_in_proc(port: u16, transport: crate::Transport) -> Option<bool> {
    let (path, state) = match transport {
        crate::Transport::Udp => ("/proc/net/udp", None),
        crate::Transport::Tcp => ("/proc/net/tcp", Some("0A")),
    };
    let table = std::fs::read_to_string(path).ok()?;
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    Some(table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1).unwrap_or_default();
        let st = fields.nth(1).unwrap_or_default();
        wanted.iter().any(|w| w == local) && state.is_none_or(|s| s == st)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;

    #[test]
    fn sees_bound_sockets() -> Result<()> {
        let udp = UdpSocket::bind((LOOPBACK, 0))?;
        let tcp = TcpListener::bind((LOOPBACK, 0))?;
        let (u, t) = (udp.local_addr()?.port(), tcp.local_addr()?.port());
        wait_until_bound(u, Transport::Udp, Duration::from_secs(1))?;
        wait_until_bound(t, Transport::Tcp, Duration::from_secs(1))?;
        let port = free_port()?;
        assert!(wait_until_bound(port, Transport::Udp, Duration::from_millis(50)).is_err());
        Ok(())
    }
}
