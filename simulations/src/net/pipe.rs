//! A simulated connection: two delayed, bounded, ordered byte pipes.
//!
//! Each direction is one [`Pipe`] behind one mutex. A write is queued with the instant it
//! may be read (its delivery instant) and is visible to the reader only from then; the
//! reader waits on one lazily created timer that it re-arms with `reset`. Nothing is spawned
//! per connection or per write, and a direction never holds more than the window plus one
//! write. An idle connection holds no data: the link (two pipes, ~300 bytes), the two ends,
//! a timer per end and the jitter/loss generator, about 1 KiB in all.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures::{AsyncRead, AsyncWrite, Future};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::{Instant, Sleep};

use super::{network::Shared, NetworkModel, NodeIndex};
use crate::lock;

/// State shared by the two ends of one connection.
pub(super) struct Link {
    latency: Duration,
    retransmit: Duration,
    /// Seeds the jitter/loss generator.
    rng_seed: u64,
    /// Jitter/loss generator, shared by both directions (one per connection, not per end, to
    /// halve its 320 bytes); created on the first write that needs a draw.
    rng: Mutex<Option<Box<ChaCha8Rng>>>,
    /// `dirs[0]` carries dialer → listener, `dirs[1]` listener → dialer.
    dirs: [Mutex<Pipe>; 2],
}

/// One direction of a connection.
struct Pipe {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already read.
    read_offset: usize,
    /// Bytes written and not yet read: what the window limits.
    in_flight: usize,
    /// Delivery instant of the last write; later writes never arrive before it (in order).
    last_delivery: Instant,
    /// When the writer closed or was dropped, the instant its EOF reaches the reader.
    eof_at: Option<Instant>,
    reader_gone: bool,
    /// A reader waiting on an empty pipe (a reader waiting for queued data uses its timer).
    reader: Option<Waker>,
    /// A writer waiting for room in the window.
    writer: Option<Waker>,
}

struct Chunk {
    at: Instant,
    data: Vec<u8>,
}

impl Pipe {
    fn new(now: Instant) -> Pipe {
        Pipe {
            chunks: VecDeque::new(),
            read_offset: 0,
            in_flight: 0,
            last_delivery: now,
            eof_at: None,
            reader_gone: false,
            reader: None,
            writer: None,
        }
    }

    /// Copies every byte delivered by `now` that fits into `buf`.
    fn read_delivered(&mut self, now: Instant, buf: &mut [u8]) -> usize {
        let mut copied = 0;
        while copied < buf.len() {
            let Some(front) = self.chunks.front() else {
                break;
            };
            if front.at > now {
                break;
            }
            let available = front.data.get(self.read_offset..).unwrap_or_default();
            let n = available.len().min(buf.len() - copied);
            buf[copied..copied + n].copy_from_slice(&available[..n]);
            copied += n;
            self.read_offset += n;
            if self.read_offset >= front.data.len() {
                self.chunks.pop_front();
                self.read_offset = 0;
            }
        }
        self.in_flight = self.in_flight.saturating_sub(copied);
        if self.chunks.is_empty() {
            // Most connections sit idle between short exchanges: hold no slots meanwhile.
            self.chunks = VecDeque::new();
        }
        copied
    }

    fn push(&mut self, at: Instant, data: &[u8]) {
        self.in_flight += data.len();
        self.last_delivery = at;
        match self.chunks.back_mut() {
            // Writes that arrive together are one chunk: fewer allocations on bursts.
            Some(back) if back.at == at => back.data.extend_from_slice(data),
            _ => self.chunks.push_back(Chunk {
                at,
                data: data.to_vec(),
            }),
        }
    }

    /// Marks the writer's end closed; returns the reader to wake, if any.
    fn close_writer(&mut self, now: Instant, latency: Duration) -> Option<Waker> {
        if self.eof_at.is_none() {
            self.eof_at = Some(self.last_delivery.max(later(now, latency)));
        }
        self.reader.take()
    }
}

fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay).unwrap_or(now)
}

/// Keeps the waker of the task polling now, cloning it only when the task changed.
pub(super) fn store_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// Latency of the next write, with jitter and possibly a retransmission.
fn write_delay(link: &Link, model: &NetworkModel) -> Duration {
    let latency = link.latency;
    let jitter = model.jitter_fraction();
    let loss = model.loss_probability();
    if jitter == 0.0 && loss == 0.0 {
        return latency;
    }
    let mut rng = lock(&link.rng);
    let rng = rng.get_or_insert_with(|| Box::new(ChaCha8Rng::seed_from_u64(link.rng_seed)));
    let mut delay = latency;
    if jitter > 0.0 {
        let u = rng.gen::<f64>() * 2.0 - 1.0;
        delay = Duration::try_from_secs_f64(latency.as_secs_f64() * (1.0 + jitter * u))
            .unwrap_or(latency);
    }
    if loss > 0.0 && rng.gen::<f64>() < loss {
        delay = delay.saturating_add(link.retransmit);
    }
    delay
}

