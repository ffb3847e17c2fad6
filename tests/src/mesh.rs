//! Several `p2psip node` processes joined into one overlay on loopback, and the
//! `p2psip lookup` / `p2psip peers` subcommands run against them.
//!
//! A [`MeshNode`] is started like a [`Node`](crate::Node) (free SIP port on 127.0.0.1 for
//! UDP and TCP, temporary data directory, stderr kept, ready once it answers an OPTIONS,
//! stopped by pid on drop), with its own command line: open registration for
//! [`DOMAIN`], the overlay listening on `/ip4/127.0.0.1/tcp/0`, mDNS off unless asked for,
//! and the given `--bootstrap` addresses, plus any domain authority settings
//! (`--trust-anchor`, `--delegation`, `--authority-mode`). It is ready only once `node.json`
//! also names its peer id and overlay addresses.

use crate::node::stop_child;
use crate::raw_udp::{Request, UdpClient};
use crate::{file_tail, free_port, p2psip_bin, test_dir, TestDir, DOMAIN};
use anyhow::{anyhow, bail, ensure, Context, Result};
use std::fmt;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The overlay listen address of every test node: loopback, port chosen by the kernel.
pub const P2P_LISTEN: &str = "/ip4/127.0.0.1/tcp/0";

/// How long a node may take to write its overlay addresses and answer its first OPTIONS.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// How long a node may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Starts retried when a node exits before it is ready (a port taken in between).
const START_ATTEMPTS: usize = 4;
/// Hard limit on one run of a short-lived subcommand (`lookup`, `peers`).
const SUBCOMMAND_LIMIT: Duration = Duration::from_secs(30);
/// Bytes of each node's stderr shown when a mesh test fails.
const MESH_TAIL_BYTES: usize = 6 * 1024;

/// The log filter of mesh nodes: `$P2PSIP_MESH_LOG`, else `info`.
fn log_filter() -> String {
    std::env::var("P2PSIP_MESH_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "info".to_string())
}

/// [`log_filter`] followed by `directives`, comma-separated.
fn log_filter_with(directives: &[String]) -> String {
    let mut filter = log_filter();
    for directive in directives.iter().filter(|d| !d.trim().is_empty()) {
        filter.push(',');
        filter.push_str(directive.trim());
    }
    filter
}

/// How to start one mesh node.
#[derive(Debug, Clone)]
pub struct MeshNodeConfig {
    /// `--bootstrap`, each a full multiaddr ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// Multicast DNS discovery; `--no-mdns` unless set.
    pub mdns: bool,
    /// `--p2p-listen`; [`P2P_LISTEN`] when empty.
    pub p2p_listen: Vec<String>,
    /// Further arguments, appended as they are.
    pub extra_args: Vec<String>,
    /// `--trust-anchor`, each `domain=<public key>`.
    pub trust_anchors: Vec<String>,
    /// `--delegation` files.
    pub delegations: Vec<PathBuf>,
    /// `--authority-mode` (`open`, `closed`); the node's default when `None`.
    pub authority_mode: Option<String>,
    /// The data directory; when `None`, a fresh one in the node's temporary directory. Give
    /// one (holding a `node.key`) to know the node's peer id before it starts, e.g. to
    /// delegate a domain to it.
    pub data_dir: Option<PathBuf>,
    /// `EnvFilter` directives appended to the `--log` filter (after `$P2PSIP_MESH_LOG` or
    /// `info`), e.g. `overlay::store=debug` for the `record stored` events.
    pub log_directives: Vec<String>,
}

impl Default for MeshNodeConfig {
    fn default() -> Self {
        MeshNodeConfig {
            bootstrap: Vec::new(),
            mdns: false,
            p2p_listen: vec![P2P_LISTEN.to_string()],
            extra_args: Vec::new(),
            trust_anchors: Vec::new(),
            delegations: Vec::new(),
            authority_mode: None,
            data_dir: None,
            log_directives: Vec::new(),
        }
    }
}

impl MeshNodeConfig {
    /// No bootstrap, no mDNS: the first node of a mesh.
    pub fn first() -> MeshNodeConfig {
        MeshNodeConfig::default()
    }

    /// Joins through `bootstrap` (full multiaddrs with `/p2p/`), no mDNS.
    pub fn joining(bootstrap: &[String]) -> MeshNodeConfig {
        MeshNodeConfig {
            bootstrap: bootstrap.to_vec(),
            ..MeshNodeConfig::default()
        }
    }

    /// No bootstrap, mDNS on.
    pub fn mdns() -> MeshNodeConfig {
        MeshNodeConfig {
            mdns: true,
            ..MeshNodeConfig::default()
        }
    }
}

/// What a node's `node.json` says about its overlay identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayInfo {
    pub peer_id: String,
    /// Full multiaddrs ending in `/p2p/<peer id>`.
    pub p2p_addrs: Vec<String>,
}

