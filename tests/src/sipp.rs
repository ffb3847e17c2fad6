//! Running SIPp.

use crate::node::stop_child;
use crate::{file_tail, free_port, scenarios_dir, test_dir, wait_until_bound, TestDir, Transport};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Margin given to SIPp past its own `-timeout` before it is killed.
const HARD_LIMIT_MARGIN: Duration = Duration::from_secs(15);
/// SIPp's exit code when it cannot bind its socket (-2).
const EXIT_BIND_ERROR: i32 = 254;
/// Runs retried on another free port when SIPp could not bind its own.
const BIND_ATTEMPTS: usize = 3;

/// The SIPp executable: `$SIPP_BIN`, else `sipp` from PATH.
pub fn sipp_bin() -> PathBuf {
    std::env::var_os("SIPP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("sipp"))
}

/// SIPp's version line (`SIPp v3.6.1-...`).
pub fn sipp_version() -> Result<String> {
    let out = Command::new(sipp_bin())
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} -v", sipp_bin().display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("SIPp v"))
        .map(|l| l.trim_end_matches('.').to_string())
        .with_context(|| format!("unexpected `sipp -v` output: {text}"))
}

/// Whether SIPp tests can run: `Ok(true)` if SIPp is installed; `Ok(false)` (after a
/// notice) if it is not and `P2PSIP_SKIP_SIPP=1` asks to skip; an error otherwise.
pub fn require_sipp() -> Result<bool> {
    match sipp_version() {
        Ok(_) => Ok(true),
        Err(e) => {
            if std::env::var_os("P2PSIP_SKIP_SIPP").is_some_and(|v| v == "1") {
                eprintln!("SIPp not available ({e:#}); skipped because P2PSIP_SKIP_SIPP=1");
                Ok(false)
            } else {
                bail!(
                    "SIPp is needed by this test and was not found ({e:#}); install it \
                     (Debian: apt-get install sip-tester), set SIPP_BIN, or set \
                     P2PSIP_SKIP_SIPP=1 to skip"
                )
            }
        }
    }
}

/// A SIPp command line. Scenarios are looked up in `tests/scenarios/`; all SIPp output
/// files go to a temporary directory per run.
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: PathBuf,
    remote: Option<SocketAddr>,
    transport: Transport,
    /// `-p`; `None`: a free port picked for every run (never SIPp's default, 5060).
    local_port: Option<u16>,
    calls: u32,
    rate: Option<u32>,
    limit: Option<u32>,
    timeout: Duration,
    recv_timeout: Option<Duration>,
    inf: Vec<PathBuf>,
    keys: Vec<(String, String)>,
    extra: Vec<OsString>,
}

