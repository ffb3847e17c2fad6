//! Running one connection, inbound or outbound: a reader framing messages for the core
//! and a writer draining the core's queue, in one task, with the reader paced by the
//! writer, the idle and message deadlines, and the 513 answer to an oversize message.

use super::{
    StreamEvent, StreamRead, StreamShared, ANSWER_LINGER, IN_FLIGHT, MAX_REGISTRATION_HOLD,
    READ_CHUNK, READ_MIN, WRITE_BATCH, WRITE_BATCH_BYTES, WRITE_QUEUE,
};
use bytes::{Buf, Bytes, BytesMut};
use sip::message::edit::build_response_to_unparseable;
use sip::message::{frame_stream, ContactValue, Framed, FramingError, Message, Method};
use sip::transport::Peer;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Runs a connection until it ends: the peer closes, a read, write or framing error, the
/// core lets go of it (its queue closes) or aborts it (queue overflow), it stays idle for
/// too long, or a message is too slow or too large.
pub(super) async fn run<R, W>(
    reader: R,
    writer: W,
    peer: Peer,
    link: CoreLink,
    shared: &StreamShared,
) where
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
    use crate::stream::tests::MESSAGE;

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
}
