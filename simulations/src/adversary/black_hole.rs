//! The drop adversary ("black hole"): it accepts streams of the overlay's Kademlia protocol,
//! reads the request and never answers, holding the stream open until the remote gives up
//! (at most [`MAX_HELD_STREAMS`] streams, each at most [`MAX_HOLD`]).
//!
//! It has no Kademlia behaviour of its own: `libp2p_stream` accepting the protocol is enough
//! for identify to advertise it, and an honest node puts any identified peer that advertises
//! it into its routing table. Honest queries that pick it then wait for their request
//! timeout.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt as _, StreamExt as _};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{identify, ping, PeerId, Stream, Swarm};
use libp2p_stream::IncomingStreams;
use overlay::network::KAD_PROTOCOL;
use overlay::record::KAD_MAX_PACKET_BYTES;
use tokio::task::{AbortHandle, JoinSet};

use super::{identify_behaviour, ping_behaviour, swarm_config, AdversaryError, Counters};

/// Streams held open at most; beyond it the oldest is dropped (its remote sees a reset).
pub(crate) const MAX_HELD_STREAMS: usize = 256;
/// How long a stream is held at most. A remote that gave up after a half-close cannot be
/// seen (it drops its stream without a reset), so this bound releases it; it is well above
/// the Kademlia request timeout (10 s by default), so every remote gives up first.
const MAX_HOLD: Duration = Duration::from_secs(60);
/// A request longer than an honest node would ever send is not read to its end.
const MAX_REQUEST_BYTES: usize = KAD_MAX_PACKET_BYTES;
/// Longest length prefix read: three varint bytes encode up to 2 MiB, far above any packet
/// an honest node sends.
const MAX_VARINT_BYTES: usize = 3;

#[derive(NetworkBehaviour)]
pub(crate) struct BlackHoleBehaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    streams: libp2p_stream::Behaviour,
}

/// The swarm, with the DHT protocol already accepted (so it is advertised from the first
/// identify on).
pub(crate) fn build(
    keypair: Keypair,
    transport: Boxed<(PeerId, StreamMuxerBox)>,
) -> Result<(Swarm<BlackHoleBehaviour>, IncomingStreams), AdversaryError> {
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| transport)
        .unwrap_or_else(|never| match never {})
        .with_behaviour(|keypair| BlackHoleBehaviour {
            identify: identify_behaviour(keypair),
            ping: ping_behaviour(),
            streams: libp2p_stream::Behaviour::new(),
        })
        .unwrap_or_else(|never| match never {})
        .with_swarm_config(swarm_config)
        .build();
    let incoming = swarm
        .behaviour_mut()
        .streams
        .new_control()
        .accept(KAD_PROTOCOL)
        .map_err(|error| AdversaryError::Accept(error.to_string()))?;
    Ok((swarm, incoming))
}

/// Runs the swarm (identify and ping answer by themselves) and swallows every inbound DHT
/// stream. Ends only when aborted.
pub(crate) async fn run(
    mut swarm: Swarm<BlackHoleBehaviour>,
    mut incoming: IncomingStreams,
    counters: Arc<Counters>,
) {
    let mut held = HeldStreams::new(MAX_HELD_STREAMS);
    let mut accepting = true;
    loop {
        tokio::select! {
            event = swarm.select_next_some() => {
                tracing::trace!(?event, "black hole swarm event");
            }
            next = incoming.next(), if accepting => match next {
                Some((peer, stream)) => {
                    tracing::trace!(%peer, "holding an inbound DHT stream");
                    held.hold(swallow(stream, Arc::clone(&counters)));
                }
                // Cannot happen while the behaviour lives; keep the swarm running anyway.
                None => accepting = false,
            },
            Some(done) = held.tasks.join_next_with_id(), if !held.tasks.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(error) => error.id(),
                };
                held.forget(id);
            }
        }
    }
}

/// Holds one inbound stream for at most [`MAX_HOLD`].
async fn swallow(stream: Stream, counters: Arc<Counters>) {
    let _ = tokio::time::timeout(MAX_HOLD, hold(stream, counters)).await;
}

