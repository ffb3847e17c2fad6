//! Finding message boundaries on stream transports (RFC 3261 18.3): Content-Length framing,
//! several messages in one read, messages split across reads, and RFC 5626 CRLF keep-alives.
//!
//! The scan here is deliberately independent of the full parser: it only needs the end of the
//! header section and the Content-Length value, and it must stay cheap because it runs again
//! on every read until a message is complete.

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
///
/// * Leading `CRLFCRLF` is a keep-alive ping (RFC 5626 4.4.1); a leading lone `CRLF` (or bare
///   `LF`) is consumed silently. A buffer holding only `CRLF` or `CRLFCR` is `Incomplete`,
///   because the rest of a ping may still be on its way.
/// * The header section ends at the first empty line; `LFLF` is accepted as well as
///   `CRLFCRLF`.
/// * Content-Length (long or compact `l`, any case) is mandatory; repeated lines must agree.
/// * [`FramingError::TooLarge`] when the message (header section plus body) would exceed
///   `max_message_size`, or when more than `max_message_size` bytes arrived without the end
///   of the header section.
pub fn frame_stream(buf: &[u8], max_message_size: usize) -> Result<Framed, FramingError> {
    if let Some(keep_alive) = leading_keep_alive(buf) {
        return Ok(keep_alive);
    }
    let Some(header_len) = header_section_len(buf, max_message_size) else {
        return if buf.len() > max_message_size {
            Err(FramingError::TooLarge)
        } else {
            Ok(Framed::Incomplete)
        };
    };
    let body_len = content_length(&buf[..header_len])?;
    let total = header_len
        .checked_add(body_len)
        .ok_or(FramingError::TooLarge)?;
    if total > max_message_size {
        return Err(FramingError::TooLarge);
    }
    if buf.len() >= total {
        Ok(Framed::Message { len: total })
    } else {
        Ok(Framed::Incomplete)
    }
}