/// One end of a simulated connection: a byte stream (futures `AsyncRead + AsyncWrite`).
///
/// Jitter and loss are drawn from a ChaCha generator per connection, seeded from the network
/// seed, the two node indices and a per-network connection counter, so the distribution is
/// reproducible. Which draw a write gets depends on how the runtime happened to split and
/// time the writes, so individual delays are not bit-reproducible across runs; the model is.
pub struct SimStream {
    link: Arc<Link>,
    net: Arc<Shared>,
    /// 0 for the dialer's end, 1 for the listener's; the end writes to `dirs[side]`.
    side: usize,
    local: NodeIndex,
    sleep: Option<Pin<Box<Sleep>>>,
    write_closed: bool,
}

/// Creates both ends of a connection between `dialer` and `listener`.
pub(super) fn connect(
    net: &Arc<Shared>,
    dialer: NodeIndex,
    listener: NodeIndex,
    latency: Duration,
    rng_seed: u64,
) -> (SimStream, SimStream) {
    let now = Instant::now();
    let link = Arc::new(Link {
        latency,
        retransmit: NetworkModel::retransmit_delay(latency),
        rng_seed,
        rng: Mutex::new(None),
        dirs: [Mutex::new(Pipe::new(now)), Mutex::new(Pipe::new(now))],
    });
    let end = |side, local| SimStream {
        link: Arc::clone(&link),
        net: Arc::clone(net),
        side,
        local,
        sleep: None,
        write_closed: false,
    };
    (end(0, dialer), end(1, listener))
}

impl SimStream {
    fn outgoing(&self) -> &Mutex<Pipe> {
        &self.link.dirs[self.side]
    }

    fn incoming(&self) -> &Mutex<Pipe> {
        &self.link.dirs[1 - self.side]
    }

    /// Polls the reader's timer for `deadline`, re-arming it only when the deadline moved.
    fn wait_until(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => {
                // Creating a timer outside a runtime would panic; report it instead.
                if tokio::runtime::Handle::try_current().is_err() {
                    return Poll::Ready(Err(io::Error::other(
                        "simulated connections must be polled inside a tokio runtime",
                    )));
                }
                self.sleep
                    .insert(Box::pin(tokio::time::sleep_until(deadline)))
            }
        };
        sleep.as_mut().poll(cx).map(Ok)
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let now = Instant::now();
            let deadline = {
                let mut pipe = lock(this.incoming());
                match pipe.chunks.front().map(|chunk| chunk.at) {
                    Some(at) if at <= now => {
                        let n = pipe.read_delivered(now, buf);
                        let writer = pipe.writer.take();
                        drop(pipe);
                        if let Some(writer) = writer {
                            writer.wake();
                        }
                        return Poll::Ready(Ok(n));
                    }
                    Some(at) => at,
                    None => match pipe.eof_at {
                        Some(at) if at <= now => return Poll::Ready(Ok(0)),
                        Some(at) => at,
                        None => {
                            store_waker(&mut pipe.reader, cx);
                            return Poll::Pending;
                        }
                    },
                }
            };
            // Later writes never arrive before the front one, so this one timer suffices.
            match this.wait_until(deadline, cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after close",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let window = this.net.model.window_bytes.max(1);
        let now = Instant::now();
        let (written, reader) = {
            let mut pipe = lock(this.outgoing());
            if pipe.reader_gone {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the remote end of the simulated connection is closed",
                )));
            }
            let room = window.saturating_sub(pipe.in_flight);
            if room == 0 {
                store_waker(&mut pipe.writer, cx);
                return Poll::Pending;
            }
            let delay = write_delay(&this.link, &this.net.model);
            let written = buf.len().min(room);
            let at = pipe.last_delivery.max(later(now, delay));
            pipe.push(at, &buf[..written]);
            (written, pipe.reader.take())
        };
        if let Some(reader) = reader {
            reader.wake();
        }
        if let Some(node) = this.net.node(this.local) {
            node.record_write(written);
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered on the writer's side.
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.write_closed = true;
            let reader = lock(this.outgoing()).close_writer(Instant::now(), this.link.latency);
            if let Some(reader) = reader {
                reader.wake();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        let now = Instant::now();
        let reader = lock(self.outgoing()).close_writer(now, self.link.latency);
        let writer = {
            let mut pipe = lock(self.incoming());
            pipe.reader_gone = true;
            // Nobody will read these bytes: free them now rather than with the last end.
            pipe.chunks = VecDeque::new();
            pipe.read_offset = 0;
            pipe.in_flight = 0;
            pipe.writer.take()
        };
        for waker in [reader, writer].into_iter().flatten() {
            waker.wake();
        }
    }
}
