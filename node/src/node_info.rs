//! `<data-dir>/node.json`: what a running node tells scripts, chiefly where it listens
//! (ports chosen by the kernel for `:0` listeners included) and, with the overlay on, its
//! peer id, the full multiaddrs other nodes bootstrap from, its overlay role (`role`:
//! `peer` or `supernode`) and the record validator's counters (`validation`: values accepted
//! and refused per reason); the node rewrites the file when the last two change (see
//! [`keep_status_current`]).

use libp2p::{Multiaddr, PeerId};
use overlay::network::{NodeRole, Overlay, OverlayStats};
use overlay::validate::ValidationCounters;
use serde::{Deserialize, Serialize};
use sip::server::Listener;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

pub const FILE_NAME: &str = "node.json";

/// Largest node.json read back; the file a node writes is a few kilobytes.
const MAX_FILE_SIZE: u64 = 1024 * 1024;

#[derive(Debug, Serialize)]
struct NodeInfo<'a> {
    pid: u32,
    version: &'static str,
    listeners: Vec<ListenerInfo<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_id: Option<String>,
    /// Overlay addresses ending in `/p2p/<peer id>`, ready for `--bootstrap`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    p2p_addrs: Vec<String>,
    /// The role the node plays now: `peer` or `supernode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    validation: Option<ValidationInfo>,
}

/// The overlay part of node.json that changes while the node runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayStatus {
    pub role: NodeRole,
    pub validation: ValidationCounters,
}

impl From<OverlayStats> for OverlayStatus {
    fn from(stats: OverlayStats) -> Self {
        OverlayStatus {
            role: stats.role,
            validation: stats.validation,
        }
    }
}

/// The record validator's counters: values (puts and fetched records) accepted, and values
/// or entries refused, per reason (every reason listed, zeros included).
#[derive(Debug, Serialize)]
struct ValidationInfo {
    accepted_puts: u64,
    accepted_fetches: u64,
    refused_total: u64,
    refused: BTreeMap<&'static str, u64>,
}