/// Classifies CR/LF bytes at the front of the buffer. `None` when the buffer starts with
/// something else (a message) or is empty.
fn leading_keep_alive(buf: &[u8]) -> Option<Framed> {
    match buf {
        [b'\r', b'\n', b'\r', b'\n', ..] => Some(Framed::KeepAlive { len: 4, ping: true }),
        // Wait: these may be the first bytes of a ping.
        [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => Some(Framed::Incomplete),
        [b'\r', b'\n', ..] => Some(Framed::KeepAlive {
            len: 2,
            ping: false,
        }),
        [b'\n', ..] => Some(Framed::KeepAlive {
            len: 1,
            ping: false,
        }),
        // A stray CR not followed by LF: drop it so the stream can make progress.
        [b'\r', ..] => Some(Framed::KeepAlive {
            len: 1,
            ping: false,
        }),
        _ => None,
    }
}

/// Length of the header section including its terminating empty line, looking no further
/// than `limit` bytes (plus the few bytes of the terminator itself).
fn header_section_len(buf: &[u8], limit: usize) -> Option<usize> {
    // The empty line may straddle `limit` by its own two bytes; that is still a header
    // section of at most `limit` bytes of content.
    let window = &buf[..buf.len().min(limit.saturating_add(2))];
    for lf in memchr::memchr_iter(b'\n', window) {
        match window.get(lf + 1..) {
            Some([b'\n', ..]) => return Some(lf + 2),
            Some([b'\r', b'\n', ..]) => return Some(lf + 3),
            _ => {}
        }
    }
    None
}

/// Scans the header lines (after the start line) for Content-Length. Folded continuation
/// lines are joined to their header, as the grammar allows folding anywhere in a value.
fn content_length(header: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    let mut lines = header.split(|&b| b == b'\n').skip(1).peekable();
    while let Some(line) = lines.next() {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim_ascii_end(&line[..colon]);
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let mut value = DecimalScan::default();
        value.feed(&line[colon + 1..])?;
        while let Some(next) = lines.peek() {
            if !matches!(next.first(), Some(b' ' | b'\t')) {
                break;
            }
            value.feed(next)?;
            lines.next();
        }
        let length = value.finish()?;
        if found.is_some_and(|earlier| earlier != length) {
            return Err(FramingError::BadContentLength);
        }
        found = Some(length);
    }
    found.ok_or(FramingError::BadContentLength)
}

fn trim_ascii_end(mut bytes: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Accumulates a decimal number surrounded by linear whitespace, possibly across folded
/// lines. Anything else (signs, letters, two separate numbers) is an error.
#[derive(Default)]
struct DecimalScan {
    value: Option<usize>,
    /// Whitespace was seen after the digits: more digits would be a second number.
    ended: bool,
}

impl DecimalScan {
    fn feed(&mut self, bytes: &[u8]) -> Result<(), FramingError> {
        for &b in bytes {
            match b {
                b'0'..=b'9' => {
                    if self.ended {
                        return Err(FramingError::BadContentLength);
                    }
                    let digit = usize::from(b - b'0');
                    let next = self
                        .value
                        .unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(digit))
                        // A length that does not fit in memory is too large, not malformed.
                        .ok_or(FramingError::TooLarge)?;
                    self.value = Some(next);
                }
                b' ' | b'\t' | b'\r' => {
                    if self.value.is_some() {
                        self.ended = true;
                    }
                }
                _ => return Err(FramingError::BadContentLength),
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<usize, FramingError> {
        self.value.ok_or(FramingError::BadContentLength)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MAX: usize = 65_535;

    fn msg(body: &str) -> Vec<u8> {
        format!(
            "MESSAGE sip:bob@example.com SIP/2.0\r\n\
             Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Frames everything in `stream`, returning messages and keep-alives in order.
    fn frame_all(mut stream: &[u8]) -> Vec<Framed> {
        let mut out = Vec::new();
        loop {
            let framed = frame_stream(stream, MAX).unwrap();
            match framed {
                Framed::Incomplete => return out,
                Framed::Message { len } | Framed::KeepAlive { len, .. } => {
                    stream = &stream[len..];
                }
            }
            out.push(framed);
        }
    }

    #[test]
    fn single_message() {
        let m = msg("hello");
        assert_eq!(frame_stream(&m, MAX), Ok(Framed::Message { len: m.len() }));
    }

    #[test]
    fn several_messages_in_one_buffer() {
        let a = msg("first");
        let b = msg("");
        let c = msg("third body");
        let stream = [a.clone(), b.clone(), c.clone()].concat();
        assert_eq!(
            frame_all(&stream),
            vec![
                Framed::Message { len: a.len() },
                Framed::Message { len: b.len() },
                Framed::Message { len: c.len() },
            ]
        );
    }

    #[test]
    fn split_at_every_offset() {
        let m = msg("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n");
        for cut in 0..m.len() {
            let framed = frame_stream(&m[..cut], MAX).unwrap();
            assert_eq!(framed, Framed::Incomplete, "cut at {cut}");
        }
        // Trailing bytes of the next message do not change the answer.
        let mut more = m.clone();
        more.extend_from_slice(b"INVITE sip:x");
        assert_eq!(
            frame_stream(&more, MAX),
            Ok(Framed::Message { len: m.len() })
        );
    }

    #[test]
    fn split_stream_at_every_offset_reassembles() {
        let a = msg("one");
        let b = msg("two two");
        let stream = [a.clone(), b"\r\n\r\n".to_vec(), b.clone()].concat();
        for cut in 0..=stream.len() {
            let mut buffer = Vec::new();
            let mut units = Vec::new();
            for chunk in [&stream[..cut], &stream[cut..]] {
                buffer.extend_from_slice(chunk);
                loop {
                    match frame_stream(&buffer, MAX).unwrap() {
                        Framed::Incomplete => break,
                        Framed::Message { len } => {
                            units.push(buffer.drain(..len).collect::<Vec<u8>>());
                        }
                        Framed::KeepAlive { len, ping } => {
                            assert!(ping, "cut at {cut}");
                            buffer.drain(..len);
                        }
                    }
                }
            }
            assert_eq!(units, vec![a.clone(), b.clone()], "cut at {cut}");
            assert!(buffer.is_empty());
        }
    }

    #[test]
    fn keep_alives_between_messages() {
        let a = msg("x");
        let stream = [
            b"\r\n\r\n".as_slice(),
            &a,
            b"\r\n",
            &a,
            b"\r\n\r\n\r\n\r\n",
            &a,
        ]
        .concat();
        assert_eq!(
            frame_all(&stream),
            vec![
                Framed::KeepAlive { len: 4, ping: true },
                Framed::Message { len: a.len() },
                Framed::KeepAlive {
                    len: 2,
                    ping: false
                },
                Framed::Message { len: a.len() },
                Framed::KeepAlive { len: 4, ping: true },
                Framed::KeepAlive { len: 4, ping: true },
                Framed::Message { len: a.len() },
            ]
        );
    }

    #[test]
    fn partial_ping_waits() {
        assert_eq!(frame_stream(b"", MAX), Ok(Framed::Incomplete));
        assert_eq!(frame_stream(b"\r", MAX), Ok(Framed::Incomplete));
        assert_eq!(frame_stream(b"\r\n", MAX), Ok(Framed::Incomplete));
        assert_eq!(frame_stream(b"\r\n\r", MAX), Ok(Framed::Incomplete));
        assert_eq!(
            frame_stream(b"\r\nI", MAX),
            Ok(Framed::KeepAlive {
                len: 2,
                ping: false
            })
        );
    }

    #[test]
    fn compact_and_odd_content_length_forms() {
        for header in [
            "l: 3",
            "L:3",
            "content-length   :   3  ",
            "CONTENT-LENGTH: 003",
            "Content-Length:\r\n 3",
        ] {
            let m = format!("ACK sip:a@b SIP/2.0\r\n{header}\r\nX: y\r\n\r\nabc");
            assert_eq!(
                frame_stream(m.as_bytes(), MAX),
                Ok(Framed::Message { len: m.len() }),
                "{header}"
            );
        }
    }

    #[test]
    fn header_named_like_content_length_prefix_is_ignored() {
        let m = b"ACK sip:a@b SIP/2.0\r\nLength: 5\r\nContent-Lengthy: 9\r\nl: 0\r\n\r\n";
        assert_eq!(frame_stream(m, MAX), Ok(Framed::Message { len: m.len() }));
    }

    #[test]
    fn lf_only_line_endings() {
        let m = b"ACK sip:a@b SIP/2.0\nContent-Length: 2\n\nhi";
        assert_eq!(frame_stream(m, MAX), Ok(Framed::Message { len: m.len() }));
    }

    #[test]
    fn bad_negative_and_missing_content_length() {
        for header in [
            "Content-Length: -1",
            "Content-Length: abc",
            "Content-Length: 1 2",
            "Content-Length: +4",
            "Content-Length:",
            "Content-Length: 4\r\nl: 5",
            "Via: SIP/2.0/TCP h",
        ] {
            let m = format!("ACK sip:a@b SIP/2.0\r\n{header}\r\n\r\nabcd");
            assert_eq!(
                frame_stream(m.as_bytes(), MAX),
                Err(FramingError::BadContentLength),
                "{header}"
            );
        }
        // Agreeing duplicates are tolerated.
        let m = b"ACK sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\nz";
        assert_eq!(frame_stream(m, MAX), Ok(Framed::Message { len: m.len() }));
    }

    #[test]
    fn too_large() {
        let m = msg("0123456789");
        assert_eq!(frame_stream(&m, m.len() - 1), Err(FramingError::TooLarge));
        assert_eq!(
            frame_stream(&m, m.len()),
            Ok(Framed::Message { len: m.len() })
        );
        // A declared body that cannot fit is rejected before it arrives.
        let m = b"ACK sip:a@b SIP/2.0\r\nl: 99999999999999999999999999\r\n\r\n";
        assert_eq!(frame_stream(m, MAX), Err(FramingError::TooLarge));
        let m = b"ACK sip:a@b SIP/2.0\r\nl: 70000\r\n\r\n";
        assert_eq!(frame_stream(m, MAX), Err(FramingError::TooLarge));
    }

    #[test]
    fn endless_header_section_is_too_large() {
        let mut m = b"INVITE sip:a@b SIP/2.0\r\n".to_vec();
        while m.len() <= 200 {
            m.extend_from_slice(b"X: y\r\n");
        }
        assert_eq!(frame_stream(&m[..190], 200), Ok(Framed::Incomplete));
        assert_eq!(frame_stream(&m, 200), Err(FramingError::TooLarge));
    }
}
