//! `p2psip domain init / delegate / show-key` and the node's start-up checks of trust
//! anchors and delegation files, run through the binary.

// A test binary: failing loudly on an unexpected error is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::{p2psip, run, stderr, stdout, wait_bounded, wait_for_node_json};

/// `p2psip domain <args> --data-dir <data_dir>`.
fn domain(data_dir: &Path, args: &[&str]) -> Output {
    run(p2psip()
        .arg("domain")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir))
}

/// The value of the line of `text` starting with `prefix`.
fn line_value<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

/// Creates a domain key and returns its trust-anchor line.
fn init_domain(data_dir: &Path, domain_name: &str) -> String {
    let output = domain(data_dir, &["init", domain_name]);
    assert!(output.status.success(), "{}", stderr(&output));
    line_value(&stdout(&output), "trust anchor: ").to_string()
}

/// A node key in `data_dir` (as the node creates it) and its peer id.
fn node_peer_id(data_dir: &Path) -> String {
    overlay::network::load_or_create_keypair(data_dir)
        .unwrap()
        .public()
        .to_peer_id()
        .to_string()
}

#[test]
fn init_prints_key_txt_and_anchor_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let output = domain(dir.path(), &["init", "Example.COM"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    let key_file = dir.path().join("authority/example.com.key");
    assert!(text.contains(&key_file.display().to_string()), "{text}");
    let key = line_value(&text, "public key: ").to_string();
    assert_eq!(
        line_value(&text, "DNS TXT record: "),
        format!("_p2psip.example.com. IN TXT \"v=p2psip1; k={key}\"")
    );
    assert_eq!(
        line_value(&text, "trust anchor: "),
        format!("example.com={key}")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let original = std::fs::read(&key_file).unwrap();

    // A second init of the same domain, or onto an explicit existing file, is refused.
    let output = domain(dir.path(), &["init", "example.com"]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains("already exists"), "{message}");
    assert!(
        message.contains(&key_file.display().to_string()),
        "{message}"
    );
    let explicit = key_file.display().to_string();
    let output = domain(dir.path(), &["init", "other.example", "--key", &explicit]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(std::fs::read(&key_file).unwrap(), original);

    // show-key finds the only key and prints the same lines.
    let output = domain(dir.path(), &["show-key"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        line_value(&stdout(&output), "trust anchor: "),
        format!("example.com={key}")
    );

    let output = domain(dir.path(), &["init", "bad domain"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("\"bad domain\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn delegate_refuses_missing_keys_bad_peer_ids_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let peer = node_peer_id(&dir.path().join("node"));

    // No key for the domain yet.
    let output = domain(dir.path(), &["delegate", &peer, "--domain", "example.com"]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains("authority/example.com.key"), "{message}");
    assert!(
        message.contains("p2psip domain init example.com"),
        "{message}"
    );
    let output = domain(dir.path(), &["show-key", "--domain", "example.com"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));

    init_domain(dir.path(), "example.com");
    for bad in [
        "12D3KooWnot",
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
        "",
    ] {
        let output = domain(dir.path(), &["delegate", bad, "--domain", "example.com"]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{bad}: {message}");
        assert!(
            message.contains(&format!("peer id {bad:?}")),
            "{bad}: {message}"
        );
    }
    let output = domain(
        dir.path(),
        &["delegate", &peer, "--domain", "example.com", "--days", "0"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--days"), "{}", stderr(&output));

    // A good delegation goes to the default file and to stdout.
    let output = domain(dir.path(), &["delegate", &peer, "--domain", "example.com"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output).trim().to_string();
    let file = dir.path().join(format!("authority/{peer}.delegations"));
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.lines().any(|line| line == printed), "{written}");

    // That file belongs to that node: a delegation for another one is not appended.
    let other = node_peer_id(&dir.path().join("other"));
    let out = file.display().to_string();
    let output = domain(
        dir.path(),
        &["delegate", &other, "--domain", "example.com", "--out", &out],
    );
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains(&out), "{message}");
    assert!(message.contains("one node"), "{message}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
}

/// Starts `p2psip node` on loopback with `extra` arguments.
fn start_node(data_dir: &Path, extra: &[String]) -> Child {
    p2psip()
        .args([
            "node",
            "--listen",
            "udp:127.0.0.1:0",
            "--open",
            "--domain",
            "example.com",
            "--no-mdns",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn delegate_to(authority_dir: &Path, peer: &str, out: &Path) {
    let output = domain(
        authority_dir,
        &[
            "delegate",
            peer,
            "--domain",
            "example.com",
            "--out",
            &out.display().to_string(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn node_refuses_delegations_for_other_nodes_or_from_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let anchor = init_domain(dir.path(), "example.com");
    let rogue_dir = dir.path().join("rogue-authority");
    init_domain(&rogue_dir, "example.com");
    let node_dir = dir.path().join("node");
    node_peer_id(&node_dir);
    let other = node_peer_id(&dir.path().join("other"));

    let for_other = dir.path().join("other.delegations");
    delegate_to(dir.path(), &other, &for_other);
    let unknown_key = dir.path().join("unknown-key.delegations");
    delegate_to(&rogue_dir, &node_peer_id(&node_dir), &unknown_key);
    let garbage = dir.path().join("garbage.delegations");
    std::fs::write(&garbage, "# comment\nnot a delegation\n").unwrap();

    for (file, expected) in [
        (
            &for_other,
            format!("is for node {other}, not for this node"),
        ),
        (
            &unknown_key,
            "which is not a trust anchor of example.com".to_string(),
        ),
        (&garbage, "line 2".to_string()),
    ] {
        let args = [
            "--trust-anchor".to_string(),
            anchor.clone(),
            "--delegation".to_string(),
            file.display().to_string(),
        ];
        let mut child = start_node(&node_dir, &args);
        let status = wait_bounded(&mut child);
        let mut message = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut message)
            .unwrap();
        assert_eq!(status.code(), Some(2), "{message}");
        assert!(
            message.contains(&format!("delegation file {}", file.display())),
            "{message}"
        );
        assert!(message.contains(&expected), "{message}");
    }

    let mut child = start_node(
        &node_dir,
        &["--trust-anchor".to_string(), "example.com=xyz".to_string()],
    );
    let status = wait_bounded(&mut child);
    let mut message = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut message)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{message}");
    assert!(
        message.contains("--trust-anchor \"example.com=xyz\""),
        "{message}"
    );
}

#[test]
fn node_with_its_delegation_starts_and_reports_validation_counters() {
    let dir = tempfile::tempdir().unwrap();
    let anchor = init_domain(dir.path(), "example.com");
    let node_dir = dir.path().join("node");
    let peer = node_peer_id(&node_dir);
    let file = dir.path().join("node.delegations");
    delegate_to(dir.path(), &peer, &file);

    let args = [
        "--trust-anchor".to_string(),
        anchor,
        "--delegation".to_string(),
        file.display().to_string(),
        "--authority-mode".to_string(),
        "closed".to_string(),
    ];
    let mut child = start_node(&node_dir, &args);
    let info = wait_for_node_json(&node_dir, &mut child);
    assert_eq!(info["peer_id"], peer.as_str());
    assert_eq!(info["validation"]["refused_total"], 0, "{info}");
    assert_eq!(info["validation"]["refused"]["unauthorised"], 0, "{info}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_bounded(&mut child);
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "exit {status}: {log}");
    assert!(log.contains("authority_mode=Closed"), "{log}");
    assert!(!log.contains("holds no delegation"), "{log}");
}
