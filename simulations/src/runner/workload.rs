//! The workload: a seeded schedule of lookups, calls, refreshes, churn and supernode
//! failures, run in the run's (virtual) time against the population.
//!
//! Every random choice (which node looks up which user, who leaves, who replaces whom) is
//! drawn from one seeded generator in schedule order, by the one task that runs the
//! schedule; the operations themselves run concurrently. So two runs with one seed make the
//! same choices at the same virtual moments.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use libp2p::PeerId;
use overlay::key::Aor;
use overlay::network::{now_unix, LookupAnswer};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::metrics::Metrics;
use super::population::Population;
use crate::net::NodeIndex;
use crate::node::SimNode;
use crate::report::Progress;
use crate::scenario::SimArgs;

/// Operations running at once; when all are taken, the schedule waits (and runs late).
pub const MAX_OPERATIONS_IN_FLIGHT: usize = 512;
/// A phone whose node went away registers again at another node after this long.
pub const REREGISTER_DELAY: Duration = Duration::from_secs(5);
/// A registration counts as settled (a lookup is expected to find it) this long after
/// it was made.
const SETTLE_GRACE: Duration = Duration::from_secs(3);
/// Tries to find a settled user for a lookup or call before the operation is skipped.
const PICK_TRIES: usize = 8;

/// One simulated user.
pub struct User {
    pub aor: Aor,
    /// The node it is registered at, when that node is alive.
    pub home: Option<NodeIndex>,
    /// When (seconds into the workload, negative before it) it registered there.
    pub registered_at: f64,
    /// Every contact it ever registered, honest by construction.
    pub contacts: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Lookup,
    Call,
    Refresh { user: usize },
    Leave { node: NodeIndex, crash: bool },
    Reregister { user: usize },
    SupernodeFailures,
}

/// A workload step at `at_ms` into the workload; `seq` keeps insertion order among equals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    at_ms: u64,
    seq: u64,
    action: Action,
}

pub struct Workload<'a> {
    pub args: &'a SimArgs,
    pub population: Population,
    pub users: Vec<User>,
    pub rng: ChaCha8Rng,
    pub metrics: Metrics,
    pub adversaries: Arc<HashSet<PeerId>>,
    pub progress: Progress,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    operations: JoinSet<()>,
    permits: Arc<Semaphore>,
    start: Instant,
}

