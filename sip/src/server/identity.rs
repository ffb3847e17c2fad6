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
    /// Other names and addresses of this node (lower case, IPv6 without brackets).
    aliases: Vec<String>,
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
            aliases: Vec::new(),
        }
    }

    /// Adds other names of this node: host names it is known by, and addresses it receives
    /// on that its listeners do not name (every interface address of a wildcard listener).
    pub fn with_aliases(mut self, aliases: &[String]) -> LocalIdentity {
        self.aliases.extend(aliases.iter().map(|alias| {
            alias
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        }));
        self
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
    /// brackets) and `port` name this node ("myself"): the host is a listener's address or
    /// advertised name, or an alias, and the port is a listener's or absent. A missing port
    /// would mean 5060 or 5061, which a URI naming this node's address means to reach this
    /// node whatever port it listens on.
    pub fn is_local_address(&self, host: &str, port: Option<u16>) -> bool {
        if self
            .overlay_host
            .as_deref()
            .is_some_and(|name| name.eq_ignore_ascii_case(host))
        {
            return true;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = host.parse::<std::net::IpAddr>().ok();
        let named = self.aliases.iter().any(|a| a.eq_ignore_ascii_case(host))
            || self.listeners.iter().any(|l| {
                host.eq_ignore_ascii_case(&l.advertised_host)
                    || ip.is_some_and(|ip| ip == l.addr.ip())
            });
        named && port.is_none_or(|port| self.listeners.iter().any(|l| l.addr.port() == port))
    }

    /// True when `addr` over `transport` reaches one of this node's listeners, so that a
    /// resolved hop there would send the request back to this node.
    pub fn is_listener_address(&self, transport: Transport, addr: std::net::SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        let is_alias = || {
            self.aliases
                .iter()
                .any(|alias| alias.parse::<std::net::IpAddr>() == Ok(ip))
        };
        self.listeners.iter().any(|l| {
            l.transport == transport
                && l.addr.port() == addr.port()
                && (l.addr.ip() == ip
                    || (l.addr.ip().is_unspecified() && (ip.is_loopback() || is_alias())))
        })
    }

    /// The address-of-record a URI names, with this node's own addresses standing for the
    /// domain when the node serves exactly one (`bob@<node address>` is `bob@example.com`).
    pub fn canonical_aor(&self, uri: &Uri<'_>) -> String {
        match (self.domains.as_slice(), uri.user_unescaped()) {
            ([domain], Some(user)) if self.is_local_address(uri.host, uri.port) => {
                format!("{user}@{domain}")
            }
            _ => uri.aor(),
        }
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
        assert!(
            id.is_local_address("127.0.0.1", None),
            "no port: this node's address"
        );
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
