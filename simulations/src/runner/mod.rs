//! One simulation run: start the nodes, register the users, run the workload, check the
//! invariants, and return the report.

mod memory;
mod metrics;
mod population;
mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use overlay::key::Aor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinSet;

use crate::net::{NetworkModel, SimNetwork};
use crate::node::{NodeContext, SIM_DOMAIN};
use crate::report::{
    InvariantResult, MemorySummary, Outcome, Percentiles, Progress, Report, ScenarioEcho,
    TrafficSummary,
};
use crate::scenario::{ScenarioError, SimArgs, MAX_NODES};
use metrics::Metrics;
use population::{slot_keypair, Population};
use workload::{registration_lifetime, Expected, User, Workload};

pub use memory::{peak_rss_bytes, rss_bytes};

/// Nodes started at once during setup; the next batch starts when these are up.
const START_BATCH: usize = 50;
/// Longest wait for one batch's bootstraps before the next batch starts anyway.
const BOOTSTRAP_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting batch is asked whether it has bootstrapped.
const BOOTSTRAP_POLL: Duration = Duration::from_millis(100);
/// Registrations and final-check lookups running at once.
const SETUP_CONCURRENCY: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("{0}")]
    Node(String),
    #[error("cannot start the simulator's thread or runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Changes every honest node's validator before the nodes start (tests break it on purpose).
pub type ValidatorHook = Box<
    dyn Fn(overlay::validate::RecordValidator) -> overlay::validate::RecordValidator + Send + Sync,
>;

/// The runtime a run needs: one thread, with tokio's clock paused. Nothing in a run waits
/// on the outside world, so whenever every node is idle the clock jumps to the next timer:
/// a run takes as long as its computing, not as long as its scenario, and CPU load never
/// shows up as network delay. Every operation then happens at its seeded virtual moment.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
}

/// Runs the scenario of `args` to the end and returns what it measured, with every honest
/// node's validator passed through `hook` first (tests break it on purpose). The run has a
/// thread of its own, in virtual time ([`runtime`]), and every random draw made on that
/// thread (the simulator's, std's `HashMap` keys, tokio's and libp2p's) is taken from
/// `args.seed`: the first run in a process with a given seed always does the same thing,
/// whatever else the machine is doing.
pub fn run_repeatable(
    args: &SimArgs,
    progress: Progress,
    hook: ValidatorHook,
) -> Result<Report, SimError> {
    sim_entropy::run_seeded(args.seed, move || {
        let runtime = runtime().map_err(SimError::Runtime)?;
        let result = runtime.block_on(run_in_virtual_time(args, progress, hook));
        // Node tasks that are still winding down are dropped, not waited for.
        runtime.shutdown_timeout(Duration::from_millis(500));
        result
    })
    .map_err(SimError::Runtime)?
}