impl Sipp {
    /// A run of `tests/scenarios/<scenario>`: 1 call over UDP, 60 s limit.
    pub fn new(scenario: &str) -> Sipp {
        Sipp {
            scenario: scenarios_dir().join(scenario),
            remote: None,
            transport: Transport::Udp,
            local_port: None,
            calls: 1,
            rate: None,
            limit: None,
            timeout: Duration::from_secs(60),
            recv_timeout: Some(Duration::from_secs(10)),
            inf: Vec::new(),
            keys: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Where requests go (client scenarios).
    pub fn remote(mut self, addr: SocketAddr) -> Sipp {
        self.remote = Some(addr);
        self
    }

    /// `-t u1` or `-t t1`.
    pub fn transport(mut self, transport: Transport) -> Sipp {
        self.transport = transport;
        self
    }

    /// `-p`: a fixed local port. Without it each run picks a free port (and retries on
    /// another when SIPp cannot bind it); [`SippProcess::local_port`] tells which.
    pub fn local_port(mut self, port: u16) -> Sipp {
        self.local_port = Some(port);
        self
    }

    /// `-m`: calls to run before exiting.
    pub fn calls(mut self, calls: u32) -> Sipp {
        self.calls = calls;
        self
    }

    /// `-r`: calls per second.
    pub fn rate(mut self, rate: u32) -> Sipp {
        self.rate = Some(rate);
        self
    }

    /// `-l`: most calls at once.
    pub fn limit(mut self, limit: u32) -> Sipp {
        self.limit = Some(limit);
        self
    }

    /// `-timeout` (with `-timeout_error`); the process is killed 15 s later.
    pub fn timeout(mut self, timeout: Duration) -> Sipp {
        self.timeout = timeout;
        self
    }

    /// `-recv_timeout` (10 s by default): a call waiting longer for a message fails.
    pub fn recv_timeout(mut self, timeout: Option<Duration>) -> Sipp {
        self.recv_timeout = timeout;
        self
    }

    /// `-inf`: an injection file.
    pub fn inf(mut self, path: &Path) -> Sipp {
        self.inf.push(path.to_path_buf());
        self
    }

    /// `-key name value`: `[name]` in the scenario.
    pub fn key(mut self, name: &str, value: &str) -> Sipp {
        self.keys.push((name.to_string(), value.to_string()));
        self
    }

    /// `-s`: the user part of the Request-URI (`[service]`).
    pub fn service(self, user: &str) -> Sipp {
        self.arg("-s").arg(user)
    }

    /// Any further argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Sipp {
        self.extra.push(arg.into());
        self
    }

    /// The scenario's name without `.xml`.
    pub fn label(&self) -> String {
        self.scenario
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sipp".into())
    }

    fn args(&self, logs: &Path, local_port: u16) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |a: &dyn AsRef<std::ffi::OsStr>| args.push(a.as_ref().to_os_string());
        if let Some(remote) = self.remote {
            push(&remote.to_string());
        }
        push(&"-sf");
        push(&self.scenario);
        push(&"-t");
        push(&self.transport.sipp_mode());
        push(&"-i");
        push(&"127.0.0.1");
        push(&"-bind_local");
        push(&"-p");
        push(&local_port.to_string());
        push(&"-m");
        push(&self.calls.to_string());
        if let Some(rate) = self.rate {
            push(&"-r");
            push(&rate.to_string());
        }
        if let Some(limit) = self.limit {
            push(&"-l");
            push(&limit.to_string());
        }
        push(&"-timeout");
        push(&format!("{}s", self.timeout.as_secs().max(1)));
        push(&"-timeout_error");
        if let Some(recv) = self.recv_timeout {
            push(&"-recv_timeout");
            push(&format!("{}", recv.as_millis().max(1)));
        }
        push(&"-nostdin");
        push(&"-trace_err");
        push(&"-error_file");
        push(&logs.join("errors.log"));
        push(&"-trace_screen");
        push(&"-screen_file");
        push(&logs.join("screen.log"));
        push(&"-trace_stat");
        push(&"-stf");
        push(&logs.join("stats.csv"));
        if std::env::var_os("P2PSIP_SIPP_TRACE_MSG").is_some() {
            push(&"-trace_msg");
            push(&"-message_file");
            push(&logs.join("messages.log"));
        }
        for inf in &self.inf {
            push(&"-inf");
            push(inf);
        }
        for (name, value) in &self.keys {
            push(&"-key");
            push(name);
            push(value);
        }
        for extra in &self.extra {
            push(extra);
        }
        args
    }

    /// Starts SIPp in the background.
    pub fn spawn(&self) -> Result<SippProcess> {
        let label = self.label();
        let logs = test_dir(&format!("sipp-{label}-"))?;
        let local_port = match self.local_port {
            Some(port) => port,
            None => free_port()?,
        };
        let args = self.args(logs.path(), local_port);
        let command_line = std::iter::once(sipp_bin().into_os_string())
            .chain(args.iter().cloned())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let stderr = File::create(logs.path().join("stderr.log"))?;
        let child = Command::new(sipp_bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {command_line}"))?;
        Ok(SippProcess {
            child: Some(child),
            label,
            command_line,
            logs,
            deadline: Instant::now() + self.timeout + HARD_LIMIT_MARGIN,
            local_port,
            transport: self.transport,
        })
    }

    /// Starts a server scenario and waits (at most `limit`) until it listens. With no
    /// fixed port, a port taken in between is retried with another.
    pub fn spawn_listening(&self, limit: Duration) -> Result<SippProcess> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut process = self.spawn()?;
            match process.wait_listening(limit) {
                Ok(()) => return Ok(process),
                Err(e) if self.local_port.is_some() || attempt >= BIND_ATTEMPTS => return Err(e),
                Err(_) => continue,
            }
        }
    }

    /// Runs SIPp to the end (or its hard time limit). With no fixed port, a run that
    /// could not bind its port is retried with another.
    pub fn run(&self) -> Result<SippOutcome> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.spawn()?.wait()?;
            let bind_error = outcome.exit_code == Some(EXIT_BIND_ERROR);
            if bind_error && self.local_port.is_none() && attempt < BIND_ATTEMPTS {
                continue;
            }
            return Ok(outcome);
        }
    }
}

/// A SIPp process; killed if dropped while running.
pub struct SippProcess {
    child: Option<Child>,
    label: String,
    command_line: String,
    logs: TestDir,
    deadline: Instant,
    local_port: u16,
    transport: Transport,
}

