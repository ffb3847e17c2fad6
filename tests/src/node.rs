//! Running a `p2psip node` process for a test.

use crate::raw_udp::{Request, UdpClient};
use crate::{file_tail, free_port, test_dir, TestDir, Transport, DOMAIN};
use anyhow::{anyhow, bail, Context, Result};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to answer its first OPTIONS.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// How long a node may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Starts retried when a node exits before it is ready (a port taken in between).
const START_ATTEMPTS: usize = 4;

/// The `p2psip` binary: `$P2PSIP_BIN`, else the one cargo built next to this test
/// executable (`target/<profile>/deps/<test>` → `target/<profile>/p2psip`).
pub fn p2psip_bin() -> Result<PathBuf> {
    let name = format!("p2psip{}", std::env::consts::EXE_SUFFIX);
    if let Some(path) = std::env::var_os("P2PSIP_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("P2PSIP_BIN={} is not a file", path.display());
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        // An executable directly in target/<profile>/ (examples, benches) ...
        candidates.push(dir.join(&name));
        // ... and a test in target/<profile>/deps/.
        if let Some(profile_dir) = dir.parent() {
            candidates.push(profile_dir.join(&name));
        }
    }
    for candidate in &candidates {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    bail!(
        "the p2psip binary was not found (looked at {candidates:?}); build it with \
         `cargo build -p p2psip` (or run `cargo test --workspace`), or set P2PSIP_BIN"
    )
}

/// How to start a node.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// `--open`: REGISTER without authentication.
    pub open: bool,
    /// `--users FILE`.
    pub users: Option<PathBuf>,
    /// `--domain NAME`; [`DOMAIN`] by default.
    pub domain: Option<String>,
    /// `--digest-algorithms LIST`: the digest challenges a 401 offers, most preferred
    /// first (`"MD5,SHA-256"`); `None` leaves the node's default (SHA-256, then MD5).
    pub digest_algorithms: Option<String>,
    /// Join an overlay. Off by default (`--no-overlay`): single-node tests running at the
    /// same time must not mesh with each other over mDNS.
    pub overlay: bool,
    /// Further arguments, appended as they are.
    pub extra_args: Vec<String>,
}

impl NodeConfig {
    /// Open registration for [`DOMAIN`].
    pub fn open() -> NodeConfig {
        NodeConfig {
            open: true,
            ..NodeConfig::default()
        }
    }

    /// Digest-authenticated registration of the users in `users_file`, for [`DOMAIN`].
    pub fn with_users(users_file: &Path) -> NodeConfig {
        NodeConfig {
            users: Some(users_file.to_path_buf()),
            ..NodeConfig::default()
        }
    }

    /// Challenges with `algorithms` (`--digest-algorithms`, e.g. `"MD5,SHA-256"`).
    pub fn digest_algorithms(mut self, algorithms: &str) -> NodeConfig {
        self.digest_algorithms = Some(algorithms.to_string());
        self
    }
}

/// A running node, stopped when dropped.
pub struct Node {
    child: Option<Child>,
    udp: SocketAddr,
    tcp: SocketAddr,
    dir: TestDir,
}

enum Attempt {
    Ready(Node),
    /// The process exited before it was ready; its stderr.
    Exited(String),
}

