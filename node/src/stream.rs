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
use tokio::sync::{mpsc, oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

/// Capacity of the channel from all connections to the core. When it is full, readers wait
/// (and stop reading their sockets), so a burst back-pressures the peers through TCP.
pub const EVENT_QUEUE: usize = 4096;

/// Capacity of each connection's outbound queue. When it is full the core closes the
/// connection: a peer that does not read must not make the node buffer without bound.
pub const WRITE_QUEUE: usize = 256;

/// Messages one connection may have handed to the core and not yet seen answered (see
/// [`StreamEvent::Message`]). With the reader also pausing while the outbound queue is
/// over half full, a peer pipelining requests as fast as it can stays below
/// [`WRITE_QUEUE`]: only a peer that stops reading fills it.
const IN_FLIGHT: usize = 64;

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
    /// A complete SIP message framed off a connection. The core holds `in_flight` until
    /// it has sent what the message caused, which paces the connection's reader.
    Message {
        peer: Peer,
        payload: Bytes,
        in_flight: OwnedSemaphorePermit,
    },
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
    let (abort, abort_rx) = oneshot::channel();
    let link = CoreLink {
        queue,
        pong: writer.downgrade(),
        abort: abort_rx,
    };
    let announced = match tls {
        None => {
            let announced = announce(&shared, peer, writer, abort).await;
            if announced {
                let (reader, writer) = tcp.into_split();
                run(reader, writer, peer, link, &shared).await;
            }
            announced
        }
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let announced = announce(&shared, peer, writer, abort).await;
                    if announced {
                        let (reader, writer) = tokio::io::split(stream);
                        run(reader, writer, peer, link, &shared).await;
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
    link: CoreLink,
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
                            Ok(Ok(stream)) => {
                                let (reader, writer) = tokio::io::split(stream);
                                run(reader, writer, peer, link, &shared).await;
                            }
                            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    } else {
                        let (reader, writer) = tcp.into_split();
                        run(reader, writer, peer, link, &shared).await;
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
async fn run<R, W>(reader: R, writer: W, peer: Peer, link: CoreLink, shared: &StreamShared)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tracing::debug!("connection open");
    let CoreLink { queue, pong, abort } = link;
    let pacing = Pacing {
        in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        drained: Notify::new(),
    };
    let reason = tokio::select! {
        reason = read_loop(reader, peer, pong, &pacing, shared) => reason,
        result = write_loop(writer, queue, &pacing.drained) => match result {
            Ok(()) => "closed by node".to_string(),
            Err(error) => format!("write failed: {error}"),
        },
        Ok(()) = abort => "write queue full".to_string(),
    };
    tracing::debug!(%reason, "connection closed");
}

/// A connection task's side of what the core holds for it.
pub struct CoreLink {
    /// Messages to write; closes when the core lets go of the connection.
    pub queue: mpsc::Receiver<Bytes>,
    /// The same queue, for answering keep-alive pings without keeping it open.
    pub pong: mpsc::WeakSender<Bytes>,
    /// Fires when the core gives up on the connection (outbound queue overflow).
    pub abort: oneshot::Receiver<()>,
}

/// Paces a connection's reader by its writer, so a fast peer is slowed down through TCP
/// instead of overflowing its own outbound queue.
struct Pacing {
    in_flight: Arc<Semaphore>,
    /// Signalled by the writer after each flush.
    drained: Notify,
}

impl Pacing {
    /// Waits until another message may go to the core: fewer than [`IN_FLIGHT`] pending
    /// and the outbound queue at most half full. None when the core has let go.
    async fn admit(&self, queue: &mpsc::WeakSender<Bytes>) -> Option<OwnedSemaphorePermit> {
        loop {
            let free = queue.upgrade()?.capacity();
            if free >= WRITE_QUEUE / 2 {
                break;
            }
            self.drained.notified().await;
        }
        self.in_flight.clone().acquire_owned().await.ok()
    }
}

/// Reads and frames messages until EOF, an error or a framing error; returns why it ended.
///
/// Keep-alive pings are answered through the writer's queue via `pong`, a weak sender so
/// that the queue still closes when the core drops its end.
async fn read_loop<R>(
    mut reader: R,
    peer: Peer,
    pong: mpsc::WeakSender<Bytes>,
    pacing: &Pacing,
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
                    let Some(in_flight) = pacing.admit(&pong).await else {
                        return "closed by node".to_string();
                    };
                    let payload = buf.split_to(len).freeze();
                    let event = StreamEvent::Message {
                        peer,
                        payload,
                        in_flight,
                    };
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
async fn write_loop<W>(
    writer: W,
    mut queue: mpsc::Receiver<Bytes>,
    drained: &Notify,
) -> io::Result<()>
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
        drained.notify_one();
    }
    writer.shutdown().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    const PATIENCE: Duration = Duration::from_secs(20);
    const MESSAGE: &[u8] = b"OPTIONS sip:n SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";

    /// Runs a connection over an in-memory stream; returns the far end, the connection's
    /// queue sender (what the core would hold) and the events the core would receive.
    fn start(
        buffer: usize,
    ) -> (
        DuplexStream,
        mpsc::Sender<Bytes>,
        mpsc::Receiver<StreamEvent>,
        tokio::task::JoinHandle<()>,
    ) {
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        let connector = tokio_rustls::TlsConnector::from(crate::tls::client_config().unwrap());
        let shared = Arc::new(StreamShared::new(events, 4, 65_535, connector));
        let (near, far) = tokio::io::duplex(buffer);
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        let (abort, abort_rx) = oneshot::channel();
        let link = CoreLink {
            queue,
            pong: writer.downgrade(),
            abort: abort_rx,
        };
        let peer = Peer {
            transport: Transport::Tcp,
            remote: "127.0.0.1:5555".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            connection: Some(ConnectionId(1)),
        };
        let task = tokio::spawn(async move {
            let _abort = abort;
            let (reader, writer) = tokio::io::split(near);
            run(reader, writer, peer, link, &shared).await;
        });
        (far, writer, events_rx, task)
    }

    #[tokio::test]
    async fn frames_split_and_batched_messages() {
        let (mut far, _writer, mut events, _task) = start(64 * 1024);
        far.write_all(&MESSAGE[..10]).await.unwrap();
        far.flush().await.unwrap();
        tokio::task::yield_now().await;
        let mut rest = MESSAGE[10..].to_vec();
        rest.extend_from_slice(MESSAGE);
        far.write_all(&rest).await.unwrap();
        for _ in 0..2 {
            let event = tokio::time::timeout(PATIENCE, events.recv()).await.unwrap();
            match event {
                Some(StreamEvent::Message { payload, peer, .. }) => {
                    assert_eq!(&payload[..], MESSAGE);
                    assert_eq!(peer.connection, Some(ConnectionId(1)));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn answers_ping_with_pong() {
        let (mut far, _writer, _events, _task) = start(1024);
        far.write_all(b"\r\n\r\n").await.unwrap();
        let mut pong = [0u8; 2];
        tokio::time::timeout(PATIENCE, far.read_exact(&mut pong))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&pong, b"\r\n");
    }

    #[tokio::test]
    async fn framing_error_closes_connection() {
        let (mut far, _writer, _events, task) = start(1024);
        far.write_all(b"OPTIONS sip:n SIP/2.0\r\n\r\n")
            .await
            .unwrap();
        tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(PATIENCE, far.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
    }

    /// A peer pipelining far more requests than the outbound queue holds, and reading its
    /// answers slowly, is paced through the stream instead of overflowing the queue.
    #[tokio::test]
    async fn pipelining_peer_is_paced() {
        const COUNT: usize = 4 * WRITE_QUEUE;
        let (far, writer, mut events, _task) = start(2048);
        let core = tokio::spawn(async move {
            for _ in 0..COUNT {
                let event = events.recv().await.expect("connection ended early");
                let StreamEvent::Message {
                    payload, in_flight, ..
                } = event
                else {
                    panic!("unexpected {event:?}");
                };
                // What the core does: answer, then release the pacing permit.
                writer.try_send(payload).expect("outbound queue overflowed");
                drop(in_flight);
            }
            writer
        });
        let (mut far_read, mut far_write) = tokio::io::split(far);
        let sender = tokio::spawn(async move {
            for _ in 0..COUNT {
                far_write.write_all(MESSAGE).await.unwrap();
            }
            far_write
        });
        let mut received = 0;
        let mut buf = [0u8; 256];
        while received < COUNT * MESSAGE.len() {
            let n = tokio::time::timeout(PATIENCE, far_read.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_ne!(n, 0, "closed after {received} bytes");
            received += n;
            tokio::task::yield_now().await;
        }
        tokio::time::timeout(PATIENCE, core).await.unwrap().unwrap();
        tokio::time::timeout(PATIENCE, sender)
            .await
            .unwrap()
            .unwrap();
    }
}
