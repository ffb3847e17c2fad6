//! `p2psip lookup`, `p2psip peers` and the network part of `p2psip domain publish`: a
//! short-lived overlay client with an ephemeral
//! identity, a DHT client (it stores nothing for others and listens nowhere), bootstrapped
//! from `--bootstrap` or from the local node's `node.json`. Everything is bounded by
//! `--timeout`.
//!
//! `lookup --repeat N` (N > 1) is a latency probe: after joining once it performs N lookups
//! one after the other and prints how long they took (min, median, p90, p99, max) and how
//! many found live bindings, instead of the record.

use crate::cli::{ClientArgs, LookupArgs};
use crate::config::{self, Environment};
use crate::node_info;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use overlay::authority::{public_key_to_text, AuthorityError, AuthorityRecord, TrustAnchors};
use overlay::key::Aor;
use overlay::network::now_unix as unix_now;
use overlay::network::{
    DhtMode, LookupAnswer, LookupError, Overlay, OverlayConfig, PeerStatus, PublishError,
    PublishReport,
};
use overlay::record::{NodeEntry, RegistrationRecord};
use overlay::validate::{AuthorityMode, RecordValidator};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::Instant;

const EXIT_FOUND: u8 = 0;
const EXIT_NOT_FOUND: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// Longest `--timeout` accepted.
const MAX_TIMEOUT_SECS: u64 = 3600;
/// How often the routing table is looked at while waiting for it.
const POLL: Duration = Duration::from_millis(100);
/// `peers` prints once the routing table has not changed for this long.
const SETTLE: Duration = Duration::from_secs(1);
/// Most lookups one `lookup --repeat` performs.
const MAX_REPEAT: u32 = 10_000;
/// Part of `--timeout` kept back by `lookup --repeat` to report what it measured: the
/// lookups stop this long before the overall deadline.
const REPORT_MARGIN: Duration = Duration::from_millis(500);
/// Failed lookups of a `--repeat` run described on stderr; the rest are only counted.
const FAILURES_SHOWN: usize = 3;

/// What both subcommands need, validated.
struct Client {
    bootstrap: Vec<Multiaddr>,
    mdns: bool,
    anchors: TrustAnchors,
    timeout: Duration,
}

/// A failure before any network work: exit status 2.
struct UsageError(String);

fn prepare(args: &ClientArgs) -> Result<Client, UsageError> {
    if !(1..=MAX_TIMEOUT_SECS).contains(&args.timeout) {
        return Err(UsageError(format!(
            "--timeout {}: must be between 1 and {MAX_TIMEOUT_SECS} seconds",
            args.timeout
        )));
    }
    let mut anchors = TrustAnchors::new();
    for value in &args.trust_anchor {
        let bad = |error: AuthorityError| UsageError(format!("--trust-anchor {value:?}: {error}"));
        let (domain, key) = TrustAnchors::parse_entry(value).map_err(bad)?;
        anchors.add(&domain, key).map_err(bad)?;
    }
    let mut bootstrap = Vec::with_capacity(args.bootstrap.len());
    for value in &args.bootstrap {
        let address = config::parse_bootstrap(value)
            .map_err(|reason| UsageError(format!("--bootstrap {value:?}: {reason}")))?;
        bootstrap.push(address);
    }
    if bootstrap.is_empty() {
        let data_dir = args
            .data_dir
            .clone()
            .unwrap_or_else(|| config::default_data_dir(&Environment::from_process()));
        match node_info::read_p2p_addrs(&data_dir) {
            Ok(values) => {
                for value in values {
                    let address = config::parse_bootstrap(&value).map_err(|reason| {
                        UsageError(format!(
                            "{}: p2p_addrs {value:?}: {reason}",
                            data_dir.join(node_info::FILE_NAME).display()
                        ))
                    })?;
                    bootstrap.push(address);
                }
            }
            // With mDNS on, nodes of the local network may still be found.
            Err(_) if args.mdns => {}
            Err(error) => {
                return Err(UsageError(format!(
                    "no --bootstrap given, and no local node to ask: {error}"
                )))
            }
        }
    }
    Ok(Client {
        bootstrap,
        mdns: args.mdns,
        anchors,
        timeout: Duration::from_secs(args.timeout),
    })
}

