//! Helpers of the domain-authority tests: `p2psip domain` runs, registrations at mesh
//! nodes, and waits for the validators' refusals to show in a node's counters and logs.

use crate::mesh::{run_p2psip, wait_until_found, CommandOutcome, MeshNode, MeshNodeConfig};
use crate::raw_udp::{Request, UdpClient};
use crate::{test_dir, TestDir, DOMAIN};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bound on waiting for a refusal or a log line to show in a node's counters (node.json is
/// rewritten about once a second) or logs.
pub const REFUSAL_LIMIT: Duration = Duration::from_secs(20);
/// Bound on a SIP transaction with a node.
pub const REPLY_LIMIT: Duration = Duration::from_secs(10);
/// Bound on waiting for a registration to be found through the DHT, and the lookups tried.
pub const PUBLISH_LIMIT: Duration = Duration::from_secs(20);
pub const PUBLISH_ATTEMPTS: usize = 30;

/// Runs `p2psip domain <args>` within `limit`, which must succeed; its stdout.
pub fn domain(args: &[&str], limit: Duration) -> Result<String> {
    let args: Vec<String> = std::iter::once("domain")
        .chain(args.iter().copied())
        .map(str::to_string)
        .collect();
    let outcome = run_p2psip(&args, limit)?;
    ensure!(outcome.success(), "{outcome}");
    Ok(outcome.stdout)
}

/// `p2psip domain init example.com --data-dir <authority_dir>` within `limit`: the
/// trust anchor it prints (the text after `trust anchor: `) and its whole stdout.
pub fn init_domain(authority_dir: &Path, limit: Duration) -> Result<(String, String)> {
    let dir = authority_dir.display().to_string();
    let out = domain(&["init", DOMAIN, "--data-dir", &dir], limit)?;
    let anchor = out
        .lines()
        .find_map(|line| line.strip_prefix("trust anchor: "))
        .with_context(|| format!("no trust anchor line in:\n{out}"))?
        .to_string();
    Ok((anchor, out))
}

/// A node whose key is made before it starts, so that [`DOMAIN`] can be delegated to it
/// (`p2psip domain delegate`) by the authority in an `authority_dir`.
pub struct DelegatedNode {
    /// Holds the data directory and the delegation file.
    _dir: TestDir,
    pub data_dir: PathBuf,
    pub peer_id: String,
    pub delegation_file: PathBuf,
    /// The delegation line `p2psip domain delegate` printed.
    pub printed: String,
}

impl DelegatedNode {
    /// Makes the key in a fresh directory named with `dir_prefix` and the delegation, the
    /// `p2psip domain delegate` run bounded by `limit`.
    pub fn create(authority_dir: &Path, dir_prefix: &str, limit: Duration) -> Result<Self> {
        let dir = test_dir(dir_prefix)?;
        let data_dir = dir.path().join("data");
        let peer_id = overlay::network::load_or_create_keypair(&data_dir)?
            .public()
            .to_peer_id()
            .to_string();
        let delegation_file = dir.path().join("node.delegations");
        let printed = domain(
            &[
                "delegate",
                &peer_id,
                "--domain",
                DOMAIN,
                "--data-dir",
                &authority_dir.display().to_string(),
                "--out",
                &delegation_file.display().to_string(),
            ],
            limit,
        )?;
        Ok(DelegatedNode {
            _dir: dir,
            data_dir,
            peer_id,
            delegation_file,
            printed,
        })
    }

    /// `config` with this node's data directory and delegation.
    pub fn configure(&self, config: MeshNodeConfig) -> MeshNodeConfig {
        MeshNodeConfig {
            delegations: vec![self.delegation_file.clone()],
            data_dir: Some(self.data_dir.clone()),
            ..config
        }
    }
}

/// `p2psip lookup <aor> --bootstrap <via>`, with `--trust-anchor <anchor>` when given, in a
/// fresh data directory, within `limit`.
pub fn lookup_fresh(
    aor: &str,
    via: &MeshNode,
    anchor: Option<&str>,
    limit: Duration,
) -> Result<CommandOutcome> {
    let data = test_dir("p2psip-lookup-")?;
    let mut args = vec![
        "lookup".to_string(),
        aor.to_string(),
        "--bootstrap".to_string(),
        via.p2p_addr(),
        "--data-dir".to_string(),
        data.path().display().to_string(),
    ];
    if let Some(anchor) = anchor {
        args.push("--trust-anchor".to_string());
        args.push(anchor.to_string());
    }
    run_p2psip(&args, limit)
}

