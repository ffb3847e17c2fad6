//! The `[routing]` table: defaults, a full table, and errors that name the key.

use super::super::{resolve, Environment, NodeArgs, NodeConfig};
use crate::config::ConfigError;
use sip::transport::Transport;
use std::io::Write;

fn resolve_text(text: &str) -> (tempfile::TempDir, Result<NodeConfig, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let args = NodeArgs {
        config: Some(path),
        ..NodeArgs::default()
    };
    let result = resolve(&args, &Environment::default());
    (dir, result)
}

fn error_of(text: &str) -> String {
    match resolve_text(text).1 {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => error.0,
    }
}

#[test]
fn every_step_is_on_by_default() {
    let (_dir, config) = resolve_text("");
    let routing = config.unwrap().routing;
    let steps = &routing.chain.steps;
    assert!(
        steps.overlay && steps.enum_lookup && steps.domain_policy && steps.dns && steps.peering
    );
    assert_eq!(routing.chain.enum_suffixes, ["e164.arpa"]);
    assert!(routing.dns_servers.is_empty() && !routing.require_authenticated_inbound);
}

#[test]
fn a_full_table_is_read() {
    let (dir, config) = resolve_text(
        "[routing]\n\
         enum = false\n\
         dns = false\n\
         enum_suffixes = [\"e164.example.net.\", \"E164.arpa\"]\n\
         dns_servers = [\"192.0.2.53\"]\n\
         require_authenticated_inbound = true\n\
         [[routing.peer]]\n\
         name = \"a\"\n\
         prefixes = [\"+43\"]\n\
         gateways = [\"tls:gw.example.net\"]\n\
         sources = [\"192.0.2.1\", \"198.51.100.0/24\"]\n\
         [[routing.peer]]\n\
         name = \"inbound only\"\n\
         sources = [\"203.0.113.7\"]\n\
         [[routing.federation]]\n\
         id = \"http://fedx.example/\"\n\
         transport = \"TLS\"\n\
         tls_cert = \"c.pem\"\n\
         tls_key = \"k.pem\"\n",
    );
    let routing = config.unwrap().routing;
    assert!(!routing.chain.steps.enum_lookup && !routing.chain.steps.dns);
    assert_eq!(
        routing.chain.enum_suffixes,
        ["e164.example.net", "e164.arpa"]
    );
    assert_eq!(routing.dns_servers, ["192.0.2.53:53".parse().unwrap()]);
    assert!(routing.require_authenticated_inbound);
    assert_eq!(routing.inbound_peers.len(), 3);
    assert!(!routing.chain.peering.is_empty());
    let federation = &routing.chain.federations[0];
    assert_eq!(federation.transport, Some(Transport::Tls));
    assert_eq!(
        federation.tls_cert.as_deref(),
        Some(dir.path().join("c.pem").as_path())
    );
}

#[test]
fn bad_values_name_their_key() {
    for (text, key, fault) in [
        ("[routing]\nenum_suffixes = [\"bad suffix\"]\n", "routing.enum_suffixes", "not a domain name"),
        ("[routing]\ndns_servers = [\"nameserver\"]\n", "routing.dns_servers", "expected IP:PORT"),
        (
            "[[routing.peer]]\nname = \"a\"\nprefixes = [\"43\"]\ngateways = [\"udp:192.0.2.1\"]\n",
            "routing.peer.prefixes",
            "expected + and digits",
        ),
        (
            "[[routing.peer]]\nname = \"a\"\ndomains = [\"x.example\"]\ngateways = [\"sctp:gw:1\"]\n",
            "routing.peer.gateways",
            "expected TRANSPORT:HOST",
        ),
        (
            "[[routing.peer]]\nname = \"a\"\ndomains = [\"x.example\"]\n",
            "routing.peer.gateways",
            "needs at least one gateway",
        ),
        ("[[routing.peer]]\nname = \"a\"\n", "routing.peer", "needs prefixes or domains"),
        (
            "[[routing.peer]]\nname = \"a\"\nsources = [\"not an address\"]\n",
            "routing.peer.sources",
            "route \"a\"",
        ),
        (
            "[[routing.federation]]\nid = \"http://f/\"\ntransport = \"sctp\"\n",
            "routing.federation.transport",
            "expected udp, tcp or tls",
        ),
        (
            "[[routing.federation]]\nid = \"http://f/\"\ntls_cert = \"c.pem\"\n",
            "routing.federation.tls_cert",
            "go together",
        ),
        ("aliases = [\"bad host!\"]\n", "aliases", "expected a host name"),
    ] {
        let error = error_of(text);
        assert!(error.contains(key) && error.contains(fault), "{text}: {error}");
    }
    let error = error_of("[routing]\ndsn = true\n");
    assert!(error.contains("dsn"), "{error}");
}
