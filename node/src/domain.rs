//! Domain authority on the command line and at node start-up.
//!
//! - `p2psip domain init <domain>`: creates the domain's authority key
//!   (`DATA_DIR/authority/<domain>.key` by default, never overwritten) and prints its
//!   public key, the DNS TXT record and the trust-anchor line for node configurations.
//! - `p2psip domain delegate <peer id> --domain <domain>`: signs a delegation of the domain
//!   to that node, appends it to a delegation file (`overlay/WIRE.md`, "Text forms") and
//!   prints it.
//! - `p2psip domain show-key`: prints what `init` printed, for an existing key.
//! - `p2psip domain publish`: signs the domain's authority record and puts it in the DHT
//!   through a short-lived overlay client ([`crate::client::publish_authority`]).
//! - [`load_delegations`]: a node's check of its `--delegation` files at start-up.

use crate::cli::{
    AuthorityKeyArgs, DomainCommand, DomainDelegateArgs, DomainInitArgs, DomainPublishArgs,
    DomainShowKeyArgs,
};
use crate::config::{self, AuthoritySettings, ConfigError, Environment};
use libp2p::identity::PublicKey;
use libp2p::PeerId;
use overlay::authority::{
    generate_authority_key, load_authority_key, public_key_to_text, read_delegation_file,
    save_authority_key, AuthorityFileError, AuthorityRecord, AuthorityTxt, Delegation,
    DelegationFileError, DelegationLine, TrustAnchors,
};
use overlay::key::canonical_domain;
use overlay::network::now_unix as unix_now;
use overlay::record::peer_public_key;
use overlay::validate::{AuthorityMode, DEFAULT_CLOCK_SKEW_SECS};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// Directory of authority keys and delegation files inside the data directory.
pub const AUTHORITY_DIR: &str = "authority";
/// Extension of authority key files made by `init`.
const KEY_EXTENSION: &str = "key";
/// Extension of the default delegation files made by `delegate`.
const DELEGATIONS_EXTENSION: &str = "delegations";
const SECONDS_PER_DAY: u64 = 24 * 60 * 60;

/// A failed subcommand: the exit status and the message for stderr.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    fn cannot(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }
}

/// Runs a `p2psip domain` subcommand.
pub fn run(command: &DomainCommand) -> ExitCode {
    let result = match command {
        DomainCommand::Init(args) => init(args),
        DomainCommand::Delegate(args) => delegate(args),
        DomainCommand::ShowKey(args) => show_key(args),
        DomainCommand::Publish(args) => {
            return match signed_authority_record(args) {
                Ok(record) => crate::client::publish_authority(&args.client, record),
                Err(Failure { code, message }) => {
                    eprintln!("p2psip: {message}");
                    ExitCode::from(code)
                }
            }
        }
    };
    match result {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(Failure { code, message }) => {
            eprintln!("p2psip: {message}");
            ExitCode::from(code)
        }
    }
}

fn data_dir(args: &AuthorityKeyArgs) -> PathBuf {
    args.data_dir
        .clone()
        .unwrap_or_else(|| config::default_data_dir(&Environment::from_process()))
}

fn domain_arg(what: &str, text: &str) -> Result<String, Failure> {
    canonical_domain(text).map_err(|e| Failure::usage(format!("{what} {text:?}: {e}")))
}

/// `--key`, else `DATA_DIR/authority/<domain>.key`.
fn key_path(args: &AuthorityKeyArgs, domain: &str) -> PathBuf {
    args.key.clone().unwrap_or_else(|| {
        data_dir(args)
            .join(AUTHORITY_DIR)
            .join(format!("{domain}.{KEY_EXTENSION}"))
    })
}

/// Loads an authority key; every problem is the user's to fix (exit status 2).
fn load_key(path: &Path, domain: Option<&str>) -> Result<libp2p::identity::Keypair, Failure> {
    load_authority_key(path).map_err(|error| {
        let missing = matches!(
            &error,
            AuthorityFileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound
        );
        let mut message = error.to_string();
        if missing {
            let _ = write!(
                message,
                " (create it with `p2psip domain init {}`)",
                domain.unwrap_or("<domain>")
            );
        }
        Failure::usage(message)
    })
}

