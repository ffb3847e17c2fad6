//! Unix time, as records count it, follows a paused tokio clock once asked to. A test
//! binary of its own: the switch is process-wide and would skew other tests' clocks.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use overlay::network::{follow_tokio_clock, now_unix, now_unix_millis};

#[tokio::test(start_paused = true)]
async fn unix_time_advances_with_the_paused_clock_only() {
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    follow_tokio_clock();
    let start = now_unix_millis();
    // It starts from the wall clock...
    assert!(start.abs_diff(u64::try_from(wall.as_millis()).unwrap()) < 60_000);

    // ...stands still while the clock is paused and nothing sleeps...
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(now_unix_millis(), start);

    // ...and moves exactly as far as the tokio clock does.
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    assert_eq!(now_unix_millis() - start, 3 * 3600 * 1000);
    assert_eq!(now_unix(), (start + 3 * 3600 * 1000) / 1000);
}
