//! Several nodes on loopback joined into one overlay: registrations published to the DHT,
//! calls and MESSAGEs for users registered at another node forwarded over the overlay, and
//! `p2psip lookup` through every node.
//!
//! Every node listens for SIP on 127.0.0.1 (UDP and TCP) and for the overlay on
//! `/ip4/127.0.0.1/tcp/0`, serves `example.com` with open registration, and runs without
//! mDNS (`--no-mdns`) so that tests running at the same time never join each other's
//! overlay, except `mdns_mesh_without_bootstrap`, which is about mDNS. SIPp tests fail
//! when SIPp is missing unless `P2PSIP_SKIP_SIPP=1`.

use anyhow::{ensure, Context, Result};
use overlay::key::{key_hash_hex, Aor, RecordKind};
use overlay::network::STORE_LOG_TARGET;
use p2psip_tests::{
    free_port, in_netns, lookup, peers, require_flags, require_sipp, rerun_in_netns,
    wait_until_found, CommandOutcome, Mesh, MeshNode, MeshNodeConfig, NetnsRun, Sipp, SippOutcome,
    SippProcess, Transport, DOMAIN, NETNS_ADDR, P2P_LISTEN,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bound on waiting for an asynchronously published registration to be found.
const PUBLISH_LIMIT: Duration = Duration::from_secs(20);
/// Lookups tried while waiting for a publication (each one bounded by the harness).
const PUBLISH_ATTEMPTS: usize = 30;
/// Calls to each callee.
const CALLS: u32 = 5;
/// MESSAGEs to bob.
const MESSAGES: u32 = 3;

/// `user@example.com`.
fn aor(user: &str) -> String {
    format!("{user}@{DOMAIN}")
}

/// Fails with a clear message when the binary lacks the overlay options or subcommands
/// these tests drive.
fn require_overlay_cli() -> Result<()> {
    require_flags("node", &["--p2p-listen", "--bootstrap", "--no-mdns"])?;
    require_flags("lookup", &["--bootstrap", "--data-dir"])?;
    Ok(())
}

/// Registers `user@DOMAIN` at the node listening on `node` (UDP) with the contact
/// `127.0.0.1:contact_port` over UDP, through SIPp (`register_contact.xml`).
fn register_contact(node: SocketAddr, user: &str, contact_port: u16) -> Result<()> {
    let outcome = Sipp::new("register_contact.xml")
        .remote(node)
        .transport(Transport::Udp)
        .key("user", user)
        .key("domain", DOMAIN)
        .key("contact_port", &contact_port.to_string())
        .key("contact_transport", Transport::Udp.name())
        .arg("-default_behaviors")
        .arg("all,-bye")
        .timeout(Duration::from_secs(30))
        .run()?;
    outcome
        .ensure_success()
        .with_context(|| format!("registering {user} at {node} -> 127.0.0.1:{contact_port}"))
}

/// A SIPp server running `scenario` for `calls` calls (on `port`, or a free one), waiting
/// for them as long as the client may take.
fn spawn_server(scenario: &str, calls: u32, port: Option<u16>) -> Result<SippProcess> {
    let mut sipp = Sipp::new(scenario)
        .transport(Transport::Udp)
        .calls(calls)
        .recv_timeout(None)
        .timeout(Duration::from_secs(90));
    if let Some(port) = port {
        sipp = sipp.local_port(port);
    }
    sipp.spawn_listening(Duration::from_secs(10))
}

/// Runs `calls` calls of the client scenario `uac` to `user@DOMAIN` through the node at
/// `entry`, with `server` (already registered as the user somewhere in the mesh) answering
/// them; both sides must succeed with every call.
fn run_client(
    entry: &MeshNode,
    uac: &str,
    user: &str,
    calls: u32,
    server: SippProcess,
) -> Result<(SippOutcome, SippOutcome)> {
    let client = Sipp::new(uac)
        .remote(entry.sip_addr())
        .transport(Transport::Udp)
        .service(user)
        .key("domain", DOMAIN)
        .calls(calls)
        .rate(5)
        .limit(5)
        .timeout(Duration::from_secs(60))
        .run()?;
    // The server exits by itself after its last call; when the client failed some calls
    // it would wait for them until its timeout, so it is stopped instead.
    let server = if client.success() {
        server.wait()?
    } else {
        server.kill()
    };
    let checked = (|| {
        client.ensure_success()?;
        server.ensure_success()?;
        ensure!(
            client.successful_calls() == Some(u64::from(calls)),
            "client: {:?} successful calls of {calls}",
            client.successful_calls()
        );
        ensure!(
            server.successful_calls() == Some(u64::from(calls)),
            "server: {:?} successful calls of {calls}",
            server.successful_calls()
        );
        Ok(())
    })();
    checked.with_context(|| {
        format!(
            "{uac} to {user} entering at {} ({})\n--- server ---\n{server}",
            entry.label(),
            entry.sip_addr()
        )
    })?;
    Ok((client, server))
}

/// One lookup of `user` bootstrapping from `via`, which must find it served by `serving`
/// (the output names the serving node's peer id).
fn expect_found(user: &str, via: &MeshNode, serving: &MeshNode) -> Result<CommandOutcome> {
    let outcome = lookup(&aor(user), &[via.p2p_addr()])?;
    ensure!(
        outcome.success(),
        "lookup of {} through {} ({}) did not find it:\n{outcome}",
        aor(user),
        via.label(),
        via.p2p_addr()
    );
    ensure_serving(&outcome, user, serving)?;
    Ok(outcome)
}

/// The lookup output names `serving`'s peer id as serving `user`.
fn ensure_serving(outcome: &CommandOutcome, user: &str, serving: &MeshNode) -> Result<()> {
    ensure!(
        outcome.stdout.contains(serving.peer_id()),
        "the record of {} does not name {} ({}) as serving it:\n{outcome}",
        aor(user),
        serving.label(),
        serving.peer_id()
    );
    Ok(())
}

/// Waits (bounded) until `user` is found through `via`, served by `serving`: REGISTER is
/// answered before the registration reaches the DHT.
fn wait_published(user: &str, via: &MeshNode, serving: &MeshNode) -> Result<CommandOutcome> {
    let outcome = wait_until_found(
        &aor(user),
        &[via.p2p_addr()],
        PUBLISH_LIMIT,
        PUBLISH_ATTEMPTS,
    )
    .with_context(|| format!("waiting for {} through {}", aor(user), via.label()))?;
    ensure_serving(&outcome, user, serving)?;
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------

/// Five nodes bootstrapped from node 0. bob registers at node 1 and carol at node 2 (SIPp
/// servers); once both are found in the DHT, calls from a SIPp client at node 3 reach them
/// through the overlay (INVITE looked up and forwarded, ACK and BYE along the Record-Route
/// set through both nodes), a MESSAGE from node 4 reaches bob, and both users are found
/// through every node.
#[test]
fn five_node_mesh_calls_and_messages() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    require_overlay_cli()?;
    let started = Instant::now();
    let mut mesh = Mesh::start(5)?;
    let result = five_node_flow(&mesh);
    let result = result.and_then(|()| mesh.check_alive());
    mesh.context(result)?;
    eprintln!("five_node_mesh_calls_and_messages: {:?}", started.elapsed());
    Ok(())
}

fn five_node_flow(mesh: &Mesh) -> Result<()> {
    let bob_server = spawn_server("uas_call_overlay.xml", CALLS, None)?;
    let carol_server = spawn_server("uas_call_overlay.xml", CALLS, None)?;
    let bob_port = bob_server.local_port();
    register_contact(mesh.node(1).sip_addr(), "bob", bob_port)?;
    register_contact(mesh.node(2).sip_addr(), "carol", carol_server.local_port())?;

    wait_published("bob", mesh.node(3), mesh.node(1))?;
    wait_published("carol", mesh.node(3), mesh.node(2))?;

    run_client(mesh.node(3), "uac_call.xml", "bob", CALLS, bob_server)?;
    run_client(mesh.node(3), "uac_call.xml", "carol", CALLS, carol_server)?;

    // bob's call server has exited; a MESSAGE receiver takes its port, so bob's binding
    // at node 1 reaches it unchanged.
    let receiver = spawn_server("uas_message.xml", MESSAGES, Some(bob_port))
        .context("MESSAGE receiver on bob's registered port")?;
    run_client(mesh.node(4), "uac_message.xml", "bob", MESSAGES, receiver)?;

    for node in mesh.nodes() {
        expect_found("bob", node, mesh.node(1))?;
        expect_found("carol", node, mesh.node(2))?;
    }
    Ok(())
}

/// Bound on waiting for two mDNS nodes to find each other.
const MDNS_LIMIT: Duration = Duration::from_secs(20);
/// Bound on the whole mDNS test inside its namespace.
const NETNS_LIMIT: Duration = Duration::from_secs(240);

/// Waits (bounded) until `a` and `b` have found each other; how it was seen, or `None`.
/// They have no bootstrap address, so mDNS is the only way either can learn the other's
/// peer id: it counts when one node's log names the other's peer id, or when
/// `p2psip peers --bootstrap <b>` lists `a`.
fn wait_discovered(a: &MeshNode, b: &MeshNode, limit: Duration) -> Result<Option<String>> {
    let deadline = Instant::now() + limit;
    let peers_args = vec![
        "--bootstrap".to_string(),
        b.p2p_addr(),
        "--timeout".to_string(),
        "5".to_string(),
    ];
    for _ in 0..20 {
        if b.stderr_text().contains(a.peer_id()) {
            return Ok(Some(format!("{}'s log names {}", b.label(), a.label())));
        }
        if a.stderr_text().contains(b.peer_id()) {
            return Ok(Some(format!("{}'s log names {}", a.label(), b.label())));
        }
        let listed = peers(&peers_args)?;
        if listed.stdout.contains(a.peer_id()) {
            return Ok(Some(format!(
                "`p2psip peers` through {} lists {}",
                b.label(),
                a.label()
            )));
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(None)
}

/// Two nodes with mDNS on and no bootstrap address find each other; bob registers at the
/// first and calls from the second reach him.
///
/// libp2p's mDNS never uses loopback addresses, and multicast on a real interface would
/// leave the machine, so the test runs again inside a network namespace of its own whose
/// loopback interface has multicast on and a second, non-loopback address
/// ([`NETNS_ADDR`]); the nodes listen for the overlay on 127.0.0.1 and on that address.
/// Where no namespace can be created, or the nodes still do not find each other, the test
/// says why and skips.
#[test]
fn mdns_mesh_without_bootstrap() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    require_overlay_cli()?;
    if in_netns() {
        return mdns_in_namespace();
    }
    let started = Instant::now();
    match rerun_in_netns("mdns_mesh_without_bootstrap", NETNS_LIMIT)? {
        NetnsRun::Unavailable(why) => {
            eprintln!(
                "SKIPPED mdns_mesh_without_bootstrap: no network namespace could be created \
                 for it ({why}). libp2p mDNS ignores loopback addresses, so without a \
                 namespace the nodes could only find each other through an interface of \
                 this machine, and this suite keeps its traffic on loopback."
            );
            Ok(())
        }
        NetnsRun::Finished(outcome) => {
            // The inner run's own messages (timing, or why it skipped).
            eprint!("{}", outcome.stderr);
            ensure!(
                outcome.success() && outcome.stdout.contains("1 passed"),
                "the test failed (or did not run) inside its network namespace:\n{outcome}"
            );
            eprintln!(
                "mdns_mesh_without_bootstrap (with namespace set-up): {:?}",
                started.elapsed()
            );
            Ok(())
        }
    }
}

fn mdns_in_namespace() -> Result<()> {
    let started = Instant::now();
    let config = MeshNodeConfig {
        p2p_listen: vec![P2P_LISTEN.to_string(), format!("/ip4/{NETNS_ADDR}/tcp/0")],
        ..MeshNodeConfig::mdns()
    };
    let first = MeshNode::start("mdns0", &config)?;
    let second = first.context(MeshNode::start("mdns1", &config))?;
    let mut mesh = Mesh::from_nodes(vec![first, second]);

    let discovered = mesh.context(wait_discovered(mesh.node(0), mesh.node(1), MDNS_LIMIT))?;
    let Some(how) = discovered else {
        mesh.check_alive()?;
        eprintln!(
            "SKIPPED mdns_mesh_without_bootstrap: in a network namespace with multicast on \
             loopback, the two nodes did not discover each other by mDNS within \
             {MDNS_LIMIT:?} (neither log names the other's peer id, and `p2psip peers` \
             does not list it); multicast does not work here.\n--- mdns0 stderr \
             ---\n{}\n--- mdns1 stderr ---\n{}",
            mesh.node(0).stderr_tail(),
            mesh.node(1).stderr_tail()
        );
        return Ok(());
    };
    eprintln!("mDNS discovery: {how}");

    let result = (|| -> Result<()> {
        let server = spawn_server("uas_call_overlay.xml", CALLS, None)?;
        register_contact(mesh.node(0).sip_addr(), "bob", server.local_port())?;
        wait_published("bob", mesh.node(1), mesh.node(0))?;
        run_client(mesh.node(1), "uac_call.xml", "bob", CALLS, server)?;
        Ok(())
    })();
    let result = result.and_then(|()| mesh.check_alive());
    mesh.context(result)?;
    eprintln!(
        "mdns_mesh_without_bootstrap in the namespace: {:?}",
        started.elapsed()
    );
    Ok(())
}

/// Five nodes, each logging the records other nodes put to it (`record stored` events,
/// target [`STORE_LOG_TARGET`] at debug level). bob registers at node 1 (the publisher and
/// serving node); once a lookup through node 3 finds him, the nodes other than node 1 whose
/// logs say they stored bob's record are identified (the test fails if there is none). One
/// of them is killed with SIGKILL, a crash that hands nothing over, and a lookup through a
/// node that is neither node 1 nor the killed one must still find bob, served by node 1;
/// then a second storing node (if there is one) is killed the same way and bob must be
/// found again, through every node still running apart from node 1.
#[test]
fn record_survives_the_crash_of_a_storing_node() -> Result<()> {
    if !require_sipp()? {
        return Ok(());
    }
    require_overlay_cli()?;
    let started = Instant::now();
    let config = MeshNodeConfig {
        log_directives: vec![format!("{STORE_LOG_TARGET}=debug")],
        ..MeshNodeConfig::default()
    };
    let mut mesh = Mesh::start_configured(vec![config; 5])?;
    let result = crash_flow(&mut mesh);
    let result = result.and_then(|()| mesh.check_alive());
    mesh.context(result)?;
    eprintln!(
        "record_survives_the_crash_of_a_storing_node: {:?}",
        started.elapsed()
    );
    Ok(())
}

/// The node bob registers at in [`crash_flow`].
const PUBLISHER: usize = 1;
/// Bound on waiting for the nodes' logs to show which of them stored a record.
const STORED_LIMIT: Duration = Duration::from_secs(10);

fn crash_flow(mesh: &mut Mesh) -> Result<()> {
    let bob_key = {
        let bob = Aor::parse(&aor("bob")).context("bob's AoR")?;
        key_hash_hex(&bob.dht_key(RecordKind::Registration))
    };
    // Nothing needs to answer at the contact: only the record is looked up.
    let contact_port = free_port()?;
    register_contact(mesh.node(PUBLISHER).sip_addr(), "bob", contact_port)?;
    wait_published("bob", mesh.node(3), mesh.node(PUBLISHER))?;

    // The publisher's puts reach the other nodes one by one: wait (bounded) until two of
    // them have logged storing the record, settling for fewer at the bound.
    let deadline = Instant::now() + STORED_LIMIT;
    let mut storing = storing_nodes(mesh, &bob_key);
    while storing.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        storing = storing_nodes(mesh, &bob_key);
    }
    let Some(&first) = storing.first() else {
        let any: Vec<String> = mesh
            .nodes()
            .iter()
            .flat_map(|node| {
                node.stderr_text()
                    .lines()
                    .filter(|line| line.contains("record stored"))
                    .map(|line| format!("{}: {line}", node.label()))
                    .collect::<Vec<_>>()
            })
            .collect();
        anyhow::bail!(
            "no node other than {} logged storing bob's record (key {bob_key}) put by it \
             within {STORED_LIMIT:?}, so no storing node can be crashed; `record stored` \
             lines of any key on the nodes: {any:#?}",
            mesh.node(PUBLISHER).label()
        );
    };
    eprintln!(
        "nodes storing bob's record besides {}: {}",
        mesh.node(PUBLISHER).label(),
        labels(mesh, &storing)
    );

    crash_and_look_up(mesh, first)?;
    // Stored copies may have been logged since; pick the second victim afresh.
    match storing_nodes(mesh, &bob_key).first() {
        Some(&second) => crash_and_look_up(mesh, second)?,
        None => eprintln!(
            "only {} (besides {}) was seen storing bob's record; no second crash",
            mesh.node(first).label(),
            mesh.node(PUBLISHER).label()
        ),
    }
    for (i, node) in mesh.nodes().iter().enumerate() {
        if i != PUBLISHER && !node.was_stopped() {
            expect_found("bob", node, mesh.node(PUBLISHER))
                .with_context(|| format!("after the crashes, through {}", node.label()))?;
        }
    }
    Ok(())
}

/// The running nodes other than [`PUBLISHER`] whose log says they stored the record with
/// key hash `key` sent or published by the publisher (its peer id in the event).
fn storing_nodes(mesh: &Mesh, key: &str) -> Vec<usize> {
    let publisher = mesh.node(PUBLISHER).peer_id();
    (0..mesh.len())
        .filter(|&i| i != PUBLISHER && !mesh.node(i).was_stopped())
        .filter(|&i| {
            mesh.node(i)
                .record_stored_events(key)
                .iter()
                .any(|line| line.contains(publisher))
        })
        .collect()
}

fn labels(mesh: &Mesh, nodes: &[usize]) -> String {
    let labels: Vec<&str> = nodes.iter().map(|&i| mesh.node(i).label()).collect();
    labels.join(", ")
}

/// SIGKILLs node `victim` (a storing node, never [`PUBLISHER`]), then bob must be found,
/// served by the publisher, through a running node that is neither of them.
fn crash_and_look_up(mesh: &mut Mesh, victim: usize) -> Result<()> {
    ensure!(victim != PUBLISHER, "the publisher is not to be crashed");
    mesh.node_mut(victim).kill()?;
    let label = mesh.node(victim).label().to_string();
    let via = (0..mesh.len())
        .find(|&i| i != PUBLISHER && !mesh.node(i).was_stopped())
        .with_context(|| format!("no running node besides the publisher after killing {label}"))?;
    expect_found("bob", mesh.node(via), mesh.node(PUBLISHER)).with_context(|| {
        format!(
            "after killing {label} (SIGKILL), which stored bob's record, through {}",
            mesh.node(via).label()
        )
    })?;
    eprintln!(
        "killed {label}; bob still found through {}",
        mesh.node(via).label()
    );
    Ok(())
}