/// What `init` and `show-key` print: the public key, the DNS TXT record and the
/// trust-anchor line (the last two need the domain).
fn describe_key(key: &PublicKey, domain: Option<&str>) -> String {
    let text = public_key_to_text(key);
    let txt = AuthorityTxt { key: key.clone() }.to_text();
    let mut out = String::new();
    let _ = writeln!(out, "public key: {text}");
    match domain {
        Some(domain) => {
            let _ = writeln!(out, "DNS TXT record: _p2psip.{domain}. IN TXT \"{txt}\"");
            let _ = writeln!(
                out,
                "trust anchor: {}",
                TrustAnchors::format_entry(domain, key)
            );
        }
        None => {
            let _ = writeln!(out, "DNS TXT record text: {txt}");
            let _ = writeln!(
                out,
                "trust anchor: <domain>={text} (give --domain to fill in the domain)"
            );
        }
    }
    out
}

/// Creates a directory and its parents, private (0700) where new.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// `p2psip domain init`.
fn init(args: &DomainInitArgs) -> Result<String, Failure> {
    let domain = domain_arg("domain", &args.domain)?;
    let path = key_path(&args.key, &domain);
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(Failure::usage(format!(
            "authority key file {} already exists; not overwriting it (its public key: \
             `p2psip domain show-key --key {} --domain {domain}`)",
            path.display(),
            path.display()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)
            .map_err(|e| Failure::cannot(format!("directory {}: {e}", parent.display())))?;
    }
    let keypair = generate_authority_key();
    save_authority_key(&path, &keypair).map_err(|e| Failure::cannot(e.to_string()))?;
    let mut out = format!(
        "authority key of {domain} written to {} (keep it secret, and a copy of it safe)\n",
        path.display()
    );
    out.push_str(&describe_key(&keypair.public(), Some(&domain)));
    Ok(out)
}

/// `p2psip domain show-key`.
fn show_key(args: &DomainShowKeyArgs) -> Result<String, Failure> {
    let domain = args
        .domain
        .as_deref()
        .map(|d| domain_arg("--domain", d))
        .transpose()?;
    let (path, domain) = match (&args.key.key, domain) {
        (Some(path), domain) => (path.clone(), domain),
        (None, Some(domain)) => (key_path(&args.key, &domain), Some(domain)),
        (None, None) => only_key(&data_dir(&args.key).join(AUTHORITY_DIR))?,
    };
    let keypair = load_key(&path, domain.as_deref())?;
    let mut out = format!("authority key file {}\n", path.display());
    out.push_str(&describe_key(&keypair.public(), domain.as_deref()));
    Ok(out)
}

/// `p2psip domain publish`, before any network work: the key file and domain, and the
/// authority record signed now.
fn signed_authority_record(args: &DomainPublishArgs) -> Result<AuthorityRecord, Failure> {
    let key_args = AuthorityKeyArgs {
        key: args.key.clone(),
        data_dir: args.client.data_dir.clone(),
    };
    let domain = args
        .domain
        .as_deref()
        .map(|d| domain_arg("--domain", d))
        .transpose()?;
    let (path, domain) = match (&key_args.key, domain) {
        (_, Some(domain)) => (key_path(&key_args, &domain), Some(domain)),
        (Some(path), None) => {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let domain = canonical_domain(stem).ok().filter(|d| d == stem);
            (path.clone(), domain)
        }
        (None, None) => only_key(&data_dir(&key_args).join(AUTHORITY_DIR))?,
    };
    let domain = domain.ok_or_else(|| {
        Failure::usage(format!(
            "which domain is {} for? Give --domain",
            path.display()
        ))
    })?;
    let keypair = load_key(&path, Some(&domain))?;
    AuthorityRecord::sign(&keypair, &domain, unix_now())
        .map_err(|e| Failure::cannot(format!("cannot sign the authority record: {e}")))
}

/// The only `<domain>.key` in `dir`, with its domain.
fn only_key(dir: &Path) -> Result<(PathBuf, Option<String>), Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Failure::usage(format!(
            "no --key or --domain given, and no authority keys in {}: {e}",
            dir.display()
        ))
    })?;
    let mut keys = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some(KEY_EXTENSION) {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if canonical_domain(stem).ok().as_deref() == Some(stem) {
            keys.push((path.clone(), stem.to_owned()));
        }
        // Bounded: a directory of many keys needs --domain anyway.
        if keys.len() > 16 {
            break;
        }
    }
    match keys.len() {
        1 => {
            let (path, domain) = keys.remove(0);
            Ok((path, Some(domain)))
        }
        0 => Err(Failure::usage(format!(
            "no --key or --domain given, and no authority key in {}",
            dir.display()
        ))),
        _ => {
            let mut domains: Vec<String> = keys.into_iter().map(|(_, d)| d).collect();
            domains.sort();
            Err(Failure::usage(format!(
                "no --key or --domain given, and {} holds keys of several domains ({}); \
                 choose one with --domain",
                dir.display(),
                domains.join(", ")
            )))
        }
    }
}

