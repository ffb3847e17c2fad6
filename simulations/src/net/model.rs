//! The network model: per-link latency, jitter, loss and the flow-control window.

use std::{fmt, str::FromStr, time::Duration};

use super::NodeIndex;

/// Upper bound of any link latency. Keeps every instant computed from a latency far from
/// overflow; a slower link than this is a configuration error, not a network.
pub const MAX_LINK_LATENCY: Duration = Duration::from_secs(3600);

/// Shortest delay before a "lost" write is retransmitted (TCP's minimum RTO).
pub const MIN_RETRANSMIT_DELAY: Duration = Duration::from_millis(200);

/// How the one-way latency of each link is drawn.
///
/// Text form (see [`FromStr`] and [`fmt::Display`], which round-trip): `fixed:20ms`,
/// `uniform:10ms-100ms`, `lognormal:40ms,0.6`. Durations take the units `ns`, `us`, `ms`
/// and `s` and are whole numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyModel {
    /// Every link has this latency.
    Fixed(Duration),
    /// Uniform between `min` and `max` (inclusive of `min`).
    Uniform { min: Duration, max: Duration },
    /// Log-normal: `median × e^(sigma × z)` with `z` standard normal. Real Internet RTTs
    /// have this long right tail.
    LogNormal { median: Duration, sigma: f64 },
}

impl Default for LatencyModel {
    fn default() -> Self {
        LatencyModel::Fixed(Duration::from_millis(20))
    }
}

/// Why a latency model (or one of its durations) could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LatencyParseError {
    #[error("unknown latency model `{0}`: expected fixed:<d>, uniform:<min>-<max> or lognormal:<median>,<sigma>")]
    UnknownModel(String),
    #[error("latency model `{0}` has no parameters: write e.g. fixed:20ms")]
    MissingParameters(String),
    #[error("uniform latency `{0}`: expected <min>-<max>, e.g. uniform:10ms-100ms")]
    UniformSyntax(String),
    #[error("uniform latency: min {min} is above max {max}")]
    MinAboveMax { min: String, max: String },
    #[error("lognormal latency `{0}`: expected <median>,<sigma>, e.g. lognormal:40ms,0.6")]
    LogNormalSyntax(String),
    #[error("lognormal sigma `{0}` is not a finite number >= 0")]
    InvalidSigma(String),
    #[error("duration `{0}` has no unit: use ns, us, ms or s (e.g. 20ms)")]
    MissingUnit(String),
    #[error("duration `{input}` has unknown unit `{unit}`: use ns, us, ms or s")]
    UnknownUnit { input: String, unit: String },
    #[error("duration `{0}` needs a whole number before its unit (e.g. 20ms)")]
    InvalidNumber(String),
    #[error("duration `{0}` is too large")]
    TooLarge(String),
}

/// Parses `20ms`, `500us`, `2s`, `100ns`.
pub fn parse_duration(text: &str) -> Result<Duration, LatencyParseError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| LatencyParseError::MissingUnit(text.to_owned()))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() || unit.starts_with(['.', ',']) {
        return Err(LatencyParseError::InvalidNumber(text.to_owned()));
    }
    let value: u64 = number
        .parse()
        .map_err(|_| LatencyParseError::TooLarge(text.to_owned()))?;
    let nanos_per_unit: u64 = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        _ => {
            return Err(LatencyParseError::UnknownUnit {
                input: text.to_owned(),
                unit: unit.to_owned(),
            })
        }
    };
    let nanos = value
        .checked_mul(nanos_per_unit)
        .ok_or_else(|| LatencyParseError::TooLarge(text.to_owned()))?;
    Ok(Duration::from_nanos(nanos))
}

/// Writes a duration in the largest unit that keeps it exact, so parsing gives it back.
pub struct DisplayDuration(pub Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0ms");
        }
        for (unit, per) in [("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)] {
            if nanos.is_multiple_of(per) {
                return write!(f, "{}{unit}", nanos / per);
            }
        }
        write!(f, "{nanos}ns")
    }
}

impl fmt::Display for LatencyModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LatencyModel::Fixed(d) => write!(f, "fixed:{}", DisplayDuration(*d)),
            LatencyModel::Uniform { min, max } => write!(
                f,
                "uniform:{}-{}",
                DisplayDuration(*min),
                DisplayDuration(*max)
            ),
            // f64's Display is the shortest text that parses back to the same value.
            LatencyModel::LogNormal { median, sigma } => {
                write!(f, "lognormal:{},{sigma}", DisplayDuration(*median))
            }
        }
    }
}

