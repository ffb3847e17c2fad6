use super::files::{csv_field, timeline_csv};
use super::*;

/// A small run with every part of the report filled in.
fn sample_report() -> Report {
    let lookup_samples: Vec<f64> = (1..=400).map(|i| 5.0 + f64::from(i) * 0.25).collect();
    let mut call_samples: Vec<f64> = (1..=50).map(|i| 40.0 + f64::from(i) * 2.0).collect();
    // A long tail, so the CDF's x axis is cut.
    call_samples.push(10_000.0);
    let timeline = (1..=12u32)
        .map(|i| TimelineSample {
            t_secs: f64::from(i) * 5.0,
            live_nodes: 1000 - i as usize * 3,
            lookups: Outcome {
                attempted: 50,
                succeeded: 50 - u64::from(i % 4),
            },
            // Interval 6 has no call: the success plot must leave a gap, not show 100%.
            calls: if i == 6 {
                Outcome::default()
            } else {
                Outcome {
                    attempted: 5,
                    succeeded: 5 - u64::from(i % 2),
                }
            },
        })
        .collect();
    Report {
        scenario: ScenarioEcho {
            command: "p2psip-sim --nodes 1000 --seed 42".to_string(),
            seed: 42,
            nodes: 1000,
            users: 500,
            nat_fraction: 0.3,
            adversary_fraction: 0.1,
            adversary_kinds: vec!["drop".to_string(), "forge".to_string()],
            latency: "uniform 20-80 ms".to_string(),
            loss: 0.01,
            // A comma and a quote, so the CSV cell must be quoted.
            churn: Some("leave 1%/min, crash \"0.5%\"/min".to_string()),
            supernode_failures: 2,
            workload_secs: 60.0,
            lookups_per_sec: 10.0,
            calls_per_sec: 1.0,
        },
        registrations: Outcome {
            attempted: 520,
            succeeded: 518,
        },
        lookups: Outcome {
            attempted: 600,
            succeeded: 591,
        },
        calls: Outcome {
            attempted: 60,
            succeeded: 54,
        },
        offline_messages: None,
        final_lookups: Outcome {
            attempted: 480,
            succeeded: 477,
        },
        records_lost: 3,
        forged_accepted: 1,
        records_refused: 37,
        adversary_actions: 412,
        lookup_latency_ms: Percentiles::of(&lookup_samples),
        lookup_requests: Percentiles::of(&[3.0, 4.0, 4.0, 5.0, 9.0]),
        call_setup_ms: Percentiles::of(&call_samples),
        traffic: TrafficSummary {
            total_bytes: 3 * 1024 * 1024 * 1024,
            total_frames: 9_000_000,
            connections_opened: 12_345,
            bytes_per_node_per_sec: 12_800.0,
            frames_per_node_per_sec: 150.0,
            connected_peers_mean: 41.5,
            connected_peers_max: 97,
        },
        memory: MemorySummary {
            baseline_rss_bytes: 20 * 1024 * 1024,
            peak_rss_bytes: 512 * 1024 * 1024,
            per_node_bytes: 480 * 1024,
        },
        nodes_started: 1100,
        nodes_left: 80,
        nodes_crashed: 20,
        max_live_nodes: 1000,
        wall_time_secs: 83.4,
        phases: vec![PhaseTiming {
            name: "workload".to_owned(),
            wall_secs: 12.5,
            simulated_secs: 60.0,
        }],
        timeline,
        lookup_latency_samples_ms: lookup_samples,
        call_setup_samples_ms: call_samples,
        invariants: vec![
            InvariantResult {
                name: "no_records_lost".to_string(),
                holds: false,
                detail: "3 users registered at live nodes not found".to_string(),
            },
            InvariantResult {
                name: "refusals_counted".to_string(),
                holds: true,
                detail: "37 refused".to_string(),
            },
        ],
    }
}

/// Splits one CSV line into cells, honouring quotes (enough for the files written here).
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

const ALL_FILES: [&str; 6] = [
    "report.json",
    "summary.csv",
    "timeline.csv",
    "lookup_latency_cdf.svg",
    "call_setup_cdf.svg",
    "success_over_time.svg",
];

