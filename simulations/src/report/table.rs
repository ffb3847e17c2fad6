//! The terminal summary of a run: plain ASCII, fixed-width, no colour, so it reads the same
//! in a terminal, a log file and a CI transcript.

use std::fmt::Write as _;

use super::{Outcome, Percentiles, Report};

/// Width of the label column.
const LABEL: usize = 15;
/// Width of the rules between sections.
const RULE: usize = 78;

/// A fixed-width table of the main results, one line per item, ending with a newline.
pub fn summary_table(report: &Report) -> String {
    let s = &report.scenario;
    let mut t = Table::default();
    t.line(&"=".repeat(RULE));
    t.line("p2psip simulation report");
    t.line(&"=".repeat(RULE));

    let churn = s.churn.as_deref().map_or("none".to_string(), clean);
    let kinds = if s.adversary_kinds.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            s.adversary_kinds
                .iter()
                .map(|k| clean(k))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    t.row(
        "Scenario",
        format!(
            "{} nodes, seed {}, churn {}, adversaries {}{}, NAT {}",
            s.nodes,
            s.seed,
            churn,
            fraction(s.adversary_fraction),
            kinds,
            fraction(s.nat_fraction)
        ),
    );
    t.row(
        "Workload",
        format!(
            "{} users, {} s, {}/s lookups, {}/s calls, latency {}, loss {}, supernode failures {}",
            s.users,
            decimal(s.workload_secs),
            decimal(s.lookups_per_sec),
            decimal(s.calls_per_sec),
            if s.latency.is_empty() {
                "-".to_string()
            } else {
                clean(&s.latency)
            },
            fraction(s.loss),
            s.supernode_failures
        ),
    );
    if !s.command.is_empty() {
        t.row("Reproduce", clean(&s.command));
    }
    t.line(&"-".repeat(RULE));

    t.row("Registrations", outcome(report.registrations));
    t.row(
        "Lookups",
        format!(
            "{}   {}",
            outcome(report.lookups),
            latency(report.lookup_latency_ms, true)
        ),
    );
    t.row(
        "DHT requests",
        if report.lookup_requests.count == 0 {
            "per lookup: no samples".to_string()
        } else {
            format!(
                "per lookup p50 {}   p99 {}",
                decimal(report.lookup_requests.p50),
                decimal(report.lookup_requests.p99)
            )
        },
    );
    t.row(
        "Calls",
        format!(
            "{}   setup {}",
            outcome(report.calls),
            latency(report.call_setup_ms, false)
        ),
    );
    t.row(
        "Offline msgs",
        report
            .offline_messages
            .map_or("n/a: no mailbox".to_string(), outcome),
    );
    t.row(
        "Final check",
        format!(
            "found {} of {}, lost {}",
            report.final_lookups.succeeded, report.final_lookups.attempted, report.records_lost
        ),
    );
    t.row(
        "Security",
        format!(
            "forged accepted {}, records refused {}, adversary actions {}",
            report.forged_accepted, report.records_refused, report.adversary_actions
        ),
    );
    let traffic = &report.traffic;
    t.row(
        "Traffic",
        format!(
            "{}/s and {} frames/s per node (total {}, {} frames, {} connections)",
            bytes_f(traffic.bytes_per_node_per_sec),
            decimal(traffic.frames_per_node_per_sec),
            bytes(traffic.total_bytes),
            traffic.total_frames,
            traffic.connections_opened
        ),
    );
    t.row(
        "Peers",
        format!(
            "{} connected per node at the end (most {})",
            decimal(traffic.connected_peers_mean),
            traffic.connected_peers_max
        ),
    );
    let memory = &report.memory;
    t.row(
        "Memory",
        format!(
            "peak {}, per node {} (baseline {})",
            bytes(memory.peak_rss_bytes),
            bytes(memory.per_node_bytes),
            bytes(memory.baseline_rss_bytes)
        ),
    );
    t.row(
        "Nodes",
        format!(
            "started {}, left {}, crashed {}, max live {}",
            report.nodes_started, report.nodes_left, report.nodes_crashed, report.max_live_nodes
        ),
    );
    t.row("Wall time", duration(report.wall_time_secs));
    for phase in &report.phases {
        t.line(&format!(
            "  {:<LABEL$}{} ({} simulated)",
            phase.name,
            duration(phase.wall_secs),
            duration(phase.simulated_secs)
        ));
    }
    t.line(&"-".repeat(RULE));

    let holding = report.invariants.iter().filter(|i| i.holds).count();
    t.row(
        "Invariants",
        if report.invariants.is_empty() {
            "none checked".to_string()
        } else {
            format!("{holding} of {} hold", report.invariants.len())
        },
    );
    let name_width = report
        .invariants
        .iter()
        .map(|i| clean(&i.name).len())
        .max()
        .unwrap_or(0);
    for invariant in &report.invariants {
        let verdict = if invariant.holds { "PASS" } else { "FAIL" };
        let line = format!(
            "  {verdict}  {:<name_width$}  {}",
            clean(&invariant.name),
            clean(&invariant.detail)
        );
        t.line(line.trim_end());
    }
    t.line(&"=".repeat(RULE));
    t.text
}