impl<'a> Workload<'a> {
    pub fn new(
        args: &'a SimArgs,
        population: Population,
        users: Vec<User>,
        rng: ChaCha8Rng,
        metrics: Metrics,
        progress: Progress,
    ) -> Workload<'a> {
        Workload {
            args,
            adversaries: Arc::new(population.adversary_peer_ids()),
            population,
            users,
            rng,
            metrics,
            progress,
            queue: BinaryHeap::new(),
            seq: 0,
            operations: JoinSet::new(),
            permits: Arc::new(Semaphore::new(MAX_OPERATIONS_IN_FLIGHT)),
            start: Instant::now(),
        }
    }

    fn schedule(&mut self, at: Duration, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at_ms: at.as_millis() as u64,
            seq: self.seq,
            action,
        }));
    }

    /// Draws the whole initial schedule: Poisson arrivals of lookups and calls, each user's
    /// refreshes, each live node's departure, and the supernode failures.
    fn plan(&mut self, nodes: &[NodeIndex]) {
        let duration = Duration::from_secs(self.args.duration);
        for (rate, action) in [
            (self.args.lookup_rate, Action::Lookup),
            (self.args.call_rate, Action::Call),
        ] {
            if rate <= 0.0 {
                continue;
            }
            let mut at = 0.0;
            loop {
                at += -(1.0 - self.rng.gen::<f64>()).ln() / rate;
                if at >= duration.as_secs_f64() {
                    break;
                }
                self.schedule(Duration::from_secs_f64(at), action);
            }
        }
        let refresh = self.args.refresh as f64;
        for user in 0..self.users.len() {
            let mut at = self.rng.gen::<f64>() * refresh;
            while at < duration.as_secs_f64() {
                self.schedule(Duration::from_secs_f64(at), Action::Refresh { user });
                at += refresh;
            }
        }
        for &node in nodes {
            self.plan_departure(node, Duration::ZERO);
        }
        if self.args.supernode_failures > 0 {
            self.schedule(duration / 2, Action::SupernodeFailures);
        }
    }

    fn plan_departure(&mut self, node: NodeIndex, now: Duration) {
        if let Some(session) = self.args.churn.session_time(&mut self.rng) {
            let crash = self.rng.gen::<f64>() < self.args.crash_fraction;
            let at = now + session;
            if at < Duration::from_secs(self.args.duration) {
                self.schedule(at, Action::Leave { node, crash });
            }
        }
    }

    /// Runs the schedule to its end (the workload's duration plus the re-registrations it
    /// caused), then waits for the operations still running.
    pub async fn run(&mut self, initial_nodes: &[NodeIndex]) -> Result<(), String> {
        self.plan(initial_nodes);
        self.start = Instant::now();
        self.progress.phase("workload", self.args.duration);
        let mut shown_secs = 0;
        while let Some(Reverse(step)) = self.queue.pop() {
            let at = Duration::from_millis(step.at_ms);
            tokio::time::sleep_until(self.start + at).await;
            let elapsed = self.start.elapsed().as_secs().min(self.args.duration);
            if elapsed > shown_secs {
                self.progress.inc(elapsed - shown_secs);
                shown_secs = elapsed;
                let lookups = self.metrics.lookups_so_far();
                self.progress.set_message(format!(
                    "{} nodes, lookups {}/{}",
                    self.population.live_count(),
                    lookups.succeeded,
                    lookups.attempted
                ));
            }
            self.metrics
                .live_nodes(at.as_secs_f64(), self.population.live_count());
            self.perform(at, step.action).await?;
        }
        self.progress.finish();
        while self.operations.join_next().await.is_some() {}
        Ok(())
    }

    async fn perform(&mut self, at: Duration, action: Action) -> Result<(), String> {
        match action {
            Action::Lookup => self.lookup(at).await,
            Action::Call => self.call(at).await,
            Action::Refresh { user } => {
                if let Some(home) = self.users[user]
                    .home
                    .and_then(|i| self.population.honest(i))
                {
                    self.register(user, home).await;
                }
            }
            Action::Leave { node, crash } => {
                self.depart(node, crash, at);
                let public = self.rng.gen::<f64>() >= self.args.nat_fraction;
                let replacement = self.population.start_honest(public, &mut self.rng).await?;
                self.plan_departure(replacement.index, at);
            }
            Action::Reregister { user } => {
                if let Some(node) = self.population.random_honest(&mut self.rng) {
                    self.users[user].home = Some(node.index);
                    self.users[user].registered_at = at.as_secs_f64();
                    let contact = node.contact_for(&self.users[user].aor);
                    self.users[user].contacts.push(contact);
                    self.register(user, node).await;
                }
            }
            Action::SupernodeFailures => {
                let failing = self
                    .population
                    .random_public(&mut self.rng, self.args.supernode_failures);
                for node in failing {
                    self.depart(node, true, at);
                }
            }
        }
        Ok(())
    }

    /// Stops `node`; its users register again elsewhere a little later.
    fn depart(&mut self, node: NodeIndex, crash: bool, at: Duration) {
        if self.population.stop_honest(node, crash).is_none() {
            return;
        }
        let homeless: Vec<usize> = (0..self.users.len())
            .filter(|&user| self.users[user].home == Some(node))
            .collect();
        for user in homeless {
            self.users[user].home = None;
            self.schedule(at + REREGISTER_DELAY, Action::Reregister { user });
        }
    }

    /// Publishes `user`'s binding at `node` on a task; counts the outcome.
    async fn register(&mut self, user: usize, node: Arc<SimNode>) {
        let aor = self.users[user].aor.clone();
        let metrics = self.metrics.clone();
        let lifetime = registration_lifetime(self.args.refresh);
        let at_secs = self.elapsed().as_secs_f64();
        self.spawn(async move {
            let stored = node.register(&aor, lifetime).await;
            tracing::debug!(%aor, node = node.index, peer = %node.peer_id, at_secs, stored, "registration");
            metrics.registration(stored);
        })
        .await;
    }

    /// A user whose registration has settled, and the node serving it.
    fn settled_user(&mut self, at: Duration) -> Option<(usize, Arc<SimNode>)> {
        let settled_before = at.as_secs_f64() - SETTLE_GRACE.as_secs_f64();
        for _ in 0..PICK_TRIES {
            let user = self.rng.gen_range(0..self.users.len());
            let candidate = &self.users[user];
            if candidate.registered_at > settled_before {
                continue;
            }
            if let Some(home) = candidate.home.and_then(|i| self.population.honest(i)) {
                return Some((user, home));
            }
        }
        None
    }

    async fn lookup(&mut self, at: Duration) {
        let Some((user, home)) = self.settled_user(at) else {
            return;
        };
        let Some(asker) = self
            .population
            .random_honest_except(home.index, &mut self.rng)
        else {
            return;
        };
        let expected = Expected::new(&self.users[user], &home, Arc::clone(&self.adversaries));
        let aor = self.users[user].aor.clone();
        let metrics = self.metrics.clone();
        let at_secs = at.as_secs_f64();
        self.spawn(async move {
            let result = asker.lookup(&aor).await;
            let verdict = expected.judge(result.answer.as_ref());
            if !verdict.found {
                let answer = expected.explain(result.answer.as_ref());
                tracing::debug!(%aor, at_secs, %answer, "lookup missed the user");
            }
            if verdict.forged {
                tracing::warn!(%aor, "a lookup answer held a forged binding");
                metrics.forged();
            }
            metrics.lookup(
                at_secs,
                verdict.found,
                result.elapsed.as_secs_f64() * 1000.0,
                verdict.dht_requests,
            );
        })
        .await;
    }

    async fn call(&mut self, at: Duration) {
        let Some((user, home)) = self.settled_user(at) else {
            return;
        };
        let Some(caller) = self
            .population
            .random_honest_except(home.index, &mut self.rng)
        else {
            return;
        };
        let aor = self.users[user].aor.clone();
        let metrics = self.metrics.clone();
        let at_secs = at.as_secs_f64();
        self.spawn(async move {
            match caller.call(&aor).await {
                Ok(setup) => metrics.call(at_secs, true, setup.as_secs_f64() * 1000.0),
                Err(failure) => {
                    tracing::debug!(%aor, ?failure, "call failed");
                    metrics.call(at_secs, false, 0.0);
                }
            }
        })
        .await;
    }

    /// Runs `operation` on a task once a slot is free.
    async fn spawn(&mut self, operation: impl std::future::Future<Output = ()> + Send + 'static) {
        // Reap finished operations so the set holds only running ones.
        while self.operations.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return;
        };
        self.operations.spawn(async move {
            operation.await;
            drop(permit);
        });
    }

    /// Seconds since the workload started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Lifetime of a registration refreshed every `refresh` seconds: two refreshes and a
