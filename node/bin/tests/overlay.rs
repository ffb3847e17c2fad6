//! Two `p2psip node` processes joined into one overlay on loopback: a user registered at
//! one node is found in the DHT by `p2psip lookup` and reached by a request sent to the
//! other node; a node withdraws its users when it stops.

// A test binary: failing loudly on an unexpected error is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for anything a process is waited for; generous for slow CI machines.
const PATIENCE: Duration = Duration::from_secs(30);
/// How many times a lookup is tried while the registration is being published.
const LOOKUP_ATTEMPTS: usize = 20;
/// Pause between two attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

fn p2psip() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_p2psip"));
    command.env_remove("RUST_LOG").env_remove("P2PSIP_DATA_DIR");
    command
}

/// The overlay options of every overlay node here: loopback only, no multicast.
const LOOPBACK_OVERLAY: [&str; 3] = ["--no-mdns", "--p2p-listen", "/ip4/127.0.0.1/tcp/0"];

/// A running node, stopped (SIGTERM by pid, then SIGKILL) when dropped.
struct Node {
    child: Option<Child>,
    data_dir: PathBuf,
    info: serde_json::Value,
}

impl Node {
    fn start(data_dir: &Path, extra: &[&str]) -> Node {
        std::fs::create_dir_all(data_dir).unwrap();
        let stderr = std::fs::File::create(data_dir.join("stderr.log")).unwrap();
        let child = p2psip()
            .args([
                "node",
                "--listen",
                "udp:127.0.0.1:0",
                "--open",
                "--domain",
                "example.com",
                "--log",
                "info,p2psip=debug",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut node = Node {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            info: serde_json::Value::Null,
        };
        node.info = node.wait_for_node_json();
        node
    }

    fn wait_for_node_json(&mut self) -> serde_json::Value {
        let path = self.data_dir.join("node.json");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return serde_json::from_str(&text).unwrap();
            }
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                panic!("node exited early with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "node.json did not appear within {PATIENCE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("stderr.log")).unwrap_or_default()
    }

    fn udp(&self) -> SocketAddr {
        self.info["listeners"][0]["address"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn peer_id(&self) -> String {
        self.info["peer_id"].as_str().unwrap().to_owned()
    }

    /// The first full overlay address, ready for `--bootstrap`.
    fn p2p_addr(&self) -> String {
        let addr = self.info["p2p_addrs"][0].as_str().unwrap().to_owned();
        assert!(
            addr.starts_with("/ip4/127.0.0.1/tcp/")
                && addr.ends_with(&format!("/p2p/{}", self.peer_id())),
            "{addr}"
        );
        addr
    }

    /// SIGTERM, then the exit status (SIGKILL after [`PATIENCE`]).
    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        wait_bounded(&mut child)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("p2psip did not exit within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command that must exit by itself.
fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Output is small; reading it after the exit cannot block the child on a full pipe.
    wait_bounded(&mut child);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lookup(aor: &str, bootstrap: &str) -> Output {
    run(p2psip().args(["lookup", aor, "--bootstrap", bootstrap]))
}

/// Sends `request` from `socket` to `to` and returns the first final response.
fn final_response(socket: &UdpSocket, to: SocketAddr, request: &str) -> String {
    socket.send_to(request.as_bytes(), to).unwrap();
    let mut buffer = [0u8; 65_535];
    loop {
        let (len, _) = socket
            .recv_from(&mut buffer)
            .expect("no response within the socket timeout");
        let response = text(&buffer[..len]);
        if !response.starts_with("SIP/2.0 1") {
            return response;
        }
    }
}

fn udp_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket
}

fn register(phone: &UdpSocket, node: SocketAddr, user: &str) -> String {
    let port = phone.local_addr().unwrap().port();
    let request = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-reg-{user};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@example.com>;tag=reg\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: reg-{user}@127.0.0.1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:{port}>\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    final_response(phone, node, &request)
}

fn message(from_port: u16, to_user: &str, attempt: usize) -> String {
    format!(
        "MESSAGE sip:{to_user}@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{from_port};branch=z9hG4bK-msg-{attempt};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:bob@example.com>;tag=bob\r\n\
         To: <sip:{to_user}@example.com>\r\n\
         Call-ID: msg-{attempt}@127.0.0.1\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: 5\r\n\r\n\
         hello"
    )
}

/// The 200 OK a phone sends for `request`: its Via, From, To, Call-ID and CSeq copied.
fn ok_for(request: &str) -> String {
    let copied: Vec<&str> = request
        .split("\r\n")
        .filter(|line| {
            let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
            matches!(name.as_str(), "via" | "from" | "to" | "call-id" | "cseq")
        })
        .collect();
    format!(
        "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
        copied.join("\r\n")
    )
}

#[test]
fn user_registered_at_one_node_is_found_and_reached_from_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Node::start(&dir.path().join("first"), &LOOPBACK_OVERLAY);
    let bootstrap = first.p2p_addr();
    let mut second = Node::start(
        &dir.path().join("second"),
        &[&LOOPBACK_OVERLAY[..], &["--bootstrap", &bootstrap]].concat(),
    );
    assert_ne!(first.peer_id(), second.peer_id());

    // Alice's phone registers at the second node.
    let phone = udp_socket();
    let response = register(&phone, second.udp(), "alice");
    assert!(response.starts_with("SIP/2.0 200 "), "{response}");

    // Publishing is asynchronous: ask until the record shows up, a bounded number of times.
    let mut found = None;
    for _ in 0..LOOKUP_ATTEMPTS {
        let output = lookup("alice@example.com", &bootstrap);
        if output.status.code() == Some(0) {
            found = Some(text(&output.stdout));
            break;
        }
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        std::thread::sleep(RETRY_PAUSE);
    }
    let record =
        found.unwrap_or_else(|| panic!("alice was never found; second node:\n{}", second.log()));
    assert!(
        record.starts_with("alice@example.com: 1 live binding(s)"),
        "{record}"
    );
    assert!(
        record.contains(&format!("serving peer {}", second.peer_id())),
        "{record}"
    );
    let phone_port = phone.local_addr().unwrap().port();
    assert!(
        record.contains(&format!("binding sip:alice@127.0.0.1:{phone_port} q=1 ")),
        "{record}"
    );

    // A user nobody registered is not found.
    let output = lookup("carol@example.com", &bootstrap);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("not found"));

    // Bob, at the first node, sends Alice a MESSAGE: it crosses the overlay to her phone,
    // and her 200 OK comes back the same way.
    let caller = udp_socket();
    let caller_port = caller.local_addr().unwrap().port();
    caller
        .send_to(message(caller_port, "alice", 1).as_bytes(), first.udp())
        .unwrap();
    let mut buffer = [0u8; 65_535];
    let (len, from) = phone.recv_from(&mut buffer).unwrap_or_else(|e| {
        panic!(
            "the MESSAGE did not reach the phone ({e}); first node:\n{}\nsecond node:\n{}",
            first.log(),
            second.log()
        )
    });
    let delivered = text(&buffer[..len]);
    assert!(
        delivered.starts_with("MESSAGE sip:alice@127.0.0.1:"),
        "{delivered}"
    );
    assert!(delivered.contains("SIP/2.0/P2P "), "{delivered}");
    assert!(delivered.ends_with("\r\n\r\nhello"), "{delivered}");
    phone.send_to(ok_for(&delivered).as_bytes(), from).unwrap();
    loop {
        let (len, _) = caller.recv_from(&mut buffer).unwrap();
        let response = text(&buffer[..len]);
        if response.starts_with("SIP/2.0 1") {
            continue;
        }
        assert!(response.starts_with("SIP/2.0 200 "), "{response}");
        assert!(response.contains("Call-ID: msg-1@127.0.0.1"), "{response}");
        break;
    }

    // `peers` through the first node lists it.
    let output = run(p2psip().args(["peers", "--bootstrap", &bootstrap]));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains(&format!("{} connected", first.peer_id())),
        "{}",
        text(&output.stdout)
    );

    // Stopping the second node withdraws Alice.
    let status = second.stop();
    assert!(status.success(), "exit {status}:\n{}", second.log());
    assert!(
        second.log().contains("registrations withdrawn"),
        "{}",
        second.log()
    );
    let mut withdrawn = false;
    for _ in 0..LOOKUP_ATTEMPTS {
        let output = lookup("alice@example.com", &bootstrap);
        if output.status.code() == Some(1) && text(&output.stdout).contains("withdrawn") {
            withdrawn = true;
            break;
        }
        std::thread::sleep(RETRY_PAUSE);
    }
    assert!(withdrawn, "alice's bindings were not withdrawn");

    let status = first.stop();
    assert!(status.success(), "exit {status}:\n{}", first.log());
}

#[test]
fn single_node_mode_has_no_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("solo");
    let mut node = Node::start(&data_dir, &["--no-overlay"]);
    assert!(node.info.get("peer_id").is_none(), "{}", node.info);
    assert!(node.info.get("p2p_addrs").is_none(), "{}", node.info);
    assert!(!data_dir.join("node.key").exists());
    // Nothing to bootstrap from: a usage error.
    let output = run(p2psip()
        .args(["lookup", "alice@example.com", "--data-dir"])
        .arg(&data_dir));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("no p2p_addrs"),
        "{}",
        text(&output.stderr)
    );
    let status = node.stop();
    assert!(status.success(), "exit {status}:\n{}", node.log());
}

#[test]
fn bad_overlay_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(p2psip()
        .args([
            "node",
            "--listen",
            "udp:127.0.0.1:0",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/4001",
            "--data-dir",
        ])
        .arg(dir.path()));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr)
            .contains("--bootstrap \"/ip4/127.0.0.1/tcp/4001\": must end in /p2p/<peer id>"),
        "{}",
        text(&output.stderr)
    );
    let output = run(p2psip().args(["lookup", "alice@example.com", "--bootstrap", "nonsense"]));
    assert_eq!(output.status.code(), Some(2));
    let output = run(p2psip().args(["lookup", "tel:+15551234", "--bootstrap", "nonsense"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("not an address-of-record"));
}
