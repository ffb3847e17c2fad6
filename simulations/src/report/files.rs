//! The report files of one run, all written into one directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{plots, Outcome, Percentiles, Report, ReportError};

/// The whole report, for tools and for comparing runs.
pub const REPORT_JSON: &str = "report.json";
/// One header line and one row of the main numbers.
pub const SUMMARY_CSV: &str = "summary.csv";
/// One row per interval of the run.
pub const TIMELINE_CSV: &str = "timeline.csv";
pub const LOOKUP_LATENCY_CDF_SVG: &str = "lookup_latency_cdf.svg";
pub const CALL_SETUP_CDF_SVG: &str = "call_setup_cdf.svg";
pub const SUCCESS_OVER_TIME_SVG: &str = "success_over_time.svg";

/// Writes every report file into `dir` (created if missing) and returns their paths, in
/// this order: `report.json`, `summary.csv`, `timeline.csv`, `lookup_latency_cdf.svg`,
/// `call_setup_cdf.svg`, `success_over_time.svg`.
///
/// Every file is always written: a plot without data (no successful lookups or calls, no
/// timeline) is an empty chart with a note saying so, so the set of files never depends
/// on the run's outcome.
pub fn write_report_files(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::with_capacity(6);

    let path = dir.join(REPORT_JSON);
    let mut json = serde_json::to_string_pretty(report).map_err(|source| ReportError::Json {
        path: path.clone(),
        source,
    })?;
    json.push('\n');
    write_file(&path, &json)?;
    written.push(path);

    let path = dir.join(SUMMARY_CSV);
    let summary = format!("{}\n{}\n", summary_csv_header(), summary_csv_row(report));
    write_file(&path, &summary)?;
    written.push(path);

    let path = dir.join(TIMELINE_CSV);
    write_file(&path, &timeline_csv(report))?;
    written.push(path);

    let renderers: [(&str, Renderer); 3] = [
        (LOOKUP_LATENCY_CDF_SVG, plots::lookup_latency_cdf),
        (CALL_SETUP_CDF_SVG, plots::call_setup_cdf),
        (SUCCESS_OVER_TIME_SVG, plots::success_over_time),
    ];
    for (name, render) in renderers {
        let path = dir.join(name);
        let svg = render(report).map_err(|message| ReportError::Plot {
            path: path.clone(),
            message,
        })?;
        write_file(&path, &svg)?;
        written.push(path);
    }
    Ok(written)
}

