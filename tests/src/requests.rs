//! Hand-written requests and the checks the security and routing tests share: what a
//! listening socket received (or that it received nothing), digest challenges, INVITE and
//! MESSAGE requests.

use crate::raw_udp::{Request, Response, UdpClient};
use anyhow::{Context, Result};
use sip::auth::{first_supported_challenge, DigestChallenge};
use std::time::{Duration, Instant};

/// How long a socket listens to show that nothing was sent to it.
pub const SILENCE: Duration = Duration::from_millis(1500);

/// The first request that arrives at `socket` within `limit`, as text.
pub fn next_request(socket: &UdpClient, limit: Duration) -> Result<Option<String>> {
    let deadline = Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(datagram) = socket.recv(left)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&datagram).into_owned();
        if !text.starts_with("SIP/2.0") {
            return Ok(Some(text));
        }
    }
    Ok(None)
}

/// Fails when `socket` receives a request within [`SILENCE`]; `what` names it.
pub fn ensure_silent(socket: &UdpClient, what: &str) -> Result<()> {
    if let Some(request) = next_request(socket, SILENCE)? {
        anyhow::bail!("{what} received a request it must not:\n{request}");
    }
    Ok(())
}

/// The value of the first header `name` of a message's text.
pub fn header_value<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    text.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The first challenge the `sip` crate's client supports among `header` values.
pub fn challenge<'r>(response: &'r Response, header: &str) -> Result<DigestChallenge<'r>> {
    first_supported_challenge(response.header_all(header))
        .with_context(|| format!("no usable {header} in:\n{}", response.raw))
}

/// An INVITE to `uri` from `from`, with an SDP body.
pub fn invite(client: &UdpClient, uri: &str, from: &str) -> Request {
    Request::new("INVITE", uri, client)
        .set("From", &format!("<{from}>;tag=f1"))
        .with("Contact", &format!("<sip:caller@{}>", client.local_addr()))
        .body("application/sdp", b"v=0\r\n")
}

/// A MESSAGE to `uri` from `from`.
pub fn message(client: &UdpClient, uri: &str, from: &str) -> Request {
    Request::new("MESSAGE", uri, client)
        .set("From", &format!("<{from}>;tag=m1"))
        .body("text/plain", b"hello")
}
