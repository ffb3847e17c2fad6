//! Finding message boundaries on stream transports (RFC 3261 18.3): Content-Length framing,
//! several messages in one read, messages split across reads, and RFC 5626 CRLF keep-alives.

/// What the front of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed {
    /// A complete message occupies the first `len` bytes.
    Message { len: usize },
    /// `len` bytes of CRLF keep-alive: a double CRLF (`ping`) must be answered with one CRLF
    /// (`pong`) when `ping` is true; a lone CRLF is consumed silently.
    KeepAlive { len: usize, ping: bool },
    /// More bytes are needed.
    Incomplete,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Headers or body exceed the configured maximum; the connection should be closed.
    #[error("message too large")]
    TooLarge,
    /// The header section has no usable Content-Length (required on streams); close.
    #[error("missing or bad Content-Length on stream")]
    BadContentLength,
}

/// Looks at the front of `buf` and reports the first complete unit.
pub fn frame_stream(buf: &[u8], max_message_size: usize) -> Result<Framed, FramingError> {
    let _ = (buf, max_message_size);
    todo!("frame stream")
}
