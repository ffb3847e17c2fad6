//! The whole server element on arbitrary input: messages from phones over UDP and TCP and
//! from overlay nodes, route resolutions answered in every way (overlay peers, providers
//! in series, a new Request-URI, failures), and time moving on, through a node
//! with accounts and one with `--open`.
//!
//! Input: a byte choosing the node, then messages separated by the byte 0xff; each message
//! starts with a control byte (who sends it and how far the clock moves first).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::auth::{Credential, Secret};
use sip::server::{
    Hop, Listener, Resolution, ServerConfig, ServerEvent, SipServer, TargetSet,
};
use sip::transport::{ConnectionId, Peer, Transport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5060)))
}

fn server(open: bool, now: Instant) -> Option<SipServer> {
    let node = addr("127.0.0.1:5060");
    let config = ServerConfig {
        listeners: vec![
            Listener {
                transport: Transport::Udp,
                addr: node,
                advertised_host: "127.0.0.1".into(),
            },
            Listener {
                transport: Transport::Tcp,
                addr: node,
                advertised_host: "127.0.0.1".into(),
            },
        ],
        domains: vec!["example.com".into()],
        open,
        users: vec![Credential {
            username: "alice".into(),
            realm: "example.com".into(),
            secret: Secret::Password("wonderland".into()),
        }],
        overlay_host: Some("a.p2p.invalid".into()),
        resolves_routes: true,
        trusted_sources: vec!["10.9.0.0/16".parse().ok()?],
        max_bindings_per_source: 4,
        max_failures_per_account: 3,
        random_seed: [3; 32],
        ..ServerConfig::default()
    };
    SipServer::new(config, now).ok()
}

fn drain(server: &mut SipServer, now: Instant, answer: u8) {
    // Bounded: every loop takes from a queue the server only fills on input.
    for _ in 0..10_000 {
        if server.poll_transmit().is_none() {
            break;
        }
    }
    let mut lookups = Vec::new();
    // Bounded: the server queues at most what the input produced.
    while let Some(event) = server.poll_event() {
        if let ServerEvent::Resolve { id, .. } = event {
            lookups.push(id);
        }
    }
    let overlay = |host: &str| TargetSet {
        hops: vec![Hop::Overlay { host: host.into() }],
        request_uri: None,
        leaves_overlay: false,
    };
    let provider = |port: u16, request_uri: Option<&str>| TargetSet {
        hops: vec![Hop::Address {
            transport: Transport::Udp,
            addr: SocketAddr::from(([192, 0, 2, 1], port)),
            tls_name: None,
        }],
        request_uri: request_uri.map(str::to_owned),
        leaves_overlay: true,
    };
    for id in lookups {
        let outcome = match answer % 6 {
            0 => Resolution::Found(vec![overlay("b.p2p.invalid")]),
            1 => Resolution::Found(vec![overlay("a.p2p.invalid")]),
            2 => Resolution::failed(404, "Not Found"),
            3 => Resolution::Found(vec![provider(5060, None), provider(5062, None)]),
            4 => Resolution::Found(vec![provider(5060, Some("sip:+431@itsp.example"))]),
            _ => Resolution::failed(480, "Temporarily Unavailable"),
        };
        server.resolve_route(now, id, outcome);
        for _ in 0..10_000 {
            if server.poll_transmit().is_none() {
                break;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let start = Instant::now();
    let mut now = start;
    let Some(mut server) = server(mode & 1 == 1, now) else {
        return;
    };
    let node = addr("127.0.0.1:5060");
    for message in rest.split(|&b| b == 0xff).take(64) {
        let Some((&control, bytes)) = message.split_first() else {
            continue;
        };
        now += Duration::from_millis(u64::from(control >> 4) * 700);
        server.handle_timeout(now);
        let peer = match control & 0x07 {
            0 | 1 => Peer {
                transport: Transport::Udp,
                remote: addr("127.0.0.1:7001"),
                local: node,
                connection: None,
            },
            2 => Peer {
                transport: Transport::Udp,
                remote: addr("192.0.2.7:5060"),
                local: node,
                connection: None,
            },
            3 => Peer {
                transport: Transport::Udp,
                remote: addr("10.9.1.1:5060"),
                local: node,
                connection: None,
            },
            4 | 5 => Peer {
                transport: Transport::Tcp,
                remote: addr("127.0.0.1:7002"),
                local: node,
                connection: Some(ConnectionId(u64::from(control & 1) + 1)),
            },
            _ => server.overlay_peer("b.p2p.invalid"),
        };
        server.handle_input(now, peer, bytes);
        drain(&mut server, now, control);
        if control & 0x08 != 0 {
            server.connection_closed(ConnectionId(1));
        }
    }
    // Let every timer run out.
    for _ in 0..64 {
        let Some(next) = server.poll_timeout() else {
            break;
        };
        now = next.max(now);
        server.handle_timeout(now);
        drain(&mut server, now, 2);
    }
});