impl OverlayInfo {
    /// Reads `peer_id` and `p2p_addrs` from a `node.json`; `Ok(None)` while either is
    /// missing or empty (the node has not started its overlay yet).
    pub fn read(node_json: &Path) -> Result<Option<OverlayInfo>> {
        let text = match std::fs::read_to_string(node_json) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", node_json.display())),
        };
        if text.trim().is_empty() {
            return Ok(None);
        }
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON:\n{text}", node_json.display()))?;
        let peer_id = json
            .get("peer_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let p2p_addrs: Vec<String> = json
            .get("p2p_addrs")
            .and_then(|v| v.as_array())
            .map(|addrs| {
                addrs
                    .iter()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if peer_id.is_empty() || p2p_addrs.is_empty() {
            return Ok(None);
        }
        Ok(Some(OverlayInfo { peer_id, p2p_addrs }))
    }

    /// The overlay address on 127.0.0.1 that names the peer (`/ip4/127.0.0.1/tcp/P/p2p/ID`).
    pub fn loopback_addr(&self) -> Option<&str> {
        let suffix = format!("/p2p/{}", self.peer_id);
        self.p2p_addrs
            .iter()
            .map(String::as_str)
            .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/") && a.ends_with(&suffix))
    }
}

/// One running mesh node, stopped when dropped.
pub struct MeshNode {
    label: String,
    child: Option<Child>,
    sip: SocketAddr,
    overlay: OverlayInfo,
    dir: TestDir,
    data_dir: PathBuf,
    command_line: String,
    /// Stopped on purpose by the test ([`MeshNode::stop`]).
    stopped: bool,
}

enum Attempt {
    Ready(MeshNode),
    /// The process exited before it was ready; its stderr.
    Exited(String),
}

impl MeshNode {
    /// Starts a node (named `label` in messages) on a free SIP port and waits until it is
    /// ready: `node.json` lists its peer id and overlay addresses, and it answers OPTIONS.
    pub fn start(label: &str, config: &MeshNodeConfig) -> Result<MeshNode> {
        let bin = p2psip_bin()?;
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            match MeshNode::try_start(&bin, label, config, port)? {
                Attempt::Ready(node) => return Ok(node),
                Attempt::Exited(stderr) => last = stderr,
            }
        }
        bail!(
            "{label}: the node exited before it was ready, {START_ATTEMPTS} times; last \
             stderr:\n{last}"
        )
    }

    /// The command line of a mesh node listening for SIP on `sip` (UDP and TCP).
    pub fn command(
        bin: &Path,
        config: &MeshNodeConfig,
        sip: SocketAddr,
        data_dir: &Path,
    ) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("node")
            .arg("--listen")
            .arg(format!("udp:{sip}"))
            .arg("--listen")
            .arg(format!("tcp:{sip}"))
            .arg("--domain")
            .arg(DOMAIN)
            .arg("--open")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--log")
            .arg(log_filter_with(&config.log_directives));
        let listen: Vec<&str> = if config.p2p_listen.is_empty() {
            vec![P2P_LISTEN]
        } else {
            config.p2p_listen.iter().map(String::as_str).collect()
        };
        for addr in listen {
            cmd.arg("--p2p-listen").arg(addr);
        }
        for addr in &config.bootstrap {
            cmd.arg("--bootstrap").arg(addr);
        }
        if !config.mdns {
            cmd.arg("--no-mdns");
        }
        for anchor in &config.trust_anchors {
            cmd.arg("--trust-anchor").arg(anchor);
        }
        for file in &config.delegations {
            cmd.arg("--delegation").arg(file);
        }
        if let Some(mode) = &config.authority_mode {
            cmd.arg("--authority-mode").arg(mode);
        }
        cmd.args(&config.extra_args);
        cmd
    }

