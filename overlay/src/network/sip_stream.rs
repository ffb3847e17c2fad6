//! The SIP stream protocol `/p2psip/sip/1.0.0`: SIP messages between overlay nodes, framed
//! exactly as on a SIP TCP connection (RFC 3261 18.3, Content-Length framing).
//!
//! Each direction uses its own stream: a node opens one long-lived outbound stream per peer
//! and writes every message for that peer on it, and reads every inbound stream until the
//! remote closes it. Keep-alive CRLFs on inbound streams are consumed and not answered: the
//! libp2p connection has its own liveness checks (ping, yamux).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{PeerId, Stream};
use sip::message::{frame_stream, Framed};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::behaviour::SIP_PROTOCOL;
use super::{OverlayEvent, SendError};

/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Bound on closing an outbound stream politely when its writer ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before the one retry of a stream open whose connection closed under it.
const OPEN_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// One message waiting in a peer's send queue, with the caller waiting for the outcome.
pub(crate) struct OutboundSip {
    pub bytes: Bytes,
    pub done: oneshot::Sender<Result<(), SendError>>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterSettings {
    pub open_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Checks that `message` is exactly one complete SIP message as the receiving side will frame
/// it. A message with a wrong Content-Length would desynchronise the long-lived stream and
/// make the receiver drop every message after it, so it is refused before it is queued.
pub(crate) fn check_framing(message: &[u8], max_message_size: usize) -> Result<(), SendError> {
    match frame_stream(message, max_message_size) {
        Ok(Framed::Message { len }) if len == message.len() => Ok(()),
        Ok(Framed::Message { .. }) => Err(SendError::NotOneMessage(
            "bytes follow the end given by Content-Length",
        )),
        Ok(Framed::Incomplete) => Err(SendError::NotOneMessage(
            "the message is shorter than its Content-Length",
        )),
        Ok(Framed::KeepAlive { .. }) => {
            Err(SendError::NotOneMessage("the message starts with CRLF"))
        }
        Err(sip::message::FramingError::TooLarge) => Err(SendError::TooLarge),
        Err(sip::message::FramingError::BadContentLength) => {
            Err(SendError::NotOneMessage("missing or bad Content-Length"))
        }
    }
}

/// Accepts inbound SIP streams and reads each of them on its own task, at most
/// `max_streams` at a time (further streams are dropped, which resets them). Ends when the
/// swarm is gone; aborting it aborts every reader.
pub(crate) async fn accept_inbound(
    mut control: libp2p_stream::Control,
    events: mpsc::Sender<OverlayEvent>,
    max_streams: usize,
    max_message_size: usize,
    dropped: Arc<AtomicU64>,
) {
    let mut incoming = match control.accept(SIP_PROTOCOL) {
        Ok(incoming) => incoming,
        Err(error) => {
            tracing::error!(%error, "cannot accept SIP streams");
            return;
        }
    };
    let mut readers = JoinSet::new();
    loop {
        tokio::select! {
            next = incoming.next() => {
                let Some((peer, stream)) = next else { break };
                if readers.len() >= max_streams {
                    tracing::warn!(%peer, max_streams, "too many inbound SIP streams; refusing one");
                    continue;
                }
                let span = tracing::info_span!("sip_in", %peer);
                readers.spawn(
                    read_inbound(peer, stream, events.clone(), max_message_size, Arc::clone(&dropped))
                        .instrument(span),
                );
            }
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
}

/// Reads one inbound stream to its end and hands every complete message to `events`.
async fn read_inbound(
    peer: PeerId,
    mut stream: Stream,
    events: mpsc::Sender<OverlayEvent>,
    max_message_size: usize,
    dropped: Arc<AtomicU64>,
) {
    tracing::debug!("inbound SIP stream opened");
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        loop {
            match frame_stream(&buffer, max_message_size) {
                Ok(Framed::Message { len }) => {
                    let bytes = buffer.split_to(len).freeze();
                    match events.try_send(OverlayEvent::SipMessage { from: peer, bytes }) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("event queue full; dropping an inbound SIP message");
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                Ok(Framed::KeepAlive { len, .. }) => {
                    let _ = buffer.split_to(len);
                }
                Ok(Framed::Incomplete) => break,
                Err(error) => {
                    tracing::warn!(%error, "closing inbound SIP stream");
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.close()).await;
                    return;
                }
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) => {
                tracing::debug!("inbound SIP stream closed by peer");
                return;
            }
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(error) => {
                tracing::debug!(%error, "inbound SIP stream failed");
                return;
            }
        }
    }
}

/// Owns the outbound SIP stream to one peer and writes the queued messages on it in order.
/// Opens the stream on the first message (dialling if needed), reopens it once when a reused
/// stream fails, and ends after `idle_timeout` without messages; the driver starts a new
/// writer when it finds the queue closed.
pub(crate) async fn run_writer(
    peer: PeerId,
    mut control: libp2p_stream::Control,
    mut queue: mpsc::Receiver<OutboundSip>,
    settings: WriterSettings,
) {
    let mut stream: Option<Stream> = None;
    let mut closing = false;
    loop {
        let next = if closing {
            queue.recv().await
        } else {
            match tokio::time::timeout(settings.idle_timeout, queue.recv()).await {
                Ok(next) => next,
                Err(_idle) => {
                    // Closing first and then draining means a message queued at the last
                    // moment is still sent rather than lost.
                    queue.close();
                    closing = true;
                    continue;
                }
            }
        };
        let Some(OutboundSip { bytes, done }) = next else {
            break;
        };
        if done.is_closed() {
            // The caller stopped waiting (its own timeout); the message is stale by now.
            continue;
        }
        let result = write_message(peer, &mut control, &mut stream, &bytes, settings).await;
        if let Err(SendError::Unreachable(reason)) = &result {
            // Everything queued behind this message would wait for the same failure.
            while let Ok(queued) = queue.try_recv() {
                let _ = queued
                    .done
                    .send(Err(SendError::Unreachable(reason.clone())));
            }
        }
        let _ = done.send(result);
    }
    if let Some(mut stream) = stream {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.close()).await;
    }
    tracing::debug!("outbound SIP stream closed");
}

async fn write_message(
    peer: PeerId,
    control: &mut libp2p_stream::Control,
    stream: &mut Option<Stream>,
    bytes: &[u8],
    settings: WriterSettings,
) -> Result<(), SendError> {
    // A reused stream may have died with its connection since the previous message; that
    // failure is retried once on a fresh stream. A failure on a fresh stream is final.
    let mut may_retry = stream.is_some();
    loop {
        let current = match stream {
            Some(current) => current,
            None => stream.insert(open_stream(peer, control, settings.open_timeout).await?),
        };
        let write = async {
            current.write_all(bytes).await?;
            current.flush().await
        };
        match tokio::time::timeout(settings.write_timeout, write).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => {
                *stream = None;
                if may_retry {
                    tracing::debug!(%error, "SIP stream broke; reopening");
                    may_retry = false;
                    continue;
                }
                return Err(SendError::Io(error.to_string()));
            }
            Err(_elapsed) => {
                *stream = None;
                return Err(SendError::Timeout);
            }
        }
    }
}

async fn open_stream(
    peer: PeerId,
    control: &mut libp2p_stream::Control,
    open_timeout: Duration,
) -> Result<Stream, SendError> {
    let deadline = tokio::time::Instant::now() + open_timeout;
    let mut retried = false;
    loop {
        match tokio::time::timeout_at(deadline, control.open_stream(peer, SIP_PROTOCOL)).await {
            Ok(Ok(stream)) => {
                tracing::debug!("outbound SIP stream opened");
                return Ok(stream);
            }
            // The connection the stream was asked of closed first (typically its idle
            // timeout ran out at that moment). The swarm learns of the close a little
            // later; after a pause the next try gets a live or a new connection.
            Ok(Err(libp2p_stream::OpenStreamError::Io(error))) if !retried => {
                tracing::debug!(%error, "opening a SIP stream failed; trying once more");
                retried = true;
                tokio::time::sleep(OPEN_RETRY_PAUSE).await;
            }
            Ok(Err(error)) => return Err(SendError::Unreachable(error.to_string())),
            Err(_elapsed) => {
                return Err(SendError::Unreachable(format!(
                    "no SIP stream within {open_timeout:?}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_check_accepts_exactly_one_message() {
        let message = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(check_framing(message, 1024), Ok(()));
        let mut two = message.to_vec();
        two.extend_from_slice(message);
        assert!(matches!(
            check_framing(&two, 1024),
            Err(SendError::NotOneMessage(_))
        ));
        assert!(matches!(
            check_framing(&message[..message.len() - 1], 1024),
            Err(SendError::NotOneMessage(_))
        ));
        assert_eq!(check_framing(message, 16), Err(SendError::TooLarge));
        assert!(matches!(
            check_framing(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", 1024),
            Err(SendError::NotOneMessage(_))
        ));
    }
}