impl FromStr for LatencyModel {
    type Err = LatencyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (kind, params) =
            text.split_once(':')
                .ok_or_else(|| match text.to_ascii_lowercase().as_str() {
                    "fixed" | "uniform" | "lognormal" => {
                        LatencyParseError::MissingParameters(text.to_owned())
                    }
                    _ => LatencyParseError::UnknownModel(text.to_owned()),
                })?;
        match kind.trim().to_ascii_lowercase().as_str() {
            "fixed" => Ok(LatencyModel::Fixed(parse_duration(params)?)),
            "uniform" => {
                let (min, max) = params
                    .split_once('-')
                    .ok_or_else(|| LatencyParseError::UniformSyntax(params.to_owned()))?;
                let (min, max) = (parse_duration(min)?, parse_duration(max)?);
                if min > max {
                    return Err(LatencyParseError::MinAboveMax {
                        min: DisplayDuration(min).to_string(),
                        max: DisplayDuration(max).to_string(),
                    });
                }
                Ok(LatencyModel::Uniform { min, max })
            }
            "lognormal" => {
                let (median, sigma) = params
                    .split_once(',')
                    .ok_or_else(|| LatencyParseError::LogNormalSyntax(params.to_owned()))?;
                let median = parse_duration(median)?;
                let sigma_text = sigma.trim();
                let sigma: f64 = sigma_text
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| LatencyParseError::InvalidSigma(sigma_text.to_owned()))?;
                Ok(LatencyModel::LogNormal { median, sigma })
            }
            _ => Err(LatencyParseError::UnknownModel(kind.to_owned())),
        }
    }
}

/// Parameters of the simulated network. Every value is used as given except that
/// probabilities are clamped to 0..=1 (NaN counts as 0) and latencies to [`MAX_LINK_LATENCY`].
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkModel {
    /// Seeds link latencies and the per-connection jitter/loss generators.
    pub seed: u64,
    pub latency: LatencyModel,
    /// Each write is delayed by the link latency × (1 ± u × jitter), u uniform in 0..1.
    pub jitter: f64,
    /// Probability that a write is "lost" once: links are reliable streams, so a loss shows
    /// as a retransmission delay of max(200 ms, 2 × link latency) on top of the latency.
    pub loss: f64,
    /// Bytes in flight per direction (written, not yet read) before the writer is
    /// back-pressured. Also bounds the memory a slow reader can pin.
    pub window_bytes: usize,
}

impl Default for NetworkModel {
    fn default() -> Self {
        NetworkModel {
            seed: 0,
            latency: LatencyModel::default(),
            jitter: 0.1,
            loss: 0.0,
            window_bytes: 256 * 1024,
        }
    }
}

impl NetworkModel {
    /// One-way latency of the link between `a` and `b`: a pure function of the seed and the
    /// unordered pair, so it is symmetric and does not depend on who asks first.
    pub fn link_latency(&self, a: NodeIndex, b: NodeIndex) -> Duration {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let pair = (u64::from(low) << 32) | u64::from(high);
        let h1 = splitmix64(self.seed ^ splitmix64(pair));
        let latency = match self.latency {
            LatencyModel::Fixed(d) => d,
            LatencyModel::Uniform { min, max } => {
                let (min, max) = if min <= max { (min, max) } else { (max, min) };
                let span = max.saturating_sub(min).as_nanos();
                // Widening to u128 keeps the scaling exact and overflow-free.
                let offset = span.saturating_mul(u128::from(h1)) >> 64;
                min.saturating_add(Duration::from_nanos(
                    u64::try_from(offset).unwrap_or(u64::MAX),
                ))
            }
            LatencyModel::LogNormal { median, sigma } => {
                // Box-Muller from two independent hash outputs; u1 is in (0, 1] so ln is finite.
                let h2 = splitmix64(h1);
                let u1 = ((h1 >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
                let u2 = (h2 >> 11) as f64 / (1u64 << 53) as f64;
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let sigma = if sigma.is_finite() {
                    sigma.max(0.0)
                } else {
                    0.0
                };
                let secs = median.as_secs_f64() * (sigma * z).exp();
                Duration::try_from_secs_f64(secs).unwrap_or(MAX_LINK_LATENCY)
            }
        };
        latency.min(MAX_LINK_LATENCY)
    }

    /// How long a lost write waits before its retransmission arrives, on top of the latency.
    pub fn retransmit_delay(latency: Duration) -> Duration {
        latency.saturating_mul(2).max(MIN_RETRANSMIT_DELAY)
    }

    pub(crate) fn jitter_fraction(&self) -> f64 {
        clamp_probability(self.jitter)
    }

    pub(crate) fn loss_probability(&self) -> f64 {
        clamp_probability(self.loss)
    }
}

fn clamp_probability(p: f64) -> f64 {
    if p.is_nan() {
        0.0
    } else {
        p.clamp(0.0, 1.0)
    }
}

/// The splitmix64 finaliser: a cheap, well-mixed 64-bit hash.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
