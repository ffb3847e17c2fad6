//! What a run simulates: the command-line arguments of `p2psip sim` and the scenario they
//! describe.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use rand::Rng;
use rand_distr::{Distribution, Exp, Weibull};

use crate::adversary::AdversaryKind;
use crate::net::{parse_duration, DisplayDuration, LatencyModel, Security};
use crate::node::SIM_IDLE_CONNECTION_TIMEOUT;

/// Arguments of `p2psip sim`.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Overlay nodes, adversaries included.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Seed of everything random: identities, latencies, NAT, workload, churn.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Registered users (default: one per node).
    #[arg(long)]
    pub users: Option<usize>,
    /// Fraction of honest nodes behind NAT (no inbound connections; DHT clients that keep a
    /// relay reservation on a supernode). The others are supernodes.
    #[arg(long, default_value_t = 0.2)]
    pub nat_fraction: f64,
    /// Fraction of the nodes that are adversarial.
    #[arg(long, default_value_t = 0.0)]
    pub adversaries: f64,
    /// Kinds of adversary, assigned in turn: drop (answers no DHT request), forge (answers
    /// with forged records and puts forged records).
    #[arg(long, value_delimiter = ',', default_value = "drop,forge")]
    pub adversary_kinds: Vec<AdversaryKind>,
    /// One-way latency of a link: fixed:20ms, uniform:10ms-100ms or lognormal:30ms,0.5
    /// (median and sigma).
    #[arg(long, default_value = "lognormal:30ms,0.5")]
    pub latency: LatencyModel,
    /// Jitter per write, as a fraction of the link's latency.
    #[arg(long, default_value_t = 0.1)]
    pub jitter: f64,
    /// Probability that a write is lost once and arrives after a retransmission delay.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Node churn: none, exp:MEAN (exponential session times, e.g. exp:300s) or
    /// weibull:SCALE,SHAPE. A node that leaves is replaced by a new one.
    #[arg(long, default_value = "none")]
    pub churn: ChurnModel,
    /// Fraction of departures that are crashes (no hand-off) rather than graceful leaves.
    #[arg(long, default_value_t = 0.5)]
    pub crash_fraction: f64,
    /// Supernodes crashed (and not replaced) halfway through the workload.
    #[arg(long, default_value_t = 0)]
    pub supernode_failures: usize,
    /// Length of the workload, in seconds.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Lookups per second, over the whole overlay.
    #[arg(long, default_value_t = 20.0)]
    pub lookup_rate: f64,
    /// Calls per second, over the whole overlay.
    #[arg(long, default_value_t = 5.0)]
    pub call_rate: f64,
    /// Seconds between a user's registration refreshes.
    #[arg(long, default_value_t = 120)]
    pub refresh: u64,
    /// Seconds given to the overlay to settle after the nodes start and before the final
    /// check.
    #[arg(long, default_value_t = 10)]
    pub settle: u64,
    /// Seconds a connection stays open with nothing on it. Shorter saves memory (each
    /// open connection end costs about 30 KiB) and costs CPU in new handshakes.
    #[arg(long, default_value_t = SIM_IDLE_CONNECTION_TIMEOUT.as_secs())]
    pub idle_timeout: u64,
    /// Run the noise handshake on every connection (default: libp2p plaintext, which still
    /// authenticates peer ids but costs less memory and CPU per connection).
    #[arg(long)]
    pub noise: bool,
    /// Directory for report.json, the CSV files and the SVG plots.
    #[arg(long, default_value = "sim-report")]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Log filter (tracing syntax), written to stderr.
    #[arg(long, default_value = "warn")]
    pub log: String,
}

impl Default for SimArgs {
    fn default() -> Self {
        SimArgs {
            nodes: 100,
            seed: 1,
            users: None,
            nat_fraction: 0.2,
            adversaries: 0.0,
            adversary_kinds: vec![AdversaryKind::Drop, AdversaryKind::Forge],
            latency: LatencyModel::LogNormal {
                median: Duration::from_millis(30),
                sigma: 0.5,
            },
            jitter: 0.1,
            loss: 0.0,
            churn: ChurnModel::None,
            crash_fraction: 0.5,
            supernode_failures: 0,
            duration: 60,
            lookup_rate: 20.0,
            call_rate: 5.0,
            refresh: 120,
            settle: 10,
            idle_timeout: SIM_IDLE_CONNECTION_TIMEOUT.as_secs(),
            noise: false,
            out: PathBuf::from("sim-report"),
            quiet: false,
            log: "warn".to_owned(),
        }
    }
}

/// A scenario argument that makes no sense, named by its flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{flag}: {reason}")]
pub struct ScenarioError {
    pub flag: &'static str,
    pub reason: String,
}

fn bad(flag: &'static str, reason: impl Into<String>) -> ScenarioError {
    ScenarioError {
        flag,
        reason: reason.into(),
    }
}