/// A node's peer id, which must hold an Ed25519 key (others' entries cannot be verified).
fn peer_id_arg(text: &str) -> Result<PeerId, Failure> {
    let peer = PeerId::from_str(text.trim())
        .map_err(|e| Failure::usage(format!("peer id {text:?}: not a peer id ({e})")))?;
    if peer_public_key(&peer).is_none() {
        return Err(Failure::usage(format!(
            "peer id {text:?}: not the id of an Ed25519 node key, so entries it signs \
             could not be verified"
        )));
    }
    Ok(peer)
}

/// `p2psip domain delegate`.
fn delegate(args: &DomainDelegateArgs) -> Result<String, Failure> {
    let peer = peer_id_arg(&args.peer_id)?;
    let domain = domain_arg("--domain", &args.domain)?;
    let key_file = key_path(&args.key, &domain);
    let keypair = load_key(&key_file, Some(&domain))?;
    let out = args.out.clone().unwrap_or_else(|| {
        data_dir(&args.key)
            .join(AUTHORITY_DIR)
            .join(format!("{peer}.{DELEGATIONS_EXTENSION}"))
    });
    // Checked before signing, so that nothing is written next to a file of another node.
    let existing = existing_delegations(&out, &peer)?;

    let now = unix_now();
    let not_after = now.saturating_add(args.days.saturating_mul(SECONDS_PER_DAY));
    let delegation = Delegation::issue(&keypair, &domain, peer, now, not_after)
        .map_err(|e| Failure::cannot(format!("cannot sign the delegation: {e}")))?;
    let text = delegation
        .to_text()
        .map_err(|e| Failure::cannot(format!("cannot encode the delegation: {e}")))?;

    let mut contents = existing;
    if !contents.is_empty() && !contents.ends_with('\n') {
        contents.push('\n');
    }
    let _ = writeln!(
        contents,
        "# {domain} delegated to {peer} by {}, valid from {now} until {not_after} (unix time)",
        public_key_to_text(&keypair.public())
    );
    let _ = writeln!(contents, "{text}");
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::cannot(format!("directory {}: {e}", parent.display())))?;
    }
    write_atomically(&out, contents.as_bytes())
        .map_err(|e| Failure::cannot(format!("delegation file {}: {e}", out.display())))?;
    eprintln!(
        "p2psip: delegation of {domain} to {peer} (valid for {} days) appended to {}",
        args.days,
        out.display()
    );
    Ok(format!("{text}\n"))
}

