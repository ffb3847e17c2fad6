//! The CI scenario: 100 real overlay nodes in one process, with NAT, churn (graceful
//! leaves and crashes), a supernode failure and a tenth of the nodes adversarial. Asserts
//! the run's invariants, that the same seed repeats the run exactly, and that the
//! invariants catch a validator broken on purpose. Nothing asserts on speed.
//!
//! Each run has a process of its own, as a `p2psip sim` run does: libp2p numbers
//! connections and listeners from process-wide counters, and records take their unix time
//! from a process-wide base, so a second run in one process does not start from the state
//! the first did.
//!
//! A hundred nodes need an optimised build to run in well under a minute, so these tests
//! are ignored by the (debug) `cargo test --workspace` and CI runs them with
//! `cargo test --release -p p2psip-simulations --test ci_scenario -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use overlay::validate::ValidationFault;
use simulations::report::{summary_table, Progress, Report};
use simulations::runner::{run_repeatable, ValidatorHook};
use simulations::scenario::SimArgs;

/// One scenario at a time: two at once would only compete for the same cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Set in a child process: where it writes its report (JSON).
const CHILD_REPORT: &str = "P2PSIP_CI_SCENARIO_REPORT";
/// Set in a child process: "1" to break record validation on purpose.
const CHILD_BREAK_VALIDATION: &str = "P2PSIP_CI_SCENARIO_BREAK_VALIDATION";

fn ci_args() -> SimArgs {
    SimArgs {
        nodes: 100,
        seed: 7,
        nat_fraction: 0.2,
        adversaries: 0.1,
        churn: "exp:300s".parse().unwrap(),
        crash_fraction: 0.5,
        supernode_failures: 1,
        duration: 30,
        lookup_rate: 10.0,
        call_rate: 3.0,
        settle: 8,
        quiet: true,
        ..SimArgs::default()
    }
}

/// Runs the CI scenario in a new process (this test binary, running
/// [`scenario_run_by_a_parent_test`]) and returns its report.
fn run_in_own_process(break_validation: bool, dir: &Path, name: &str) -> Report {
    let path = dir.join(format!("{name}.json"));
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "scenario_run_by_a_parent_test",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_REPORT, &path)
        .env(
            CHILD_BREAK_VALIDATION,
            if break_validation { "1" } else { "0" },
        )
        .status()
        .unwrap();
    assert!(status.success(), "the scenario's process failed: {status}");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The body of a child process; does nothing when not started by another test.
#[test]
#[ignore = "run by the other tests, each time in a process of its own"]
fn scenario_run_by_a_parent_test() {
    let Ok(path) = std::env::var(CHILD_REPORT) else {
        println!("nothing to do: only runs in a process started by another test");
        return;
    };
    let hook: ValidatorHook = if std::env::var(CHILD_BREAK_VALIDATION).as_deref() == Ok("1") {
        Box::new(|validator| validator.with_fault(ValidationFault::SkipAuthority))
    } else {
        Box::new(|validator| validator)
    };
    let report = run_repeatable(&ci_args(), Progress::new(false), hook).unwrap();
    println!("{}", summary_table(&report));
    std::fs::write(&path, serde_json::to_string(&report).unwrap()).unwrap();
}

#[test]
#[ignore = "needs --release; CI runs it"]
fn ci_scenario_keeps_its_invariants_and_repeats() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let first = run_in_own_process(false, dir.path(), "first");
    assert!(first.invariants_hold(), "{:#?}", first.invariants);
    // The invariants mean something only if the run did what it says.
    assert!(first.lookups.attempted > 100, "{:?}", first.lookups);
    assert!(first.calls.attempted > 30, "{:?}", first.calls);
    assert!(
        first.final_lookups.attempted >= 90,
        "{:?}",
        first.final_lookups
    );
    assert!(
        first.nodes_crashed >= 1,
        "the supernode failure crashes one"
    );
    assert!(first.adversary_actions > 0, "the adversaries did nothing");
    assert!(
        first.records_refused > 0,
        "no forged record reached a validator"
    );

    // Same seed: every random draw of the run comes from the seed and time is virtual, so
    // the second run does exactly what the first did. Only the machine's measures (wall
    // time, memory) may differ.
    let second = run_in_own_process(false, dir.path(), "second");
    for (what, a, b) in [
        ("lookups", first.lookups, second.lookups),
        ("calls", first.calls, second.calls),
        ("registrations", first.registrations, second.registrations),
        ("final lookups", first.final_lookups, second.final_lookups),
    ] {
        assert_eq!(a, b, "{what} differ between two runs with one seed");
    }
    assert_eq!(
        first.seeded_part(),
        second.seeded_part(),
        "two runs with one seed differ"
    );
}

#[test]
#[ignore = "needs --release; CI runs it"]
fn a_validator_that_skips_the_authority_check_is_caught() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let report = run_in_own_process(true, dir.path(), "broken");
    assert!(report.forged_accepted > 0, "forged bindings went unnoticed");
    let forged = report
        .invariants
        .iter()
        .find(|invariant| invariant.name.contains("forged"))
        .unwrap();
    assert!(!forged.holds);
    assert!(!report.invariants_hold());
}
