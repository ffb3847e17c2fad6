//! Static peering: routes configured by the operator, for numbers (longest E.164 prefix)
//! and for domains, each to gateways tried in order.

use super::e164::E164;
use sip::transport::Transport;

/// One gateway of a peering route: where to send, and over what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub transport: Transport,
    /// An IP address or a host name (resolved through A/AAAA).
    pub host: String,
    pub port: u16,
}

impl Gateway {
    /// Parses `TRANSPORT:HOST:PORT` (`udp:192.0.2.1:5060`, `tls:gw.example.net:5061`,
    /// `tcp:[2001:db8::1]:5060`); the port may be left out for the transport's default.
    pub fn parse(text: &str) -> Result<Gateway, String> {
        const FORM: &str = "expected TRANSPORT:HOST[:PORT] with TRANSPORT udp, tcp or tls, e.g. udp:192.0.2.1:5060";
        let (transport, rest) = text.trim().split_once(':').ok_or(FORM)?;
        let transport = match transport.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            _ => return Err(FORM.to_owned()),
        };
        let (host, port) = match rest.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or(FORM)?;
                (host, after.strip_prefix(':'))
            }
            None => match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .map_err(|_| format!("bad port: {FORM}"))?,
            None => transport.default_port(),
        };
        if !super::is_host(host) || port == 0 {
            return Err(FORM.to_owned());
        }
        Ok(Gateway {
            transport,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// One configured route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRoute {
    /// The operator's name for it, for logs and `p2psip route`.
    pub name: String,
    /// E.164 prefixes (`+43`, `+4312`) this route carries.
    pub prefixes: Vec<String>,
    /// Domains (lower case) this route carries.
    pub domains: Vec<String>,
    /// Gateways in failover order.
    pub gateways: Vec<Gateway>,
}

/// Every configured route; lookups scan it (an operator's table is small).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeeringTable {
    routes: Vec<PeerRoute>,
}

impl PeeringTable {
    pub fn new(routes: Vec<PeerRoute>) -> PeeringTable {
        PeeringTable { routes }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route with the longest prefix of `number`.
    pub fn for_number(&self, number: &E164) -> Option<&PeerRoute> {
        self.routes
            .iter()
            .flat_map(|route| route.prefixes.iter().map(move |prefix| (prefix, route)))
            .filter(|(prefix, _)| number.as_str().starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, route)| route)
    }

    /// The route of `domain`, if one names it.
    pub fn for_domain(&self, domain: &str) -> Option<&PeerRoute> {
        let domain = domain.trim_end_matches('.');
        self.routes
            .iter()
            .find(|route| route.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_parse_or_say_why_not() {
        assert_eq!(
            Gateway::parse("udp:192.0.2.1:5070").unwrap(),
            Gateway {
                transport: Transport::Udp,
                host: "192.0.2.1".into(),
                port: 5070
            }
        );
        assert_eq!(Gateway::parse("tls:GW.example.net").unwrap().port, 5061);
        assert_eq!(
            Gateway::parse("tcp:[2001:db8::1]:5060").unwrap().host,
            "2001:db8::1"
        );
        for bad in [
            "192.0.2.1:5060",
            "sctp:gw:5060",
            "udp:gw:99999",
            "udp:",
            "udp:g w:5060",
        ] {
            assert!(Gateway::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_longest_prefix_wins() {
        let route = |name: &str, prefixes: &[&str], domains: &[&str]| PeerRoute {
            name: name.into(),
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            gateways: vec![],
        };
        let table = PeeringTable::new(vec![
            route("austria", &["+43"], &[]),
            route("vienna", &["+431"], &["itsp-b.example"]),
        ]);
        let name = |n: &str| {
            table
                .for_number(&E164::parse(n).unwrap())
                .map(|r| r.name.clone())
        };
        assert_eq!(name("+4312345").as_deref(), Some("vienna"));
        assert_eq!(name("+43662").as_deref(), Some("austria"));
        assert_eq!(name("+49301").as_deref(), None);
        assert_eq!(
            table.for_domain("ITSP-B.example.").map(|r| r.name.as_str()),
            Some("vienna")
        );
    }
}