/// A REGISTER of `aor` at `node` with `contact` for `expires` seconds, which must get 200.
pub fn register(node: &MeshNode, aor: &str, contact: &str, expires: u32) -> Result<()> {
    let client = UdpClient::new(node.sip_addr())?;
    let to = format!("<sip:{aor}>");
    let request = Request::new("REGISTER", &format!("sip:{DOMAIN}"), &client)
        .set("From", &format!("{to};tag=reg"))
        .set("To", &to)
        .with("Contact", &format!("<{contact}>"))
        .with("Expires", &expires.to_string());
    let response = client.expect_response(&request, REPLY_LIMIT)?;
    ensure!(
        response.status == 200,
        "REGISTER of {aor} -> {contact} (expires {expires}) at {}: expected 200, got:\n{}",
        node.label(),
        response.raw
    );
    Ok(())
}

/// Waits (bounded) until `node` has counted at least `at_least` unauthorised values; the
/// count.
pub fn wait_for_unauthorised(node: &MeshNode, at_least: u64) -> Result<u64> {
    let deadline = Instant::now() + REFUSAL_LIMIT;
    loop {
        let count = node.refusals("unauthorised")?;
        if count >= at_least {
            return Ok(count);
        }
        if Instant::now() >= deadline {
            bail!(
                "{} counted {count} unauthorised values, not {at_least}, within \
                 {REFUSAL_LIMIT:?}:\n{}",
                node.label(),
                node.node_json()?
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (bounded) until `node`'s stderr has a line containing every one of `needles`.
pub fn wait_for_log(node: &MeshNode, needles: &[&str]) -> Result<()> {
    let deadline = Instant::now() + REFUSAL_LIMIT;
    loop {
        if node
            .stderr_text()
            .lines()
            .any(|line| needles.iter().all(|n| line.contains(n)))
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} logged no line with {needles:?} within {REFUSAL_LIMIT:?}",
                node.label()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The delegated `owner` registers `aor` with `contact`, found through `via`; then `rogue`,
/// which has no delegation, registers `aor` with `rogue_contact`: its REGISTER is answered,
/// its publication refused by its own validator (which knows the domain's key).
pub fn register_delegated_then_rogue(
    owner: &MeshNode,
    rogue: &MeshNode,
    via: &MeshNode,
    aor: &str,
    contact: &str,
    rogue_contact: &str,
) -> Result<()> {
    register(owner, aor, contact, 600)?;
    let found = wait_until_found(aor, &[via.p2p_addr()], PUBLISH_LIMIT, PUBLISH_ATTEMPTS)?;
    ensure!(
        found.stdout.contains(owner.peer_id()) && found.stdout.contains(contact),
        "{aor}'s record does not hold {}'s binding:\n{found}",
        owner.label()
    );
    register(rogue, aor, rogue_contact, 600)?;
    wait_for_unauthorised(rogue, 1)?;
    wait_for_log(
        rogue,
        &[
            "registration not published",
            "refused by the local validator",
            "unauthorised",
        ],
    )
}

/// The output of a lookup of `aor` holds `owner`'s entry alone, with the one binding
/// `contact`, delegated by the domain authority, and none of `rogues`.
pub fn expect_only_entry(
    outcome: &CommandOutcome,
    aor: &str,
    owner: &MeshNode,
    contact: &str,
    rogues: &[&str],
) -> Result<()> {
    ensure!(outcome.success(), "{aor} was not found");
    let out = &outcome.stdout;
    ensure!(
        out.starts_with(&format!("{aor}: 1 live binding(s) from 1 node entry\n")),
        "not exactly one entry with one binding"
    );
    ensure!(out.contains(owner.peer_id()), "node 1's entry is missing");
    ensure!(
        out.contains(&format!("binding {contact} ")),
        "the original contact is missing"
    );
    ensure!(
        out.contains("delegated by the domain authority"),
        "node 1's entry carries no delegation"
    );
    for rogue in rogues {
        ensure!(!out.contains(rogue), "{rogue} appears in the record");
    }
    Ok(())
}