/// The run itself, on [`run_repeatable`]'s seeded thread and paused runtime.
async fn run_in_virtual_time(
    args: &SimArgs,
    progress: Progress,
    hook: ValidatorHook,
) -> Result<Report, SimError> {
    args.validate()?;
    let wall = Instant::now();
    // Records expire by unix time; let it advance with the (virtual) clock of this runtime.
    overlay::network::follow_tokio_clock();
    let baseline_rss = rss_bytes();
    let model = NetworkModel {
        seed: args.seed,
        latency: args.latency,
        jitter: args.jitter,
        loss: args.loss,
        ..NetworkModel::default()
    };
    let network = SimNetwork::new(model, MAX_NODES);
    let mut context = NodeContext::new(
        network.clone(),
        args.security(),
        authority_keypair(args.seed),
    );
    context.validator = hook(context.validator);
    context.idle_connection_timeout = Duration::from_secs(args.idle_timeout);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let users = make_users(args.users());
    let targets: Vec<Aor> = users.iter().map(|user| user.aor.clone()).collect();
    let mut population = Population::new(context, args.seed, targets);

    // Nodes: the first is a supernode (everyone needs one to bootstrap from); the rest are
    // supernodes or NATed peers in a seeded order.
    let honest = args.honest_nodes();
    let mut public_flags: Vec<bool> = (0..honest).map(|i| i < args.public_nodes()).collect();
    public_flags[1..].shuffle(&mut rng);
    progress.phase("starting nodes", args.nodes as u64);
    let mut initial = Vec::with_capacity(honest);
    for batch in public_flags.chunks(START_BATCH) {
        let mut started = Vec::with_capacity(batch.len());
        for &public in batch {
            let node = population
                .start_honest(public, &mut rng)
                .await
                .map_err(SimError::Node)?;
            initial.push(node.index);
            started.push(node);
        }
        progress.inc(batch.len() as u64);
        await_bootstrap(&started).await;
    }
    for i in 0..args.adversary_count() {
        let kind = args.adversary_kinds[i % args.adversary_kinds.len()];
        population
            .start_adversary(kind, &mut rng)
            .await
            .map_err(SimError::Node)?;
        progress.inc(1);
    }
    progress.finish();
    settle(&progress, args.settle).await;

    let metrics = Metrics::new(args.seed);
    let users = register_all(&mut population, users, &mut rng, &metrics, args, &progress).await;
    let mut workload = Workload::new(args, population, users, rng, metrics, progress.clone());
    workload.run(&initial).await.map_err(SimError::Node)?;
    let workload_secs = workload.elapsed().as_secs_f64();

    settle(&progress, args.settle).await;
    let (final_lookups, final_forged) = final_check(&mut workload, &progress).await;
    let census = census(&workload.population).await;
    let adversary_actions = workload.population.adversary_actions();
    let node_seconds = workload.population.node_seconds();
    let traffic = network.total_traffic();
    let peak_rss = peak_rss_bytes();
    workload.population.stop_all();

    let gathered = workload.metrics.take();
    let population = &workload.population;
    let per_node_rate = |total: u64| {
        if node_seconds > 0.0 {
            total as f64 / node_seconds
        } else {
            0.0
        }
    };
    let mut report = Report {
        scenario: echo(args),
        registrations: gathered.registrations,
        lookups: gathered.lookups,
        calls: gathered.calls,
        offline_messages: None,
        records_lost: final_lookups.attempted - final_lookups.succeeded,
        final_lookups,
        forged_accepted: gathered.forged_accepted + final_forged,
        records_refused: census.records_refused,
        adversary_actions,
        lookup_latency_ms: Percentiles::of(&gathered.lookup_latency_ms),
        lookup_requests: Percentiles::of(&gathered.lookup_requests),
        call_setup_ms: Percentiles::of(&gathered.call_setup_ms),
        traffic: TrafficSummary {
            total_bytes: traffic.bytes_sent,
            total_frames: traffic.frames_sent,
            connections_opened: traffic.connections_opened,
            bytes_per_node_per_sec: per_node_rate(traffic.bytes_sent),
            frames_per_node_per_sec: per_node_rate(traffic.frames_sent),
            connected_peers_mean: census.connected_peers_mean,
            connected_peers_max: census.connected_peers_max,
        },
        memory: MemorySummary {
            baseline_rss_bytes: baseline_rss,
            peak_rss_bytes: peak_rss,
            per_node_bytes: peak_rss.saturating_sub(baseline_rss)
                / population.max_live.max(1) as u64,
        },
        nodes_started: population.started,
        nodes_left: population.left,
        nodes_crashed: population.crashed,
        max_live_nodes: population.max_live,
        wall_time_secs: wall.elapsed().as_secs_f64(),
        phases: workload.progress.timings(),
        timeline: gathered.timeline,
        lookup_latency_samples_ms: gathered.lookup_latency_ms,
        call_setup_samples_ms: gathered.call_setup_ms,
        invariants: Vec::new(),
    };
    report.scenario.workload_secs = workload_secs;
    report.invariants = invariants(&report);
    Ok(report)
}

fn make_users(count: usize) -> Vec<User> {
    (0..count)
        .filter_map(|i| Aor::new(&format!("user{i}"), SIM_DOMAIN).ok())
        .map(|aor| User {
            aor,
            home: None,
            registered_at: f64::NEG_INFINITY,
            contacts: Vec::new(),
        })
        .collect()
}

/// Waits until every node of a batch has finished its first routing-table bootstrap, or
/// [`BOOTSTRAP_WAIT`] has passed (both in virtual time). Each batch then joins a network
/// whose earlier nodes know each other, as a deployed overlay grows, rather than all nodes
/// bootstrapping at once from a nearly empty one.
async fn await_bootstrap(batch: &[Arc<crate::node::SimNode>]) {
    let deadline = tokio::time::Instant::now() + BOOTSTRAP_WAIT;
    let mut pending: Vec<_> = batch.iter().collect();
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        let mut still = Vec::with_capacity(pending.len());
        for node in pending {
            // The first node has nobody to bootstrap from; a stopped node never will.
            let waiting = node.has_bootstrap_peers()
                && node.stats().await.is_some_and(|stats| !stats.bootstrapped);
            if waiting {
                still.push(node);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(BOOTSTRAP_POLL).await;
        }
    }
}

async fn settle(progress: &Progress, seconds: u64) {
    progress.phase("settling", seconds);
    for _ in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        progress.inc(1);
    }
    progress.finish();
}

