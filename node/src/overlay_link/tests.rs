//! Tests of the overlay link against a real in-process overlay.

use super::*;
use crate::routing::overlay_step::serving_peers;
use libp2p::identity::Keypair;
use overlay::network::OverlayConfig;
use overlay::record::{EntryDraft, NodeEntry, RegistrationRecord};
use sip::server::{Listener, ServerConfig};
use sip::transport::{Peer, Transport};
use std::future::poll_fn;
use std::net::SocketAddr;

const PHONE: &str = "127.0.0.1:5070";

/// A server for example.com with open registration, named on the overlay.
fn server(now: Instant, overlay: &Overlay) -> SipServer {
    let config = ServerConfig {
        listeners: vec![Listener {
            transport: Transport::Udp,
            addr: "127.0.0.1:5060".parse().unwrap(),
            advertised_host: "127.0.0.1".into(),
        }],
        domains: vec!["example.com".into()],
        open: true,
        overlay_host: Some(sip_name::host_name(&overlay.local_peer_id())),
        ..ServerConfig::default()
    };
    SipServer::new(config, now).unwrap()
}

/// Alice's phone registers `contacts` (each `user@host:port`) with `expires`, and the
/// server's answer must be a 200.
fn register(server: &mut SipServer, now: Instant, cseq: u32, contacts: &[&str], expires: u32) {
    let contact_lines: String = contacts
        .iter()
        .map(|c| match *c {
            "*" => "Contact: *\r\n".to_string(),
            c => format!("Contact: <sip:{c}>\r\n"),
        })
        .collect();
    let request = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PHONE};branch=z9hG4bK-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a\r\n\
         To: <sip:alice@example.com>\r\n\
         Call-ID: reg@phone\r\n\
         CSeq: {cseq} REGISTER\r\n\
         {contact_lines}\
         Expires: {expires}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let remote: SocketAddr = PHONE.parse().unwrap();
    let peer = Peer {
        transport: Transport::Udp,
        remote,
        local: "127.0.0.1:5060".parse().unwrap(),
        connection: None,
    };
    server.handle_input(now, peer, request.as_bytes());
    let answer = server.poll_transmit().unwrap();
    assert!(
        answer.payload.starts_with(b"SIP/2.0 200 "),
        "{}",
        String::from_utf8_lossy(&answer.payload)
    );
    while server.poll_transmit().is_some() {}
}

/// Handles overlay inputs until no publish is running (bounded).
async fn settle(link: &mut OverlayLink, server: &mut SipServer, now: Instant) {
    let bound = Duration::from_secs(20);
    tokio::time::timeout(bound, async {
        while !link.publishing.is_empty() {
            let input = poll_fn(|cx| link.poll_input(cx)).await;
            link.handle_input(now, server, input);
        }
    })
    .await
    .unwrap();
}

async fn live_contacts(overlay: &Overlay) -> Vec<String> {
    let aor = Aor::parse("alice@example.com").unwrap();
    let record = overlay.lookup(aor).await.unwrap();
    let mut contacts: Vec<String> = record
        .map(|record| {
            record
                .live_bindings(unix_now())
                .iter()
                .map(|live| live.binding.contact.clone())
                .collect()
        })
        .unwrap_or_default();
    contacts.sort();
    contacts
}

#[tokio::test]
async fn publishes_changes_coalesces_refreshes_and_withdraws() {
    let mut config = OverlayConfig::new(Keypair::generate_ed25519());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.lookup_timeout = Duration::from_secs(2);
    let (overlay, events) = Overlay::start(config).await.unwrap();
    let start = Instant::now();
    let mut server = server(start, &overlay);
    let mut link = OverlayLink::new(overlay.clone(), events);
    let alice = "alice@example.com".to_string();

    // A new registration is published.
    register(&mut server, start, 1, &["alice@127.0.0.1:5070"], 600);
    link.after_turn(start, &mut server);
    assert_eq!(link.publishing.get(&alice), Some(&false));
    assert_eq!(
        link.last_published.peek(&alice),
        Some(&(start + Duration::from_secs(300)))
    );
    settle(&mut link, &mut server, start).await;
    assert_eq!(live_contacts(&overlay).await, ["sip:alice@127.0.0.1:5070"]);

    // A refresh that changes nothing, early in the binding's life: not published.
    let early = start + Duration::from_secs(10);
    register(&mut server, early, 2, &["alice@127.0.0.1:5070"], 600);
    link.after_turn(early, &mut server);
    assert!(link.publishing.is_empty(), "a refresh hit the DHT");

    // The same refresh past half the published lifetime: published again.
    let late = start + Duration::from_secs(301);
    register(&mut server, late, 3, &["alice@127.0.0.1:5070"], 600);
    link.after_turn(late, &mut server);
    assert!(link.publishing.contains_key(&alice));
    settle(&mut link, &mut server, late).await;

    // A change while a publish of the AoR runs waits for it, then goes out.
    register(&mut server, late, 4, &["alice@127.0.0.1:5071"], 600);
    link.after_turn(late, &mut server);
    register(&mut server, late, 5, &["alice@127.0.0.1:5072"], 600);
    link.after_turn(late, &mut server);
    assert_eq!(link.publishing.get(&alice), Some(&true));
    settle(&mut link, &mut server, late).await;
    assert_eq!(
        live_contacts(&overlay).await,
        [
            "sip:alice@127.0.0.1:5070",
            "sip:alice@127.0.0.1:5071",
            "sip:alice@127.0.0.1:5072"
        ]
    );

    // Removing every binding withdraws the AoR.
    register(&mut server, late, 6, &["*"], 0);
    link.after_turn(late, &mut server);
    assert!(link.last_published.peek(&alice).is_none());
    settle(&mut link, &mut server, late).await;
    assert!(live_contacts(&overlay).await.is_empty());

    link.shutdown(Vec::new()).await;
}

fn entry(keypair: &Keypair, aor: &Aor, contacts: &[(&str, u64, u16)]) -> NodeEntry {
    let bindings = contacts
        .iter()
        .map(|(contact, expires_at, q)| RecordBinding {
            contact: (*contact).to_owned(),
            expires_at: *expires_at,
            q: *q,
            instance: None,
            reg_id: None,
        })
        .collect();
    let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
    let draft = EntryDraft::new(1, 1000, bindings).with_addrs(vec![addr]);
    NodeEntry::sign(keypair, aor, draft).unwrap()
}

#[test]
fn serving_peers_are_distinct_live_and_best_first() {
    let aor = Aor::parse("alice@example.com").unwrap();
    let (a, b, c) = (
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
    );
    let record = RegistrationRecord {
        aor: aor.clone(),
        entries: vec![
            entry(
                &a,
                &aor,
                &[("sip:a1@x", 5000, 500), ("sip:a2@x", 5000, 100)],
            ),
            entry(&b, &aor, &[("sip:b@x", 5000, 900)]),
            // Expired at 2000: not a target.
            entry(&c, &aor, &[("sip:c@x", 1500, 1000)]),
        ],
    };
    let Some((peers, _)) = serving_peers(&record, 2000) else {
        panic!("nothing found");
    };
    let ids: Vec<PeerId> = peers.iter().map(|(peer, _)| *peer).collect();
    assert_eq!(
        ids,
        [b.public().to_peer_id(), a.public().to_peer_id()],
        "b holds the best binding"
    );
    assert_eq!(peers[0].1.len(), 1);
    assert_eq!(serving_peers(&record, 6000), None);
    assert_eq!(serving_peers(&RegistrationRecord::new(aor), 0), None);
}
