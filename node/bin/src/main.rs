//! `p2psip`: a node of the p2psip peer-to-peer SIP overlay. The node itself is the
//! `p2psip-node` library; this binary adds the command line and the simulator (`p2psip
//! sim`), which the library does not depend on.
//!
//! Exit status of `node`: 0 after a clean shutdown, 2 for a usage or configuration error, 1
//! when the node cannot run (a port in use, an unwritable data directory). `lookup` and
//! `peers`: 0 when found, 1 when not found or unreachable, 2 for a usage error. `domain`: 0
//! on success, 2 when an argument or input file is wrong, 1 when a file cannot be written.

use clap::{Parser, Subcommand};
use node::{cli, client, domain, route_command};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "p2psip", version, about = "A peer-to-peer SIP node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The node's subcommands, and the simulator.
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Node(cli::Command),
    /// Simulate an overlay of many real nodes in this one process, over an in-memory
    /// network with latency, loss, NAT, churn and adversaries; writes report.json, CSV
    /// files and SVG plots to --out. Exit status: 0 when every invariant holds, 1 when one
    /// does not or the run failed, 2 for a bad argument.
    Sim(simulations::scenario::SimArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Node(cli::Command::Node(args)) => node::run_node(&args),
        Command::Node(cli::Command::Lookup(args)) => client::lookup(&args),
        Command::Node(cli::Command::Peers(args)) => client::peers(&args),
        Command::Node(cli::Command::Domain(command)) => domain::run(&command),
        Command::Node(cli::Command::Route(args)) => route_command::route(&args),
        Command::Node(cli::Command::Enum(args)) => route_command::enum_lookup(&args),
        Command::Sim(args) => simulations::cli::run_cli(&args),
    }
}