impl Node {
    /// Starts a node listening on UDP and TCP on one free loopback port, and waits until
    /// it answers an OPTIONS over UDP.
    pub fn start(config: &NodeConfig) -> Result<Node> {
        let bin = p2psip_bin()?;
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            match Node::try_start(&bin, config, port)? {
                Attempt::Ready(node) => return Ok(node),
                Attempt::Exited(stderr) => last = stderr,
            }
        }
        bail!("the node exited before it was ready, {START_ATTEMPTS} times; last stderr:\n{last}")
    }

    fn try_start(bin: &Path, config: &NodeConfig, port: u16) -> Result<Attempt> {
        let dir = test_dir("p2psip-node-")?;
        let udp = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let tcp = udp;
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir)?;
        let stdout = File::create(dir.path().join("stdout.log"))?;
        let stderr = File::create(dir.path().join("stderr.log"))?;

        let mut cmd = Command::new(bin);
        cmd.arg("node")
            .arg("--listen")
            .arg(format!("udp:{udp}"))
            .arg("--listen")
            .arg(format!("tcp:{tcp}"))
            .arg("--domain")
            .arg(config.domain.as_deref().unwrap_or(DOMAIN))
            .arg("--data-dir")
            .arg(&data_dir);
        if config.open {
            cmd.arg("--open");
        }
        if let Some(users) = &config.users {
            cmd.arg("--users").arg(users);
        }
        if let Some(algorithms) = &config.digest_algorithms {
            cmd.arg("--digest-algorithms").arg(algorithms);
        }
        if !config.overlay {
            cmd.arg("--no-overlay");
        }
        cmd.args(&config.extra_args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;

        let mut node = Node {
            child: Some(child),
            udp,
            tcp,
            dir,
        };
        match node.wait_ready(&data_dir.join("node.json"))? {
            true => Ok(Attempt::Ready(node)),
            false => {
                let stderr = node.stderr_tail();
                node.stop();
                Ok(Attempt::Exited(stderr))
            }
        }
    }

    /// Ok(true) once ready, Ok(false) if the process exited, Err after [`READY_LIMIT`].
    fn wait_ready(&mut self, node_json: &Path) -> Result<bool> {
        let deadline = Instant::now() + READY_LIMIT;
        let probe = UdpClient::new(self.udp)?;
        loop {
            if !self.is_running() {
                return Ok(false);
            }
            let has_json = std::fs::metadata(node_json).is_ok_and(|m| m.len() > 0);
            if has_json {
                let options = Request::new("OPTIONS", &format!("sip:{}", self.udp), &probe);
                probe.send(&options.to_bytes())?;
                if probe.recv(Duration::from_millis(200))?.is_some() {
                    return Ok(true);
                }
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
            if Instant::now() >= deadline {
                let stderr = self.stderr_tail();
                self.stop();
                bail!(
                    "the node was not ready within {READY_LIMIT:?} (node.json written: {has_json}); \
                     stderr:\n{stderr}"
                );
            }
        }
    }

    /// The UDP listener.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
    }

    /// The TCP listener.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }

    /// The listener for `transport`.
    pub fn addr(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp,
        }
    }

    /// The node's data directory (holds node.json).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file the node's stderr goes to.
    pub fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// The end of the node's stderr (and stdout, if any), for failure messages.
    pub fn stderr_tail(&self) -> String {
        let mut text = file_tail(&self.stderr_path(), 16 * 1024);
        let stdout = file_tail(&self.dir.path().join("stdout.log"), 4 * 1024);
        if !stdout.trim().is_empty() {
            text.push_str("\n--- stdout ---\n");
            text.push_str(&stdout);
        }
        text
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Fails, with the node's stderr, if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let status = match &mut self.child {
            Some(child) => child.try_wait().ok().flatten().map(|s| s.to_string()),
            None => None,
        };
        Err(anyhow!(
            "the node is not running (exit: {}); stderr:\n{}",
            status.unwrap_or_else(|| "unknown".into()),
            self.stderr_tail()
        ))
    }

    /// Adds the node's stderr to an error.
    pub fn context<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| anyhow!("{e:#}\n--- node stderr ---\n{}", self.stderr_tail()))
    }

    /// Stops the node: SIGTERM, then SIGKILL after a grace period. Idempotent.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, STOP_GRACE);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM (through kill(1), so no unsafe code), then SIGKILL after `grace`, then reap.
pub(crate) fn stop_child(mut child: Child, grace: Duration) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
    }
    let _ = child.wait();
}