/// The text of an existing delegation file `path` (empty when there is none), after
/// checking that it parses and names `peer` only.
fn existing_delegations(path: &Path, peer: &PeerId) -> Result<String, Failure> {
    let lines = match read_delegation_file(path) {
        Ok(lines) => lines,
        Err(DelegationFileError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(String::new())
        }
        // A file of comments only may be appended to.
        Err(DelegationFileError::Empty { .. }) => Vec::new(),
        Err(error) => return Err(Failure::usage(format!("{error}; not appending to it"))),
    };
    if let Some(other) = lines.iter().find(|l| l.delegation.node != *peer) {
        return Err(Failure::usage(format!(
            "delegation file {}, line {}: holds a delegation for node {}, and a delegation \
             file is for one node only; choose another file with --out",
            path.display(),
            other.line,
            other.delegation.node
        )));
    }
    std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("delegation file {}: {e}", path.display())))
}

/// Writes `contents` to a temporary file beside `path` and renames it over `path`.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    let tmp = PathBuf::from(name);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

// ---------------------------------------------------------------------------------------
// Node start-up

/// Reads the node's delegation files and checks every delegation in them: it must name
/// `node` and, when its domain has trust anchors, be signed by one of them; its signature
/// must verify. Any of that failing is a configuration error naming the file and line.
/// Delegations that have expired at `now` are left out with a warning; the others are
/// returned (the overlay attaches the one valid at the time of each publication).
pub fn load_delegations(
    settings: &AuthoritySettings,
    node: &PeerId,
    now: u64,
) -> Result<Vec<Delegation>, ConfigError> {
    let mut kept = Vec::new();
    for path in &settings.delegation_files {
        let lines = read_delegation_file(path).map_err(|e| ConfigError(e.to_string()))?;
        for DelegationLine { line, delegation } in lines {
            let at = |reason: String| {
                ConfigError(format!(
                    "delegation file {}, line {line}: {reason}",
                    path.display()
                ))
            };
            let domain = delegation.domain.as_str();
            if delegation.node != *node {
                return Err(at(format!(
                    "the delegation of {domain} is for node {}, not for this node ({node})",
                    delegation.node
                )));
            }
            let anchored = settings.anchors.keys_for(domain);
            let authority = if anchored.is_empty() {
                &delegation.authority
            } else {
                anchored
                    .iter()
                    .find(|key| **key == delegation.authority)
                    .ok_or_else(|| {
                        at(format!(
                            "the delegation of {domain} is signed by {}, which is not a trust \
                             anchor of {domain}",
                            public_key_to_text(&delegation.authority)
                        ))
                    })?
            };
            // Checked as at its own start, so that the signature is checked whatever the
            // time; the time is looked at below.
            delegation
                .verify(authority, domain, node, delegation.not_before, 0)
                .map_err(|e| at(format!("the delegation of {domain}: {e}")))?;
            if now >= delegation.not_after {
                tracing::warn!(
                    file = %path.display(),
                    line,
                    domain,
                    not_after = delegation.not_after,
                    "delegation has expired; ignored"
                );
                continue;
            }
            if delegation.not_before > now.saturating_add(DEFAULT_CLOCK_SKEW_SECS) {
                tracing::warn!(
                    file = %path.display(),
                    line,
                    domain,
                    not_before = delegation.not_before,
                    "delegation is not valid yet; it is used from its start"
                );
            }
            if anchored.is_empty() {
                tracing::info!(
                    file = %path.display(),
                    line,
                    domain,
                    "no trust anchor for the delegation's domain: nodes count it only if \
                     they know its authority key"
                );
            }
            kept.push(delegation);
        }
    }
    Ok(kept)
}

