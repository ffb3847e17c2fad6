//! Runs the `p2psip` binary: configuration errors and a start/stop cycle.

// A test binary: failing loudly on an unexpected error is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};

use common::{p2psip, run, stderr, wait_bounded, wait_for_node_json, PATIENCE};

#[test]
fn unknown_config_key_exits_2_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("x.toml");
    std::fs::write(&config, "open = true\nlissen = [\"udp:127.0.0.1:0\"]\n").unwrap();
    let output = run(p2psip()
        .arg("node")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path()));
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains("lissen"), "{message}");
    assert!(
        message.contains(&format!("config {}", config.display())),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn bad_users_file_exits_2_naming_entry() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("u.toml");
    std::fs::write(
        &users,
        "[[user]]\nusername = \"alice\"\ndomain = \"d\"\npassword = \"p\"\n\
         [[user]]\nusername = \"bob\"\ndomain = \"d\"\n",
    )
    .unwrap();
    let output = run(p2psip()
        .args(["node", "--listen", "udp:127.0.0.1:0", "--users"])
        .arg(&users)
        .arg("--data-dir")
        .arg(dir.path()));
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("user #2 (\"bob\"): needs password, ha1_md5 or ha1_sha256"),
        "{message}"
    );
    assert!(message.contains("u.toml"), "{message}");
}

#[test]
fn bad_listen_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(p2psip()
        .args(["node", "--listen", "udp:1.2.3:5060", "--data-dir"])
        .arg(dir.path()));
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("--listen \"udp:1.2.3:5060\": bad address"),
        "{message}"
    );
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let output = run(p2psip().arg("frobnicate"));
    assert_eq!(output.status.code(), Some(2));
}

fn listener(info: &serde_json::Value, transport: &str) -> SocketAddr {
    info["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["transport"] == transport)
        .and_then(|l| l["address"].as_str())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn node_starts_publishes_ports_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut child = p2psip()
        .args([
            "node",
            "--listen",
            "udp:127.0.0.1:0",
            "--listen",
            "tcp:127.0.0.1:0",
            "--open",
            "--no-overlay",
            "--log",
            "info",
            "--data-dir",
        ])
        .arg(&data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let info = wait_for_node_json(&data_dir, &mut child);
    assert_eq!(info["pid"], child.id());
    let udp = listener(&info, "udp");
    let tcp = listener(&info, "tcp");
    assert_ne!(udp.port(), 0);
    assert_ne!(tcp.port(), 0);

    // The sockets are live: a TCP connection is accepted, a datagram is taken.
    let stream = TcpStream::connect_timeout(&tcp, PATIENCE).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(b"\r\n\r\n", udp).unwrap();

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_bounded(&mut child);
    drop(stream);
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "exit {status}: {log}");
    assert!(
        log.contains("listening transport=udp addr=127.0.0.1:"),
        "{log}"
    );
    assert!(
        log.contains("listening transport=tcp addr=127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("node ready"), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
}

#[test]
fn tls_listener_generates_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = p2psip()
        .args([
            "node",
            "--listen",
            "tls:127.0.0.1:0",
            "--no-overlay",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let info = wait_for_node_json(dir.path(), &mut child);
    assert_ne!(listener(&info, "tls").port(), 0);
    assert!(dir.path().join("tls/cert.pem").exists());
    assert!(dir.path().join("tls/key.pem").exists());
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(wait_bounded(&mut child).success());
}
