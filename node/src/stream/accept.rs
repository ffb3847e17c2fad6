//! Accepting inbound connections: the listener, the accept loop with its caps on
//! connections in total and per source address, the TLS handshake of inbound connections,
//! and handing each accepted connection to the core.

use super::connection::{run, CoreLink};
use super::{StreamEvent, StreamRead, StreamShared, HANDSHAKE_TIMEOUT, WRITE_QUEUE};
use crate::log_throttle::LogThrottle;
use sip::transport::{Peer, Transport};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tracing::Instrument;

impl StreamShared {
    /// Counts one more inbound connection from `ip`; None when its source is at the cap.
    fn claim_source(shared: &Arc<StreamShared>, ip: IpAddr) -> Option<SourceSlot> {
        let key = source_key(ip);
        // A panic elsewhere while holding the lock leaves plain counters, still usable.
        let mut counts = shared
            .per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key).or_insert(0);
        if usize::try_from(*count).unwrap_or(usize::MAX) >= shared.limits.max_connections_per_ip {
            if *count == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            shared: shared.clone(),
            key,
        })
    }
}

/// The address inbound connections are counted by: the IP, or for IPv6 its /64, since one
/// subscriber is normally given a whole /64 and could otherwise pick a new address for
/// every connection.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// One inbound connection counted against its source's cap, uncounted when dropped.
struct SourceSlot {
    shared: Arc<StreamShared>,
    key: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self
            .shared
            .per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Binds a stream listener with SO_REUSEADDR so a restarted node can rebind at once.
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Keep [::] from also claiming the IPv4 port, so both can be listened on.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Refused connections are logged once a second at most, so that a connection flood does
/// not become a log flood.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Closes a refused connection with a reset: nothing is owed to it, and a flood of them
/// then leaves no TIME_WAIT state behind on the node.
fn refuse(tcp: TcpStream) {
    let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
    drop(tcp);
}

/// Accepts connections until shutdown. `local` is the listener's address, used as
/// [`Peer::local`] for everything arriving on its connections.
pub async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    local: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<StreamShared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut over_total = LogThrottle::new(REFUSAL_LOG_INTERVAL);
    let mut over_source = LogThrottle::new(REFUSAL_LOG_INTERVAL);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically out of file descriptors; pause instead of spinning.
                tracing::warn!(%transport, %local, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The source cap comes first and takes no permit: connections refused here can
        // never use up `max_connections` for clients from other addresses.
        let Some(slot) = StreamShared::claim_source(&shared, remote.ip()) else {
            refuse(tcp);
            if let Some(refused) = over_source.occurred(Instant::now().into_std()) {
                tracing::warn!(%transport, %remote, refused,
                    limit = shared.limits.max_connections_per_ip,
                    "connection limit per source address reached, closing new connections from it");
            }
            continue;
        };
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            drop(slot);
            refuse(tcp);
            if let Some(refused) = over_total.occurred(Instant::now().into_std()) {
                tracing::warn!(%transport, %remote, refused,
                    "connection limit reached, closing new connections");
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let id = shared.next_id();
        let peer = Peer {
            transport,
            remote,
            local,
            connection: Some(id),
        };
        let span = tracing::info_span!("conn", id = id.0, %transport, %remote);
        let held = (permit, slot);
        // Two task types, so that plain TCP connections do not carry the TLS state.
        match &tls {
            None => {
                let (reader, writer) = tcp.into_split();
                let task = serve_inbound(reader, writer, peer, shared.clone(), held, false);
                tokio::spawn(task.instrument(span));
            }
            Some(acceptor) => {
                let task = inbound_tls(tcp, peer, acceptor.clone(), shared.clone(), held);
                tokio::spawn(task.instrument(span));
            }
        }
    }
}

/// Completes the TLS handshake of an inbound connection, then serves it.
async fn inbound_tls(
    tcp: TcpStream,
    peer: Peer,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<StreamShared>,
    held: (OwnedSemaphorePermit, SourceSlot),
) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            // The server configuration verifies client certificates against the federation
            // CAs and accepts clients without one; a certificate here passed that check.
            let authenticated = stream.get_ref().1.peer_certificates().is_some();
            if authenticated {
                tracing::debug!("TLS client authenticated by its certificate");
            }
            let (reader, writer) = tokio::io::split(stream);
            serve_inbound(reader, writer, peer, shared, held, authenticated).await;
        }
        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake timed out"),
    }
}

/// Registers an inbound connection with the core, runs it, and reports its end. `held`
/// (its connection permit and its count against its source) is released last.
async fn serve_inbound<R, W>(
    reader: R,
    writer: W,
    peer: Peer,
    shared: Arc<StreamShared>,
    held: (OwnedSemaphorePermit, SourceSlot),
    authenticated: bool,
) where
    R: StreamRead,
    W: AsyncWrite + Unpin,
{
    let (writer_tx, queue) = mpsc::channel(WRITE_QUEUE);
    let (abort, abort_rx) = oneshot::channel();
    let link = CoreLink {
        queue,
        pong: writer_tx.downgrade(),
        abort: abort_rx,
    };
    let opened = StreamEvent::Opened {
        peer,
        writer: writer_tx,
        abort,
        authenticated,
    };
    if tell_core(&shared, opened).await {
        run(reader, writer, peer, link, &shared).await;
        if let Some(id) = peer.connection {
            tell_core(&shared, StreamEvent::Closed { id }).await;
        }
    }
    drop(held);
}

/// Sends `event` to the core; false if the core is gone. Reserving room first keeps the
/// future small (a plain `send` future is over 400 bytes), and its size is part of every
/// connection's task for the connection's whole life.
async fn tell_core(shared: &StreamShared, event: StreamEvent) -> bool {
    match shared.events.reserve().await {
        Ok(slot) => {
            slot.send(event);
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::stream::tests::{limits, shared_with};
    use crate::stream::StreamLimits;

    #[test]
    fn sources_are_capped_and_released() {
        let (shared, _events) = shared_with(StreamLimits {
            max_connections_per_ip: 2,
            ..limits()
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = StreamShared::claim_source(&shared, ip).unwrap();
        let _second = StreamShared::claim_source(&shared, ip).unwrap();
        assert!(StreamShared::claim_source(&shared, ip).is_none());
        let other = StreamShared::claim_source(&shared, "192.0.2.2".parse().unwrap());
        assert!(other.is_some());
        drop(first);
        assert!(StreamShared::claim_source(&shared, ip).is_some());
        drop(other);
        // Only sources with open connections have an entry.
        assert_eq!(shared.per_source.lock().unwrap().len(), 1);
    }

    #[test]
    fn ipv6_sources_are_counted_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(source_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
