//! Hand-written SIP over TCP, and how a connection looks from its far end: answered,
//! still open, or closed by the node.

use crate::raw_udp::{Request, Response};
use anyhow::{bail, Context, Result};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Reads done while waiting for one response or for the close; each waits at most until
/// the caller's deadline, so the bound is on busy peers sending other bytes.
const MAX_READS: usize = 100_000;

/// A TCP connection to a node, with what it has received and not yet consumed.
pub struct TcpClient {
    stream: TcpStream,
    received: Vec<u8>,
    /// The node closed the connection (EOF or reset).
    closed: bool,
}

impl TcpClient {
    /// Connects from 127.0.0.1 (an ephemeral port).
    pub fn connect(target: SocketAddr) -> Result<TcpClient> {
        let stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .with_context(|| format!("connecting to {target}"))?;
        TcpClient::from_stream(stream)
    }

    /// Wraps a connected stream (in blocking mode).
    pub fn from_stream(stream: TcpStream) -> Result<TcpClient> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        Ok(TcpClient {
            stream,
            received: Vec::new(),
            closed: false,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.stream.local_addr()?)
    }

    /// Writes `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .context("writing to the node")?;
        Ok(())
    }

    /// Reads once, waiting at most until `deadline`. False when nothing came in time;
    /// true when bytes arrived or the node closed.
    fn read_some(&mut self, deadline: Instant) -> Result<bool> {
        if self.closed {
            return Ok(true);
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Ok(false);
        }
        self.stream.set_read_timeout(Some(wait))?;
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.closed = true;
                Ok(true)
            }
            Ok(n) => {
                self.received.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                self.closed = true;
                Ok(true)
            }
            Err(e) => Err(e).context("reading from the node"),
        }
    }

    /// Takes one complete message off the front of what was received; CRLF keep-alive
    /// bytes in front of it are skipped.
    fn take_message(&mut self) -> Option<Vec<u8>> {
        let start = self
            .received
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')?;
        let rest = &self.received[start..];
        let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&rest[..head_end]);
        let body_len = head
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| {
                let name = name.trim();
                name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l")
            })
            .and_then(|(_, value)| value.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let end = start + head_end + body_len;
        if self.received.len() < end {
            return None;
        }
        let message = self.received[start..end].to_vec();
        self.received.drain(..end);
        Some(message)
    }

    /// The next response the node sends, or `None` if none arrives within `limit`.
    /// Fails if the node closes the connection first.
    pub fn recv_response(&mut self, limit: Duration) -> Result<Option<Response>> {
        let deadline = Instant::now() + limit;
        for _ in 0..MAX_READS {
            if let Some(message) = self.take_message() {
                if let Some(response) = Response::parse(&message) {
                    return Ok(Some(response));
                }
                continue;
            }
            if self.closed {
                bail!(
                    "the node closed the connection (unanswered bytes: {:?})",
                    String::from_utf8_lossy(&self.received)
                );
            }
            if !self.read_some(deadline)? {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Sends `request` and returns its final response (1xx and responses to other
    /// requests are skipped); fails if none arrives within `limit`.
    pub fn transact(&mut self, request: &Request, limit: Duration) -> Result<Response> {
        self.send(&request.to_bytes())?;
        let deadline = Instant::now() + limit;
        for _ in 0..MAX_READS {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Some(response) = self.recv_response(wait)? else {
                break;
            };
            if response.status >= 200 && response.header("Call-ID") == request.call_id() {
                return Ok(response);
            }
        }
        bail!(
            "no final response within {limit:?} over TCP to:\n{}",
            String::from_utf8_lossy(&request.to_bytes())
        )
    }

    /// Waits until the node closes the connection, at most `limit`, keeping whatever
    /// arrives before; whether it closed.
    pub fn wait_closed(&mut self, limit: Duration) -> Result<bool> {
        let deadline = Instant::now() + limit;
        for _ in 0..MAX_READS {
            if self.closed {
                return Ok(true);
            }
            if !self.read_some(deadline)? {
                return Ok(false);
            }
        }
        Ok(self.closed)
    }

    /// Whether the node has closed the connection, looking without waiting.
    pub fn is_closed(&mut self) -> Result<bool> {
        self.wait_closed(Duration::from_millis(1))
    }
}

/// Whether the node has closed `stream` (EOF or reset), without waiting and without
/// consuming data. For holding thousands of idle sockets cheaply.
pub fn closed_by_peer(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut probe = [0u8; 1];
    match stream.peek(&mut probe) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}