    fn try_start(bin: &Path, label: &str, config: &MeshNodeConfig, port: u16) -> Result<Attempt> {
        let dir = test_dir(&format!("p2psip-mesh-{label}-"))?;
        let sip = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let data_dir = config
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        std::fs::create_dir_all(&data_dir)?;
        // A node.json left by an earlier attempt in a given data directory is not this one's.
        match std::fs::remove_file(data_dir.join("node.json")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let stdout = File::create(dir.path().join("stdout.log"))?;
        let stderr = File::create(dir.path().join("stderr.log"))?;

        let mut cmd = MeshNode::command(bin, config, sip, &data_dir);
        let command_line = command_line(&cmd);
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {command_line}"))?;

        let mut node = MeshNode {
            label: label.to_string(),
            child: Some(child),
            sip,
            overlay: OverlayInfo::default(),
            dir,
            data_dir: data_dir.clone(),
            command_line,
            stopped: false,
        };
        match node.wait_ready(&data_dir.join("node.json"))? {
            true => Ok(Attempt::Ready(node)),
            false => {
                let stderr = node.stderr_tail();
                node.stop_now();
                Ok(Attempt::Exited(stderr))
            }
        }
    }

    /// Ok(true) once ready, Ok(false) if the process exited, Err after [`READY_LIMIT`].
    fn wait_ready(&mut self, node_json: &Path) -> Result<bool> {
        let deadline = Instant::now() + READY_LIMIT;
        let probe = UdpClient::new(self.sip)?;
        loop {
            if !self.is_running() {
                return Ok(false);
            }
            match OverlayInfo::read(node_json)? {
                Some(info) => {
                    self.overlay = info;
                    if answers_options(&probe, self.sip)? {
                        return Ok(true);
                    }
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
            if Instant::now() >= deadline {
                let json = std::fs::read_to_string(node_json)
                    .unwrap_or_else(|e| format!("(not readable: {e})"));
                let stderr = self.stderr_tail();
                self.stop_now();
                bail!(
                    "{}: not ready within {READY_LIMIT:?} (needs peer_id and p2p_addrs in \
                     node.json, then an answer to OPTIONS on {}).\ncommand: {}\nnode.json: \
                     {json}\nstderr:\n{stderr}",
                    self.label,
                    self.sip,
                    self.command_line
                );
            }
        }
    }

    /// The name given at start (`node0`, ...).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The command line it was started with.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// The SIP listener (UDP and TCP share the port).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip
    }

    /// Peer id and overlay addresses from `node.json`.
    pub fn overlay(&self) -> &OverlayInfo {
        &self.overlay
    }

    pub fn peer_id(&self) -> &str {
        &self.overlay.peer_id
    }

    /// The overlay address on 127.0.0.1, with `/p2p/<peer id>`: what other nodes bootstrap
    /// from. Falls back to the first address of `node.json`.
    pub fn p2p_addr(&self) -> String {
        self.overlay
            .loopback_addr()
            .or(self.overlay.p2p_addrs.first().map(String::as_str))
            .unwrap_or_default()
            .to_string()
    }

    /// The data directory (holds node.json and the node key).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// The node's `node.json`, parsed.
    pub fn node_json(&self) -> Result<serde_json::Value> {
        let path = self.data_dir.join("node.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: reading {}", self.label, path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: {} is not JSON:\n{text}", self.label, path.display()))
    }

    /// The record validator's count of values refused for `reason` (`unauthorised`,
    /// `bad_signature`, ...), from `validation.refused` in `node.json`, which the node
    /// rewrites about once a second while the counters change.
    pub fn refusals(&self, reason: &str) -> Result<u64> {
        let json = self.node_json()?;
        json.get("validation")
            .and_then(|v| v.get("refused"))
            .and_then(|v| v.get(reason))
            .and_then(serde_json::Value::as_u64)
            .with_context(|| {
                format!(
                    "{}: node.json has no validation.refused.{reason}:\n{json}",
                    self.label
                )
            })
    }

    /// The file the node's stderr goes to.
    pub fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// The whole stderr so far (lossy); empty if unreadable.
    pub fn stderr_text(&self) -> String {
        std::fs::read(self.stderr_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The end of the node's stderr (and stdout, if any), for failure messages.
    pub fn stderr_tail(&self) -> String {
        self.tail(16 * 1024)
    }

    fn tail(&self, max: usize) -> String {
        let mut text = file_tail(&self.stderr_path(), max);
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

    /// Whether the test stopped this node on purpose.
    pub fn was_stopped(&self) -> bool {
        self.stopped
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
            "{} is not running (exit: {}); stderr:\n{}",
            self.label,
            status.unwrap_or_else(|| "unknown".into()),
            self.stderr_tail()
        ))
    }

    /// Adds the node's stderr to an error.
    pub fn context<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| {
            anyhow!(
                "{e:#}\n--- {} stderr ---\n{}",
                self.label,
                self.stderr_tail()
            )
        })
    }

    /// The `record stored` events (logged by the overlay at debug level, target
    /// `overlay::store`, when the node accepts and stores a record another node put to it)
    /// for the DHT key whose hash is `key_hash_hex` (lower-case hex, as
    /// `overlay::key::key_hash_hex` writes it), as stderr lines. Empty unless the node was
    /// started with that target at debug level (see [`MeshNodeConfig::log_directives`]).
    pub fn record_stored_events(&self, key_hash_hex: &str) -> Vec<String> {
        let key = format!(" key={key_hash_hex} ");
        self.stderr_text()
            .lines()
            .filter(|line| line.contains(" record stored ") && format!("{line} ").contains(&key))
            .map(str::to_string)
            .collect()
    }

    /// Crashes the node on purpose: SIGKILL by pid, so it leaves nothing behind (no graceful
    /// leave, no hand-off of its records), then reaps it. Fails if it was not running (it
    /// had exited by itself, or was stopped or killed before) or did not die by SIGKILL.
    pub fn kill(&mut self) -> Result<()> {
        self.stopped = true;
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("{}: already stopped", self.label))?;
        if let Some(status) = child.try_wait()? {
            bail!(
                "{}: had exited by itself ({status}) before it was to be killed",
                self.label
            );
        }
        let pid = child.id();
        // `Child::kill` sends SIGKILL to this pid.
        child
            .kill()
            .with_context(|| format!("{}: SIGKILL to pid {pid}", self.label))?;
        let status = child
            .wait()
            .with_context(|| format!("{}: reaping pid {pid}", self.label))?;
        use std::os::unix::process::ExitStatusExt as _;
        ensure!(
            status.signal() == Some(9),
            "{}: pid {pid} did not die by SIGKILL ({status})",
            self.label
        );
        Ok(())
    }

    /// Stops the node on purpose (SIGTERM, then SIGKILL after a grace period). Idempotent.
    pub fn stop(&mut self) {
        self.stopped = true;
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, STOP_GRACE);
        }
    }
}

