//! `p2psip`: a node of the p2psip peer-to-peer SIP overlay.
//!
//! Exit status of `node`: 0 after a clean shutdown, 2 for a usage or configuration error, 1
//! when the node cannot run (a port in use, an unwritable data directory). `lookup` and
//! `peers`: 0 when found, 1 when not found or unreachable, 2 for a usage error. `domain`: 0
//! on success, 2 when an argument or input file is wrong, 1 when a file cannot be written.

mod cli;
mod client;
mod config;
mod connections;
mod dns_authority;
mod domain;
mod log_throttle;
mod lru;
mod node_info;
mod overlay_link;
mod overload;
mod route_cache;
mod runtime;
mod startup;
mod stream;
mod tls;
mod udp;
mod users;

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

const EXIT_CONFIG: u8 = 2;
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Node(args) => node(&args),
        cli::Command::Lookup(args) => client::lookup(&args),
        cli::Command::Peers(args) => client::peers(&args),
        cli::Command::Domain(command) => domain::run(&command),
        cli::Command::Sim(args) => simulations::cli::run_cli(&args),
    }
}

fn node(args: &cli::NodeArgs) -> ExitCode {
    let config = match config::resolve(args, &config::Environment::from_process()) {
        Ok(config) => config,
        Err(error) => return fail(EXIT_CONFIG, &error),
    };
    let users = match &config.users_file {
        Some(path) => match users::load(path) {
            Ok(users) => users,
            Err(error) => return fail(EXIT_CONFIG, &error),
        },
        None => Vec::new(),
    };
    // The filter was validated with the rest of the configuration.
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers)
        .thread_name("p2psip")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(EXIT_FAILURE, &format!("cannot start runtime: {error}")),
    };
    let result = runtime.block_on(startup::run(config, users));
    // Tasks still running (a connection stuck writing to a peer that does not read) are
    // dropped rather than waited for.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(startup::RunError::Config(error)) => fail(EXIT_CONFIG, &error),
        Err(startup::RunError::Io(error)) => fail(EXIT_FAILURE, &error),
    }
}

fn fail(code: u8, error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("p2psip: {error}");
    ExitCode::from(code)
}