/// Nodes the simulated network has room for; a bound on `--nodes` plus the replacements
/// churn starts.
pub const MAX_NODES: usize = 50_000;

impl SimArgs {
    /// Checks the arguments; the error names the flag.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.nodes < 2 {
            return Err(bad("nodes", "at least 2 nodes are needed"));
        }
        if self.nodes > MAX_NODES / 2 {
            return Err(bad("nodes", format!("at most {}", MAX_NODES / 2)));
        }
        for (flag, value) in [
            ("nat-fraction", self.nat_fraction),
            ("adversaries", self.adversaries),
            ("jitter", self.jitter),
            ("loss", self.loss),
            ("crash-fraction", self.crash_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(bad(flag, format!("{value} is not between 0 and 1")));
            }
        }
        if self.loss >= 1.0 {
            return Err(bad("loss", "must be below 1"));
        }
        if self.adversaries > 0.0 && self.adversary_kinds.is_empty() {
            return Err(bad("adversary-kinds", "no kind given"));
        }
        if self.honest_nodes() < 2 {
            return Err(bad("adversaries", "leaves fewer than 2 honest nodes"));
        }
        if self.public_nodes() == 0 {
            return Err(bad("nat-fraction", "leaves no supernode"));
        }
        if self.supernode_failures >= self.public_nodes() {
            return Err(bad(
                "supernode-failures",
                format!("must be below the {} supernodes", self.public_nodes()),
            ));
        }
        for (flag, rate) in [
            ("lookup-rate", self.lookup_rate),
            ("call-rate", self.call_rate),
        ] {
            if !(0.0..=100_000.0).contains(&rate) {
                return Err(bad(flag, format!("{rate} is not between 0 and 100000")));
            }
        }
        if self.duration == 0 || self.duration > 24 * 3600 {
            return Err(bad("duration", "must be 1 to 86400 seconds"));
        }
        if !(1..=3600).contains(&self.idle_timeout) {
            return Err(bad("idle-timeout", "must be 1 to 3600 seconds"));
        }
        if self.refresh < 10 {
            return Err(bad("refresh", "must be at least 10 seconds"));
        }
        if self.users() == 0 || self.users() > 1_000_000 {
            return Err(bad("users", "must be 1 to 1000000"));
        }
        Ok(())
    }

    pub fn users(&self) -> usize {
        self.users.unwrap_or(self.nodes)
    }

    pub fn adversary_count(&self) -> usize {
        (self.nodes as f64 * self.adversaries).round() as usize
    }

    pub fn honest_nodes(&self) -> usize {
        self.nodes.saturating_sub(self.adversary_count())
    }

    /// Honest nodes that start as supernodes (the first node always is one).
    pub fn public_nodes(&self) -> usize {
        let nat = (self.honest_nodes() as f64 * self.nat_fraction).round() as usize;
        self.honest_nodes().saturating_sub(nat)
    }

    pub fn security(&self) -> Security {
        if self.noise {
            Security::Noise
        } else {
            Security::Plaintext
        }
    }

    /// The command line that reproduces this run.
    pub fn command_line(&self) -> String {
        let mut line = format!(
            "p2psip sim --nodes {} --seed {} --users {} --nat-fraction {} --latency {} --jitter {} --loss {} --churn {} --duration {} --lookup-rate {} --call-rate {} --refresh {} --settle {}",
            self.nodes,
            self.seed,
            self.users(),
            self.nat_fraction,
            self.latency,
            self.jitter,
            self.loss,
            self.churn,
            self.duration,
            self.lookup_rate,
            self.call_rate,
            self.refresh,
            self.settle,
        );
        if self.churn != ChurnModel::None {
            line.push_str(&format!(" --crash-fraction {}", self.crash_fraction));
        }
        if self.adversaries > 0.0 {
            let kinds: Vec<String> = self.adversary_kinds.iter().map(|k| k.to_string()).collect();
            line.push_str(&format!(
                " --adversaries {} --adversary-kinds {}",
                self.adversaries,
                kinds.join(",")
            ));
        }
        if self.supernode_failures > 0 {
            line.push_str(&format!(
                " --supernode-failures {}",
                self.supernode_failures
            ));
        }
        if self.idle_timeout != SIM_IDLE_CONNECTION_TIMEOUT.as_secs() {
            line.push_str(&format!(" --idle-timeout {}", self.idle_timeout));
        }
        if self.noise {
            line.push_str(" --noise");
        }
        line
    }
}

/// How long nodes stay before they leave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChurnModel {
    None,
    /// Exponential session times with this mean.
    Exponential {
        mean: Duration,
    },
    /// Weibull session times (shape below 1: many short sessions and a few long ones, as
    /// measured in deployed peer-to-peer networks).
    Weibull {
        scale: Duration,
        shape: f64,
    },
}