#[test]
fn writes_every_file() {
    let report = sample_report();
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet, to check it is created.
    let out = dir.path().join("runs").join("seed-42");
    let written = write_report_files(&report, &out).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ALL_FILES);
    for path in &written {
        assert!(path.starts_with(&out));
        assert!(std::fs::metadata(path).unwrap().len() > 0, "{path:?} empty");
    }

    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    let parsed: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, report);

    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines.len(), 2);
    let header = csv_cells(lines[0]);
    let row = csv_cells(lines[1]);
    assert_eq!(header.len(), row.len());
    let cell = |name: &str| row[header.iter().position(|h| h == name).unwrap()].clone();
    assert_eq!(cell("seed"), "42");
    assert_eq!(cell("nodes"), "1000");
    assert_eq!(cell("churn"), "leave 1%/min, crash \"0.5%\"/min");
    assert_eq!(cell("lookups_succeeded"), "591");
    assert_eq!(
        cell("lookup_p50_ms"),
        report.lookup_latency_ms.p50.to_string()
    );
    assert_eq!(cell("records_lost"), "3");
    assert_eq!(cell("wall_time_secs"), "83.4");

    let timeline = std::fs::read_to_string(out.join("timeline.csv")).unwrap();
    let lines: Vec<&str> = timeline.lines().collect();
    assert_eq!(lines.len(), 1 + report.timeline.len());
    let width = csv_cells(lines[0]).len();
    assert!(lines.iter().all(|line| csv_cells(line).len() == width));
    assert_eq!(lines[1], "5,997,50,49,5,4");

    for name in &ALL_FILES[3..] {
        let svg = std::fs::read_to_string(out.join(name)).unwrap();
        assert!(svg.contains("<svg"), "{name} is not an SVG");
        assert!(svg.contains("1000 nodes, seed 42"), "{name} has no title");
    }
    let lookup_cdf = std::fs::read_to_string(out.join("lookup_latency_cdf.svg")).unwrap();
    assert!(lookup_cdf.contains("p50 = "));
    assert!(lookup_cdf.contains("p99 = "));
    let call_cdf = std::fs::read_to_string(out.join("call_setup_cdf.svg")).unwrap();
    assert!(call_cdf.contains("x axis cut past p90; max 10000 ms"));
}

#[test]
fn csv_header_and_row_have_the_same_columns() {
    for report in [sample_report(), Report::default()] {
        let header = csv_cells(summary_csv_header());
        let row = csv_cells(&summary_csv_row(&report));
        assert_eq!(header.len(), row.len());
        assert!(!summary_csv_row(&report).contains('\n'));
    }
    // No data reads as empty cells, not as a 100% success or a 0 ms latency.
    let empty = summary_csv_row(&Report::default());
    let header = csv_cells(summary_csv_header());
    let row = csv_cells(&empty);
    for name in ["lookup_success_ratio", "lookup_p50_ms", "call_setup_p99_ms"] {
        let index = header.iter().position(|h| h == name).unwrap();
        assert_eq!(row[index], "", "{name}");
    }
}

#[test]
fn csv_quotes_only_when_needed() {
    assert_eq!(csv_field("plain"), "plain");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
}

#[test]
fn empty_report_writes_every_file() {
    let report = Report::default();
    let dir = tempfile::tempdir().unwrap();
    let written = write_report_files(&report, dir.path()).unwrap();
    assert_eq!(written.len(), ALL_FILES.len());
    let cdf = std::fs::read_to_string(dir.path().join("lookup_latency_cdf.svg")).unwrap();
    assert!(cdf.contains("<svg"));
    assert!(cdf.contains("no samples"));
    let success = std::fs::read_to_string(dir.path().join("success_over_time.svg")).unwrap();
    assert!(success.contains("no timeline samples"));
    assert_eq!(
        timeline_csv(&report).lines().count(),
        1,
        "header only without samples"
    );
    let parsed: Report =
        serde_json::from_str(&std::fs::read_to_string(&written[0]).unwrap()).unwrap();
    assert_eq!(parsed, report);
}

