//! `p2psip sim`: run a scenario, write the report files, print the summary.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::report::{summary_table, write_report_files, Progress};
use crate::runner::{run_repeatable, SimError};
use crate::scenario::SimArgs;

/// Exit status: 0 when every invariant holds, 1 when one does not or the run failed, 2 for
/// a bad argument.
pub fn run_cli(args: &SimArgs) -> ExitCode {
    if let Err(error) = args.validate() {
        eprintln!("p2psip sim: {error}");
        return ExitCode::from(2);
    }
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("p2psip sim: --log: {error}");
            return ExitCode::from(2);
        }
    };
    // Fails only when a subscriber is already set (embedding); logs then go there.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let progress = if args.quiet {
        Progress::new(false)
    } else {
        Progress::auto()
    };
    let result = run_repeatable(args, progress, Box::new(|validator| validator));
    let report = match result {
        Ok(report) => report,
        Err(SimError::Scenario(error)) => {
            eprintln!("p2psip sim: {error}");
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("p2psip sim: {error}");
            return ExitCode::from(1);
        }
    };
    println!("{}", summary_table(&report));
    match write_report_files(&report, &args.out) {
        Ok(paths) => {
            for path in paths {
                println!("wrote {}", path.display());
            }
        }
        Err(error) => {
            eprintln!("p2psip sim: {error}");
            return ExitCode::from(1);
        }
    }
    if report.invariants_hold() {
        ExitCode::SUCCESS
    } else {
        eprintln!("p2psip sim: an invariant does not hold (see the table above)");
        ExitCode::from(1)
    }
}
