//! A UDP relay that hides the digest challenges SIPp cannot answer.
//!
//! SIPp 3.6 computes digest responses with MD5 only, and answers the *first* challenge of
//! a 401/407 (it joins every `WWW-Authenticate` header into one value and reads the first
//! `algorithm=`). A registrar that follows RFC 8760 and offers SHA-256 before MD5 makes it
//! fail with "authentication must use MD5 or AKAv1-MD5". A client that implements RFC
//! 8760 instead picks the first challenge whose algorithm it supports; this relay does
//! that choice for SIPp by removing, from 401/407 responses, the challenges whose
//! algorithm is not MD5 (when at least one MD5 challenge is left). Everything else is
//! forwarded as it is, except the top Via's sent-by, rewritten so that responses come back
//! through the relay.
//!
//! One SIPp instance (one UDP socket, `-t u1`) per relay.

use anyhow::{Context, Result};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest a relay runs, whatever happens.
const MAX_LIFETIME: Duration = Duration::from_secs(600);

/// What the relay saw.
#[derive(Debug, Clone, Default)]
pub struct RelayStats {
    /// Datagrams from SIPp to the node.
    pub to_node: u64,
    /// Datagrams from the node to SIPp.
    pub to_client: u64,
    /// 401/407 responses that had a challenge removed.
    pub filtered: u64,
    /// The algorithms of the challenges of the first 401/407 seen, in header order
    /// (`MD5` for a challenge without `algorithm=`).
    pub first_challenge_algorithms: Vec<String>,
}

struct Shared {
    stop: AtomicBool,
    client: Mutex<Option<SocketAddr>>,
    stats: Mutex<RelayStats>,
}

/// See the module documentation.
pub struct Md5ChallengeRelay {
    front_addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Md5ChallengeRelay {
    /// Starts a relay in front of `node` (a UDP listener).
    pub fn start(node: SocketAddr) -> Result<Md5ChallengeRelay> {
        let front = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the relay")?;
        let back = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the relay")?;
        let front_addr = front.local_addr()?;
        let back_addr = back.local_addr()?;
        for socket in [&front, &back] {
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            client: Mutex::new(None),
            stats: Mutex::new(RelayStats::default()),
        });
        let started = Instant::now();

        // SIPp -> node.
        let up = {
            let shared = shared.clone();
            let front = front.try_clone()?;
            let back = back.try_clone()?;
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !shared.stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFETIME {
                    let (n, from) = match front.recv_from(&mut buf) {
                        Ok(x) => x,
                        Err(e) if is_timeout(&e) => continue,
                        Err(_) => continue,
                    };
                    if let Ok(mut client) = shared.client.lock() {
                        *client = Some(from);
                    }
                    let out = rewrite_top_via(&buf[..n], &from, &back_addr);
                    let _ = back.send_to(&out, node);
                    if let Ok(mut stats) = shared.stats.lock() {
                        stats.to_node += 1;
                    }
                }
            })
        };

        // node -> SIPp.
        let down = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !shared.stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFETIME {
                    let n = match back.recv_from(&mut buf) {
                        Ok((n, _)) => n,
                        Err(e) if is_timeout(&e) => continue,
                        Err(_) => continue,
                    };
                    let client = shared.client.lock().ok().and_then(|c| *c);
                    let Some(client) = client else { continue };
                    let mut out = rewrite_top_via(&buf[..n], &back_addr, &client);
                    if let Some((filtered, algorithms)) = filter_challenges(&out) {
                        if let Ok(mut stats) = shared.stats.lock() {
                            if stats.first_challenge_algorithms.is_empty() {
                                stats.first_challenge_algorithms = algorithms;
                            }
                            if filtered.len() != out.len() {
                                stats.filtered += 1;
                            }
                        }
                        out = filtered;
                    }
                    let _ = front.send_to(&out, client);
                    if let Ok(mut stats) = shared.stats.lock() {
                        stats.to_client += 1;
                    }
                }
            })
        };

        Ok(Md5ChallengeRelay {
            front_addr,
            shared,
            threads: vec![up, down],
        })
    }

    /// Where SIPp must send its requests.
    pub fn addr(&self) -> SocketAddr {
        self.front_addr
    }

    pub fn stats(&self) -> RelayStats {
        self.shared
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

impl Drop for Md5ChallengeRelay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn is_header(line: &str, names: &[&str]) -> bool {
    match line.split_once(':') {
        Some((name, _)) => names.iter().any(|n| name.trim().eq_ignore_ascii_case(n)),
        None => false,
    }
}

/// Replaces `from` by `to` in the first Via header line. Messages that are not UTF-8 or
/// have no such Via are returned unchanged.
fn rewrite_top_via(msg: &[u8], from: &SocketAddr, to: &SocketAddr) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(msg) else {
        return msg.to_vec();
    };
    let Some(head_end) = text.find("\r\n\r\n") else {
        return msg.to_vec();
    };
    let mut offset = 0;
    for line in text[..head_end].split("\r\n") {
        if is_header(line, &["via", "v"]) {
            if let Some(i) = line.find(&from.to_string()) {
                let start = offset + i;
                let mut out = String::with_capacity(text.len() + 8);
                out.push_str(&text[..start]);
                out.push_str(&to.to_string());
                out.push_str(&text[start + from.to_string().len()..]);
                return out.into_bytes();
            }
            break;
        }
        offset += line.len() + 2;
    }
    msg.to_vec()
}

