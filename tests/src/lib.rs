//! Harness for the p2psip integration tests.
//!
//! Everything here talks to processes on the loopback interface only:
//!
//! * [`Node`] runs the `p2psip` binary on free loopback ports with a temporary data
//!   directory, waits until it answers SIP, and stops it (SIGTERM, then SIGKILL) on drop.
//! * [`Mesh`] and [`MeshNode`] run several nodes joined into one overlay (bootstrap or
//!   mDNS), and [`lookup`] runs `p2psip lookup` against them.
//! * [`Sipp`] builds and runs a SIPp command line with a hard time limit and collects its
//!   error log, final screen and statistics.
//! * [`UdpClient`], [`Request`] and [`Response`] send hand-written SIP over UDP, and
//!   [`TcpClient`] over TCP.
//! * [`name_server::NameServer`] serves DNS zones (ENUM, NAPTR, SRV, A, TXT) in-process.
//!
//! Every wait in this crate is bounded in time and every loop in count.

pub mod authority;
pub mod certificates;
mod mesh;
pub mod name_server;
mod node;
mod ports;
mod raw_udp;
pub mod requests;
mod sipp;
mod stream;
mod users;

pub use mesh::{
    in_netns, lookup, peers, require_flags, rerun_in_netns, run_bounded, run_p2psip,
    wait_until_found, CommandOutcome, Mesh, MeshNode, MeshNodeConfig, NetnsRun, OverlayInfo,
    IN_NETNS_ENV, NETNS_ADDR, P2P_LISTEN,
};
pub use node::{p2psip_bin, Node, NodeConfig};
pub use ports::{free_port, wait_until_bound};
pub use raw_udp::{Request, Response, UdpClient};
pub use sipp::{require_sipp, sipp_bin, sipp_version, Sipp, SippOutcome, SippProcess};
pub use stream::{closed_by_peer, TcpClient};
pub use users::TestUsers;

use std::path::PathBuf;

/// The SIP domain every test node serves.
pub const DOMAIN: &str = "example.com";

/// Transports the tests run SIP over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// Lower-case name, as in a `transport=` URI parameter or a `--listen` flag.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// SIPp's `-t` mode: one socket for all calls.
    pub fn sipp_mode(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The directory holding the SIPp scenarios of this crate.
pub fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// Whether logs of nodes and SIPp runs are kept after the test (`P2PSIP_KEEP_LOGS=1`);
/// their directories are then printed.
pub fn keep_logs() -> bool {
    std::env::var_os("P2PSIP_KEEP_LOGS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// A temporary directory for a test, kept (and printed) when [`keep_logs`] is set.
pub fn test_dir(prefix: &str) -> anyhow::Result<TestDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    Ok(TestDir { dir: Some(dir) })
}

/// A temporary directory that honours [`keep_logs`] when dropped.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
}

impl TestDir {
    pub fn path(&self) -> &std::path::Path {
        match &self.dir {
            Some(dir) => dir.path(),
            None => std::path::Path::new("."),
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if keep_logs() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("kept test files in {}", path.display());
            }
        }
    }
}

/// The last `max` bytes of a file, lossily decoded; empty if it cannot be read.
pub fn file_tail(path: &std::path::Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            let mut text = String::from_utf8_lossy(&bytes[start..]).into_owned();
            if start > 0 {
                text.insert_str(0, "[...]\n");
            }
            text
        }
        Err(_) => String::new(),
    }
}