impl ChurnModel {
    /// A session time drawn from the model; `None` without churn.
    pub fn session_time(&self, rng: &mut impl Rng) -> Option<Duration> {
        let seconds = match *self {
            ChurnModel::None => return None,
            ChurnModel::Exponential { mean } => Exp::new(1.0 / mean.as_secs_f64().max(1e-3))
                .ok()?
                .sample(rng),
            ChurnModel::Weibull { scale, shape } => {
                Weibull::new(scale.as_secs_f64(), shape).ok()?.sample(rng)
            }
        };
        Some(Duration::from_secs_f64(seconds.clamp(0.0, 1e9)))
    }
}

impl fmt::Display for ChurnModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChurnModel::None => f.write_str("none"),
            ChurnModel::Exponential { mean } => write!(f, "exp:{}", DisplayDuration(*mean)),
            ChurnModel::Weibull { scale, shape } => {
                write!(f, "weibull:{},{shape}", DisplayDuration(*scale))
            }
        }
    }
}

impl FromStr for ChurnModel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "none" {
            return Ok(ChurnModel::None);
        }
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: expected none, exp:MEAN or weibull:SCALE,SHAPE"))?;
        match kind {
            "exp" => Ok(ChurnModel::Exponential {
                mean: positive_seconds(rest)?,
            }),
            "weibull" => {
                let (scale, shape) = rest
                    .split_once(',')
                    .ok_or_else(|| format!("{text:?}: expected weibull:SCALE,SHAPE"))?;
                let shape: f64 = shape
                    .trim()
                    .parse()
                    .map_err(|_| format!("{shape:?} is not a number (Weibull shape)"))?;
                if !(shape > 0.0 && shape <= 10.0) {
                    return Err(format!("Weibull shape {shape} is not in (0, 10]"));
                }
                Ok(ChurnModel::Weibull {
                    scale: positive_seconds(scale)?,
                    shape,
                })
            }
            other => Err(format!(
                "unknown churn model {other:?}; expected none, exp or weibull"
            )),
        }
    }
}

/// A session time: a duration as link latencies are written (`300s`, `1500ms`), or whole
/// minutes (`5m`); never zero.
fn positive_seconds(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = match text
        .strip_suffix('m')
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        Some(minutes) => parse_duration(&format!("{minutes}s")).map(|d| d.saturating_mul(60)),
        None => parse_duration(text),
    }
    .map_err(|error| format!("{error} (e.g. 300s or 5m)"))?;
    if duration.is_zero() {
        return Err(format!("{text:?} is not a positive duration"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn churn_models_parse_and_print() {
        for text in ["none", "exp:300s", "weibull:120s,0.6"] {
            let model: ChurnModel = text.parse().unwrap();
            assert_eq!(model.to_string().parse::<ChurnModel>().unwrap(), model);
        }
        assert_eq!(
            "exp:5m".parse::<ChurnModel>().unwrap(),
            ChurnModel::Exponential {
                mean: Duration::from_secs(300)
            }
        );
        assert!("exp:-1s".parse::<ChurnModel>().is_err());
        assert!("weibull:10s".parse::<ChurnModel>().is_err());
        assert!("gamma:1s"
            .parse::<ChurnModel>()
            .unwrap_err()
            .contains("gamma"));
    }

    #[test]
    fn session_times_follow_the_mean() {
        let model = ChurnModel::Exponential {
            mean: Duration::from_secs(100),
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = 20_000;
        let total: f64 = (0..n)
            .map(|_| model.session_time(&mut rng).unwrap().as_secs_f64())
            .sum();
        let mean = total / n as f64;
        assert!((90.0..110.0).contains(&mean), "{mean}");
        assert_eq!(ChurnModel::None.session_time(&mut rng), None);
    }

    #[test]
    fn bad_arguments_name_their_flag() {
        let args = SimArgs {
            nat_fraction: 1.5,
            ..SimArgs::default()
        };
        assert_eq!(args.validate().unwrap_err().flag, "nat-fraction");
        let args = SimArgs {
            nodes: 10,
            supernode_failures: 10,
            ..SimArgs::default()
        };
        assert_eq!(args.validate().unwrap_err().flag, "supernode-failures");
        let args = SimArgs {
            idle_timeout: 0,
            ..SimArgs::default()
        };
        assert_eq!(args.validate().unwrap_err().flag, "idle-timeout");
        assert!(SimArgs::default().validate().is_ok());
    }

    #[test]
    fn command_line_names_a_changed_idle_timeout() {
        assert!(!SimArgs::default().command_line().contains("--idle-timeout"));
        let args = SimArgs {
            idle_timeout: 10,
            ..SimArgs::default()
        };
        assert!(args.command_line().ends_with(" --idle-timeout 10"));
    }
}
