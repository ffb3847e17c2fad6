//! One task per overlay peer sends that peer's SIP messages in order, one at a time, and
//! reports delivery failures to the core.

use super::SENDER_IDLE;
use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};
use overlay::network::{Overlay, SendError};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// One message for a peer's sender task.
pub(super) struct Outbound {
    pub payload: Bytes,
    pub addrs: Vec<Multiaddr>,
}

pub(super) struct PeerSender {
    pub queue: mpsc::Sender<Outbound>,
    /// Messages dropped because the queue was full, for rate-limited warnings.
    pub dropped: u64,
}

/// Sends one peer's messages in order, one at a time, until its queue is dropped or it has
/// been idle for [`SENDER_IDLE`].
pub(super) async fn peer_sender(
    overlay: Overlay,
    peer: PeerId,
    mut queue: mpsc::Receiver<Outbound>,
    failures: mpsc::Sender<PeerId>,
) {
    let mut failing = false;
    loop {
        let message = match tokio::time::timeout(SENDER_IDLE, queue.recv()).await {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(_) => {
                // Refuse new messages, then send what slipped in before the close.
                queue.close();
                while let Ok(message) = queue.try_recv() {
                    send_one(&overlay, peer, message, &mut failing, &failures).await;
                }
                return;
            }
        };
        send_one(&overlay, peer, message, &mut failing, &failures).await;
    }
}

async fn send_one(
    overlay: &Overlay,
    peer: PeerId,
    message: Outbound,
    failing: &mut bool,
    failures: &mpsc::Sender<PeerId>,
) {
    match overlay.send_sip(peer, message.addrs, message.payload).await {
        Ok(()) => *failing = false,
        Err(SendError::Shutdown) => {}
        Err(error) => {
            // One warning per run of failures; the rest at debug.
            if *failing {
                debug!(%error, "overlay SIP send failed");
            } else {
                warn!(%error, "overlay SIP send failed");
            }
            *failing = true;
            // Full: the transactions waiting on this peer end by their own timers.
            let _ = failures.try_send(peer);
        }
    }
}
