//! TCP and TLS connections: accepting, connecting out, and the per-connection reader and
//! writer. Connections never touch the `SipServer`; they exchange [`StreamEvent`]s with the
//! core task over one bounded channel, and the core writes to them through a bounded
//! per-connection queue (see [`crate::connections`]).
//!
//! A listener on a public address must survive clients that open connections and never
//! use them, dribble bytes, or come back from a few addresses by the thousand, so every
//! connection is bounded ([`StreamLimits`]):
//!
//! * in time: closed after `idle_timeout` without traffic either way (unless it carries a
//!   registration, see [`ConnState`]), and a message must arrive whole within
//!   `message_timeout` of its first byte;
//! * in number per source: inbound connections beyond `max_connections_per_ip` from one
//!   address (IPv6: one /64) are reset at once, before they take one of the
//!   `max_connections` permits, so a few addresses cannot lock everyone else out;
//! * in memory: an idle TCP connection holds no read or write buffer; buffers are
//!   allocated when bytes arrive or leave and dropped when the connection is quiet again;
//! * in size: a message over `max_message_size` is answered `513 Message Too Large`
//!   (RFC 3261 18.3, 21.5.11) when its start can be answered, then the connection closes.

use bytes::{Buf, Bytes, BytesMut};
use sip::message::edit::build_response_to_unparseable;
use sip::message::{frame_stream, ContactValue, Framed, FramingError, Message, Method};
use sip::transport::{ConnectionId, Peer, Transport};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
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

/// Bytes gathered into one write before it is flushed (one message may take it beyond).
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Read buffer of a message's first read: most SIP messages fit in it.
const READ_MIN: usize = 2 * 1024;

/// Largest growth step of the read buffer, for messages bigger than [`READ_MIN`].
const READ_CHUNK: usize = 16 * 1024;

/// How long a connection is kept for a peer to read the 513 that ends it.
const ANSWER_LINGER: Duration = Duration::from_secs(5);

/// Longest idle time a registration can buy a connection: a registrar's answer (ours is
/// capped by `limits.max_expires`, a forwarded one is not) must not pin it for years.
const MAX_REGISTRATION_HOLD: Duration = Duration::from_secs(7 * 24 * 3600);

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

/// Bounds on stream connections, from the `[limits]` section of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Open connections, inbound and outbound together.
    pub max_connections: usize,
    /// Open inbound connections from one source address (one /64 for IPv6).
    pub max_connections_per_ip: usize,
    /// Largest message; a bigger one is answered 513 and its connection closed.
    pub max_message_size: usize,
    /// A connection without traffic either way for this long is closed, unless it carries
    /// a live registration.
    pub idle_timeout: Duration,
    /// Time for a whole message to arrive once its first byte has.
    pub message_timeout: Duration,
}

/// State shared by the accept tasks and the core for creating connections.
pub struct StreamShared {
    pub events: mpsc::Sender<StreamEvent>,
    /// One permit per open connection, inbound or outbound; sized by `max_connections`.
    pub permits: Arc<Semaphore>,
    pub limits: StreamLimits,
    pub tls_connector: tokio_rustls::TlsConnector,
    next_id: AtomicU64,
    /// Open inbound connections per source (see [`source_key`]). An entry lives exactly as
    /// long as a [`SourceSlot`] for it, and a slot is only held by an accepted connection
    /// (which also holds a permit) or for the instant before it is refused, so the map
    /// never has more than `max_connections` entries, plus one per accept loop.
    per_source: Mutex<HashMap<IpAddr, u32>>,
}

impl StreamShared {
    pub fn new(
        events: mpsc::Sender<StreamEvent>,
        limits: StreamLimits,
        tls_connector: tokio_rustls::TlsConnector,
    ) -> StreamShared {
        StreamShared {
            events,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            tls_connector,
            next_id: AtomicU64::new(1),
            per_source: Mutex::new(HashMap::new()),
        }
    }

