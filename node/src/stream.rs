//! TCP and TLS connections: accepting, connecting out, and the per-connection reader and
//! writer. Connections never touch the `SipServer`; they exchange [`StreamEvent`]s with the
//! core task over one bounded channel, and the core writes to them through a bounded
//! per-connection queue (see [`crate::connections`]).

use bytes::{Buf, Bytes, BytesMut};
use sip::message::{frame_stream, Framed};
use sip::transport::{ConnectionId, Peer, Transport};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

/// Capacity of the channel from all connections to the core. When it is full, readers wait
/// (and stop reading their sockets), so a burst back-pressures the peers through TCP.
pub const EVENT_QUEUE: usize = 4096;

/// Capacity of each connection's outbound queue. When it is full the core closes the
/// connection: a peer that does not read must not make the node buffer without bound.
pub const WRITE_QUEUE: usize = 256;

/// Time allowed for a TCP connect or a TLS handshake before giving up on the connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages written per flush; bounds how long a busy writer defers the flush.
const WRITE_BATCH: usize = 64;

const READ_CHUNK: usize = 16 * 1024;

/// What connections tell the core.
#[derive(Debug)]
pub enum StreamEvent {
    /// An inbound connection is ready; the core registers its queue.
    Opened {
        peer: Peer,
        writer: mpsc::Sender<Bytes>,
        abort: oneshot::Sender<()>,
    },
    /// A complete SIP message framed off a connection.
    Message { peer: Peer, payload: Bytes },
    /// The connection has ended (or never came up, for an outbound one).
    Closed { id: ConnectionId },
}

/// State shared by the accept tasks and the core for creating connections.
pub struct StreamShared {
    pub events: mpsc::Sender<StreamEvent>,
    /// One permit per open connection, inbound or outbound; sized by `max_connections`.
    pub permits: Arc<Semaphore>,
    pub max_message_size: usize,
    pub tls_connector: tokio_rustls::TlsConnector,
    next_id: AtomicU64,
}

impl StreamShared {
    pub fn new(
        events: mpsc::Sender<StreamEvent>,
        max_connections: usize,
        max_message_size: usize,
        tls_connector: tokio_rustls::TlsConnector,
    ) -> StreamShared {
        StreamShared {
            events,
            permits: Arc::new(Semaphore::new(max_connections)),
            max_message_size,
            tls_connector,
            next_id: AtomicU64::new(1),
        }
    }

    pub fn next_id(&self) -> ConnectionId {
        ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed))
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
    let mut refused_since_log = 0u64;
    let mut last_refusal_log: Option<tokio::time::Instant> = None;
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
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            drop(tcp);
            refused_since_log += 1;
            // One line per second at most: a connection flood must not become a log flood.
            let now = tokio::time::Instant::now();
            if last_refusal_log.is_none_or(|at| now - at >= Duration::from_secs(1)) {
                tracing::warn!(%transport, %remote, refused = refused_since_log,
                    "connection limit reached, closing new connections");
                refused_since_log = 0;
                last_refusal_log = Some(now);
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
        tokio::spawn(inbound(tcp, peer, tls.clone(), shared.clone(), permit).instrument(span));
    }
}

async fn inbound(
    tcp: TcpStream,
    peer: Peer,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<StreamShared>,
    permit: OwnedSemaphorePermit,
) {
    let (writer, queue) = mpsc::channel(WRITE_QUEUE);
    let pong = writer.downgrade();
    let (abort, abort_rx) = oneshot::channel();
    let announced = match tls {
        None => {
            let announced = announce(&shared, peer, writer, abort).await;
            if announced {
                run(tcp, peer, queue, pong, abort_rx, &shared).await;
            }
            announced
        }
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let announced = announce(&shared, peer, writer, abort).await;
                    if announced {
                        run(stream, peer, queue, pong, abort_rx, &shared).await;
                    }
                    announced
                }
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    false
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    false
                }
            }
        }
    };
    if let (true, Some(id)) = (announced, peer.connection) {
        let _ = shared.events.send(StreamEvent::Closed { id }).await;
    }
    drop(permit);
}

/// Registers an inbound connection with the core; false if the core is gone.
async fn announce(
    shared: &StreamShared,
    peer: Peer,
    writer: mpsc::Sender<Bytes>,
    abort: oneshot::Sender<()>,
) -> bool {
    let opened = StreamEvent::Opened {
        peer,
        writer,
        abort,
    };
    shared.events.send(opened).await.is_ok()
}

