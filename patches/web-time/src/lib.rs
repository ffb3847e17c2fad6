//! The API of the `web-time` crate (std's time types) with one change: [`Instant`] is
//! tokio's. It reads the same monotonic clock as std's unless the tokio runtime polling it
//! has paused time, which is how the simulator runs libp2p in virtual time.
//!
//! Wall-clock types stay std's: the code that reads them in libp2p (relay reservation
//! expiry, signed peer records) needs real unix time.

pub use std::time::{Duration, SystemTime, SystemTimeError, TryFromFloatSecsError, UNIX_EPOCH};
pub use tokio::time::Instant;
