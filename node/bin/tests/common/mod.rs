//! Helpers shared by the test binaries that run the `p2psip` binary.

// Each test binary compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for anything a process is waited for; generous for slow CI machines.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The `p2psip` binary, without environment that would change its behaviour.
pub fn p2psip() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_p2psip"));
    command.env_remove("RUST_LOG").env_remove("P2PSIP_DATA_DIR");
    command
}

/// Runs a command that must exit by itself.
pub fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(&mut child);
    child.wait_with_output().unwrap()
}

/// Waits for a child to exit, at most [`PATIENCE`]; kills it and panics after that.
pub fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("p2psip did not exit within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Reads `node.json` once the node has written it.
pub fn wait_for_node_json(dir: &Path, child: &mut Child) -> serde_json::Value {
    let path = dir.join("node.json");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return serde_json::from_str(&text).unwrap();
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut message = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut message);
            }
            panic!("node exited early with {status}: {message}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("node.json did not appear within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
