//! Tests of whole connections, run over in-memory and real streams, and the fixtures the
//! tests of the sub-modules share.

use super::*;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;

const PATIENCE: Duration = Duration::from_secs(20);
pub(super) const MESSAGE: &[u8] = b"OPTIONS sip:n SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";

pub(super) fn limits() -> StreamLimits {
    StreamLimits {
        max_connections: 4,
        max_connections_per_ip: 4,
        max_message_size: 65_535,
        idle_timeout: Duration::from_secs(3600),
        message_timeout: Duration::from_secs(3600),
    }
}

pub(super) fn shared_with(
    limits: StreamLimits,
) -> (Arc<StreamShared>, mpsc::Receiver<StreamEvent>) {
    let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
    let connector = Arc::new(crate::tls_client::TlsClients::new(&[], &[]).unwrap());
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