/// Reads one request (counted once complete) and never writes a byte. The remote closes its
/// write half right after the request, so end of input is not a sign that it gave up; a
/// reset is. Ends on a reset; otherwise the caller's bound (or an eviction) ends it.
async fn hold(mut stream: Stream, counters: Arc<Counters>) {
    if read_request(&mut stream).await.is_none() {
        return;
    }
    counters.request_dropped();
    let mut sink = [0u8; 512];
    loop {
        match stream.read(&mut sink).await {
            // Half-closed: nothing more will come; wait for the bound.
            Ok(0) => futures::future::pending::<()>().await,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Reads one length-prefixed Kademlia message (unsigned varint length, then the protobuf),
/// discarding its bytes; `None` if the stream ends first or the length is implausible.
async fn read_request(stream: &mut (impl futures::AsyncRead + Unpin)) -> Option<()> {
    let mut length: usize = 0;
    let mut complete = false;
    for index in 0..MAX_VARINT_BYTES {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.ok()?;
        let [byte] = byte;
        let shift = u32::try_from(7 * index).ok()?;
        length |= usize::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            complete = true;
            break;
        }
    }
    if !complete || length > MAX_REQUEST_BYTES {
        return None;
    }
    let mut remaining = length;
    let mut buffer = [0u8; 1024];
    while remaining > 0 {
        let chunk = remaining.min(buffer.len());
        let slice = buffer.get_mut(..chunk)?;
        stream.read_exact(slice).await.ok()?;
        remaining -= chunk;
    }
    Some(())
}

/// The streams being held, oldest first, bounded.
struct HeldStreams {
    tasks: JoinSet<()>,
    order: VecDeque<AbortHandle>,
    limit: usize,
}

impl HeldStreams {
    fn new(limit: usize) -> HeldStreams {
        HeldStreams {
            tasks: JoinSet::new(),
            order: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// Holds one more stream, dropping the oldest when at the bound.
    fn hold(&mut self, holder: impl std::future::Future<Output = ()> + Send + 'static) {
        while self.order.len() >= self.limit {
            match self.order.pop_front() {
                // Reaped by `join_next_with_id` like any other ended holder.
                Some(oldest) => oldest.abort(),
                None => break,
            }
        }
        let handle = self.tasks.spawn(holder);
        self.order.push_back(handle);
    }

    fn forget(&mut self, id: tokio::task::Id) {
        if let Some(position) = self.order.iter().position(|handle| handle.id() == id) {
            self.order.remove(position);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn one_length_prefixed_request_is_read() {
        let mut framed = vec![0x82, 0x01]; // 130
        framed.extend(std::iter::repeat_n(7u8, 130));
        framed.extend([1, 2, 3]);
        let mut input = futures::io::Cursor::new(framed);
        assert_eq!(read_request(&mut input).await, Some(()));
        assert_eq!(input.position(), 132, "stops at the end of the request");
        // Cut short, or a length beyond any packet.
        let mut short = futures::io::Cursor::new(vec![0x05, 1, 2]);
        assert_eq!(read_request(&mut short).await, None);
        let mut huge = futures::io::Cursor::new(vec![0xff, 0xff, 0x7f, 0]);
        assert_eq!(read_request(&mut huge).await, None);
        let mut endless = futures::io::Cursor::new(vec![0x80, 0x80, 0x80, 0x01]);
        assert_eq!(read_request(&mut endless).await, None);
    }

    #[tokio::test]
    async fn held_streams_are_bounded_oldest_first() {
        let mut held = HeldStreams::new(3);
        let mut first = None;
        for _ in 0..5 {
            held.hold(futures::future::pending::<()>());
            first.get_or_insert_with(|| held.order.front().map(AbortHandle::id));
        }
        assert_eq!(held.order.len(), 3);
        // The two oldest were aborted and are reaped as ended.
        for _ in 0..2 {
            let done = held.tasks.join_next_with_id().await.unwrap();
            let error = done.unwrap_err();
            assert!(error.is_cancelled());
            held.forget(error.id());
        }
        assert_eq!(held.order.len(), 3);
        assert_eq!(held.tasks.len(), 3);
        assert!(held.order.iter().all(|h| Some(h.id()) != first.flatten()));
    }
}
