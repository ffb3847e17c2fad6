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
//!   registration, see `ConnState` in [`connection`]), and a message must arrive whole
//!   within `message_timeout` of its first byte;
//! * in number per source: inbound connections beyond `max_connections_per_ip` from one
//!   address (IPv6: one /64) are reset at once, before they take one of the
//!   `max_connections` permits, so a few addresses cannot lock everyone else out;
//! * in memory: an idle TCP connection holds no read or write buffer; buffers are
//!   allocated when bytes arrive or leave and dropped when the connection is quiet again;
//! * in size: a message over `max_message_size` is answered `513 Message Too Large`
//!   (RFC 3261 18.3, 21.5.11) when its start can be answered, then the connection closes.

mod accept;
mod connection;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

pub use accept::{accept_loop, bind_listener};
pub use connection::CoreLink;

use crate::tls_client::TlsClients;
use bytes::{Bytes, BytesMut};
use connection::run;
use sip::transport::{ConnectionId, Peer, Transport};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
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
        /// The far end showed a TLS client certificate a federation CA vouches for.
        authenticated: bool,
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
    pub tls: Arc<TlsClients>,
    next_id: AtomicU64,
    /// Open inbound connections per source (see `source_key` in [`accept`]). An entry
    /// lives exactly as long as a `SourceSlot` for it, and a slot is only held by an
    /// accepted connection (which also holds a permit) or for the instant before it is
    /// refused, so the map never has more than `max_connections` entries, plus one per
    /// accept loop.
    per_source: Mutex<HashMap<IpAddr, u32>>,
}

impl StreamShared {
    pub fn new(
        events: mpsc::Sender<StreamEvent>,
        limits: StreamLimits,
        tls: Arc<TlsClients>,
    ) -> StreamShared {
        StreamShared {
            events,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            tls,
            next_id: AtomicU64::new(1),
            per_source: Mutex::new(HashMap::new()),
        }
    }

    pub fn next_id(&self) -> ConnectionId {
        ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed))
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
                        let (connector, name) = shared.tls.connector_for(peer.remote);
                        // Boxed: inline, the handshake's state would enlarge the task of
                        // every outbound TCP connection too.
                        let handshake = Box::pin(connector.connect(name, tcp));
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                            Ok(Ok(stream)) => {
                                let (reader, writer) = tokio::io::split(stream);
                                run(reader, writer, peer, link, &shared).await;
                            }
                            Ok(Err(error)) => {
                                tracing::info!(%error, "outbound TLS handshake failed")
                            }
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
