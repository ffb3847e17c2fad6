//! The message parser (RFC 3261 section 25, with the robustness RFC 4475 asks for).
//!
//! Offsets stored in a [`Message`] (`start_line_range`, [`super::Header::line`]) are
//! relative to [`Message::raw`], which begins at the start line: CRLFs received before the
//! start line (RFC 3261 7.5) are skipped and are not part of `raw`.

pub(crate) mod lex;
mod validate;

use super::uri::Uri;
use super::{
    Header, HeaderName, Message, Method, Rejection, RequestLine, StartLine, StatusLine, Version,
};
use lex::{is_token, parse_decimal, trim_lws};
use smallvec::SmallVec;
use std::fmt;

/// A syntax error, with a short description of the fault suitable for a reason phrase
/// (`missing Call-ID`, `bad Via`, `negative Content-Length`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub what: &'static str,
}

impl ParseError {
    pub const fn new(what: &'static str) -> ParseError {
        ParseError { what }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }
}

impl std::error::Error for ParseError {}

/// More header lines than this make the message a parse error (`too many headers`): it bounds
/// the header vector and the work spent on one message.
pub const MAX_HEADERS: usize = 256;

/// The next line of `bytes` starting at `pos`: `(content_end, next_line_start)`. A line ends
/// with CRLF or, leniently, a bare LF. `None` when no line terminator follows.
fn next_line(bytes: &[u8], pos: usize) -> Option<(usize, usize)> {
    let nl = pos + memchr::memchr(b'\n', bytes.get(pos..)?)?;
    let end = if nl > pos && bytes.get(nl - 1) == Some(&b'\r') {
        nl - 1
    } else {
        nl
    };
    Some((end, nl + 1))
}

pub(crate) fn parse_message(input: &[u8]) -> Result<Message<'_>, ParseError> {
    let skip = input
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(ParseError::new("empty message"))?;
    let bytes = input.get(skip..).unwrap_or_default();

    // Pass 1: find the empty line ending the header section so that the whole section is
    // UTF-8 checked once.
    let mut pos = 0;
    let (header_end, body_start) = loop {
        let (end, next) =
            next_line(bytes, pos).ok_or(ParseError::new("missing empty line after headers"))?;
        if end == pos && pos != 0 {
            break (pos, next);
        }
        pos = next;
    };
    let text = std::str::from_utf8(bytes.get(..header_end).unwrap_or_default())
        .map_err(|_| ParseError::new("invalid UTF-8"))?;
    let text_bytes = text.as_bytes();

    // Pass 2: the start line, then header lines with their folded continuations.
    let (sl_end, sl_next) = next_line(text_bytes, 0).ok_or(ParseError::new("bad start line"))?;
    let start_line = parse_start_line(text.get(..sl_end).unwrap_or_default())?;
    let mut headers: SmallVec<[Header<'_>; super::INLINE_HEADERS]> = SmallVec::new();
    let mut pos = sl_next;
    // `header_end` is the start of the empty line, so every header line is terminated.
    while pos < header_end {
        let (end, next) = next_line(text_bytes, pos).ok_or(ParseError::new("bad header line"))?;
        let first = text_bytes.get(pos).copied().unwrap_or(b' ');
        if first == b' ' || first == b'\t' {
            // Folded continuation of the previous header (RFC 3261 7.3.1).
            let last = headers
                .last_mut()
                .ok_or(ParseError::new("bad header line"))?;
            let colon = text
                .get(last.line.start..)
                .and_then(|l| l.find(':'))
                .ok_or(ParseError::new("bad header line"))?;
            let value_start = last.line.start + colon + 1;
            last.value = trim_lws(text.get(value_start..end).unwrap_or_default());
            last.line.end = next;
        } else {
            if headers.len() >= MAX_HEADERS {
                return Err(ParseError::new("too many headers"));
            }
            let line = text.get(pos..end).unwrap_or_default();
            let colon =
                memchr::memchr(b':', line.as_bytes()).ok_or(ParseError::new("bad header line"))?;
            let name_raw = line
                .get(..colon)
                .unwrap_or_default()
                .trim_end_matches([' ', '\t']);
            if !is_token(name_raw) {
                return Err(ParseError::new("bad header name"));
            }
            headers.push(Header {
                name: HeaderName::from_name(name_raw),
                name_raw,
                value: trim_lws(line.get(colon + 1..).unwrap_or_default()),
                line: pos..next,
            });
        }
        pos = next;
    }

    let body_end = match content_length(&headers)? {
        Some(length) => body_start
            .checked_add(length)
            .filter(|&end| end <= bytes.len())
            .ok_or(ParseError::new("Content-Length larger than message"))?,
        None => bytes.len(),
    };
    Ok(Message {
        start_line,
        headers,
        body: bytes.get(body_start..body_end).unwrap_or_default(),
        raw: bytes.get(..body_end).unwrap_or_default(),
        start_line_range: 0..sl_next,
    })
}

