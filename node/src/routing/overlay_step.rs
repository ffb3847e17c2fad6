//! The overlay step of the routing chain: the nodes that serve live bindings of a user,
//! from the user's registration record in the DHT.

use super::chain::{Answer, OVERLAY_ROUTE_TTL};
use super::Trace;
use crate::route_cache::ServingPeers;
use overlay::key::Aor;
use overlay::network::{now_unix, Overlay};
use overlay::record::RegistrationRecord;
use overlay::sip_name;
use sip::server::{Hop, Resolution, TargetSet};
use std::time::{Duration, Instant};

pub(super) enum OverlayResult {
    Found(Answer),
    NotFound,
    Failed(String),
}

/// The distinct nodes serving live bindings of `record`, best binding first, and how long
/// the longest of those bindings stays live; None when no binding is live.
pub(crate) fn serving_peers(
    record: &RegistrationRecord,
    now_unix: u64,
) -> Option<(ServingPeers, Duration)> {
    let mut serving: ServingPeers = Vec::new();
    let mut latest_expiry = now_unix;
    for live in record.live_bindings(now_unix) {
        latest_expiry = latest_expiry.max(live.binding.expires_at);
        if !serving.iter().any(|(peer, _)| *peer == live.serving_peer) {
            serving.push((live.serving_peer, live.serving_addrs.to_vec()));
        }
    }
    (!serving.is_empty()).then(|| (serving, Duration::from_secs(latest_expiry - now_unix)))
}

/// The overlay step: the nodes serving live bindings of `aor`.
pub(super) async fn overlay_lookup(
    overlay: &Overlay,
    aor: &str,
    trace: &mut Trace,
) -> OverlayResult {
    let key = match Aor::parse(aor) {
        Ok(key) => key,
        Err(error) => {
            trace.note(|| format!("overlay: {aor}: {error}"));
            return OverlayResult::NotFound;
        }
    };
    match overlay.lookup(key).await {
        Ok(Some(record)) => {
            let Some((serving, live_for)) = serving_peers(&record, now_unix()) else {
                trace.note(|| format!("overlay: {aor}: registered, no live binding"));
                return OverlayResult::NotFound;
            };
            trace.note(|| {
                let peers: Vec<String> = serving.iter().map(|(peer, _)| peer.to_string()).collect();
                format!("overlay: {aor}: served by {}", peers.join(", "))
            });
            let valid_for = live_for.min(OVERLAY_ROUTE_TTL);
            let hops = serving
                .iter()
                .map(|(peer, _)| Hop::Overlay {
                    host: sip_name::host_name(peer),
                })
                .collect();
            OverlayResult::Found(Answer {
                resolution: Resolution::Found(vec![TargetSet {
                    hops,
                    request_uri: None,
                    leaves_overlay: false,
                }]),
                cache_until: Some(Instant::now() + valid_for),
                serving,
                federation: None,
            })
        }
        Ok(None) => {
            trace.note(|| format!("overlay: {aor}: no record"));
            OverlayResult::NotFound
        }
        Err(error) => {
            tracing::debug!(%error, "overlay lookup failed");
            trace.note(|| format!("overlay: {aor}: {error}"));
            OverlayResult::Failed("overlay lookup failed".to_owned())
        }
    }
}