impl Drop for MeshNode {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// One OPTIONS to `target`; whether anything answered within 200 ms.
fn answers_options(probe: &UdpClient, target: SocketAddr) -> Result<bool> {
    let options = Request::new("OPTIONS", &format!("sip:{target}"), probe);
    probe.send(&options.to_bytes())?;
    Ok(probe.recv(Duration::from_millis(200))?.is_some())
}

/// Nodes joined into one overlay: node 0 first, every other node bootstrapping from it.
pub struct Mesh {
    nodes: Vec<MeshNode>,
}

impl Mesh {
    /// Starts `count` nodes (`node0`, `node1`, ...) without mDNS: node 0 alone, then each
    /// other node with `--bootstrap` = node 0's loopback overlay address from its
    /// `node.json`.
    pub fn start(count: usize) -> Result<Mesh> {
        let first = MeshNode::start("node0", &MeshNodeConfig::first())?;
        let bootstrap = vec![first.p2p_addr()];
        let mut mesh = Mesh { nodes: vec![first] };
        for i in 1..count {
            let node = MeshNode::start(&format!("node{i}"), &MeshNodeConfig::joining(&bootstrap));
            let node = mesh.context(node)?;
            mesh.nodes.push(node);
        }
        Ok(mesh)
    }

    /// Starts one node per config (`node0`, `node1`, ...): the first as configured, every
    /// other one with node 0's loopback overlay address added to its `--bootstrap`.
    pub fn start_configured(configs: Vec<MeshNodeConfig>) -> Result<Mesh> {
        let mut configs = configs.into_iter();
        let first = configs
            .next()
            .ok_or_else(|| anyhow!("a mesh needs at least one node"))?;
        let first = MeshNode::start("node0", &first)?;
        let bootstrap = first.p2p_addr();
        let mut mesh = Mesh { nodes: vec![first] };
        for (i, mut config) in configs.enumerate() {
            config.bootstrap.push(bootstrap.clone());
            let node = MeshNode::start(&format!("node{}", i + 1), &config);
            let node = mesh.context(node)?;
            mesh.nodes.push(node);
        }
        Ok(mesh)
    }