#[test]
fn odd_samples_do_not_fail() {
    let mut report = sample_report();
    // One sample, all-equal samples, zeros and non-finite values: degenerate axes.
    report.lookup_latency_samples_ms = vec![7.0];
    report.call_setup_samples_ms = vec![0.0, 0.0, f64::NAN, f64::INFINITY];
    report.call_setup_ms = Percentiles::default();
    report.timeline.truncate(1);
    report.timeline[0].t_secs = 0.0;
    let dir = tempfile::tempdir().unwrap();
    let written = write_report_files(&report, dir.path()).unwrap();
    assert_eq!(written.len(), ALL_FILES.len());
}

#[test]
fn error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be.
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, "x").unwrap();
    let error = write_report_files(&Report::default(), &blocked).unwrap_err();
    assert!(matches!(error, ReportError::CreateDir { .. }));
    assert!(error.to_string().contains("not-a-dir"), "{error}");
}

#[test]
fn table_shows_the_main_results() {
    let report = sample_report();
    let table = summary_table(&report);
    for expected in [
        "1000 nodes",
        "seed 42",
        "adversaries 10.0% (drop, forge)",
        "NAT 30.0%",
        "98.50% (591 of 600)",
        "p50 55.0 ms",
        "p90 95.0 ms",
        "p99 104 ms",
        "per lookup p50 4   p99 9",
        "90.00% (54 of 60)",
        "n/a: no mailbox",
        "found 477 of 480, lost 3",
        "forged accepted 1, records refused 37",
        "12.5 KiB/s",
        "peak 512.0 MiB, per node 480.0 KiB",
        "started 1100, left 80, crashed 20, max live 1000",
        "1 min 23.4 s",
        "  workload       12.5 s (1 min 00.0 s simulated)",
        "1 of 2 hold",
        "FAIL  no_records_lost   3 users registered",
        "PASS  refusals_counted  37 refused",
    ] {
        assert!(table.contains(expected), "missing {expected:?} in\n{table}");
    }
    assert!(table.is_ascii());
    assert!(table.lines().all(|line| line == line.trim_end()));
}

#[test]
fn table_of_an_empty_report() {
    let report = Report {
        offline_messages: Some(Outcome {
            attempted: 4,
            succeeded: 4,
        }),
        ..Report::default()
    };
    let table = summary_table(&report);
    assert!(table.contains("none attempted"));
    assert!(table.contains("no samples"));
    assert!(table.contains("100.00% (4 of 4)"));
    assert!(table.contains("none checked"));
    assert!(!table.contains("FAIL"));
}

#[test]
fn progress_is_shareable_and_silent_when_disabled() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Progress>();

    let off = Progress::new(false);
    assert!(!off.is_enabled());
    off.phase("workload", 10);
    off.inc(3);
    off.set_message("live 10".to_string());
    off.finish();
    assert_eq!(off.position(), None);

    let on = Progress::hidden();
    on.phase("start", 5);
    let ticker = on.clone();
    std::thread::spawn(move || ticker.inc(2)).join().unwrap();
    on.inc(1);
    assert_eq!(on.position(), Some(3));
    on.set_message("live 5, 100% ok".to_string());
    // A new phase starts from zero; an unknown length is fine.
    on.phase("final check", 0);
    assert_eq!(on.position(), Some(0));
    on.inc(7);
    on.finish();
    assert_eq!(on.position(), None);
    // Ticks after the end are ignored.
    on.inc(1);
}

#[tokio::test(start_paused = true)]
async fn phases_are_timed_in_order_even_without_a_display() {
    let progress = Progress::new(false);
    progress.phase("starting nodes", 3);
    tokio::time::sleep(std::time::Duration::from_secs(40)).await;
    // A new phase ends the previous one.
    progress.phase("workload", 60);
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    progress.finish();
    // Nothing is open: this ends no phase.
    progress.finish();
    let timings = progress.timings();
    let names: Vec<&str> = timings.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["starting nodes", "workload"]);
    assert_eq!(timings[0].simulated_secs, 40.0);
    assert_eq!(timings[1].simulated_secs, 60.0);
    // The paused clock moved 100 s; the machine's clock hardly did.
    assert!(timings.iter().all(|t| t.wall_secs < t.simulated_secs));
}