fn write_file(path: &Path, contents: &str) -> Result<(), ReportError> {
    fs::write(path, contents).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Draws one plot as SVG text, or says why it could not.
type Renderer = fn(&Report) -> Result<String, String>;

type Column = (&'static str, fn(&Report) -> String);

/// The summary columns: header and row are both built from this one list, so they cannot
/// drift apart.
const COLUMNS: &[Column] = &[
    ("seed", |r| r.scenario.seed.to_string()),
    ("nodes", |r| r.scenario.nodes.to_string()),
    ("users", |r| r.scenario.users.to_string()),
    ("churn", |r| {
        csv_field(r.scenario.churn.as_deref().unwrap_or_default())
    }),
    ("adversary_fraction", |r| {
        number(r.scenario.adversary_fraction)
    }),
    ("nat_fraction", |r| number(r.scenario.nat_fraction)),
    ("lookups_attempted", |r| r.lookups.attempted.to_string()),
    ("lookups_succeeded", |r| r.lookups.succeeded.to_string()),
    ("lookup_success_ratio", |r| ratio(r.lookups)),
    ("lookup_p50_ms", |r| {
        percentile(r.lookup_latency_ms, |p| p.p50)
    }),
    ("lookup_p90_ms", |r| {
        percentile(r.lookup_latency_ms, |p| p.p90)
    }),
    ("lookup_p99_ms", |r| {
        percentile(r.lookup_latency_ms, |p| p.p99)
    }),
    ("lookup_requests_p50", |r| {
        percentile(r.lookup_requests, |p| p.p50)
    }),
    ("lookup_requests_p99", |r| {
        percentile(r.lookup_requests, |p| p.p99)
    }),
    ("calls_attempted", |r| r.calls.attempted.to_string()),
    ("calls_succeeded", |r| r.calls.succeeded.to_string()),
    ("call_success_ratio", |r| ratio(r.calls)),
    ("call_setup_p50_ms", |r| {
        percentile(r.call_setup_ms, |p| p.p50)
    }),
    ("call_setup_p99_ms", |r| {
        percentile(r.call_setup_ms, |p| p.p99)
    }),
    ("final_lookups_attempted", |r| {
        r.final_lookups.attempted.to_string()
    }),
    ("final_lookups_succeeded", |r| {
        r.final_lookups.succeeded.to_string()
    }),
    ("records_lost", |r| r.records_lost.to_string()),
    ("forged_accepted", |r| r.forged_accepted.to_string()),
    ("records_refused", |r| r.records_refused.to_string()),
    ("bytes_per_node_per_sec", |r| {
        number(r.traffic.bytes_per_node_per_sec)
    }),
    ("frames_per_node_per_sec", |r| {
        number(r.traffic.frames_per_node_per_sec)
    }),
    ("connected_peers_mean", |r| {
        number(r.traffic.connected_peers_mean)
    }),
    ("connected_peers_max", |r| {
        r.traffic.connected_peers_max.to_string()
    }),
    ("peak_rss_bytes", |r| r.memory.peak_rss_bytes.to_string()),
    ("per_node_bytes", |r| r.memory.per_node_bytes.to_string()),
    ("max_live_nodes", |r| r.max_live_nodes.to_string()),
    ("wall_time_secs", |r| number(r.wall_time_secs)),
];

/// Header of `summary.csv`, so the rows of several runs can be concatenated under one
/// header.
pub fn summary_csv_header() -> &'static str {
    static HEADER: OnceLock<String> = OnceLock::new();
    HEADER.get_or_init(|| {
        COLUMNS
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// One `summary.csv` row (no trailing newline). An empty cell means "no data": a ratio
/// when nothing was attempted, a percentile without samples, a run without churn.
pub fn summary_csv_row(report: &Report) -> String {
    COLUMNS
        .iter()
        .map(|(_, cell)| cell(report))
        .collect::<Vec<_>>()
        .join(",")
}

/// `timeline.csv`: header and one row per interval.
pub(crate) fn timeline_csv(report: &Report) -> String {
    let mut csv = String::from(
        "t_secs,live_nodes,lookups_attempted,lookups_succeeded,calls_attempted,calls_succeeded\n",
    );
    for sample in &report.timeline {
        csv.push_str(&format!(
            "{},{},{},{},{},{}\n",
            number(sample.t_secs),
            sample.live_nodes,
            sample.lookups.attempted,
            sample.lookups.succeeded,
            sample.calls.attempted,
            sample.calls.succeeded,
        ));
    }
    csv
}

/// Shortest text that parses back to the same value; empty for NaN and infinities, which
/// spreadsheet and dataframe readers do not agree on.
fn number(value: f64) -> String {
    if value.is_finite() {
        value.to_string()
    } else {
        String::new()
    }
}

/// Empty when nothing was attempted, rather than [`Outcome::ratio`]'s 1.0, so averages
/// over runs are not inflated by runs that did nothing.
fn ratio(outcome: Outcome) -> String {
    if outcome.attempted == 0 {
        String::new()
    } else {
        number(outcome.ratio())
    }
}

/// Empty without samples: the model's zero would read as a measured 0 ms.
fn percentile(percentiles: Percentiles, pick: fn(&Percentiles) -> f64) -> String {
    if percentiles.count == 0 {
        String::new()
    } else {
        number(pick(&percentiles))
    }
}

/// Quotes a free-text cell when it holds a separator, quote or line break (RFC 4180).
pub(crate) fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
