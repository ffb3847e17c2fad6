//! Domain policy (draft-lendl-domain-policy-ddds): a domain announces in NAPTR records
//! (`D2P+SIP:fed`, `D2P+SIP:std`, ...) how it accepts calls, for instance only from members
//! of the federations it names. The caller applies the policy of a federation both belong
//! to: a domain prefix to find the federation's ingress, a transport override, a domain
//! replacement, and the TLS identity to show. A domain that announces policies none of
//! which this node can meet is refused here rather than tried.

use super::e164::substitute;
use hickory_resolver::proto::rr::rdata::NAPTR;
use sip::transport::Transport;
use std::path::PathBuf;

/// A federation this node belongs to, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federation {
    /// The federation's identifier as domains announce it (`http://fedx.example/`).
    pub id: String,
    /// Prepended to the callee's domain to find the federation's ingress (`fedx` makes
    /// `fedx.itsp-b.example`).
    pub domain_prefix: Option<String>,
    /// The transport to reach members over (TLS, typically).
    pub transport: Option<Transport>,
    /// A domain to route to instead of the callee's (a federation-wide proxy).
    pub domain_replacement: Option<String>,
    /// Client certificate and key shown to members, and the CA that signs members'
    /// certificates (for servers reached and for clients accepted).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
}

impl Federation {
    /// The identifier compared case-insensitively and without a trailing slash.
    fn matches(&self, announced: &str) -> bool {
        self.id
            .trim_end_matches('/')
            .eq_ignore_ascii_case(announced.trim_end_matches('/'))
    }
}

/// What a domain's policy records mean for this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDecision<'f> {
    /// No policy announced: open SIP (RFC 3263 as usual).
    Open,
    /// A shared federation: route as it says to `target_domain`.
    Federation {
        federation: &'f Federation,
        target_domain: String,
    },
    /// Policies announced, none this node meets: what was announced, for the reason.
    Unmet(Vec<String>),
}

/// Decides from the NAPTR records at `domain`.
pub fn decide<'f>(
    records: &[NAPTR],
    domain: &str,
    federations: &'f [Federation],
) -> PolicyDecision<'f> {
    let mut policies: Vec<&NAPTR> = records
        .iter()
        .filter(|naptr| policy_kind(&naptr.services).is_some())
        .collect();
    if policies.is_empty() {
        return PolicyDecision::Open;
    }
    policies.sort_by_key(|naptr| (naptr.order, naptr.preference));
    let mut announced = Vec::new();
    for naptr in policies {
        let regexp = String::from_utf8_lossy(&naptr.regexp);
        let value = match substitute(&regexp, domain) {
            Ok(value) => value,
            Err(error) => {
                tracing::warn!(%domain, %error, "unusable domain policy record");
                continue;
            }
        };
        let kind = policy_kind(&naptr.services).unwrap_or_default();
        if kind.eq_ignore_ascii_case("fed") {
            if let Some(federation) = federations.iter().find(|f| f.matches(&value)) {
                let base = federation
                    .domain_replacement
                    .clone()
                    .unwrap_or_else(|| domain.to_owned());
                let target_domain = match &federation.domain_prefix {
                    Some(prefix) => format!("{prefix}.{base}"),
                    None => base,
                };
                return PolicyDecision::Federation {
                    federation,
                    target_domain,
                };
            }
        }
        announced.push(format!("{kind} {value}"));
    }
    PolicyDecision::Unmet(announced)
}

/// `fed` for `D2P+SIP:fed`, and so on; None for records of other applications.
fn policy_kind(services: &[u8]) -> Option<String> {
    let services = String::from_utf8_lossy(services);
    let (application, kind) = services.split_once(':')?;
    application
        .eq_ignore_ascii_case("D2P+SIP")
        .then(|| kind.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::Name;

    fn naptr(order: u16, services: &str, regexp: &str) -> NAPTR {
        NAPTR::new(
            order,
            10,
            b"U".to_vec().into(),
            services.as_bytes().into(),
            regexp.as_bytes().into(),
            Name::root(),
        )
    }

    fn fedx() -> Federation {
        Federation {
            id: "http://fedx.example/".into(),
            domain_prefix: Some("fedx".into()),
            transport: Some(Transport::Tls),
            domain_replacement: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }

    #[test]
    fn a_shared_federation_applies_its_policy() {
        let records = [
            naptr(10, "D2P+SIP:fed", "!^.*$!http://other.example/!"),
            naptr(20, "D2P+SIP:fed", "!^.*$!http://FEDX.example!"),
            naptr(30, "D2P+SIP:std", "!^.*$!urn:ietf:rfc:4474!"),
            naptr(5, "SIP+D2U", ""),
        ];
        let federations = [fedx()];
        match decide(&records, "itsp-b.example", &federations) {
            PolicyDecision::Federation {
                federation,
                target_domain,
            } => {
                assert_eq!(federation.id, "http://fedx.example/");
                assert_eq!(target_domain, "fedx.itsp-b.example");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn announced_policies_none_of_which_is_met_refuse() {
        let records = [
            naptr(10, "D2P+SIP:fed", "!^.*$!http://other.example/!"),
            naptr(30, "D2P+SIP:std", "!^.*$!urn:ietf:rfc:4474!"),
        ];
        assert_eq!(
            decide(&records, "itsp-b.example", &[fedx()]),
            PolicyDecision::Unmet(vec![
                "fed http://other.example/".into(),
                "std urn:ietf:rfc:4474".into()
            ])
        );
        assert_eq!(
            decide(&[naptr(10, "SIP+D2U", "")], "itsp-b.example", &[fedx()]),
            PolicyDecision::Open
        );
    }
}
