//! Overload control: a per-source request-rate limit (as Kamailio's pike module) and load
//! shedding, both decided before a request costs a transaction.
//!
//! - A source (IP address) that sends more than `max_requests_per_source` requests a second,
//!   counted over two-second windows, has its requests dropped unanswered until its window
//!   ends: answering a flood would only feed it. Trusted sources are not counted.
//! - While the node says it is overloaded ([`SipServer::set_overloaded`]: its receive
//!   queue stays full) or the transaction table is three-quarters full, requests that would
//!   start new work (out-of-dialog INVITE, REGISTER, MESSAGE, SUBSCRIBE, REFER, PUBLISH) get
//!   a stateless `503 Service Unavailable (overloaded)` with Retry-After, while ACK, CANCEL,
//!   BYE, OPTIONS and every in-dialog request are still served, so calls in progress end
//!   normally and monitoring keeps its answers.

use super::SipServer;
use crate::auth::FailureLimiter;
use crate::message::{Message, Method};
use crate::transport::Peer;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The window of the per-source count; a source over its limit waits for the window's end.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(2);
/// Sources whose request counts are tracked at once; beyond, the oldest window is dropped.
const RATE_SOURCES: usize = 65_536;
/// Seconds a shed request is told to wait.
const SHED_RETRY_AFTER: &str = "5";

/// Requests per source and window, built from the per-second limit (0: no limit).
pub(crate) fn source_rate_limiter(per_second: u32) -> Option<FailureLimiter<IpAddr>> {
    let window_seconds = u32::try_from(RATE_WINDOW.as_secs()).unwrap_or(1);
    (per_second > 0).then(|| {
        FailureLimiter::new(
            per_second.saturating_mul(window_seconds),
            RATE_WINDOW,
            RATE_SOURCES,
        )
    })
}

impl SipServer {
    /// Tells the server whether the node is behind on its input (its receive queue stays
    /// full). While it is, new work is shed with 503.
    pub fn set_overloaded(&mut self, overloaded: bool) {
        self.overloaded = overloaded;
    }

    pub fn is_overloaded(&self) -> bool {
        self.overloaded
    }

    /// Counts a request from `from` and says whether it may be processed at all.
    pub(super) fn admit_source(&mut self, now: Instant, from: Peer) -> bool {
        if self.source_rates.is_none() || self.is_trusted_source(from) {
            return true;
        }
        let source = from.remote.ip().to_canonical();
        let Some(limiter) = self.source_rates.as_mut() else {
            return true;
        };
        if limiter.is_blocked(now, &source) {
            self.stats.rate_limited += 1;
            return false;
        }
        limiter.record_failure(now, &source);
        true
    }

    /// True when a new request of `method` is to be shed now.
    pub(super) fn sheds(&self, method: &Method<'_>, msg: &Message<'_>) -> bool {
        let starts_work = matches!(
            method,
            Method::Invite
                | Method::Register
                | Method::Message
                | Method::Subscribe
                | Method::Refer
                | Method::Publish
        );
        if !starts_work {
            return false;
        }
        let busy = self.overloaded
            || self.transactions.len() >= self.config.max_transactions.saturating_mul(3) / 4;
        busy && msg
            .to()
            .and_then(Result::ok)
            .is_some_and(|to| to.tag().is_none())
    }

    /// Sheds a request: a stateless 503 with Retry-After (the ACK of an INVITE's is
    /// absorbed by its To tag).
    pub(super) fn shed(&mut self, from: Peer, msg: &Message<'_>) {
        self.stats.overload_rejections += 1;
        self.respond_stateless(
            from,
            msg,
            503,
            "Service Unavailable (overloaded)",
            &[("Retry-After", SHED_RETRY_AFTER)],
        );
    }
}