/// The Content-Length of the message, `None` when absent. Repeated Content-Length lines must
/// agree, otherwise the framing is ambiguous.
fn content_length(headers: &[Header<'_>]) -> Result<Option<usize>, ParseError> {
    let mut found = None;
    for h in headers
        .iter()
        .filter(|h| h.name == HeaderName::ContentLength)
    {
        let length = parse_content_length(h.value)?;
        if found.is_some_and(|f| f != length) {
            return Err(ParseError::new("conflicting Content-Length"));
        }
        found = Some(length);
    }
    Ok(found)
}

pub(crate) fn parse_content_length(value: &str) -> Result<usize, ParseError> {
    if value.starts_with('-') {
        return Err(ParseError::new("negative Content-Length"));
    }
    match parse_decimal(value) {
        Ok(n) => {
            usize::try_from(n).map_err(|_| ParseError::new("Content-Length larger than message"))
        }
        Err(true) => Err(ParseError::new("Content-Length larger than message")),
        Err(false) => Err(ParseError::new("bad Content-Length")),
    }
}

fn parse_version(text: &str) -> Result<Version, ParseError> {
    const BAD: ParseError = ParseError::new("bad SIP version");
    let prefix = text.get(..4).ok_or(BAD)?;
    if !prefix.eq_ignore_ascii_case("SIP/") {
        return Err(BAD);
    }
    let (major, minor) = text
        .get(4..)
        .unwrap_or_default()
        .split_once('.')
        .ok_or(BAD)?;
    let number = |s: &str| -> Result<u8, ParseError> {
        match parse_decimal(s) {
            Ok(n) => u8::try_from(n).map_err(|_| BAD),
            Err(_) => Err(BAD),
        }
    };
    Ok(Version {
        major: number(major)?,
        minor: number(minor)?,
    })
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, ParseError> {
    if line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        parse_status_line(line).map(StartLine::Response)
    } else {
        parse_request_line(line).map(StartLine::Request)
    }
}

fn parse_status_line(line: &str) -> Result<StatusLine<'_>, ParseError> {
    const BAD_CODE: ParseError = ParseError::new("bad status code");
    let (version, rest) = line.split_once(' ').ok_or(BAD_CODE)?;
    let version = parse_version(version)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 {
        return Err(BAD_CODE);
    }
    let code = parse_decimal(code).map_err(|_| BAD_CODE)?;
    let code = u16::try_from(code)
        .ok()
        .filter(|c| (100..=699).contains(c))
        .ok_or(BAD_CODE)?;
    Ok(StatusLine {
        version,
        code,
        reason: reason.trim_end_matches([' ', '\t']),
    })
}

/// The Request-URI text between the method and the version, exactly as written (it may hold
/// extra whitespace or `<>`, which [`Message::validate`] rejects). `None` when the line does
/// not have three SP-separated parts.
pub(crate) fn request_uri_text(line: &str) -> Option<(&str, &str, &str)> {
    // Trailing whitespace after the version is tolerated (RFC 4475 3.1.2.10 allows either).
    let line = line.trim_end_matches([' ', '\t']);
    let (method, rest) = line.split_once(' ')?;
    let (uri, version) = rest.rsplit_once(' ')?;
    Some((method, uri, version))
}

fn parse_request_line(line: &str) -> Result<RequestLine<'_>, ParseError> {
    let (method, uri_text, version) =
        request_uri_text(line).ok_or(ParseError::new("bad Request-Line"))?;
    if !is_token(method) {
        return Err(ParseError::new("bad method"));
    }
    let version = parse_version(version)?;
    // Parse leniently here (the URI inside `<>`, or up to embedded whitespace) so that the
    // message still yields a usable 400 from `validate`, which rejects both forms.
    let mut core = trim_lws(uri_text);
    if let Some(inner) = core.strip_prefix('<').and_then(|c| c.strip_suffix('>')) {
        core = trim_lws(inner);
    }
    let core = core.split([' ', '\t']).next().unwrap_or_default();
    let uri = Uri::parse(core).map_err(|_| ParseError::new("bad Request-URI"))?;
    Ok(RequestLine {
        method: Method::from_token(method),
        uri,
        version,
    })
}

pub(crate) fn parse_max_forwards(value: &str) -> Result<u8, ParseError> {
    match parse_decimal(trim_lws(value)) {
        Ok(n) => u8::try_from(n).map_err(|_| ParseError::new("Max-Forwards out of range")),
        Err(true) => Err(ParseError::new("Max-Forwards out of range")),
        Err(false) => Err(ParseError::new("bad Max-Forwards")),
    }
}

pub(crate) fn parse_delta_seconds(value: &str) -> Result<u32, ParseError> {
    match parse_decimal(trim_lws(value)) {
        Ok(n) => u32::try_from(n).map_err(|_| ParseError::new("delta-seconds out of range")),
        Err(true) => Err(ParseError::new("delta-seconds out of range")),
        Err(false) => Err(ParseError::new("bad delta-seconds")),
    }
}

pub(crate) fn validate_message(msg: &Message<'_>) -> Result<(), Rejection> {
    validate::validate(msg)
}

#[cfg(test)]
mod tests;