/// Starts an outbound connection to `peer.remote`. Returns at once: the caller has
/// already registered `queue`'s sender, and messages wait there until the connection is
/// up. A failed connect ends in [`StreamEvent::Closed`].
pub fn connect(
    shared: Arc<StreamShared>,
    id: ConnectionId,
    peer: Peer,
    queue: mpsc::Receiver<Bytes>,
    pong: mpsc::WeakSender<Bytes>,
    abort: oneshot::Receiver<()>,
    permit: OwnedSemaphorePermit,
) {
    let span = tracing::info_span!("conn", id = id.0, transport = %peer.transport, remote = %peer.remote, outbound = true);
    let peer = Peer {
        connection: Some(id),
        ..peer
    };
    tokio::spawn(
        async move {
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(peer.remote));
            match stream.await {
                Ok(Ok(tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    if peer.transport == Transport::Tls {
                        let name =
                            rustls::pki_types::ServerName::IpAddress(peer.remote.ip().into());
                        let handshake = shared.tls_connector.connect(name, tcp);
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                            Ok(Ok(stream)) => run(stream, peer, queue, pong, abort, &shared).await,
                            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    } else {
                        run(tcp, peer, queue, pong, abort, &shared).await;
                    }
                }
                Ok(Err(error)) => tracing::debug!(%error, "connect failed"),
                Err(_) => tracing::debug!("connect timed out"),
            }
            let _ = shared.events.send(StreamEvent::Closed { id }).await;
            drop(permit);
        }
        .instrument(span),
    );
}

/// Runs a connection until it ends: the peer closes, a read, write or framing error, the
/// core lets go of it (its queue closes) or aborts it (queue overflow).
async fn run<S>(
    stream: S,
    peer: Peer,
    queue: mpsc::Receiver<Bytes>,
    pong: mpsc::WeakSender<Bytes>,
    abort: oneshot::Receiver<()>,
    shared: &StreamShared,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    tracing::debug!("connection open");
    let (read_half, write_half) = tokio::io::split(stream);
    let reason = tokio::select! {
        reason = read_loop(read_half, peer, pong, shared) => reason,
        result = write_loop(write_half, queue) => match result {
            Ok(()) => "closed by node".to_string(),
            Err(error) => format!("write failed: {error}"),
        },
        Ok(()) = abort => "write queue full".to_string(),
    };
    tracing::debug!(%reason, "connection closed");
}

/// Reads and frames messages until EOF, an error or a framing error; returns why it ended.
///
/// Keep-alive pings are answered through the writer's queue via `pong`, a weak sender so
/// that the queue still closes when the core drops its end.
async fn read_loop<R>(
    mut reader: R,
    peer: Peer,
    pong: mpsc::WeakSender<Bytes>,
    shared: &StreamShared,
) -> String
where
    R: AsyncRead + Unpin,
{
    let max = shared.max_message_size;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        while !buf.is_empty() {
            match frame_stream(&buf, max) {
                Ok(Framed::Message { len }) => {
                    let payload = buf.split_to(len).freeze();
                    let event = StreamEvent::Message { peer, payload };
                    if shared.events.send(event).await.is_err() {
                        return "node shutting down".to_string();
                    }
                }
                Ok(Framed::KeepAlive { len, ping }) => {
                    buf.advance(len);
                    if ping {
                        let Some(queue) = pong.upgrade() else {
                            return "closed by node".to_string();
                        };
                        if queue.try_send(Bytes::from_static(b"\r\n")).is_err() {
                            return "write queue full".to_string();
                        }
                    }
                }
                Ok(Framed::Incomplete) => break,
                Err(error) => return format!("framing error: {error}"),
            }
        }
        // Incomplete with more than a maximal message buffered cannot become valid.
        if buf.len() > max {
            return "message too large".to_string();
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) => return "closed by peer".to_string(),
            Ok(_) => {}
            Err(error) => return format!("read failed: {error}"),
        }
    }
}

/// Writes queued messages, coalescing what is queued into one flush, until the queue closes
/// (the core let go of the connection), then shuts the stream down cleanly.
async fn write_loop<W>(writer: W, mut queue: mpsc::Receiver<Bytes>) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(first) = queue.recv().await {
        writer.write_all(&first).await?;
        for _ in 1..WRITE_BATCH {
            match queue.try_recv() {
                Ok(next) => writer.write_all(&next).await?,
                Err(_) => break,
            }
        }
        writer.flush().await?;
    }
    writer.shutdown().await
}
