//! The p2psip node: a SIP registrar and stateful proxy (the sans-IO `sip` core driven by
//! sockets and timers here), the routing chain that finds where a request goes (location
//! table, overlay, ENUM, domain policy, RFC 3263, static peering), the overlay link, and
//! the commands of the `p2psip` binary. Tests and the simulator drive the same code.

pub mod cli;
pub mod client;
mod config;
mod connections;
mod dns_authority;
pub mod domain;
mod log_throttle;
mod lru;
mod node_info;
mod overlay_link;
mod overload;
mod route_cache;
pub mod route_command;
pub mod routing;
mod runtime;
mod startup;
mod stream;
mod tls;
mod tls_client;
mod udp;
mod users;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

const EXIT_CONFIG: u8 = 2;
const EXIT_FAILURE: u8 = 1;

/// Runs a node with these arguments until it is stopped (SIGINT, SIGTERM); the exit status
/// follows the binary's conventions.
pub fn run_node(args: &cli::NodeArgs) -> ExitCode {
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