    pub fn next_id(&self) -> ConnectionId {
        ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

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

/// Counts refused connections and says when to log them: once a second at most, so that a
/// connection flood does not become a log flood.
#[derive(Default)]
struct RefusalLog {
    since_log: u64,
    last: Option<Instant>,
}

impl RefusalLog {
    /// Counts one refusal; the count to log when a line is due.
    fn refused(&mut self) -> Option<u64> {
        self.since_log += 1;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|at| now - at >= Duration::from_secs(1))
        {
            self.last = Some(now);
            Some(std::mem::take(&mut self.since_log))
        } else {
            None
        }
    }
}

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
    let mut over_total = RefusalLog::default();
    let mut over_source = RefusalLog::default();
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
            if let Some(refused) = over_source.refused() {
                tracing::warn!(%transport, %remote, refused,
                    limit = shared.limits.max_connections_per_ip,
                    "connection limit per source address reached, closing new connections from it");
            }
            continue;
        };
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            drop(slot);
            refuse(tcp);
            if let Some(refused) = over_total.refused() {
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
                let task = serve_inbound(reader, writer, peer, shared.clone(), held);
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
            let (reader, writer) = tokio::io::split(stream);
            serve_inbound(reader, writer, peer, shared, held).await;
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
                        // Boxed: inline, the handshake's state would enlarge the task of
                        // every outbound TCP connection too.
                        let handshake = Box::pin(shared.tls_connector.connect(name, tcp));
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

/// The read half of a connection.
pub trait StreamRead: AsyncRead + Unpin + Send {
    /// Reads into `buf`, which holds nothing, like `read_buf`; but while no data is
    /// waiting the connection holds no read buffer at all: `buf` is released, and a small
    /// one is taken again once data has arrived.
    fn read_lazily<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;
}

impl StreamRead for tokio::net::tcp::OwnedReadHalf {
    async fn read_lazily(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            // What the last read left of its buffer is used while traffic flows.
            if buf.capacity() < READ_MIN / 2 {
                *buf = BytesMut::with_capacity(READ_MIN);
            }
            match self.try_read_buf(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                read => return read,
            }
            // Quiet: wait without a buffer. Readiness can be spurious, hence the loop.
            *buf = BytesMut::new();
            self.readable().await?;
        }
    }
}

/// TLS (and in-memory test streams): rustls must read a whole record to know whether it
/// holds data, so these keep a small buffer while waiting.
impl<T: AsyncRead + Send> StreamRead for tokio::io::ReadHalf<T> {
    fn read_lazily<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        buf.reserve(READ_MIN);
        self.read_buf(buf)
    }
}