    /// Nodes started by the caller.
    pub fn from_nodes(nodes: Vec<MeshNode>) -> Mesh {
        Mesh { nodes }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> &MeshNode {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut MeshNode {
        &mut self.nodes[i]
    }

    pub fn nodes(&self) -> &[MeshNode] {
        &self.nodes
    }

    /// Fails if a node the test did not stop has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            if !node.was_stopped() {
                node.check_alive()?;
            }
        }
        Ok(())
    }

    /// Adds the end of every node's stderr to an error.
    pub fn context<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| {
            let mut text = format!("{e:#}");
            for node in &self.nodes {
                text.push_str(&format!(
                    "\n--- {} ({}, SIP {}{}) stderr ---\n{}",
                    node.label,
                    node.peer_id(),
                    node.sip,
                    if node.stopped {
                        ", stopped by the test"
                    } else {
                        ""
                    },
                    node.tail(MESH_TAIL_BYTES)
                ));
            }
            anyhow!(text)
        })
    }
}

/// How a short-lived `p2psip` subcommand ended.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub command_line: String,
    /// `None` if it was killed at its time limit.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

impl fmt::Display for CommandOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "`{}`: exit code {:?}{}",
            self.command_line,
            self.exit_code,
            if self.timed_out {
                " (killed at its time limit)"
            } else {
                ""
            }
        )?;
        if !self.stdout.trim().is_empty() {
            writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        }
        if !self.stderr.trim().is_empty() {
            writeln!(f, "--- stderr ---\n{}", self.stderr.trim_end())?;
        }
        Ok(())
    }
}

/// Runs `p2psip <args>` to its end, killed after `limit`; output goes to files in a
/// temporary directory and is read back.
pub fn run_p2psip(args: &[String], limit: Duration) -> Result<CommandOutcome> {
    let mut cmd = Command::new(p2psip_bin()?);
    cmd.args(args);
    run_bounded(cmd, limit)
}

