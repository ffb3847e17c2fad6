//! Who this node is on the SIP level: the addresses it listens on and advertises, and the
//! domains it serves. Used to recognise our own Route/Via entries and to build new ones.

use super::Listener;
use crate::message::uri::{Scheme, Uri};
use crate::transport::Transport;

/// The node's SIP identity, derived once from the configuration.
#[derive(Debug, Clone)]
pub struct LocalIdentity {
    listeners: Vec<Listener>,
    /// Lower-case served domains; empty means every domain is served locally.
    domains: Vec<String>,
    /// This node's host name on the overlay (lower case), when it has one.
    overlay_host: Option<String>,
}

impl LocalIdentity {
    pub fn new(
        listeners: Vec<Listener>,
        domains: &[String],
        overlay_host: Option<&str>,
    ) -> LocalIdentity {
        LocalIdentity {
            listeners,
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            overlay_host: overlay_host.map(str::to_ascii_lowercase),
        }
    }

    pub fn overlay_host(&self) -> Option<&str> {
        self.overlay_host.as_deref()
    }

    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// The listener to use for sending over `transport`, if the node has one.
    pub fn listener_for(&self, transport: Transport) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.transport == transport)
    }

    /// True when `host` (as written in a URI or Via, any case, IPv6 with or without
    /// brackets) and `port` name one of our listeners. A missing port means the transport's
    /// default port.
    pub fn is_local_address(&self, host: &str, port: Option<u16>) -> bool {
        if self
            .overlay_host
            .as_deref()
            .is_some_and(|name| name.eq_ignore_ascii_case(host))
        {
            return true;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.listeners.iter().any(|l| {
            let listener_port = l.addr.port();
            let port_matches = match port {
                Some(p) => p == listener_port,
                None => listener_port == l.transport.default_port(),
            };
            port_matches
                && (host.eq_ignore_ascii_case(&l.advertised_host)
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip == l.addr.ip()))
        })
    }

    /// True when `domain` is served by this node (registrar and location lookups).
    pub fn serves_domain(&self, domain: &str) -> bool {
        self.domains.is_empty() || self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// True when the URI addresses this node itself rather than a user: a SIP URI without
    /// user part whose host is a served domain or one of our addresses.
    pub fn is_node_uri(&self, uri: &Uri<'_>) -> bool {
        matches!(uri.scheme, Scheme::Sip | Scheme::Sips)
            && uri.user.is_none()
            && (self.is_local_address(uri.host, uri.port)
                || (uri.port.is_none() && self.serves_domain_strict(uri.host)))
    }

    /// True when the URI is one this node placed in a Record-Route (or a Route pointing at us).
    pub fn is_own_route(&self, uri: &Uri<'_>) -> bool {
        matches!(uri.scheme, Scheme::Sip | Scheme::Sips)
            && self.is_local_address(uri.host, uri.port)
    }

    /// True when the domain is explicitly configured (no wildcard fallback).
    pub fn serves_domain_strict(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// True when requests for users at `host` are looked up in our location table: a served
    /// domain, or one of our own addresses (phones sometimes register `user@<node ip>`).
    pub fn is_local_user_domain(&self, host: &str, port: Option<u16>) -> bool {
        self.is_local_address(host, port) || (port.is_none() && self.serves_domain(host))
    }

    /// `host:port` to put in a Via or Record-Route for `transport`.
    pub fn sent_by(&self, transport: Transport) -> Option<String> {
        if transport == Transport::Overlay {
            return self.overlay_host.clone();
        }
        self.listener_for(transport).map(|l| {
            let host = &l.advertised_host;
            if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{}", l.addr.port())
            } else {
                format!("{host}:{}", l.addr.port())
            }
        })
    }

    /// A Record-Route value for the listener of `transport`: `<sip:host:port;transport=x;lr>`.
    pub fn record_route(&self, transport: Transport) -> Option<String> {
        let sent_by = self.sent_by(transport)?;
        let scheme = if transport == Transport::Tls {
            "sips"
        } else {
            "sip"
        };
        Some(match transport {
            Transport::Udp => format!("<{scheme}:{sent_by};lr>"),
            _ => format!(
                "<{scheme}:{sent_by};transport={};lr>",
                transport.uri_param()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> LocalIdentity {
        LocalIdentity::new(
            vec![
                Listener {
                    transport: Transport::Udp,
                    addr: "127.0.0.1:5060".parse().unwrap(),
                    advertised_host: "127.0.0.1".into(),
                },
                Listener {
                    transport: Transport::Tcp,
                    addr: "127.0.0.1:5070".parse().unwrap(),
                    advertised_host: "127.0.0.1".into(),
                },
            ],
            &["Example.com".to_string()],
            Some("NodeA.p2p.invalid"),
        )
    }

    #[test]
    fn recognises_local_addresses() {
        let id = identity();
        assert!(id.is_local_address("127.0.0.1", Some(5060)));
        assert!(id.is_local_address("127.0.0.1", None));
        assert!(id.is_local_address("127.0.0.1", Some(5070)));
        assert!(!id.is_local_address("127.0.0.1", Some(5080)));
        assert!(!id.is_local_address("127.0.0.2", Some(5060)));
        assert!(id.serves_domain("EXAMPLE.COM"));
        assert!(!id.serves_domain("example.org"));
    }

    #[test]
    fn builds_record_route() {
        let id = identity();
        assert_eq!(
            id.record_route(Transport::Udp).unwrap(),
            "<sip:127.0.0.1:5060;lr>"
        );
        assert_eq!(
            id.record_route(Transport::Tcp).unwrap(),
            "<sip:127.0.0.1:5070;transport=tcp;lr>"
        );
        assert!(id.record_route(Transport::Tls).is_none());
        assert_eq!(
            id.record_route(Transport::Overlay).unwrap(),
            "<sip:nodea.p2p.invalid;transport=p2p;lr>"
        );
        assert!(id.is_local_address("NODEA.p2p.invalid", None));
    }
}
