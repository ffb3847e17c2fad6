//! What the workload's operations report while they run, gathered for the report.

use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::report::{Outcome, TimelineSample, MAX_LATENCY_SAMPLES};

/// Length of one timeline interval.
pub const TIMELINE_INTERVAL_SECS: f64 = 5.0;

/// Bound on timeline intervals (a day of workload at 5 s intervals); operations scheduled
/// later land in the last one.
const MAX_TIMELINE: usize = 24 * 3600 / 5 + 1;

/// A bounded sample: the first `MAX_LATENCY_SAMPLES` values, then a seeded reservoir.
#[derive(Debug)]
struct Reservoir {
    values: Vec<f64>,
    seen: u64,
    rng: ChaCha8Rng,
}

impl Reservoir {
    fn new(seed: u64) -> Reservoir {
        Reservoir {
            values: Vec::new(),
            seen: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn push(&mut self, value: f64) {
        self.seen += 1;
        if self.values.len() < MAX_LATENCY_SAMPLES {
            self.values.push(value);
        } else {
            let slot = self.rng.gen_range(0..self.seen);
            if let Some(kept) = self.values.get_mut(slot as usize) {
                *kept = value;
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    registrations: Outcome,
    lookups: Outcome,
    calls: Outcome,
    forged_accepted: u64,
    lookup_latency_ms: Reservoir,
    lookup_requests: Reservoir,
    call_setup_ms: Reservoir,
    timeline: Vec<TimelineSample>,
}

/// Shared by every operation of a run; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

/// Everything gathered, taken out at the end.
#[derive(Debug, Default)]
pub struct Gathered {
    pub registrations: Outcome,
    pub lookups: Outcome,
    pub calls: Outcome,
    pub forged_accepted: u64,
    pub lookup_latency_ms: Vec<f64>,
    pub lookup_requests: Vec<f64>,
    pub call_setup_ms: Vec<f64>,
    pub timeline: Vec<TimelineSample>,
}

impl Metrics {
    pub fn new(seed: u64) -> Metrics {
        Metrics {
            inner: Arc::new(Mutex::new(Inner {
                registrations: Outcome::default(),
                lookups: Outcome::default(),
                calls: Outcome::default(),
                forged_accepted: 0,
                lookup_latency_ms: Reservoir::new(seed ^ 0x11),
                lookup_requests: Reservoir::new(seed ^ 0x22),
                call_setup_ms: Reservoir::new(seed ^ 0x33),
                timeline: Vec::new(),
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut crate::lock(&self.inner))
    }

    pub fn registration(&self, success: bool) {
        self.with(|inner| inner.registrations.record(success));
    }

    /// A lookup scheduled at `at_secs` into the workload.
    pub fn lookup(&self, at_secs: f64, success: bool, latency_ms: f64, requests: u32) {
        self.with(|inner| {
            inner.lookups.record(success);
            interval(&mut inner.timeline, at_secs)
                .lookups
                .record(success);
            if success {
                inner.lookup_latency_ms.push(latency_ms);
                inner.lookup_requests.push(f64::from(requests));
            }
        });
    }

    pub fn call(&self, at_secs: f64, success: bool, setup_ms: f64) {
        self.with(|inner| {
            inner.calls.record(success);
            interval(&mut inner.timeline, at_secs).calls.record(success);
            if success {
                inner.call_setup_ms.push(setup_ms);
            }
        });
    }

    pub fn lookups_so_far(&self) -> Outcome {
        self.with(|inner| inner.lookups)
    }

    pub fn forged(&self) {
        self.with(|inner| inner.forged_accepted += 1);
    }

    /// Notes the live node count at `at_secs` (the interval keeps the latest).
    pub fn live_nodes(&self, at_secs: f64, live: usize) {
        self.with(|inner| interval(&mut inner.timeline, at_secs).live_nodes = live);
    }

    pub fn take(&self) -> Gathered {
        self.with(|inner| Gathered {
            registrations: inner.registrations,
            lookups: inner.lookups,
            calls: inner.calls,
            forged_accepted: inner.forged_accepted,
            lookup_latency_ms: std::mem::take(&mut inner.lookup_latency_ms.values),
            lookup_requests: std::mem::take(&mut inner.lookup_requests.values),
            call_setup_ms: std::mem::take(&mut inner.call_setup_ms.values),
            timeline: std::mem::take(&mut inner.timeline),
        })
    }
}

/// The timeline interval holding `at_secs`, created (with those before it) if needed.
fn interval(timeline: &mut Vec<TimelineSample>, at_secs: f64) -> &mut TimelineSample {
    let index = ((at_secs.max(0.0) / TIMELINE_INTERVAL_SECS) as usize).min(MAX_TIMELINE - 1);
    while timeline.len() <= index {
        let previous_live = timeline.last().map_or(0, |sample| sample.live_nodes);
        timeline.push(TimelineSample {
            t_secs: (timeline.len() + 1) as f64 * TIMELINE_INTERVAL_SECS,
            live_nodes: previous_live,
            ..TimelineSample::default()
        });
    }
    &mut timeline[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_land_in_their_interval() {
        let metrics = Metrics::new(1);
        metrics.live_nodes(0.0, 10);
        metrics.lookup(1.0, true, 12.0, 4);
        metrics.lookup(7.0, false, 0.0, 0);
        metrics.call(7.5, true, 30.0);
        let gathered = metrics.take();
        assert_eq!(gathered.lookups.attempted, 2);
        assert_eq!(gathered.lookups.succeeded, 1);
        assert_eq!(gathered.timeline.len(), 2);
        assert_eq!(gathered.timeline[1].live_nodes, 10);
        assert_eq!(gathered.timeline[1].calls.succeeded, 1);
        assert_eq!(gathered.lookup_latency_ms, vec![12.0]);
    }

    #[test]
    fn samples_stay_bounded() {
        let mut reservoir = Reservoir::new(3);
        for value in 0..(MAX_LATENCY_SAMPLES + 1000) {
            reservoir.push(value as f64);
        }
        assert_eq!(reservoir.values.len(), MAX_LATENCY_SAMPLES);
    }
}