/// Runs `cmd` to its end with stdin closed; after `limit` it is killed by pid together
/// with the processes it started. Output goes to files in a temporary directory and is
/// read back.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Result<CommandOutcome> {
    let dir = test_dir("p2psip-cmd-")?;
    let command_line = command_line(&cmd);
    let stdout_path = dir.path().join("stdout.log");
    let stderr_path = dir.path().join("stderr.log");
    cmd.stdin(Stdio::null())
        .stdout(File::create(&stdout_path)?)
        .stderr(File::create(&stderr_path)?);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {command_line}"))?;
    let deadline = Instant::now() + limit;
    let mut exit_code = None;
    let mut timed_out = false;
    loop {
        if let Some(status) = child.try_wait()? {
            exit_code = status.code();
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let descendants = descendants(child.id());
            stop_child(child, Duration::from_secs(2));
            for pid in descendants {
                kill_pid(pid);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(CommandOutcome {
        command_line,
        exit_code,
        timed_out,
        stdout: file_tail(&stdout_path, 16 * 1024),
        stderr: file_tail(&stderr_path, 16 * 1024),
    })
}

/// The processes below `root` (children, their children, ...), from /proc; empty where
/// /proc cannot be read.
fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() && found.len() < 10_000 {
        let parent = found[i];
        for (pid, ppid) in &parent_of {
            if *ppid == parent && !found.contains(pid) {
                found.push(*pid);
            }
        }
        i += 1;
    }
    found.remove(0);
    found
}

/// SIGKILL to one process by pid (through kill(1), so no unsafe code).
fn kill_pid(pid: u32) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Set (to `1`) in the environment of a test re-run by [`rerun_in_netns`].
pub const IN_NETNS_ENV: &str = "P2PSIP_MESH_IN_NETNS";
/// The non-loopback address [`rerun_in_netns`] puts on the namespace's loopback interface.
pub const NETNS_ADDR: &str = "10.77.0.1";
/// Printed by the namespace set-up script once the interface is ready.
const NETNS_READY: &str = "p2psip-netns-ready";

/// Whether this process is a test re-run by [`rerun_in_netns`].
pub fn in_netns() -> bool {
    std::env::var_os(IN_NETNS_ENV).is_some_and(|v| v == "1")
}

/// How a test re-run in its own network namespace went.
#[derive(Debug)]
pub enum NetnsRun {
    /// No namespace could be set up (no `unshare`, no privileges); why.
    Unavailable(String),
    /// The test ran in the namespace; its exit code 0 means it passed.
    Finished(CommandOutcome),
}

/// Runs the test `test_name` of this test executable again, alone, in a new network
/// namespace whose only interface is loopback, switched to multicast and given the extra
/// address [`NETNS_ADDR`] (libp2p's mDNS ignores loopback addresses) and the route for
/// 224.0.0.0/4. Nothing sent there leaves the namespace, and the host's interfaces are not
/// changed. `unshare --net` needs root; without it an unprivileged user namespace
/// (`--user --map-root-user`) is tried. The test sees [`in_netns`]; it is killed with
/// everything it started after `limit`.
pub fn rerun_in_netns(test_name: &str, limit: Duration) -> Result<NetnsRun> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    let script = format!(
        "ip link set lo up multicast on && ip addr add {NETNS_ADDR}/32 dev lo \
         && ip route add 224.0.0.0/4 dev lo && echo {NETNS_READY} \
         && exec \"$0\" \"$1\" --exact --nocapture --test-threads 1"
    );
    let mut refusals = Vec::new();
    for unshare_args in [&["--net"][..], &["--user", "--map-root-user", "--net"][..]] {
        let mut cmd = Command::new("unshare");
        cmd.args(unshare_args)
            .args(["sh", "-c", &script])
            .arg(&exe)
            .arg(test_name)
            .env(IN_NETNS_ENV, "1");
        let outcome = match run_bounded(cmd, limit) {
            Ok(outcome) => outcome,
            Err(e) => {
                refusals.push(format!(
                    "`unshare {}`: {}",
                    unshare_args.join(" "),
                    e.root_cause()
                ));
                continue;
            }
        };
        if outcome.stdout.contains(NETNS_READY) {
            return Ok(NetnsRun::Finished(outcome));
        }
        refusals.push(format!(
            "`unshare {}`: exit code {:?}: {}",
            unshare_args.join(" "),
            outcome.exit_code,
            outcome.stderr.trim()
        ));
    }
    Ok(NetnsRun::Unavailable(refusals.join("; ")))
}