/// margin, like a phone's Expires against its re-REGISTER interval.
pub fn registration_lifetime(refresh: u64) -> Duration {
    Duration::from_secs(refresh * 2 + 60)
}

/// What a correct answer for one user holds.
pub struct Expected {
    home_peer: PeerId,
    home_contact: String,
    contacts: Vec<String>,
    adversaries: Arc<HashSet<PeerId>>,
}

/// How an answer compares with [`Expected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The user's current binding is there.
    pub found: bool,
    /// A binding no honest node published is there.
    pub forged: bool,
    pub dht_requests: u32,
}

impl Expected {
    pub fn new(user: &User, home: &SimNode, adversaries: Arc<HashSet<PeerId>>) -> Expected {
        Expected {
            home_peer: home.peer_id,
            home_contact: home.contact_for(&user.aor),
            contacts: user.contacts.clone(),
            adversaries,
        }
    }

    /// What `answer` held, for the log line of a lookup that missed the user: enough to
    /// tell a failed query from a missing record from a record without the user's current
    /// binding.
    pub fn explain(&self, answer: Option<&LookupAnswer>) -> String {
        let Some(answer) = answer else {
            return "the lookup failed".to_owned();
        };
        let stores = answer.answered_by.len();
        let requests = answer.dht_requests;
        let Some(record) = &answer.record else {
            return format!("no record ({stores} stores answered, {requests} DHT requests)");
        };
        let now = now_unix();
        let entries: Vec<String> = record
            .entries
            .iter()
            .map(|entry| {
                let home = if entry.serving_peer == self.home_peer {
                    " (home)"
                } else {
                    ""
                };
                let live = entry.bindings.iter().filter(|b| b.expires_at > now).count();
                format!(
                    "{}{home} seq {} with {live} live of {} bindings",
                    entry.serving_peer,
                    entry.seq,
                    entry.bindings.len()
                )
            })
            .collect();
        format!(
            "record from {stores} stores ({requests} DHT requests), home {}: [{}]",
            self.home_peer,
            entries.join("; ")
        )
    }

    pub fn judge(&self, answer: Option<&LookupAnswer>) -> Verdict {
        let Some(answer) = answer else {
            return Verdict {
                found: false,
                forged: false,
                dht_requests: 0,
            };
        };
        let mut verdict = Verdict {
            found: false,
            forged: false,
            dht_requests: answer.dht_requests,
        };
        let Some(record) = &answer.record else {
            return verdict;
        };
        let now = now_unix();
        for entry in &record.entries {
            for binding in &entry.bindings {
                let honest = !self.adversaries.contains(&entry.serving_peer)
                    && self.contacts.contains(&binding.contact);
                verdict.forged |= !honest;
            }
        }
        verdict.found = record.live_bindings(now).iter().any(|live| {
            live.serving_peer == self.home_peer && live.binding.contact == self.home_contact
        });
        verdict
    }
}
