//! The CI scenario: 100 real overlay nodes in this process, with NAT, churn (graceful
//! leaves and crashes), a supernode failure and a tenth of the nodes adversarial. Asserts
//! the run's invariants, that the same seed repeats the run, and that the
//! invariants catch a validator broken on purpose. Nothing asserts on speed.
//!
//! A hundred nodes need an optimised build to run in well under a minute, so these tests
//! are ignored by the (debug) `cargo test --workspace` and CI runs them with
//! `cargo test --release -p p2psip-simulations --test ci_scenario -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use overlay::validate::ValidationFault;
use simulations::report::{summary_table, Progress, Report};
use simulations::runner::{run, run_with_validator};
use simulations::scenario::SimArgs;

/// One scenario at a time: two at once would only compete for the same cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

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

fn runtime() -> tokio::runtime::Runtime {
    simulations::runner::runtime().unwrap()
}

fn run_scenario(args: &SimArgs) -> Report {
    let report = runtime().block_on(run(args, Progress::new(false))).unwrap();
    println!("{}", summary_table(&report));
    report
}

#[test]
#[ignore = "needs --release; CI runs it"]
fn ci_scenario_keeps_its_invariants_and_repeats() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let args = ci_args();
    let first = run_scenario(&args);
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

    // Same seed: the same schedule and choices at the same virtual moments, so the same
    // operations are attempted and the same nodes come and go. Success counts are equal in
    // most runs; libp2p's own unseeded draws can flip a few operations in a thousand.
    let second = run_scenario(&args);
    assert!(second.invariants_hold(), "{:#?}", second.invariants);
    for (what, a, b) in [
        ("lookups", first.lookups, second.lookups),
        ("calls", first.calls, second.calls),
        ("registrations", first.registrations, second.registrations),
        ("final lookups", first.final_lookups, second.final_lookups),
    ] {
        assert_eq!(a.attempted, b.attempted, "{what} attempted differ");
        let allowed = (a.attempted / 50).max(2);
        assert!(
            a.succeeded.abs_diff(b.succeeded) <= allowed,
            "{what} succeeded {} and {} of {} with one seed",
            a.succeeded,
            b.succeeded,
            a.attempted
        );
    }
    assert_eq!(
        (first.nodes_started, first.nodes_left, first.nodes_crashed),
        (
            second.nodes_started,
            second.nodes_left,
            second.nodes_crashed
        )
    );
}

#[test]
#[ignore = "needs --release; CI runs it"]
fn a_validator_that_skips_the_authority_check_is_caught() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let args = ci_args();
    let report = runtime()
        .block_on(run_with_validator(
            &args,
            Progress::new(false),
            Box::new(|validator| validator.with_fault(ValidationFault::SkipAuthority)),
        ))
        .unwrap();
    println!("{}", summary_table(&report));
    assert!(report.forged_accepted > 0, "forged bindings went unnoticed");
    let forged = report
        .invariants
        .iter()
        .find(|invariant| invariant.name.contains("forged"))
        .unwrap();
    assert!(!forged.holds);
    assert!(!report.invariants_hold());
}