/// Registers every user at a random live honest node.
async fn register_all(
    population: &mut Population,
    mut users: Vec<User>,
    rng: &mut ChaCha8Rng,
    metrics: &Metrics,
    args: &SimArgs,
    progress: &Progress,
) -> Vec<User> {
    progress.phase("registering", users.len() as u64);
    let lifetime = registration_lifetime(args.refresh);
    let mut running = JoinSet::new();
    for user in &mut users {
        let Some(node) = population.random_honest(rng) else {
            break;
        };
        user.home = Some(node.index);
        user.contacts.push(node.contact_for(&user.aor));
        if running.len() >= SETUP_CONCURRENCY {
            running.join_next().await;
        }
        let aor = user.aor.clone();
        let metrics = metrics.clone();
        let progress = progress.clone();
        running.spawn(async move {
            metrics.registration(node.register(&aor, lifetime).await);
            progress.inc(1);
        });
    }
    while running.join_next().await.is_some() {}
    progress.finish();
    users
}

/// Looks every user registered at a live node up once, from another random live node.
async fn final_check(workload: &mut Workload<'_>, progress: &Progress) -> (Outcome, u64) {
    let mut outcome = Outcome::default();
    let mut forged = 0;
    progress.phase("final check", workload.users.len() as u64);
    let mut running = JoinSet::new();
    for user in 0..workload.users.len() {
        let Some(home) = workload.users[user]
            .home
            .and_then(|index| workload.population.honest(index))
        else {
            progress.inc(1);
            continue;
        };
        let Some(asker) = workload
            .population
            .random_honest_except(home.index, &mut workload.rng)
        else {
            progress.inc(1);
            continue;
        };
        let expected = Expected::new(
            &workload.users[user],
            &home,
            Arc::clone(&workload.adversaries),
        );
        let aor = workload.users[user].aor.clone();
        if running.len() >= SETUP_CONCURRENCY {
            if let Some(Ok(verdict)) = running.join_next().await {
                tally(&mut outcome, &mut forged, verdict, progress);
            }
        }
        running.spawn(async move {
            let result = asker.lookup(&aor).await;
            let verdict = expected.judge(result.answer.as_ref());
            if !verdict.found {
                let answer = expected.explain(result.answer.as_ref());
                tracing::warn!(%aor, %answer, "final check: not found");
            }
            verdict
        });
    }
    while let Some(joined) = running.join_next().await {
        if let Ok(verdict) = joined {
            tally(&mut outcome, &mut forged, verdict, progress);
        }
    }
    progress.finish();
    (outcome, forged)
}

fn tally(outcome: &mut Outcome, forged: &mut u64, verdict: workload::Verdict, progress: &Progress) {
    outcome.record(verdict.found);
    *forged += u64::from(verdict.forged);
    progress.inc(1);
}

/// What the live honest nodes report at the end of the run.
struct Census {
    /// Records refused by their validators.
    records_refused: u64,
    connected_peers_mean: f64,
    connected_peers_max: u64,
}

async fn census(population: &Population) -> Census {
    let mut records_refused = 0;
    let mut connected_total = 0u64;
    let mut connected_max = 0u64;
    let mut counted = 0u64;
    for node in population.honest_nodes() {
        if let Some(stats) = node.stats().await {
            records_refused += stats.validation.total_refused();
            let connected = stats.connected_peers as u64;
            connected_total += connected;
            connected_max = connected_max.max(connected);
            counted += 1;
        }
    }
    Census {
        records_refused,
        connected_peers_mean: connected_total as f64 / counted.max(1) as f64,
        connected_peers_max: connected_max,
    }
}

fn echo(args: &SimArgs) -> ScenarioEcho {
    let kinds = if args.adversaries > 0.0 {
        args.adversary_kinds.iter().map(|k| k.to_string()).collect()
    } else {
        Vec::new()
    };
    ScenarioEcho {
        command: args.command_line(),
        seed: args.seed,
        nodes: args.nodes,
        users: args.users(),
        nat_fraction: args.nat_fraction,
        adversary_fraction: args.adversaries,
        adversary_kinds: kinds,
        latency: args.latency.to_string(),
        loss: args.loss,
        churn: (args.churn != crate::scenario::ChurnModel::None).then(|| args.churn.to_string()),
        supernode_failures: args.supernode_failures,
        workload_secs: args.duration as f64,
        lookups_per_sec: args.lookup_rate,
        calls_per_sec: args.call_rate,
    }
}

/// The properties every run must have.
fn invariants(report: &Report) -> Vec<InvariantResult> {
    vec![
        InvariantResult {
            name: "every registered user is found after the network settles".to_owned(),
            holds: report.final_lookups.attempted > 0 && report.records_lost == 0,
            detail: format!(
                "{} of {} found",
                report.final_lookups.succeeded, report.final_lookups.attempted
            ),
        },
        InvariantResult {
            name: "no forged record is accepted".to_owned(),
            holds: report.forged_accepted == 0,
            detail: format!(
                "{} answers with a forged binding; {} records refused",
                report.forged_accepted, report.records_refused
            ),
        },
    ]
}

/// The domain authority's keypair, seeded like the nodes' but outside their index range.
fn authority_keypair(seed: u64) -> Keypair {
    slot_keypair(seed, u32::MAX)
}