/// Warns about served domains whose registrations the overlay will refuse: domains with
/// trust anchors (or any domain in closed mode) for which this node holds no delegation.
pub fn warn_about_unauthorised_domains(
    settings: &AuthoritySettings,
    delegations: &[Delegation],
    served_domains: &[String],
) {
    for served in served_domains {
        let Ok(domain) = canonical_domain(served) else {
            continue;
        };
        let anchored = !settings.anchors.keys_for(&domain).is_empty();
        let delegated = delegations.iter().any(|d| d.domain == domain);
        if !anchored && settings.mode == AuthorityMode::Closed {
            tracing::warn!(
                %domain,
                "authority mode is closed and this domain has no trust anchor: the overlay \
                 refuses its registrations"
            );
        } else if anchored && !delegated {
            tracing::warn!(
                %domain,
                "this domain has a trust anchor but this node holds no delegation for it: \
                 the overlay refuses the registrations it publishes"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    fn settings(anchors: &[(&str, &Keypair)], files: Vec<PathBuf>) -> AuthoritySettings {
        let mut trust = TrustAnchors::new();
        for (domain, key) in anchors {
            trust.add(domain, key.public()).unwrap();
        }
        AuthoritySettings {
            mode: AuthorityMode::Open,
            anchors: trust,
            delegation_files: files,
            dns_servers: Vec::new(),
        }
    }

    fn write_file(dir: &Path, name: &str, delegations: &[&Delegation]) -> PathBuf {
        let path = dir.join(name);
        let text: String = delegations
            .iter()
            .map(|d| d.to_text().unwrap() + "\n")
            .collect();
        std::fs::write(&path, format!("# test\n{text}")).unwrap();
        path
    }

    #[test]
    fn delegations_are_checked_against_node_and_anchors() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_700_000_000;
        let authority = Keypair::generate_ed25519();
        let stranger = Keypair::generate_ed25519();
        let node = Keypair::generate_ed25519().public().to_peer_id();
        let other = Keypair::generate_ed25519().public().to_peer_id();
        let issue = |key: &Keypair, domain: &str, peer: PeerId, from: u64, until: u64| {
            Delegation::issue(key, domain, peer, from, until).unwrap()
        };
        let good = issue(&authority, "example.com", node, now - 10, now + 100);
        let expired = issue(&authority, "example.com", node, now - 100, now - 10);
        let unanchored = issue(&stranger, "example.org", node, now, now + 100);

        let path = write_file(dir.path(), "ok", &[&good, &expired, &unanchored]);
        let anchors = [("example.com", &authority)];
        let kept = load_delegations(&settings(&anchors, vec![path]), &node, now).unwrap();
        assert_eq!(kept, [good.clone(), unanchored]);

        let path = write_file(
            dir.path(),
            "other-node",
            &[
                &good,
                &issue(&authority, "example.com", other, now, now + 1),
            ],
        );
        let error = load_delegations(&settings(&anchors, vec![path]), &node, now)
            .unwrap_err()
            .0;
        assert!(error.contains("other-node, line 3"), "{error}");
        assert!(error.contains(&format!("for node {other}")), "{error}");

        let forged = issue(&stranger, "example.com", node, now, now + 1);
        let path = write_file(dir.path(), "forged", &[&forged]);
        let error = load_delegations(&settings(&anchors, vec![path]), &node, now)
            .unwrap_err()
            .0;
        assert!(error.contains("forged, line 2"), "{error}");
        assert!(
            error.contains("not a trust anchor of example.com"),
            "{error}"
        );

        let mut tampered = good.clone();
        tampered.not_after += 1;
        let path = write_file(dir.path(), "tampered", &[&tampered]);
        let error = load_delegations(&settings(&anchors, vec![path]), &node, now)
            .unwrap_err()
            .0;
        assert!(error.contains("tampered, line 2"), "{error}");
        assert!(error.contains("signature"), "{error}");

        let missing = dir.path().join("missing");
        let error = load_delegations(&settings(&anchors, vec![missing]), &node, now)
            .unwrap_err()
            .0;
        assert!(error.contains("delegation file"), "{error}");
        assert!(error.contains("missing"), "{error}");
    }

    #[test]
    fn peer_ids_must_hold_ed25519_keys() {
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        assert_eq!(peer_id_arg(&peer.to_string()).ok(), Some(peer));
        assert!(peer_id_arg("12D3KooW").is_err());
        // A hashed (sha2-256) id, as RSA keys have.
        let hashed = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
        let Err(failure) = peer_id_arg(hashed) else {
            panic!("accepted a hashed peer id");
        };
        assert_eq!(failure.code, EXIT_USAGE);
        assert!(failure.message.contains("Ed25519"), "{}", failure.message);
    }
}