fn init_logging(args: &ClientArgs) {
    let filter = args
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "warn".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Checks `args`, starts the overlay client on a fresh runtime, waits until it reaches a
/// node, and runs `work`; all of it bounded by the client's timeout.
fn run<F, Fut>(args: &ClientArgs, work: F) -> ExitCode
where
    F: FnOnce(Overlay, Instant) -> Fut,
    Fut: std::future::Future<Output = u8>,
{
    let client = match prepare(args) {
        Ok(client) => client,
        Err(UsageError(message)) => {
            eprintln!("p2psip: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(args);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("p2psip: cannot start runtime: {error}");
            return ExitCode::from(EXIT_NOT_FOUND);
        }
    };
    let timeout = client.timeout;
    let code = runtime.block_on(async move {
        let deadline = Instant::now() + timeout;
        let mut config = OverlayConfig::new(Keypair::generate_ed25519());
        config.listen = Vec::new();
        config.bootstrap = client.bootstrap;
        config.mdns = client.mdns;
        config.dht_mode = DhtMode::Client;
        // What this client puts (an authority record) goes to every closest node it knows.
        config.write_quorum = config.replication_factor;
        // Validate what comes back as the nodes do, with the anchors given.
        config.validator = RecordValidator::new(AuthorityMode::Open, client.anchors);
        // Leaves time to print partial answers before the overall bound.
        config.lookup_timeout = timeout
            .saturating_sub(Duration::from_secs(3))
            .max(Duration::from_secs(1));
        let overlay = match tokio::time::timeout_at(deadline, Overlay::start(config)).await {
            Ok(Ok((overlay, _events))) => overlay,
            Ok(Err(error)) => {
                eprintln!("p2psip: cannot start the overlay client: {error}");
                return EXIT_NOT_FOUND;
            }
            Err(_) => {
                eprintln!("p2psip: the overlay client did not start within {timeout:?}");
                return EXIT_NOT_FOUND;
            }
        };
        if !wait_for_connection(&overlay, deadline).await {
            eprintln!("p2psip: no overlay node could be reached");
            overlay.shutdown().await;
            return EXIT_NOT_FOUND;
        }
        let code = match tokio::time::timeout_at(deadline, work(overlay.clone(), deadline)).await {
            Ok(code) => code,
            Err(_) => {
                eprintln!("p2psip: no answer within {timeout:?}");
                EXIT_NOT_FOUND
            }
        };
        overlay.shutdown().await;
        code
    });
    // The overlay's tasks are stopped; anything left is not waited for.
    runtime.shutdown_timeout(Duration::from_millis(200));
    ExitCode::from(code)
}

/// `p2psip lookup`.
pub fn lookup(args: &LookupArgs) -> ExitCode {
    let aor = match Aor::parse(&args.aor) {
        Ok(aor) => aor,
        Err(error) => {
            eprintln!("p2psip: {:?}: not an address-of-record: {error}", args.aor);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if !(1..=MAX_REPEAT).contains(&args.repeat) {
        eprintln!(
            "p2psip: --repeat {}: must be between 1 and {MAX_REPEAT}",
            args.repeat
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let repeat = args.repeat;
    run(&args.client, move |overlay, deadline| async move {
        if repeat > 1 {
            return lookup_repeatedly(&overlay, &aor, repeat, deadline).await;
        }
        match overlay.lookup_with_sources(aor.clone()).await {
            Ok(LookupAnswer {
                record: Some(record),
                answered_by,
                ..
            }) => {
                let now = unix_now();
                print!("{}", describe_record(&record, now));
                eprintln!("answered by: {}", describe_sources(&answered_by));
                if record.live_bindings(now).is_empty() {
                    EXIT_NOT_FOUND
                } else {
                    EXIT_FOUND
                }
            }
            Ok(LookupAnswer { record: None, .. }) => {
                println!("{aor}: not found");
                EXIT_NOT_FOUND
            }
            Err(LookupError::Timeout) => {
                eprintln!("p2psip: {aor}: lookup timed out");
                EXIT_NOT_FOUND
            }
            Err(error) => {
                eprintln!("p2psip: {aor}: lookup failed: {error}");
                EXIT_NOT_FOUND
            }
        }
    })
}

/// `p2psip domain publish`, once `record` is signed: joins the overlay, waits for the
/// routing table to settle, and puts the record (the client first fetches the domain's
/// current authority record, so a domain already held by another key is refused here).
/// Exit status 0 when at least one node took the put, 1 otherwise, 2 for usage errors.
pub fn publish_authority(args: &ClientArgs, record: AuthorityRecord) -> ExitCode {
    run(args, move |overlay, deadline| async move {
        let half_time = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
        settled_peers(&overlay, half_time).await;
        let domain = record.domain.clone();
        let key = public_key_to_text(&record.authority);
        match overlay.publish_authority(record).await {
            Ok(report) if report.remote_copies > 0 => {
                print!("{}", describe_authority_publish(&domain, &key, &report));
                EXIT_FOUND
            }
            Ok(_) => {
                eprintln!("p2psip: {domain}: no overlay node took the authority record");
                EXIT_NOT_FOUND
            }
            Err(PublishError::Refused(refusal)) => {
                eprintln!("p2psip: {domain}: authority record refused: {refusal}");
                EXIT_NOT_FOUND
            }
            Err(error) => {
                eprintln!("p2psip: {domain}: publishing the authority record failed: {error}");
                EXIT_NOT_FOUND
            }
        }
    })
}

fn describe_authority_publish(domain: &str, key: &str, report: &PublishReport) -> String {
    format!(
        "{domain}: authority key {key} stored by {} node(s){}\n",
        report.remote_copies,
        if report.quorum_met {
            ""
        } else {
            " (fewer than the write quorum)"
        }
    )
}

/// The routing table once it has not changed for [`SETTLE`] (the bootstrap query fills it
/// over a few round trips), or as it is at `give_up`.
async fn settled_peers(overlay: &Overlay, give_up: Instant) -> Vec<PeerStatus> {
    let mut table = current_peers(overlay).await;
    let mut stable_since = Instant::now();
    while Instant::now() < give_up && stable_since.elapsed() < SETTLE {
        tokio::time::sleep(POLL).await;
        let now = current_peers(overlay).await;
        if now != table {
            table = now;
            stable_since = Instant::now();
        }
    }
    table
}

/// What `lookup --repeat` measured.
#[derive(Debug, Default)]
struct RepeatStats {
    /// Lookups asked for.
    requested: u32,
    /// Time of every lookup that ended (with any answer, or an error).
    latencies: Vec<Duration>,
    /// Lookups that found live bindings.
    found: usize,
    /// Lookups that found no record, or one without live bindings.
    not_found: usize,
    /// Lookups that ended in an error (a timeout included).
    failed: usize,
    /// Wall time of all the lookups.
    elapsed: Duration,
    /// The lookups were cut short by `--timeout`.
    cut_short: bool,
}

/// `lookup --repeat`: `repeat` lookups of `aor`, one at a time, stopping early (and saying so)
/// [`REPORT_MARGIN`] before `deadline`.
async fn lookup_repeatedly(overlay: &Overlay, aor: &Aor, repeat: u32, deadline: Instant) -> u8 {
    let stop_at = deadline
        .checked_sub(REPORT_MARGIN)
        .unwrap_or(deadline)
        .max(Instant::now());
    let mut stats = RepeatStats {
        requested: repeat,
        latencies: Vec::with_capacity(repeat as usize),
        ..RepeatStats::default()
    };
    let started = Instant::now();
    for _ in 0..repeat {
        let sent = Instant::now();
        let Ok(answer) = tokio::time::timeout_at(stop_at, overlay.lookup(aor.clone())).await else {
            stats.cut_short = true;
            break;
        };
        stats.latencies.push(sent.elapsed());
        match answer {
            Ok(Some(record)) if !record.live_bindings(unix_now()).is_empty() => stats.found += 1,
            Ok(_) => stats.not_found += 1,
            Err(error) => {
                stats.failed += 1;
                if stats.failed <= FAILURES_SHOWN {
                    eprintln!(
                        "p2psip: {aor}: lookup {} failed: {error}",
                        stats.latencies.len()
                    );
                }
            }
        }
    }
    stats.elapsed = started.elapsed();
    print!("{}", describe_repeat(aor, &stats));
    if stats.found == repeat as usize {
        EXIT_FOUND
    } else {
        EXIT_NOT_FOUND
    }
}

/// `p`-th percentile (0..=100) of `sorted` by nearest rank; zero for no values.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p.min(100) * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

fn millis(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1000.0)
}

/// The report of `lookup --repeat`: a counts line, then the latency line scripts read.
fn describe_repeat(aor: &Aor, stats: &RepeatStats) -> String {
    let mut out = String::new();
    let done = stats.latencies.len();
    let _ = writeln!(
        out,
        "{aor}: {done} of {} lookup(s) in {:.3} s: {} found, {} not found, {} failed",
        stats.requested,
        stats.elapsed.as_secs_f64(),
        stats.found,
        stats.not_found,
        stats.failed
    );
    if stats.cut_short {
        let _ = writeln!(out, "stopped by --timeout after {done} lookup(s)");
    }
    let mut sorted = stats.latencies.clone();
    sorted.sort_unstable();
    if sorted.is_empty() {
        let _ = writeln!(out, "latency ms: none measured");
    } else {
        let _ = writeln!(
            out,
            "latency ms: min {} median {} p90 {} p99 {} max {}",
            millis(percentile(&sorted, 0)),
            millis(percentile(&sorted, 50)),
            millis(percentile(&sorted, 90)),
            millis(percentile(&sorted, 99)),
            millis(percentile(&sorted, 100)),
        );
    }
    out
}

/// `p2psip peers`.
pub fn peers(args: &ClientArgs) -> ExitCode {
    run(args, |overlay, deadline| async move {
        // The bootstrap query fills the table over a few round trips; print once it holds
        // still (or just before the deadline).
        let print_by = deadline
            - Duration::from_millis(500).min(deadline.saturating_duration_since(Instant::now()));
        let table = settled_peers(&overlay, print_by).await;
        print!("{}", describe_peers(&table));
        if table.is_empty() {
            EXIT_NOT_FOUND
        } else {
            EXIT_FOUND
        }
    })
}

async fn current_peers(overlay: &Overlay) -> Vec<PeerStatus> {
    let mut peers = overlay.peers().await.unwrap_or_default();
    peers.sort_by_key(|status| status.peer.to_bytes());
    peers
}

/// Waits until some overlay node is connected; false if none is by half the time left.
async fn wait_for_connection(overlay: &Overlay, deadline: Instant) -> bool {
    let give_up = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
    loop {
        let peers = overlay.peers().await.unwrap_or_default();
        if peers.iter().any(|status| status.connected) {
            return true;
        }
        if Instant::now() >= give_up {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A record for people: every serving node with its addresses, sequence number and
/// bindings.
/// The nodes a lookup's valid values came from.
fn describe_sources(sources: &[Option<PeerId>]) -> String {
    if sources.is_empty() {
        return "-".to_string();
    }
    sources
        .iter()
        .map(|source| source.map_or("this client".to_string(), |peer| peer.to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_record(record: &RegistrationRecord, now: u64) -> String {
    let live = record.live_bindings(now).len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {live} live binding(s) from {} node entr{}",
        record.aor,
        record.entries.len(),
        if record.entries.len() == 1 {
            "y"
        } else {
            "ies"
        }
    );
    for entry in &record.entries {
        describe_entry(&mut out, entry, now);
    }
    out
}

fn describe_entry(out: &mut String, entry: &NodeEntry, now: u64) {
    let _ = writeln!(
        out,
        "serving peer {} ({})",
        entry.serving_peer,
        overlay::sip_name::host_name(&entry.serving_peer)
    );
    if entry.serving_addrs.is_empty() {
        let _ = writeln!(out, "  addresses: none given (found through the DHT)");
    }
    for address in &entry.serving_addrs {
        let _ = writeln!(out, "  address {address}");
    }
    let _ = writeln!(
        out,
        "  seq {}, issued at {} ({}), expires at {} ({})",
        entry.seq,
        entry.issued_at,
        relative(entry.issued_at, now),
        entry.effective_expiry(),
        relative(entry.effective_expiry(), now)
    );
    if entry.delegation.is_some() {
        let _ = writeln!(out, "  delegated by the domain authority");
    }
    if entry.bindings.is_empty() {
        let _ = writeln!(out, "  withdrawn: no bindings");
    }
    for binding in &entry.bindings {
        let mut q = String::new();
        sip::registrar::write_qvalue(binding.q, &mut q);
        let _ = write!(
            out,
            "  binding {} q={q} expires at {} ({})",
            binding.contact,
            binding.expires_at,
            relative(binding.expires_at, now)
        );
        if let Some(instance) = &binding.instance {
            let _ = write!(out, " +sip.instance={instance}");
        }
        if let Some(reg_id) = binding.reg_id {
            let _ = write!(out, " reg-id={reg_id}");
        }
        out.push('\n');
    }
}

fn describe_peers(peers: &[PeerStatus]) -> String {
    let mut out = String::new();
    let connected = peers.iter().filter(|status| status.connected).count();
    let _ = writeln!(
        out,
        "{} peer(s) in the routing table, {connected} connected",
        peers.len()
    );
    for status in peers {
        let _ = writeln!(
            out,
            "{} {}",
            status.peer,
            if status.connected {
                "connected"
            } else {
                "not connected"
            }
        );
        for address in &status.addresses {
            let _ = writeln!(out, "  address {address}");
        }
    }
    out
}

/// `in 30 s`, `30 s ago`, `now`.
fn relative(at: u64, now: u64) -> String {
    match at.cmp(&now) {
        std::cmp::Ordering::Greater => format!("in {} s", at - now),
        std::cmp::Ordering::Less => format!("{} s ago", now - at),
        std::cmp::Ordering::Equal => "now".to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use overlay::record::{EntryDraft, RecordBinding};

    #[test]
    fn record_description_names_peer_addresses_and_bindings() {
        let keypair = Keypair::generate_ed25519();
        let peer = keypair.public().to_peer_id();
        let aor = Aor::parse("alice@example.com").unwrap();
        let binding = RecordBinding {
            contact: "sip:alice@127.0.0.1:5070".into(),
            expires_at: 2000,
            q: 500,
            instance: Some("<urn:uuid:1>".into()),
            reg_id: Some(1),
        };
        let draft = EntryDraft::new(7, 1000, vec![binding])
            .with_addrs(vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()]);
        let entry = NodeEntry::sign(&keypair, &aor, draft).unwrap();
        let text = describe_record(&RegistrationRecord::with_entry(aor, entry), 1500);
        assert!(text.starts_with("alice@example.com: 1 live binding(s) from 1 node entry\n"));
        assert!(text.contains(&format!("serving peer {peer}")), "{text}");
        assert!(
            text.contains("  address /ip4/127.0.0.1/tcp/4001\n"),
            "{text}"
        );
        assert!(text.contains("seq 7, issued at 1000 (500 s ago)"), "{text}");
        assert!(
            text.contains(
                "binding sip:alice@127.0.0.1:5070 q=0.5 expires at 2000 (in 500 s) \
                 +sip.instance=<urn:uuid:1> reg-id=1"
            ),
            "{text}"
        );
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0), Duration::from_millis(1));
        assert_eq!(percentile(&values, 50), Duration::from_millis(50));
        assert_eq!(percentile(&values, 90), Duration::from_millis(90));
        assert_eq!(percentile(&values, 99), Duration::from_millis(99));
        assert_eq!(percentile(&values, 100), Duration::from_millis(100));
        let one = [Duration::from_millis(7)];
        assert_eq!(percentile(&one, 0), one[0]);
        assert_eq!(percentile(&one, 99), one[0]);
        assert_eq!(percentile(&[], 50), Duration::ZERO);
        let three: Vec<Duration> = [1, 2, 3].map(Duration::from_millis).to_vec();
        assert_eq!(percentile(&three, 50), Duration::from_millis(2));
        assert_eq!(percentile(&three, 90), Duration::from_millis(3));
    }

    #[test]
    fn repeat_report() {
        let aor = Aor::parse("bob@example.com").unwrap();
        let stats = RepeatStats {
            requested: 5,
            latencies: [3000, 1000, 2000, 5000, 4000]
                .map(Duration::from_micros)
                .to_vec(),
            found: 4,
            not_found: 0,
            failed: 1,
            elapsed: Duration::from_millis(15),
            cut_short: false,
        };
        let text = describe_repeat(&aor, &stats);
        assert_eq!(
            text,
            "bob@example.com: 5 of 5 lookup(s) in 0.015 s: 4 found, 0 not found, 1 failed\n\
             latency ms: min 1.000 median 3.000 p90 5.000 p99 5.000 max 5.000\n"
        );
        let stats = RepeatStats {
            requested: 10,
            cut_short: true,
            ..RepeatStats::default()
        };
        let text = describe_repeat(&aor, &stats);
        assert!(text.contains("0 of 10 lookup(s)"), "{text}");
        assert!(
            text.contains("stopped by --timeout after 0 lookup(s)"),
            "{text}"
        );
        assert!(text.contains("latency ms: none measured"), "{text}");
    }

    #[test]
    fn repeat_flag_parses() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let parse = |args: &[&str]| match Cli::try_parse_from(args).map(|cli| cli.command) {
            Ok(Command::Lookup(args)) => Some(args.repeat),
            _ => None,
        };
        assert_eq!(parse(&["p2psip", "lookup", "bob@example.com"]), Some(1));
        assert_eq!(
            parse(&["p2psip", "lookup", "bob@example.com", "--repeat", "1000"]),
            Some(1000)
        );
        assert_eq!(
            parse(&["p2psip", "lookup", "bob@example.com", "--repeat", "-1"]),
            None
        );
    }

    #[test]
    fn usage_errors() {
        let args = ClientArgs {
            bootstrap: vec!["/ip4/127.0.0.1/tcp/1".into()],
            timeout: 15,
            ..ClientArgs::default()
        };
        let Err(UsageError(message)) = prepare(&args) else {
            panic!("accepted a bootstrap address without a peer id");
        };
        assert!(message.contains("must end in /p2p/<peer id>"), "{message}");
        let dir = tempfile::tempdir().unwrap();
        let args = ClientArgs {
            data_dir: Some(dir.path().to_path_buf()),
            timeout: 15,
            ..ClientArgs::default()
        };
        let Err(UsageError(message)) = prepare(&args) else {
            panic!("accepted no bootstrap at all");
        };
        assert!(message.contains("node.json"), "{message}");
        let args = ClientArgs {
            timeout: 0,
            ..ClientArgs::default()
        };
        assert!(prepare(&args).is_err());
        let args = ClientArgs {
            trust_anchor: vec!["example.com".into()],
            timeout: 15,
            ..ClientArgs::default()
        };
        let Err(UsageError(message)) = prepare(&args) else {
            panic!("accepted a trust anchor without a key");
        };
        assert!(
            message.starts_with("--trust-anchor \"example.com\""),
            "{message}"
        );
    }
}
