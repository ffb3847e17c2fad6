//! The core's table of stream connections and the routing of stream [`Transmit`]s onto
//! them. Owned by the core task; plain data, no awaits.

use crate::stream::{self, StreamShared, WRITE_QUEUE};
use bytes::Bytes;
use sip::transport::{ConnectionId, Peer, Transmit, Transport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Table size below which [`Connections`] does not bother shrinking.
const MIN_TABLE: usize = 64;

/// The core's handle on one connection task.
struct Connection {
    transport: Transport,
    remote: SocketAddr,
    /// Bounded by [`WRITE_QUEUE`]; see [`Connections::send`] for what happens when full.
    writer: mpsc::Sender<Bytes>,
    /// Sending on it makes the task drop the socket at once, queued data included.
    abort: oneshot::Sender<()>,
}

/// Open connections by id and by far end. Its size is bounded by the connection semaphore
/// in [`StreamShared`]: every entry belongs to a task holding a permit.
pub struct Connections {
    shared: Arc<StreamShared>,
    by_id: HashMap<ConnectionId, Connection>,
    /// The newest connection to each far end, for requests with no connection of their own.
    by_remote: HashMap<(Transport, SocketAddr), ConnectionId>,
}

impl Connections {
    pub fn new(shared: Arc<StreamShared>) -> Connections {
        Connections {
            shared,
            by_id: HashMap::new(),
            by_remote: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Registers an inbound connection announced by its task.
    pub fn opened(&mut self, peer: Peer, writer: mpsc::Sender<Bytes>, abort: oneshot::Sender<()>) {
        let Some(id) = peer.connection else {
            return;
        };
        self.by_id.insert(
            id,
            Connection {
                transport: peer.transport,
                remote: peer.remote,
                writer,
                abort,
            },
        );
        self.by_remote.insert((peer.transport, peer.remote), id);
    }

    /// Forgets a connection whose task ended. Its transport and far end if it was known,
    /// i.e. the server has not been told yet.
    pub fn closed(&mut self, id: ConnectionId) -> Option<(Transport, SocketAddr)> {
        self.remove(id)
            .map(|connection| (connection.transport, connection.remote))
    }

    fn remove(&mut self, id: ConnectionId) -> Option<Connection> {
        let connection = self.by_id.remove(&id)?;
        let key = (connection.transport, connection.remote);
        if self.by_remote.get(&key) == Some(&id) {
            self.by_remote.remove(&key);
        }
        self.shrink_if_sparse();
        Some(connection)
    }

    /// Gives back the tables' memory after a crowd of connections has gone: hash maps
    /// never shrink by themselves. Halving only below a quarter full keeps this amortised
    /// O(1) and avoids resizing back and forth around one size.
    fn shrink_if_sparse(&mut self) {
        let capacity = self.by_id.capacity();
        if capacity > MIN_TABLE && self.by_id.len() < capacity / 4 {
            self.by_id.shrink_to(capacity / 2);
            self.by_remote.shrink_to(capacity / 2);
        }
    }

    /// Queues `transmit` on its connection; if that is unset or gone, on the newest
    /// connection to the same far end; else on a new outbound connection. Connections this
    /// drops (queue full, task gone) are appended to `closed` for the server to learn of.
    ///
    /// A full queue means the peer is not reading: the connection is aborted and the message
    /// dropped rather than buffered further.
    pub fn send(&mut self, transmit: Transmit, closed: &mut Vec<ConnectionId>) {
        let to = transmit.to;
        let key = (to.transport, to.remote);
        let mut payload = transmit.payload;
        let candidates = [
            to.connection.filter(|id| self.by_id.contains_key(id)),
            self.by_remote.get(&key).copied(),
        ];
        for id in candidates.into_iter().flatten() {
            let Some(connection) = self.by_id.get(&id) else {
                continue;
            };
            match connection.writer.try_send(payload) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(id = id.0, remote = %connection.remote,
                        "peer is not reading, closing connection");
                    if let Some(connection) = self.remove(id) {
                        let _ = connection.abort.send(());
                    }
                    closed.push(id);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    // The task ended and its Closed event is on its way; route elsewhere.
                    self.remove(id);
                    closed.push(id);
                    payload = returned;
                }
            }
        }
        self.open(to, payload);
    }

    /// Starts an outbound connection with `payload` queued on it.
    fn open(&mut self, to: Peer, payload: Bytes) {
        let Ok(permit) = self.shared.permits.clone().try_acquire_owned() else {
            tracing::warn!(remote = %to.remote, transport = %to.transport,
                "connection limit reached, dropping outbound message");
            return;
        };
        let id = self.shared.next_id();
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        let (abort, abort_rx) = oneshot::channel();
        // Cannot fail: the queue is new and empty.
        let _ = writer.try_send(payload);
        let link = stream::CoreLink {
            queue,
            pong: writer.downgrade(),
            abort: abort_rx,
        };
        self.by_id.insert(
            id,
            Connection {
                transport: to.transport,
                remote: to.remote,
                writer,
                abort,
            },
        );
        self.by_remote.insert((to.transport, to.remote), id);
        stream::connect(self.shared.clone(), id, to, link, permit);
    }

    /// Lets go of every connection: each writer sends what is queued, then closes.
    pub fn close_all(&mut self) -> Vec<ConnectionId> {
        self.by_remote = HashMap::new();
        std::mem::take(&mut self.by_id).into_keys().collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    const PATIENCE: Duration = Duration::from_secs(20);

    fn table(max_connections: usize) -> (Connections, mpsc::Receiver<stream::StreamEvent>) {
        let (events, events_rx) = mpsc::channel(16);
        let connector = Arc::new(crate::tls_client::TlsClients::new(&[], &[]).unwrap());
        let limits = stream::StreamLimits {
            max_connections,
            max_connections_per_ip: max_connections,
            max_message_size: 65_535,
            idle_timeout: Duration::from_secs(3600),
            message_timeout: Duration::from_secs(3600),
        };
        let shared = Arc::new(StreamShared::new(events, limits, connector));
        (Connections::new(shared), events_rx)
    }

    fn transmit(
        remote: SocketAddr,
        connection: Option<ConnectionId>,
        text: &'static str,
    ) -> Transmit {
        Transmit {
            to: Peer {
                transport: Transport::Tcp,
                remote,
                local: "127.0.0.1:5060".parse().unwrap(),
                connection,
            },
            payload: Bytes::from_static(text.as_bytes()),
        }
    }

    async fn read_text(socket: &mut tokio::net::TcpStream, len: usize) -> String {
        let mut buf = vec![0u8; len];
        tokio::time::timeout(PATIENCE, socket.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[tokio::test]
    async fn opens_outbound_then_reuses_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let remote = listener.local_addr().unwrap();
        let (mut connections, mut events) = table(4);
        let mut closed = Vec::new();
        connections.send(transmit(remote, None, "hello"), &mut closed);
        assert_eq!(connections.len(), 1);
        let (mut socket, _) = tokio::time::timeout(PATIENCE, listener.accept())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_text(&mut socket, 5).await, "hello");

        // A stale connection id falls back to the connection to the same remote.
        connections.send(
            transmit(remote, Some(ConnectionId(999)), "world"),
            &mut closed,
        );
        assert_eq!(connections.len(), 1);
        assert_eq!(read_text(&mut socket, 5).await, "world");
        assert!(closed.is_empty());

        // Letting go closes the socket after the queue is written, and the task reports.
        let ids = connections.close_all();
        assert_eq!(ids.len(), 1);
        let mut rest = Vec::new();
        let n = tokio::time::timeout(PATIENCE, socket.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
        let event = tokio::time::timeout(PATIENCE, events.recv()).await.unwrap();
        assert!(matches!(event, Some(stream::StreamEvent::Closed { id }) if id == ids[0]));
    }

    #[tokio::test]
    async fn full_queue_aborts_the_connection() {
        let (mut connections, _events) = table(4);
        let remote: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let id = ConnectionId(7);
        let (writer, _queue) = mpsc::channel(WRITE_QUEUE);
        let (abort, mut abort_rx) = oneshot::channel();
        let peer = transmit(remote, Some(id), "").to;
        connections.opened(peer, writer, abort);
        let mut closed = Vec::new();
        for _ in 0..WRITE_QUEUE {
            connections.send(transmit(remote, Some(id), "x"), &mut closed);
        }
        assert!(closed.is_empty());
        connections.send(transmit(remote, Some(id), "x"), &mut closed);
        assert_eq!(closed, [id]);
        assert_eq!(connections.len(), 0);
        assert!(abort_rx.try_recv().is_ok());
        assert!(connections.closed(id).is_none(), "already forgotten");
    }

    #[tokio::test]
    async fn dead_connection_is_replaced() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let remote = listener.local_addr().unwrap();
        let (mut connections, _events) = table(4);
        let id = ConnectionId(7);
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        let (abort, _abort_rx) = oneshot::channel();
        connections.opened(transmit(remote, Some(id), "").to, writer, abort);
        drop(queue);
        let mut closed = Vec::new();
        connections.send(transmit(remote, Some(id), "again"), &mut closed);
        assert_eq!(closed, [id]);
        assert_eq!(connections.len(), 1);
        let (mut socket, _) = tokio::time::timeout(PATIENCE, listener.accept())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_text(&mut socket, 5).await, "again");
    }

    /// The tables give their memory back once a crowd of connections has gone.
    #[tokio::test]
    async fn tables_shrink_when_connections_close() {
        let (mut connections, _events) = table(4);
        let mut queues = Vec::new();
        for n in 0..1000u16 {
            let (writer, queue) = mpsc::channel(WRITE_QUEUE);
            let (abort, _abort_rx) = oneshot::channel();
            let remote = SocketAddr::from(([127, 0, 0, 1], 10_000 + n));
            let peer = transmit(remote, Some(ConnectionId(u64::from(n))), "").to;
            connections.opened(peer, writer, abort);
            queues.push(queue);
        }
        assert!(connections.by_id.capacity() >= 1000);
        for n in 0..1000 {
            assert!(connections.closed(ConnectionId(n)).is_some());
        }
        assert_eq!(connections.len(), 0);
        assert!(connections.by_id.capacity() <= 2 * MIN_TABLE);
        assert!(connections.by_remote.capacity() <= 2 * MIN_TABLE);
    }

    #[tokio::test]
    async fn connection_limit_drops_outbound() {
        let (mut connections, _events) = table(1);
        let _held = connections
            .shared
            .permits
            .clone()
            .try_acquire_owned()
            .unwrap();
        let mut closed = Vec::new();
        connections.send(
            transmit("127.0.0.1:9".parse().unwrap(), None, "x"),
            &mut closed,
        );
        assert_eq!(connections.len(), 0);
    }
}