fn challenge_algorithm(value: &str) -> String {
    crate::digest::Challenge::parse(value)
        .and_then(|c| c.param("algorithm").map(str::to_string))
        .unwrap_or_else(|| "MD5".to_string())
}

/// For a 401/407: the message without its non-MD5 challenges (unchanged if that would
/// leave none), and the algorithms of all its challenges in order. `None` for other
/// messages.
fn filter_challenges(msg: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    let text = std::str::from_utf8(msg).ok()?;
    if !(text.starts_with("SIP/2.0 401 ") || text.starts_with("SIP/2.0 407 ")) {
        return None;
    }
    let head_end = text.find("\r\n\r\n")?;
    let (head, rest) = text.split_at(head_end);
    let names = ["www-authenticate", "proxy-authenticate"];
    let lines: Vec<&str> = head.split("\r\n").collect();
    let algorithms: Vec<String> = lines
        .iter()
        .filter(|l| is_header(l, &names))
        .filter_map(|l| l.split_once(':').map(|(_, v)| challenge_algorithm(v)))
        .collect();
    let keeps_md5 = algorithms.iter().any(|a| a.eq_ignore_ascii_case("MD5"));
    if !keeps_md5 {
        return Some((msg.to_vec(), algorithms));
    }
    let kept: Vec<&str> = lines
        .into_iter()
        .filter(|l| {
            !is_header(l, &names)
                || l.split_once(':')
                    .is_some_and(|(_, v)| challenge_algorithm(v).eq_ignore_ascii_case("MD5"))
        })
        .collect();
    let mut out = kept.join("\r\n");
    out.push_str(rest);
    Some((out.into_bytes(), algorithms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_md5_challenges() {
        let msg = "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n\
                   WWW-Authenticate: Digest realm=\"a\", nonce=\"1\", algorithm=SHA-256\r\n\
                   WWW-Authenticate: Digest realm=\"a\", nonce=\"2\", algorithm=MD5\r\n\
                   Content-Length: 0\r\n\r\n";
        let (out, algorithms) = filter_challenges(msg.as_bytes()).unwrap_or_default();
        let out = String::from_utf8(out).unwrap_or_default();
        assert_eq!(algorithms, ["SHA-256", "MD5"]);
        assert!(!out.contains("SHA-256"));
        assert!(out.contains("nonce=\"2\", algorithm=MD5\r\nContent-Length: 0\r\n\r\n"));
    }

    #[test]
    fn rewrites_only_the_top_via() {
        let a: SocketAddr = ([127, 0, 0, 1], 5000).into();
        let b: SocketAddr = ([127, 0, 0, 1], 6000).into();
        let msg = "REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK1\r\n\
                   Via: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK2\r\n\r\n";
        let out = rewrite_top_via(msg.as_bytes(), &a, &b);
        let out = String::from_utf8(out).unwrap_or_default();
        assert!(out.contains("127.0.0.1:6000;branch=z9hG4bK1"));
        assert!(out.contains("127.0.0.1:5000;branch=z9hG4bK2"));
    }
}
