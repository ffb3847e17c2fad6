//! `<data-dir>/node.json`: what a running node tells scripts, chiefly where it listens
//! (ports chosen by the kernel for `:0` listeners included).

use serde::Serialize;
use sip::server::Listener;
use std::io;
use std::path::Path;

pub const FILE_NAME: &str = "node.json";

#[derive(Debug, Serialize)]
struct NodeInfo<'a> {
    pid: u32,
    version: &'static str,
    listeners: Vec<ListenerInfo<'a>>,
}

#[derive(Debug, Serialize)]
struct ListenerInfo<'a> {
    transport: &'static str,
    address: String,
    advertised_host: &'a str,
}

/// Writes the file atomically (temporary file, then rename), so a reader never sees half.
pub fn write(data_dir: &Path, listeners: &[Listener]) -> io::Result<()> {
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
    };
    let mut json = serde_json::to_vec_pretty(&info).map_err(io::Error::other)?;
    json.push(b'\n');
    let temporary = data_dir.join(format!("{FILE_NAME}.tmp"));
    std::fs::write(&temporary, json)?;
    std::fs::rename(&temporary, data_dir.join(FILE_NAME))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sip::transport::Transport;

    #[test]
    fn lists_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let listeners = [Listener {
            transport: Transport::Tcp,
            addr: "[::1]:5070".parse().unwrap(),
            advertised_host: "[::1]".into(),
        }];
        write(dir.path(), &listeners).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["pid"], std::process::id());
        assert_eq!(json["listeners"][0]["transport"], "tcp");
        assert_eq!(json["listeners"][0]["address"], "[::1]:5070");
    }
}
