//! Domain authority keys published in DNS: `TXT _p2psip.<domain>` holding
//! `v=p2psip1; k=<public key>` (as `p2psip domain init` prints it).
//!
//! For every served domain without a configured trust anchor, the node asks DNS at
//! start-up (bounded by [`STARTUP_LIMIT`] in all) and again every [`REFRESH`], and trusts
//! each key found as that domain's authority from then on. Keys are only ever added: a
//! key that disappears from DNS stays trusted until the node restarts. A failed query
//! leaves the domain as it was and is tried again after [`RETRY`].

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use libp2p::identity::PublicKey;
use overlay::authority::{public_key_to_text, AuthorityTxt, Delegation, TrustAnchors};
use overlay::key::canonical_domain;
use overlay::network::Overlay;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

/// Bound on one TXT query, retries included.
pub const QUERY_LIMIT: Duration = Duration::from_secs(3);
/// Bound on the whole first round, which start-up waits for.
pub const STARTUP_LIMIT: Duration = Duration::from_secs(4);
/// Time between two rounds when the last one went well.
pub const REFRESH: Duration = Duration::from_secs(600);
/// Time before the next round when a query of the last one failed.
pub const RETRY: Duration = Duration::from_secs(60);

/// The served domains whose authority key is looked up in DNS: canonical, without
/// duplicates, and only those with no configured trust anchor.
pub fn domains_to_resolve(served: &[String], anchors: &TrustAnchors) -> Vec<String> {
    let mut domains: Vec<String> = Vec::new();
    for served in served {
        match canonical_domain(served) {
            Ok(domain) => {
                if anchors.keys_for(&domain).is_empty() && !domains.contains(&domain) {
                    domains.push(domain);
                }
            }
            Err(error) => {
                tracing::warn!(domain = %served, %error, "not looked up in DNS");
            }
        }
    }
    domains
}

/// A resolver asking `servers` (port 53 unless given), or the system's name servers when
/// there are none.
pub fn resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?
    } else {
        let name_servers = servers
            .iter()
            .map(|server| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut connection| {
                        connection.port = server.port();
                        connection
                    })
                    .collect();
                NameServerConfig::new(server.ip(), true, connections)
            })
            .collect();
        Resolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.timeout = QUERY_LIMIT / 2;
    options.attempts = 1;
    builder
        .build()
        .map_err(|e| format!("cannot set up the DNS resolver: {e}"))
}

/// What one domain's TXT records hold.
#[derive(Debug, Default)]
struct Found {
    keys: Vec<PublicKey>,
    /// TXT records at the name that are not valid authority records, each with why.
    rejected: Vec<String>,
}

/// The authority keys in the TXT records of `_p2psip.<domain>`; no records is no keys,
/// not an error.
async fn lookup(resolver: &TokioResolver, domain: &str) -> Result<Found, String> {
    let name = AuthorityTxt::name(domain).map_err(|e| e.to_string())?;
    // Fully qualified: no search domains are tried.
    let answer = tokio::time::timeout(QUERY_LIMIT, resolver.txt_lookup(format!("{name}.")))
        .await
        .map_err(|_| format!("no answer within {QUERY_LIMIT:?}"))?;
    let lookup = match answer {
        Ok(lookup) => lookup,
        Err(error) if error.is_no_records_found() => return Ok(Found::default()),
        Err(error) => return Err(error.to_string()),
    };
    let mut found = Found::default();
    for record in lookup.answers() {
        let RData::TXT(txt) = &record.data else {
            continue;
        };
        // A TXT record split into several strings is one text.
        let text: String = txt
            .txt_data
            .iter()
            .map(|part| String::from_utf8_lossy(part))
            .collect();
        match AuthorityTxt::parse(&text) {
            Ok(parsed) => {
                if !found.keys.contains(&parsed.key) {
                    found.keys.push(parsed.key);
                }
            }
            Err(error) => found.rejected.push(error.to_string()),
        }
    }
    Ok(found)
}