impl From<&ValidationCounters> for ValidationInfo {
    fn from(counters: &ValidationCounters) -> Self {
        ValidationInfo {
            accepted_puts: counters.accepted_puts(),
            accepted_fetches: counters.accepted_fetches(),
            refused_total: counters.total_refused(),
            refused: counters
                .iter()
                .map(|(reason, count)| (reason.as_str(), count))
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
struct ListenerInfo<'a> {
    transport: &'static str,
    address: String,
    advertised_host: &'a str,
}

/// The overlay part of node.json.
#[derive(Debug, Clone)]
pub struct OverlayInfo {
    pub peer_id: PeerId,
    /// Full addresses, each ending in `/p2p/<peer id>`.
    pub p2p_addrs: Vec<Multiaddr>,
}

/// Writes the file atomically (temporary file, then rename), so a reader never sees half.
/// `status` is written with the overlay on.
pub fn write(
    data_dir: &Path,
    listeners: &[Listener],
    overlay: Option<&OverlayInfo>,
    status: Option<&OverlayStatus>,
) -> io::Result<()> {
    let info = NodeInfo {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION"),
        listeners: listeners
            .iter()
            .map(|l| ListenerInfo {
                transport: l.transport.uri_param(),
                address: l.addr.to_string(),
                advertised_host: &l.advertised_host,
            })
            .collect(),
        peer_id: overlay.map(|o| o.peer_id.to_string()),
        p2p_addrs: overlay
            .map(|o| o.p2p_addrs.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        role: status.map(|status| status.role.as_str()),
        validation: status.map(|status| ValidationInfo::from(&status.validation)),
    };
    let mut json = serde_json::to_vec_pretty(&info).map_err(io::Error::other)?;
    json.push(b'\n');
    let temporary = data_dir.join(format!("{FILE_NAME}.tmp"));
    std::fs::write(&temporary, json)?;
    std::fs::rename(&temporary, data_dir.join(FILE_NAME))
}

/// How often [`keep_status_current`] looks at the overlay's role and counters.
pub const STATUS_REFRESH: Duration = Duration::from_secs(1);

/// Rewrites node.json whenever the overlay's role or validation counters change, looking
/// every [`STATUS_REFRESH`], until `shutdown` turns true or the overlay stops. `written` is
/// what the file holds already.
pub async fn keep_status_current(
    data_dir: PathBuf,
    listeners: Vec<Listener>,
    info: OverlayInfo,
    overlay: Overlay,
    mut written: OverlayStatus,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(STATUS_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let Ok(stats) = overlay.stats().await else {
            return;
        };
        let status = OverlayStatus::from(stats);
        if status == written {
            continue;
        }
        match write(&data_dir, &listeners, Some(&info), Some(&status)) {
            Ok(()) => written = status,
            // Tried again on the next tick.
            Err(error) => tracing::warn!(
                path = %data_dir.join(FILE_NAME).display(),
                %error,
                "cannot update node.json"
            ),
        }
    }
}

/// What `lookup` and `peers` read back from a node's file.
#[derive(Debug, Deserialize)]
struct OverlayPart {
    #[serde(default)]
    p2p_addrs: Vec<String>,
}

/// The `p2p_addrs` of `<data_dir>/node.json`, as written (each ending in `/p2p/<peer id>`).
/// The error names the file and says what is wrong with it.
pub fn read_p2p_addrs(data_dir: &Path) -> Result<Vec<String>, String> {
    let path: PathBuf = data_dir.join(FILE_NAME);
    let fail = |reason: &dyn std::fmt::Display| format!("{}: {reason}", path.display());
    let size = std::fs::metadata(&path).map_err(|e| fail(&e))?.len();
    if size > MAX_FILE_SIZE {
        return Err(fail(&format_args!("larger than {MAX_FILE_SIZE} bytes")));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| fail(&e))?;
    let part: OverlayPart = serde_json::from_str(&text).map_err(|e| fail(&e))?;
    if part.p2p_addrs.is_empty() {
        return Err(fail(
            &"no p2p_addrs (is that node running with the overlay on?)",
        ));
    }
    Ok(part.p2p_addrs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sip::transport::Transport;

    fn listeners() -> [Listener; 1] {
        [Listener {
            transport: Transport::Tcp,
            addr: "[::1]:5070".parse().unwrap(),
            advertised_host: "[::1]".into(),
        }]
    }

    #[test]
    fn lists_listeners() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &listeners(), None, None).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["pid"], std::process::id());
        assert_eq!(json["listeners"][0]["transport"], "tcp");
        assert_eq!(json["listeners"][0]["address"], "[::1]:5070");
        assert!(json.get("peer_id").is_none());
        assert!(json.get("p2p_addrs").is_none());
        assert!(json.get("role").is_none());
        assert!(read_p2p_addrs(dir.path())
            .unwrap_err()
            .contains("no p2p_addrs"));
    }

    #[test]
    fn overlay_addresses_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let peer_id = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer_id}")
            .parse()
            .unwrap();
        let info = OverlayInfo {
            peer_id,
            p2p_addrs: vec![addr.clone()],
        };
        let status = OverlayStatus {
            role: NodeRole::Supernode,
            ..OverlayStatus::default()
        };
        write(dir.path(), &listeners(), Some(&info), Some(&status)).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["peer_id"], peer_id.to_string());
        assert_eq!(json["role"], "supernode");
        assert_eq!(json["validation"]["refused_total"], 0);
        assert_eq!(json["validation"]["refused"]["unauthorised"], 0);
        assert_eq!(json["validation"]["accepted_puts"], 0);
        assert_eq!(read_p2p_addrs(dir.path()).unwrap(), [addr.to_string()]);
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = read_p2p_addrs(dir.path()).unwrap_err();
        assert!(error.contains(FILE_NAME), "{error}");
    }
}