#[derive(Default)]
struct Table {
    text: String,
}

impl Table {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn row(&mut self, label: &str, value: String) {
        // Writing into a String cannot fail.
        let _ = writeln!(self.text, "{label:<LABEL$}{value}");
    }
}

/// "98.50% (985 of 1000)", or a plain statement when nothing was attempted (the model's
/// ratio would say 100%).
fn outcome(outcome: Outcome) -> String {
    if outcome.attempted == 0 {
        "none attempted".to_string()
    } else {
        format!(
            "{:.2}% ({} of {})",
            outcome.ratio() * 100.0,
            outcome.succeeded,
            outcome.attempted
        )
    }
}

fn latency(p: Percentiles, with_p90: bool) -> String {
    if p.count == 0 {
        return "no samples".to_string();
    }
    let p90 = if with_p90 {
        format!("   p90 {}", ms(p.p90))
    } else {
        String::new()
    };
    format!("p50 {}{p90}   p99 {}", ms(p.p50), ms(p.p99))
}

/// Milliseconds with precision that keeps about three significant digits.
pub(crate) fn ms(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_string()
    } else if value.abs() < 10.0 {
        format!("{value:.2} ms")
    } else if value.abs() < 100.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.0} ms")
    }
}

/// A fraction (0..1) as a percentage.
fn fraction(value: f64) -> String {
    if value.is_finite() {
        format!("{:.1}%", value * 100.0)
    } else {
        "n/a".to_string()
    }
}

/// Whole numbers without decimals, others with one or two.
fn decimal(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_string()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1}")
    }
}

/// Bytes in binary units (B, KiB, MiB, GiB, TiB).
pub(crate) fn bytes(value: u64) -> String {
    bytes_f(value as f64)
}

fn bytes_f(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_string();
    }
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut scaled = value;
    let mut unit = 0;
    while scaled.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{scaled:.0} B")
    } else {
        format!("{scaled:.1} {}", UNITS[unit])
    }
}

/// "12.3 s", "2 min 03.4 s", "1 h 02 min 03 s".
fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "n/a".to_string();
    }
    // Rounded once to tenths, so 119.96 s reads "2 min 00.0 s", not "1 min 60.0 s".
    let tenths = (secs * 10.0).round() as u64;
    let (whole, tenth) = (tenths / 10, tenths % 10);
    let (hours, minutes, seconds) = (whole / 3600, (whole % 3600) / 60, whole % 60);
    if whole < 60 {
        format!("{whole}.{tenth} s")
    } else if hours == 0 {
        format!("{minutes} min {seconds:02}.{tenth} s")
    } else {
        format!("{hours} h {minutes:02} min {seconds:02} s")
    }
}

/// Free text from the scenario or an invariant on one line: a line break would break the
/// table's layout.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