/// Runs a connection until it ends: the peer closes, a read, write or framing error, the
/// core lets go of it (its queue closes) or aborts it (queue overflow), it stays idle for
/// too long, or a message is too slow or too large.
async fn run<R, W>(reader: R, writer: W, peer: Peer, link: CoreLink, shared: &StreamShared)
where
    R: StreamRead,
    W: AsyncWrite + Unpin,
{
    tracing::debug!("connection open");
    let CoreLink { queue, pong, abort } = link;
    let pacing = Pacing {
        in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        drained: Notify::new(),
    };
    let state = ConnState::new();
    let reason = tokio::select! {
        reason = read_loop(reader, peer, pong, &pacing, &state, shared) => reason,
        result = write_loop(writer, queue, &pacing.drained, &state) => match result {
            Ok(()) if state.is_closing() => "message too large, answered 513".to_string(),
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

/// What a connection's reader and writer share: when traffic last passed either way, and
/// how long a registration holds the connection open. The reader keeps the connection's
/// one timer (see [`read_loop`]).
///
/// The idle timeout exists for connections nobody uses, but a phone that registered over
/// a connection can only be reached through it (it is usually behind NAT, RFC 5626), and
/// many phones send nothing between re-registrations. The registrar's 2xx to a REGISTER
/// travels back over the connection the REGISTER came in on, so the writer reads the
/// bindings' `expires` from each such answer it sends and keeps the connection until the
/// longest of them has run out, then for the idle timeout on top. The answer lists every
/// binding of the address-of-record, so this bound is never shorter than the bindings the
/// connection carries: a live registration is never cut. It never shrinks (an
/// unregistration leaves it), which at worst keeps a quiet connection until a binding it
/// once carried would have expired. CRLF keep-alives and re-registrations are traffic.
/// The core needs no extra state or message for any of this.
struct ConnState {
    origin: Instant,
    /// Milliseconds after `origin` of the last read or write.
    last_traffic: AtomicU64,
    /// Milliseconds after `origin` until which a registration made over the connection
    /// lasts; 0 when none.
    registered_until: AtomicU64,
    /// A response that ends the connection is queued: the writer closes once it is out.
    closing: AtomicBool,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            origin: Instant::now(),
            last_traffic: AtomicU64::new(0),
            registered_until: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        }
    }

    fn millis_since_origin(&self, at: Instant) -> u64 {
        let elapsed = at.saturating_duration_since(self.origin);
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }

    /// Records traffic. Relaxed: reader and writer run in one task.
    fn touch(&self) {
        let now = self.millis_since_origin(Instant::now());
        self.last_traffic.store(now, Ordering::Relaxed);
    }

    /// Notes a message the node sends; a 2xx to REGISTER holds the connection open.
    fn note_sent(&self, message: &[u8]) {
        let Some(seconds) = granted_registration(message) else {
            return;
        };
        let hold = Duration::from_secs(seconds).min(MAX_REGISTRATION_HOLD);
        let until = self.millis_since_origin(Instant::now() + hold);
        self.registered_until.fetch_max(until, Ordering::Relaxed);
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// When the connection counts as idle, given the traffic and registrations so far.
    fn idle_deadline(&self, idle_timeout: Duration) -> Instant {
        let quiet_from = self
            .last_traffic
            .load(Ordering::Relaxed)
            .max(self.registered_until.load(Ordering::Relaxed));
        self.origin + Duration::from_millis(quiet_from) + idle_timeout
    }
}

/// The longest registration a 2xx response to REGISTER grants, in seconds (each Contact's
/// `expires`, else the Expires header); None for any other message.
fn granted_registration(message: &[u8]) -> Option<u64> {
    if !message.starts_with(b"SIP/2.0 2") {
        return None;
    }
    let parsed = Message::parse(message).ok()?;
    if parsed.cseq()?.ok()?.method != Method::Register {
        return None;
    }
    let header = parsed.expires().and_then(Result::ok);
    parsed
        .contacts()
        .filter_map(|contact| match contact {
            Ok(ContactValue::Address(address)) => address
                .params
                .get("expires")
                .flatten()
                .and_then(|value| value.trim().parse::<u32>().ok())
                .or(header),
            _ => None,
        })
        .max()
        .map(u64::from)
}

/// Reads and frames messages until EOF, an error, a framing error or a timeout; returns
/// why it ended.
///
/// The reader holds the connection's only timer, armed while it waits for bytes: the
/// message deadline while part of a message is buffered, else the idle deadline. When the
/// idle deadline passes, it is computed again, since the writer's traffic or a
/// registration may have moved it. A read that finds data at once sets no timer.
///
/// Keep-alive pings are answered through the writer's queue via `pong`, a weak sender so
/// that the queue still closes when the core drops its end.
async fn read_loop<R>(
    mut reader: R,
    peer: Peer,
    pong: mpsc::WeakSender<Bytes>,
    pacing: &Pacing,
    state: &ConnState,
    shared: &StreamShared,
) -> String
where
    R: StreamRead,
{
    let limits = &shared.limits;
    let max = limits.max_message_size;
    let mut buf = BytesMut::new();
    // When the message being received must be complete; None between messages.
    let mut message_deadline: Option<Instant> = None;
    loop {
        while !buf.is_empty() {
            match frame_stream(&buf, max) {
                Ok(Framed::Message { len }) => {
                    message_deadline = None;
                    let Some(in_flight) = pacing.admit(&pong).await else {
                        return "closed by node".to_string();
                    };
                    // Reserved before the event is built, so that waiting for room in the
                    // channel does not keep a copy of the event in the connection's task.
                    let Ok(slot) = shared.events.reserve().await else {
                        return "node shutting down".to_string();
                    };
                    slot.send(StreamEvent::Message {
                        peer,
                        payload: buf.split_to(len).freeze(),
                        in_flight,
                    });
                }
                Ok(Framed::KeepAlive { len, ping }) => {
                    message_deadline = None;
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
                Err(FramingError::TooLarge) => return answer_too_large(&buf, &pong, state).await,
                Err(error) => return format!("framing error: {error}"),
            }
        }
        // Incomplete with more than a maximal message buffered cannot become valid.
        if buf.len() > max {
            return answer_too_large(&buf, &pong, state).await;
        }
        // A partial message must be complete in time. Its clock starts at the read that
        // brought its first byte (a little later when the node itself was busy), and later
        // reads do not restart it; CR/LF bytes that may start a keep-alive are no message.
        if buf.iter().any(|&b| b != b'\r' && b != b'\n') {
            message_deadline.get_or_insert_with(|| Instant::now() + limits.message_timeout);
        } else {
            message_deadline = None;
        }
        let deadline = message_deadline.unwrap_or_else(|| state.idle_deadline(limits.idle_timeout));
        let read = if buf.is_empty() {
            tokio::time::timeout_at(deadline, reader.read_lazily(&mut buf)).await
        } else {
            if buf.capacity() - buf.len() < READ_MIN / 2 {
                // Grow with the message, doubling up to READ_CHUNK at a time.
                buf.reserve(buf.len().clamp(READ_MIN, READ_CHUNK));
            }
            tokio::time::timeout_at(deadline, reader.read_buf(&mut buf)).await
        };
        match read {
            Ok(Ok(0)) => return "closed by peer".to_string(),
            Ok(Ok(_)) => state.touch(),
            Ok(Err(error)) => return format!("read failed: {error}"),
            Err(_) if message_deadline.is_some() => {
                return "message not received in time".to_string()
            }
            Err(_) if Instant::now() >= state.idle_deadline(limits.idle_timeout) => {
                return "idle timeout".to_string()
            }
            // Traffic the other way or a registration moved the idle deadline.
            Err(_) => {}
        }
    }
}

/// Answers a message over the size limit with 513, built from what arrived of it, and
/// leaves closing to the writer once the answer is out. Returns (ending the connection)
/// at once when there is nothing to answer, or after [`ANSWER_LINGER`] for a peer that
/// does not read.
async fn answer_too_large(
    received: &[u8],
    pong: &mpsc::WeakSender<Bytes>,
    state: &ConnState,
) -> String {
    let Some(response) = too_large_response(received) else {
        return "message too large".to_string();
    };
    let Some(queue) = pong.upgrade() else {
        return "closed by node".to_string();
    };
    // Reader and writer run in one task: the writer sees flag and response together.
    state.closing.store(true, Ordering::Relaxed);
    if queue.try_send(Bytes::from(response)).is_err() {
        return "message too large, write queue full".to_string();
    }
    drop(queue);
    tokio::time::sleep(ANSWER_LINGER).await;
    "message too large, answer not taken".to_string()
}

/// `513 Message Too Large` for a request of which `received` arrived: its complete header
/// lines are enough (Via, From, To, Call-ID, CSeq). None for ACK, which is never answered,
/// for responses, and when too little arrived to answer.
fn too_large_response(received: &[u8]) -> Option<Vec<u8>> {
    if received.starts_with(b"ACK ") {
        return None;
    }
    let complete_lines = received
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&received[..0], |lf| &received[..=lf]);
    build_response_to_unparseable(complete_lines, 513, "Message Too Large")
}

/// Writes queued messages, coalescing what is queued into one write, until the queue
/// closes (the core let go of the connection) or a closing response is out, then shuts
/// the stream down cleanly.
///
/// No buffer is kept between writes: a lone message is written from its own bytes, and
/// several are gathered into a buffer that is dropped after the write, so an idle
/// connection holds no write memory.
async fn write_loop<W>(
    mut writer: W,
    mut queue: mpsc::Receiver<Bytes>,
    drained: &Notify,
    state: &ConnState,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    while let Some(first) = queue.recv().await {
        state.note_sent(&first);
        match queue.try_recv() {
            Err(_) => writer.write_all(&first).await?,
            Ok(second) => {
                state.note_sent(&second);
                let mut batch = Vec::with_capacity(first.len() + second.len());
                batch.extend_from_slice(&first);
                batch.extend_from_slice(&second);
                for _ in 2..WRITE_BATCH {
                    if batch.len() >= WRITE_BATCH_BYTES {
                        break;
                    }
                    match queue.try_recv() {
                        Ok(next) => {
                            state.note_sent(&next);
                            batch.extend_from_slice(&next);
                        }
                        Err(_) => break,
                    }
                }
                writer.write_all(&batch).await?;
            }
        }
        writer.flush().await?;
        state.touch();
        drained.notify_one();
        if state.is_closing() && queue.is_empty() {
            break;
        }
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

    fn limits() -> StreamLimits {
        StreamLimits {
            max_connections: 4,
            max_connections_per_ip: 4,
            max_message_size: 65_535,
            idle_timeout: Duration::from_secs(3600),
            message_timeout: Duration::from_secs(3600),
        }
    }

    fn shared_with(limits: StreamLimits) -> (Arc<StreamShared>, mpsc::Receiver<StreamEvent>) {
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        let connector = tokio_rustls::TlsConnector::from(crate::tls::client_config().unwrap());
        (
            Arc::new(StreamShared::new(events, limits, connector)),
            events_rx,
        )
    }

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
        start_with(buffer, limits())
    }

    fn start_with(
        buffer: usize,
        limits: StreamLimits,
    ) -> (
        DuplexStream,
        mpsc::Sender<Bytes>,
        mpsc::Receiver<StreamEvent>,
        tokio::task::JoinHandle<()>,
    ) {
        let (shared, events_rx) = shared_with(limits);
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

    /// Reads until EOF (at most `limit` bytes): what the connection sent before closing.
    async fn read_until_closed(far: &mut DuplexStream) -> Vec<u8> {
        let mut rest = Vec::new();
        tokio::time::timeout(PATIENCE, far.read_to_end(&mut rest))
            .await
            .expect("not closed in time")
            .unwrap();
        rest
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

    /// A message bigger than the first small read buffer grows it and still arrives whole.
    #[tokio::test]
    async fn frames_a_message_bigger_than_the_first_buffer() {
        let (mut far, _writer, mut events, _task) = start(64 * 1024);
        let body = vec![b'x'; 3 * READ_CHUNK];
        let mut message = format!(
            "MESSAGE sip:n SIP/2.0\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        message.extend_from_slice(&body);
        far.write_all(&message).await.unwrap();
        let event = tokio::time::timeout(PATIENCE, events.recv()).await.unwrap();
        match event {
            Some(StreamEvent::Message { payload, .. }) => assert_eq!(payload[..], message[..]),
            other => panic!("unexpected {other:?}"),
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
        assert!(read_until_closed(&mut far).await.is_empty());
    }

    #[tokio::test]
    async fn idle_connection_is_closed() {
        let limits = StreamLimits {
            idle_timeout: Duration::from_millis(300),
            ..limits()
        };
        let (mut far, _writer, _events, task) = start_with(1024, limits);
        tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
        assert!(read_until_closed(&mut far).await.is_empty());
    }

    /// The node's 2xx to a REGISTER holds the connection open past the idle timeout.
    #[tokio::test]
    async fn registration_holds_connection_open() {
        let limits = StreamLimits {
            idle_timeout: Duration::from_millis(300),
            ..limits()
        };
        let (mut far, writer, _events, task) = start_with(4096, limits);
        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
            From: <sip:a@d>;tag=1\r\nTo: <sip:a@d>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\
            Contact: <sip:a@h;transport=tcp>;expires=2\r\nContent-Length: 0\r\n\r\n";
        writer.try_send(Bytes::from_static(ok)).unwrap();
        let mut echoed = vec![0u8; ok.len()];
        tokio::time::timeout(PATIENCE, far.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(!task.is_finished(), "closed while registered");
        // After the registration and then the idle timeout have run out, it closes.
        tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    }

    /// Traffic from the node counts too: a connection the node keeps writing to is not
    /// idle, and closes once that stops.
    #[tokio::test]
    async fn node_traffic_keeps_connection_open() {
        let limits = StreamLimits {
            idle_timeout: Duration::from_millis(400),
            ..limits()
        };
        let (mut far, writer, _events, task) = start_with(64 * 1024, limits);
        for _ in 0..8 {
            writer.try_send(Bytes::from_static(MESSAGE)).unwrap();
            let mut echoed = [0u8; MESSAGE.len()];
            tokio::time::timeout(PATIENCE, far.read_exact(&mut echoed))
                .await
                .unwrap()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        assert!(!task.is_finished(), "closed while the node was writing");
        tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    }

    /// Over a real socket, a quiet connection gives its read buffer back, and what arrives
    /// later is read all the same.
    #[tokio::test]
    async fn quiet_tcp_connection_holds_no_read_buffer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (mut reader, _writer) = server.into_split();
        let mut buf = BytesMut::with_capacity(READ_MIN);
        let quiet = tokio::time::timeout(Duration::from_millis(200), reader.read_lazily(&mut buf));
        assert!(
            quiet.await.is_err(),
            "read something from a quiet connection"
        );
        assert_eq!(buf.capacity(), 0, "a quiet connection kept its read buffer");
        client.write_all(MESSAGE).await.unwrap();
        while buf.len() < MESSAGE.len() {
            let read = if buf.is_empty() {
                tokio::time::timeout(PATIENCE, reader.read_lazily(&mut buf)).await
            } else {
                tokio::time::timeout(PATIENCE, reader.read_buf(&mut buf)).await
            };
            assert_ne!(read.unwrap().unwrap(), 0, "closed early");
        }
        assert_eq!(&buf[..], MESSAGE);
    }

    #[test]
    fn granted_registration_reads_the_longest_binding() {
        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
            From: <sip:a@d>;tag=1\r\nTo: <sip:a@d>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\
            Contact: <sip:a@h>;expires=60, <sip:a@i>;expires=3600\r\nContact: <sip:a@j>\r\n\
            Expires: 90\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(granted_registration(ok), Some(3600));
        let options = String::from_utf8_lossy(ok).replace("1 REGISTER", "1 OPTIONS");
        assert_eq!(granted_registration(options.as_bytes()), None);
        let error = String::from_utf8_lossy(ok).replace("200 OK", "403 Forbidden");
        assert_eq!(granted_registration(error.as_bytes()), None);
        assert_eq!(granted_registration(b"SIP/2.0 200 garbage"), None);
        assert_eq!(granted_registration(MESSAGE), None);
    }

    /// A message that dribbles in is cut off at the message timeout, even though every
    /// byte counts as traffic for the idle timeout.
    #[tokio::test]
    async fn slow_message_is_cut_off() {
        let limits = StreamLimits {
            message_timeout: Duration::from_millis(500),
            ..limits()
        };
        let (mut far, _writer, _events, task) = start_with(1024, limits);
        for &byte in MESSAGE.iter().take(20) {
            if task.is_finished() {
                break;
            }
            let _ = far.write_all(&[byte]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    }

    /// Lone CRLFs between messages are no message in progress: no message timeout.
    #[tokio::test]
    async fn crlf_is_not_a_slow_message() {
        let limits = StreamLimits {
            message_timeout: Duration::from_millis(200),
            ..limits()
        };
        let (mut far, _writer, _events, task) = start_with(1024, limits);
        far.write_all(b"\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!task.is_finished());
    }

    #[tokio::test]
    async fn oversize_message_is_answered_513_then_closed() {
        let limits = StreamLimits {
            max_message_size: 1024,
            ..limits()
        };
        let (mut far, _writer, _events, task) = start_with(64 * 1024, limits);
        let request = b"MESSAGE sip:bob@d SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK7\r\n\
            From: <sip:a@d>;tag=1\r\nTo: <sip:bob@d>\r\nCall-ID: big\r\nCSeq: 3 MESSAGE\r\n\
            Content-Length: 5000\r\n\r\n";
        far.write_all(request).await.unwrap();
        let answer = String::from_utf8(read_until_closed(&mut far).await).unwrap();
        assert!(
            answer.starts_with("SIP/2.0 513 Message Too Large\r\n"),
            "{answer}"
        );
        assert!(answer.contains("Call-ID: big\r\n"), "{answer}");
        assert!(answer.contains("CSeq: 3 MESSAGE\r\n"), "{answer}");
        tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    }

    #[test]
    fn too_large_response_uses_complete_header_lines() {
        let partial =
            b"INVITE sip:b@d SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nX-Pad: aaaa";
        let answer = String::from_utf8(too_large_response(partial).unwrap()).unwrap();
        assert!(answer.starts_with("SIP/2.0 513 "));
        assert!(answer.contains("Via: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"));
        assert!(!answer.contains("X-Pad"));
        assert!(too_large_response(b"ACK sip:b@d SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n").is_none());
        assert!(too_large_response(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h\r\n").is_none());
        assert!(too_large_response(b"INVITE sip:b@d SIP/2.0").is_none());
    }

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
