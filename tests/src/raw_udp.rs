//! Hand-written SIP over UDP: a request builder, a response parser and a client socket.

use anyhow::{Context, Result};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A unique token for Call-IDs, tags and branches.
fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}{:x}", std::process::id(), nanos, n)
}

/// Compact forms of header names (RFC 3261 7.3.3), for lookups.
fn long_name(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "i" => "call-id",
        "m" => "contact",
        "e" => "content-encoding",
        "l" => "content-length",
        "c" => "content-type",
        "f" => "from",
        "s" => "subject",
        "k" => "supported",
        "t" => "to",
        "v" => "via",
        _ => name,
    }
}

fn same_header(a: &str, b: &str) -> bool {
    long_name(a).eq_ignore_ascii_case(long_name(b))
}

/// A SIP request under construction. [`Request::new`] fills in a complete, valid request
/// (Via with rport, From with tag, To, Call-ID, CSeq, Max-Forwards); tests then add, replace
/// or remove headers to make it invalid on purpose. Content-Length is added by
/// [`Request::to_bytes`] unless a header of that name was set explicitly.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A request sent from `client`'s socket.
    pub fn new(method: &str, uri: &str, client: &UdpClient) -> Request {
        Request::from_addr(method, uri, client.local_addr(), "UDP")
    }

    /// A request whose Via names `local` over `transport` ("UDP", "TCP").
    pub fn from_addr(method: &str, uri: &str, local: SocketAddr, transport: &str) -> Request {
        let id = unique();
        let headers = vec![
            (
                "Via".to_string(),
                format!("SIP/2.0/{transport} {local};branch=z9hG4bK{id};rport"),
            ),
            ("Max-Forwards".into(), "70".into()),
            (
                "From".into(),
                format!("<sip:tester@{}>;tag=t{id}", crate::DOMAIN),
            ),
            ("To".into(), format!("<{uri}>")),
            ("Call-ID".into(), format!("{id}@127.0.0.1")),
            ("CSeq".into(), format!("1 {method}")),
        ];
        Request {
            method: method.to_string(),
            uri: uri.to_string(),
            version: "SIP/2.0".to_string(),
            headers,
            body: Vec::new(),
        }
    }

    /// Appends a header.
    pub fn with(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Replaces every header `name` with one of value `value` (appends if none).
    pub fn set(mut self, name: &str, value: &str) -> Request {
        match self.headers.iter().position(|(n, _)| same_header(n, name)) {
            Some(i) => {
                self.headers[i].1 = value.to_string();
                let mut seen = 0;
                self.headers.retain(|(n, _)| {
                    if same_header(n, name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.headers.push((name.to_string(), value.to_string())),
        }
        self
    }

    /// Removes every header `name`.
    pub fn without(mut self, name: &str) -> Request {
        self.headers.retain(|(n, _)| !same_header(n, name));
        self
    }

    /// Replaces the SIP-Version of the request line.
    pub fn version(mut self, version: &str) -> Request {
        self.version = version.to_string();
        self
    }

    /// Sets the body (and its Content-Type).
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Request {
        self.body = body.to_vec();
        self.set("Content-Type", content_type)
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| same_header(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// The Call-ID, if the request has one.
    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// The request on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut text = format!("{} {} {}\r\n", self.method, self.uri, self.version);
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if self.header("Content-Length").is_none() {
            text.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        text.push_str("\r\n");
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A parsed SIP response (only what tests look at; not a validating parser).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The whole message, lossily decoded, for failure messages.
    pub raw: String,
}

impl Response {
    /// Parses a response; `None` for anything that is not one (a request, garbage).
    pub fn parse(bytes: &[u8]) -> Option<Response> {
        let raw = String::from_utf8_lossy(bytes).into_owned();
        let (head, body) = match raw.find("\r\n\r\n") {
            Some(i) => (&raw[..i], bytes.get(i + 4..).unwrap_or_default().to_vec()),
            None => (raw.as_str(), Vec::new()),
        };
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?;
        let rest = status_line.strip_prefix("SIP/2.0 ")?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status = code.parse().ok()?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // A folded continuation line.
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        Some(Response {
            status,
            reason: reason.to_string(),
            headers,
            body,
            raw: raw.clone(),
        })
    }

    /// The first value of header `name` (compact forms understood).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| same_header(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| same_header(n, name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The comma-separated tokens of every header `name` (e.g. Allow), trimmed.
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.header_all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    }
}

/// A UDP socket on 127.0.0.1 that talks to one target.
pub struct UdpClient {
    socket: UdpSocket,
    target: SocketAddr,
    local: SocketAddr,
}

impl UdpClient {
    /// Binds an ephemeral loopback port.
    pub fn new(target: SocketAddr) -> Result<UdpClient> {
        UdpClient::bind(Ipv4Addr::LOCALHOST, target)
    }

    /// Binds an ephemeral port of `local`, e.g. another loopback address (127.0.0.2) to
    /// stand for another host.
    pub fn bind(local: Ipv4Addr, target: SocketAddr) -> Result<UdpClient> {
        let socket = UdpSocket::bind((local, 0))
            .with_context(|| format!("binding a UDP socket on {local}"))?;
        let local = socket.local_addr()?;
        Ok(UdpClient {
            socket,
            target,
            local,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Sends one datagram to the target.
    pub fn send(&self, bytes: &[u8]) -> Result<()> {
        self.socket
            .send_to(bytes, self.target)
            .with_context(|| format!("sending to {}", self.target))?;
        Ok(())
    }

    /// The next datagram, or `None` if nothing arrives within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let timeout = timeout.max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(timeout))?;
        let mut buf = vec![0u8; 65_536];
        match self.socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            // A previous datagram bounced (ICMP port unreachable): nothing to read.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends `request` and returns its final response (1xx are skipped), or `None` if
    /// none came within `limit`. The request is retransmitted as a UDP client transaction
    /// does (500 ms, doubling up to 4 s); responses of other Call-IDs are ignored.
    pub fn transact(&self, request: &Request, limit: Duration) -> Result<Option<Response>> {
        let bytes = request.to_bytes();
        let call_id = request.call_id().map(str::to_string);
        let deadline = Instant::now() + limit;
        let mut interval = Duration::from_millis(500);
        let mut next_send = Instant::now();
        // Bounded: each turn either sends or waits at least until the next send/deadline.
        for _ in 0..10_000 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if now >= next_send {
                self.send(&bytes)?;
                next_send = now + interval;
                interval = (interval * 2).min(Duration::from_secs(4));
            }
            let wait = next_send
                .min(deadline)
                .saturating_duration_since(Instant::now());
            let Some(datagram) = self.recv(wait)? else {
                continue;
            };
            let Some(response) = Response::parse(&datagram) else {
                continue;
            };
            if let Some(call_id) = &call_id {
                if response.header("Call-ID") != Some(call_id.as_str()) {
                    continue;
                }
            }
            if response.status >= 200 {
                return Ok(Some(response));
            }
        }
        Ok(None)
    }

    /// [`UdpClient::transact`] that fails if no final response arrives.
    pub fn expect_response(&self, request: &Request, limit: Duration) -> Result<Response> {
        self.transact(request, limit)?.with_context(|| {
            format!(
                "no final response within {limit:?} to:\n{}",
                String::from_utf8_lossy(&request.to_bytes())
            )
        })
    }
}