/// `p2psip lookup <aor> --bootstrap <addr>... --data-dir <fresh temporary directory>`
/// (a directory of its own, so the lookup never takes the identity of a running node).
/// Exit code 0: found (the record is on stdout); 1: not found.
pub fn lookup(aor: &str, bootstrap: &[String]) -> Result<CommandOutcome> {
    let data = test_dir("p2psip-lookup-")?;
    let mut args = vec!["lookup".to_string(), aor.to_string()];
    for addr in bootstrap {
        args.push("--bootstrap".into());
        args.push(addr.clone());
    }
    args.push("--data-dir".into());
    args.push(data.path().display().to_string());
    run_p2psip(&args, SUBCOMMAND_LIMIT)
}

/// Runs [`lookup`] until it finds `aor` (exit code 0), at most `attempts` times and for
/// at most `limit`, half a second apart; the successful outcome, or an error with the
/// last one. Exit codes other than 0 and 1 are errors at once.
pub fn wait_until_found(
    aor: &str,
    bootstrap: &[String],
    limit: Duration,
    attempts: usize,
) -> Result<CommandOutcome> {
    let deadline = Instant::now() + limit;
    let mut last = None;
    for attempt in 1..=attempts {
        let outcome = lookup(aor, bootstrap)?;
        if outcome.success() {
            return Ok(outcome);
        }
        if outcome.exit_code != Some(1) {
            bail!("lookup of {aor} failed (attempt {attempt}):\n{outcome}");
        }
        last = Some(outcome);
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    match last {
        Some(outcome) => bail!(
            "{aor} was not found within {limit:?} / {attempts} attempts; last lookup:\n{outcome}"
        ),
        None => bail!("no lookup of {aor} was run"),
    }
}

/// `p2psip peers <args>`.
pub fn peers(args: &[String]) -> Result<CommandOutcome> {
    let mut all = vec!["peers".to_string()];
    all.extend(args.iter().cloned());
    run_p2psip(&all, SUBCOMMAND_LIMIT)
}

/// Fails, naming what is missing, unless `p2psip <subcommand> --help` lists every one of
/// `wanted` (options or subcommands): a clear message when the binary lacks what a test
/// drives, or an error if the help cannot be run.
pub fn require_flags(subcommand: &str, wanted: &[&str]) -> Result<()> {
    let outcome = run_p2psip(
        &[subcommand.to_string(), "--help".to_string()],
        Duration::from_secs(10),
    )
    .with_context(|| format!("`p2psip {subcommand} --help`"))?;
    if !outcome.success() {
        bail!("{outcome}");
    }
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|flag| !outcome.stdout.contains(flag))
        .collect();
    ensure!(
        missing.is_empty(),
        "`p2psip {subcommand}` has no {missing:?}; this test needs them"
    );
    Ok(())
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a process is alive (not gone, not a zombie), from /proc.
    fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
            Err(_) => false,
        }
    }

    #[test]
    fn run_bounded_kills_what_it_started() -> Result<()> {
        if !Path::new("/proc/self/stat").exists() {
            return Ok(());
        }
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & echo $!; wait"]);
        let outcome = run_bounded(cmd, Duration::from_millis(500))?;
        assert!(outcome.timed_out, "{outcome}");
        let pid: u32 = outcome.stdout.trim().parse()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "the grandchild {pid} survived");
        Ok(())
    }

    #[test]
    fn overlay_info_needs_peer_id_and_addresses() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("node.json");
        assert_eq!(OverlayInfo::read(&path)?, None);
        std::fs::write(&path, r#"{"pid": 1, "listeners": []}"#)?;
        assert_eq!(OverlayInfo::read(&path)?, None);
        std::fs::write(
            &path,
            r#"{"peer_id": "12D3KooWA", "p2p_addrs": ["/ip4/10.0.0.1/tcp/2/p2p/12D3KooWA",
                "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWA"]}"#,
        )?;
        let info = OverlayInfo::read(&path)?.ok_or_else(|| anyhow!("no overlay info"))?;
        assert_eq!(info.peer_id, "12D3KooWA");
        assert_eq!(
            info.loopback_addr(),
            Some("/ip4/127.0.0.1/tcp/1/p2p/12D3KooWA")
        );
        Ok(())
    }
}
