//! `futures_timer::Delay` on tokio's timer.
//!
//! libp2p creates its timers (idle connections, request timeouts, Kademlia's periodic jobs)
//! through this type. Backing it with `tokio::time::Sleep` puts them on the same clock as
//! everything else the node runs: the real monotonic clock normally, the virtual clock when
//! the simulator pauses time. The original crate runs its own timer thread on the real
//! clock, which a paused runtime cannot see.
//!
//! A `Delay` polled outside any tokio runtime (a plain futures executor) uses a small
//! runtime on a helper thread, started on first use.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::{Instant, Sleep};

/// A future that completes once its duration has passed since it was created (or reset).
pub struct Delay {
    deadline: Instant,
    /// Created on first poll, inside the runtime that polls it.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The helper runtime, when the first poll came from outside tokio.
    fallback: Option<Handle>,
}

impl Delay {
    /// A delay that completes `dur` from now.
    pub fn new(dur: Duration) -> Delay {
        Delay {
            deadline: deadline_after(dur),
            sleep: None,
            fallback: None,
        }
    }

    /// Restarts the delay to complete `dur` from now, whether or not it already completed.
    pub fn reset(&mut self, dur: Duration) {
        self.deadline = deadline_after(dur);
        if let Some(sleep) = self.sleep.as_mut() {
            let _entered = self.fallback.as_ref().map(Handle::enter);
            sleep.as_mut().reset(self.deadline);
        }
    }
}

/// Now plus `dur`, or a deadline decades away when that overflows (as for `Duration::MAX`).
fn deadline_after(dur: Duration) -> Instant {
    const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);
    let now = Instant::now();
    now.checked_add(dur)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

impl Future for Delay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let _entered = match (&this.sleep, Handle::try_current()) {
            (Some(_), _) => this.fallback.as_ref().map(Handle::enter),
            (None, Ok(_)) => None,
            (None, Err(_)) => {
                this.fallback = Some(helper_runtime().clone());
                this.fallback.as_ref().map(Handle::enter)
            }
        };
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        sleep.as_mut().poll(cx)
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delay")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// A current-thread runtime with timers on a helper thread, driven forever; it serves the
/// delays polled outside tokio.
fn helper_runtime() -> &'static Handle {
    static HELPER: OnceLock<Handle> = OnceLock::new();
    HELPER.get_or_init(|| {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime,
            // Without a timer runtime no delay can ever fire; that is unrecoverable.
            Err(error) => panic!("futures-timer: cannot start the timer runtime: {error}"),
        };
        let handle = runtime.handle().clone();
        let spawned = std::thread::Builder::new()
            .name("futures-timer".to_owned())
            .spawn(move || runtime.block_on(std::future::pending::<()>()));
        if let Err(error) = spawned {
            panic!("futures-timer: cannot start the timer thread: {error}");
        }
        handle
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn completes_after_its_duration_in_tokio_time() {
        let start = Instant::now();
        Delay::new(Duration::from_secs(30)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_the_deadline() {
        let start = Instant::now();
        let mut delay = Delay::new(Duration::from_secs(5));
        // Polled once, so the reset has to move an existing timer.
        assert!(futures_poll_once(&mut delay).is_pending());
        tokio::time::advance(Duration::from_secs(2)).await;
        delay.reset(Duration::from_secs(10));
        delay.await;
        assert_eq!(start.elapsed(), Duration::from_secs(12));
    }

    #[test]
    fn works_without_a_tokio_runtime() {
        let start = std::time::Instant::now();
        block_on_plain(Delay::new(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    fn futures_poll_once(delay: &mut Delay) -> Poll<()> {
        let waker = std::task::Waker::noop();
        Pin::new(delay).poll(&mut Context::from_waker(waker))
    }

    /// A minimal executor with no tokio context: parks the thread until woken.
    fn block_on_plain<F: Future>(future: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut context = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
            std::thread::park();
        }
    }
}