/// Looks the authority keys of `domains` up and adds them to the overlay's trust anchors.
/// True when every query got an answer (with or without records).
async fn round(
    resolver: &TokioResolver,
    overlay: &Overlay,
    domains: &[String],
    delegations: &[Delegation],
) -> bool {
    let mut all_answered = true;
    for domain in domains {
        let found = match lookup(resolver, domain).await {
            Ok(found) => found,
            Err(error) => {
                all_answered = false;
                tracing::warn!(
                    %domain,
                    %error,
                    "DNS lookup of the domain's authority key failed; the domain stays as it was"
                );
                continue;
            }
        };
        for reason in &found.rejected {
            tracing::warn!(%domain, %reason, "ignoring a TXT record of _p2psip.{domain}");
        }
        if found.keys.is_empty() {
            tracing::debug!(%domain, "no authority key in DNS");
        }
        for key in found.keys {
            let text = public_key_to_text(&key);
            match overlay.add_trust_anchor(domain.clone(), key.clone()).await {
                Ok(Ok(())) => {
                    tracing::info!(%domain, key = %text, "authority key found in DNS: now a trust anchor");
                    let mismatched = delegations
                        .iter()
                        .any(|d| d.domain == *domain && d.authority != key);
                    if mismatched {
                        tracing::warn!(
                            %domain,
                            key = %text,
                            "this node holds a delegation of the domain signed by another key \
                             than the one in DNS"
                        );
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(%domain, key = %text, %error, "authority key from DNS not trusted");
                }
                // The node is stopping.
                Err(_) => return all_answered,
            }
        }
    }
    all_answered
}

/// Runs the first round (at most [`STARTUP_LIMIT`]), then returns a task that repeats it
/// until `shutdown` turns true. Nothing to do (no domain to look up) is no task.
pub async fn start(
    servers: &[SocketAddr],
    domains: Vec<String>,
    overlay: Overlay,
    delegations: Vec<Delegation>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if domains.is_empty() {
        return None;
    }
    let resolver = match resolver(servers) {
        Ok(resolver) => resolver,
        Err(error) => {
            tracing::warn!(%error, ?domains, "authority keys are not looked up in DNS");
            return None;
        }
    };
    tracing::info!(
        ?domains,
        servers = ?servers,
        "looking the domains' authority keys up in DNS (TXT _p2psip.<domain>)"
    );
    let first = tokio::time::timeout(
        STARTUP_LIMIT,
        round(&resolver, &overlay, &domains, &delegations),
    )
    .await;
    let mut wait = match first {
        Ok(true) => REFRESH,
        Ok(false) => RETRY,
        Err(_) => {
            tracing::warn!(
                limit = ?STARTUP_LIMIT,
                "DNS lookups of authority keys did not finish in time; they go on in the \
                 background"
            );
            RETRY
        }
    };
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let answered = tokio::select! {
                answered = round(&resolver, &overlay, &domains, &delegations) => answered,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            wait = if answered { REFRESH } else { RETRY };
        }
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use overlay::authority::generate_authority_key;

    #[test]
    fn only_served_domains_without_anchors_are_looked_up() {
        let key = generate_authority_key().public();
        let mut anchors = TrustAnchors::new();
        anchors.add("anchored.example", key).unwrap();
        let served = [
            "Example.COM".to_string(),
            "example.com".to_string(),
            "anchored.example".to_string(),
            "other.example".to_string(),
        ];
        assert_eq!(
            domains_to_resolve(&served, &anchors),
            ["example.com", "other.example"]
        );
        assert!(domains_to_resolve(&[], &anchors).is_empty());
    }

    #[test]
    fn a_silent_name_server_is_a_failed_lookup_not_a_hang() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // Bound but never read: queries go unanswered.
            let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let resolver = resolver(&[silent.local_addr().unwrap()]).unwrap();
            let outcome =
                tokio::time::timeout(QUERY_LIMIT * 2, lookup(&resolver, "example.com")).await;
            assert!(matches!(outcome, Ok(Err(_))), "{outcome:?}");
        });
    }
}