impl SippProcess {
    /// The port SIPp was told to use (`-p`).
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// Waits (at most `limit`) until SIPp has bound its `-p` port; fails early if SIPp
    /// exits first.
    pub fn wait_listening(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let exited = match &mut self.child {
                Some(child) => child.try_wait()?.is_some(),
                None => true,
            };
            if exited {
                let outcome = self.finish(false, false);
                bail!(
                    "SIPp exited before it listened on {}\n{outcome}",
                    self.local_port
                );
            }
            let step =
                Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now()));
            if wait_until_bound(self.local_port, self.transport, step).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let outcome = self.finish(true, false);
                bail!(
                    "SIPp did not listen on {} {} within {limit:?}\n{outcome}",
                    self.transport,
                    self.local_port
                );
            }
        }
    }

    /// Waits for SIPp to exit; kills it at its hard time limit.
    pub fn wait(mut self) -> Result<SippOutcome> {
        let mut timed_out = false;
        if let Some(child) = &mut self.child {
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() >= self.deadline {
                    timed_out = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(self.finish(timed_out, timed_out))
    }

    /// Stops SIPp now (SIGTERM, then SIGKILL) and collects what it left.
    pub fn kill(mut self) -> SippOutcome {
        self.finish(true, false)
    }

    /// Collects the outcome; `stop`: stop the process if it still runs; `timed_out`: it
    /// is being stopped because it ran past its hard time limit.
    fn finish(&mut self, stop: bool, timed_out: bool) -> SippOutcome {
        let mut exit_code = None;
        let mut stopped = false;
        if let Some(mut child) = self.child.take() {
            match child.try_wait() {
                Ok(Some(status)) => exit_code = status.code(),
                _ if stop => {
                    stop_child(child, Duration::from_secs(2));
                    stopped = true;
                }
                _ => {
                    exit_code = child.wait().ok().and_then(|s| s.code());
                }
            }
        }
        let logs = self.logs.path();
        SippOutcome {
            label: self.label.clone(),
            command_line: self.command_line.clone(),
            exit_code,
            stopped,
            timed_out: stopped && timed_out,
            errors: file_tail(&logs.join("errors.log"), 8 * 1024),
            screen: file_tail(&logs.join("screen.log"), 8 * 1024),
            stderr: file_tail(&logs.join("stderr.log"), 4 * 1024),
            stats: std::fs::read_to_string(logs.join("stats.csv")).unwrap_or_default(),
        }
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, Duration::from_secs(2));
        }
    }
}

/// What a SIPp run left.
#[derive(Debug, Clone)]
pub struct SippOutcome {
    pub label: String,
    pub command_line: String,
    /// 0: every call succeeded; 1: some failed; 97, 99, 255 (-1), 254 (-2): see `sipp -h`.
    /// `None` if it was stopped.
    pub exit_code: Option<i32>,
    /// Stopped by the harness (at its time limit, or because the other side failed).
    pub stopped: bool,
    /// Stopped because it ran past its hard time limit.
    pub timed_out: bool,
    /// `-trace_err` log (unexpected messages, aborted calls), tail.
    pub errors: String,
    /// Final statistics screen, tail.
    pub screen: String,
    pub stderr: String,
    /// `-trace_stat` CSV.
    pub stats: String,
}

impl SippOutcome {
    /// Exit code 0: all calls succeeded.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// Fails with everything SIPp left unless it succeeded.
    pub fn ensure_success(&self) -> Result<()> {
        if self.success() {
            Ok(())
        } else {
            bail!("{self}")
        }
    }

    /// A column of the last row of the statistics CSV, e.g. `SuccessfulCall(C)`.
    pub fn stat(&self, column: &str) -> Option<String> {
        let mut lines = self.stats.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines.next()?.split(';').collect();
        let last: Vec<&str> = lines.next_back()?.split(';').collect();
        let i = header.iter().position(|h| h.trim() == column)?;
        last.get(i).map(|v| v.trim().to_string())
    }

    /// `SuccessfulCall(C)` as a number.
    pub fn successful_calls(&self) -> Option<u64> {
        self.stat("SuccessfulCall(C)")?.parse().ok()
    }

    /// `FailedCall(C)` as a number.
    pub fn failed_calls(&self) -> Option<u64> {
        self.stat("FailedCall(C)")?.parse().ok()
    }
}

impl fmt::Display for SippOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "SIPp {} {}: exit code {:?}{}; successful calls {:?}, failed calls {:?}",
            self.label,
            if self.success() {
                "succeeded"
            } else {
                "failed"
            },
            self.exit_code,
            if self.timed_out {
                " (killed at its time limit)"
            } else if self.stopped {
                " (stopped by the test)"
            } else {
                ""
            },
            self.successful_calls(),
            self.failed_calls(),
        )?;
        writeln!(f, "command: {}", self.command_line)?;
        if !self.errors.trim().is_empty() {
            writeln!(f, "--- {} errors ---\n{}", self.label, self.errors)?;
        }
        // SIPp repeats its errors on stderr; that copy is only shown when there is no log.
        if self.errors.trim().is_empty() && !self.stderr.trim().is_empty() {
            writeln!(f, "--- {} stderr ---\n{}", self.label, self.stderr)?;
        }
        if !self.screen.trim().is_empty() {
            writeln!(f, "--- {} screen ---\n{}", self.label, self.screen)?;
        }
        Ok(())
    }
}
