//! What a simulation run measured: the data behind the JSON, CSV, SVG and terminal outputs.

use serde::{Deserialize, Serialize};

/// Attempts of one kind of operation and how many succeeded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub attempted: u64,
    pub succeeded: u64,
}

impl Outcome {
    pub fn record(&mut self, success: bool) {
        self.attempted += 1;
        if success {
            self.succeeded += 1;
        }
    }

    /// Succeeded / attempted; 1.0 when nothing was attempted.
    pub fn ratio(&self) -> f64 {
        if self.attempted == 0 {
            1.0
        } else {
            self.succeeded as f64 / self.attempted as f64
        }
    }
}

/// Percentiles of a sample (milliseconds or counts, as the field name says).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (any order).
    pub fn of(samples: &[f64]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[index.clamp(1, sorted.len()) - 1]
        };
        Percentiles {
            count: sorted.len() as u64,
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: sorted[sorted.len() - 1],
        }
    }
}

/// The scenario as run, echoed into the report so a report file says how to reproduce it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScenarioEcho {
    /// The command line that reproduces this run.
    pub command: String,
    pub seed: u64,
    pub nodes: usize,
    pub users: usize,
    pub nat_fraction: f64,
    pub adversary_fraction: f64,
    pub adversary_kinds: Vec<String>,
    pub latency: String,
    pub loss: f64,
    pub churn: Option<String>,
    pub supernode_failures: usize,
    pub workload_secs: f64,
    pub lookups_per_sec: f64,
    pub calls_per_sec: f64,
}

/// Traffic on the simulated network, averaged over live nodes and the run's duration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficSummary {
    pub total_bytes: u64,
    /// Writes on simulated connections (each a frame of the multiplexer or handshake).
    pub total_frames: u64,
    pub connections_opened: u64,
    pub bytes_per_node_per_sec: f64,
    pub frames_per_node_per_sec: f64,
    /// Peers each live honest node was connected to at the end of the run: mean and most.
    pub connected_peers_mean: f64,
    pub connected_peers_max: u64,
}

/// Resident memory of the simulator process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MemorySummary {
    /// Before any node started.
    pub baseline_rss_bytes: u64,
    /// Highest resident set size of the process (VmHWM).
    pub peak_rss_bytes: u64,
    /// (peak - baseline) / highest number of nodes alive at once.
    pub per_node_bytes: u64,
}

/// One interval of the run (for success-over-time plots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelineSample {
    /// End of the interval, seconds since the workload started.
    pub t_secs: f64,
    pub live_nodes: usize,
    pub lookups: Outcome,
    pub calls: Outcome,
}

/// How long one phase of the run (starting nodes, registering, the workload...) took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTiming {
    pub name: String,
    /// On the machine's clock.
    pub wall_secs: f64,
    /// In the run's virtual time: how much network time the phase covered.
    pub simulated_secs: f64,
}

/// One invariant checked at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantResult {
    pub name: String,
    pub holds: bool,
    pub detail: String,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: ScenarioEcho,
    /// Registrations (initial, refreshes and re-registrations after a node left).
    pub registrations: Outcome,
    /// Lookups of registered users during the workload.
    pub lookups: Outcome,
    /// Calls (lookup, INVITE over the overlay, 200 OK back) during the workload.
    pub calls: Outcome,
    /// Offline messages stored and delivered; `None` while the overlay has no mailbox.
    pub offline_messages: Option<Outcome>,
    /// The final check: every user registered at a live node looked up once.
    pub final_lookups: Outcome,
    /// Users registered at a live node that the final check did not find.
    pub records_lost: u64,
    /// Lookup answers that held a binding no honest node published.
    pub forged_accepted: u64,
    /// Records refused by honest nodes' validators (puts and fetches).
    pub records_refused: u64,
    /// Adversaries' actions: requests dropped, forged answers given, forged puts sent.
    pub adversary_actions: u64,
    pub lookup_latency_ms: Percentiles,
    /// DHT requests sent per lookup (libp2p Kademlia's query statistics), the overlay's
    /// measure of routing hops.
    pub lookup_requests: Percentiles,
    pub call_setup_ms: Percentiles,
    pub traffic: TrafficSummary,
    pub memory: MemorySummary,
    /// Nodes started over the whole run (initial and joining), adversaries included.
    pub nodes_started: usize,
    /// Graceful leaves and crashes.
    pub nodes_left: usize,
    pub nodes_crashed: usize,
    pub max_live_nodes: usize,
    pub wall_time_secs: f64,
    /// The run's phases in order, each timed on the machine's clock and in virtual time.
    pub phases: Vec<PhaseTiming>,
    pub timeline: Vec<TimelineSample>,
    /// Lookup latencies (ms) of successful lookups, at most [`MAX_LATENCY_SAMPLES`], for
    /// the CDF plot.
    pub lookup_latency_samples_ms: Vec<f64>,
    /// Call setup times (ms) of successful calls, at most [`MAX_LATENCY_SAMPLES`].
    pub call_setup_samples_ms: Vec<f64>,
    pub invariants: Vec<InvariantResult>,
}

/// Bound on the latency samples kept per kind; beyond it, samples are kept by a seeded
/// reservoir so the CDF stays representative.
pub const MAX_LATENCY_SAMPLES: usize = 200_000;

impl Report {
    /// This report without what the machine rather than the seed decides (wall-clock times
    /// and memory): two runs with one seed give equal values.
    pub fn seeded_part(&self) -> Report {
        let mut seeded = self.clone();
        seeded.wall_time_secs = 0.0;
        seeded.memory = MemorySummary::default();
        for phase in &mut seeded.phases {
            phase.wall_secs = 0.0;
        }
        seeded
    }

    /// Whether every invariant holds.
    pub fn invariants_hold(&self) -> bool {
        self.invariants.iter().all(|invariant| invariant.holds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&samples);
        assert_eq!(p.count, 100);
        assert_eq!(p.p50, 50.0);
        assert_eq!(p.p90, 90.0);
        assert_eq!(p.p99, 99.0);
        assert_eq!(p.max, 100.0);
        assert_eq!(Percentiles::of(&[]).count, 0);
        assert_eq!(Percentiles::of(&[7.0]).p99, 7.0);
    }

    #[test]
    fn empty_outcome_counts_as_success() {
        let mut outcome = Outcome::default();
        assert_eq!(outcome.ratio(), 1.0);
        outcome.record(true);
        outcome.record(false);
        assert_eq!(outcome.ratio(), 0.5);
    }
}
