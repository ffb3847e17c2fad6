//! Outbound SIP messages: one writer task with its own queue per peer.

use bytes::Bytes;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::DialError;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::Driver;
use crate::network::records::without_peer_id;
use crate::network::sip_stream::{self, OutboundSip, WriterSettings};
use crate::network::SendError;

impl Driver {
    pub(super) fn send_sip(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        message: Bytes,
        reply: oneshot::Sender<Result<(), SendError>>,
    ) {
        if peer == *self.swarm.local_peer_id() {
            let _ = reply.send(Err(SendError::OwnPeer));
            return;
        }
        if let Err(error) = sip_stream::check_framing(&message, self.config.max_sip_message_size) {
            let _ = reply.send(Err(error));
            return;
        }
        if !self.swarm.is_connected(&peer) && !addrs.is_empty() {
            let addresses = addrs.iter().map(without_peer_id).collect();
            let dial = DialOpts::peer_id(peer)
                .addresses(addresses)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            match self.swarm.dial(dial) {
                Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {}
                // The writer reports the failure when it cannot open the stream.
                Err(error) => tracing::debug!(%peer, %error, "cannot dial for SIP"),
            }
        }
        let mut item = OutboundSip {
            bytes: message,
            done: reply,
        };
        if let Some(queue) = self.sip_writers.get(&peer) {
            match queue.try_send(item) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(item)) => {
                    tracing::warn!(%peer, "SIP send queue full; dropping message");
                    let _ = item.done.send(Err(SendError::QueueFull));
                    return;
                }
                // The writer ended after being idle; a new one takes over below.
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    self.sip_writers.remove(&peer);
                    item = returned;
                }
            }
        }
        if self.sip_writers.len() >= self.config.max_sip_peers {
            self.sip_writers.retain(|_, queue| !queue.is_closed());
            if self.sip_writers.len() >= self.config.max_sip_peers {
                let _ = item.done.send(Err(SendError::TooManyPeers));
                return;
            }
        }
        let (queue, queue_rx) = mpsc::channel(self.config.sip_send_queue_len.max(1));
        let settings = WriterSettings {
            open_timeout: self.config.sip_open_timeout,
            write_timeout: self.config.sip_write_timeout,
            idle_timeout: self.config.sip_idle_timeout,
        };
        let span = tracing::info_span!("sip_out", %peer);
        self.sip_writer_tasks.spawn(
            sip_stream::run_writer(peer, self.sip_control.clone(), queue_rx, settings)
                .instrument(span),
        );
        // A fresh queue has room for at least one message.
        if let Err(error) = queue.try_send(item) {
            let item = match error {
                mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item) => {
                    item
                }
            };
            let _ = item.done.send(Err(SendError::QueueFull));
            return;
        }
        self.sip_writers.insert(peer, queue);
    }
}
