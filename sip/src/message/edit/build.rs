//! Messages built from scratch out of another message's lines: responses (RFC 3261 8.2.6),
//! the ACK for a non-2xx response (17.1.1.3) and CANCEL (9.1).
//!
//! Each builder walks its pieces twice, once to count and once to write, so the result is a
//! single exactly sized allocation.

use super::{line_bytes, trim_line_end, Decimal};
use crate::message::header::split_list;
use crate::message::parse::lex::is_token_byte;
use crate::message::{Header, HeaderName, Message};

/// Receives the pieces of a message being built.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

struct Counter(usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn write_exact(produce: impl Fn(&mut dyn Sink)) -> Vec<u8> {
    let mut counter = Counter(0);
    produce(&mut counter);
    let mut out = Vec::with_capacity(counter.0);
    produce(&mut out);
    out
}

/// The line as received, or rebuilt from name and value when its range is unusable.
fn put_line(sink: &mut dyn Sink, msg: &Message<'_>, header: &Header<'_>) {
    match line_bytes(msg, header) {
        Some(line) => sink.put(line),
        None => put_header(sink, header.name_raw.as_bytes(), header.value.as_bytes()),
    }
}

fn put_header(sink: &mut dyn Sink, name: &[u8], value: &[u8]) {
    sink.put(name);
    sink.put(b": ");
    sink.put(value);
    sink.put(b"\r\n");
}

/// A reason phrase cannot hold line breaks; replace them so the status line stays one line.
fn put_reason(sink: &mut dyn Sink, reason: &str) {
    let mut pieces = reason.split(['\r', '\n']);
    if let Some(first) = pieces.next() {
        sink.put(first.as_bytes());
    }
    for piece in pieces {
        sink.put(b" ");
        sink.put(piece.as_bytes());
    }
}

fn put_status_line(sink: &mut dyn Sink, status: u16, reason: &str) {
    sink.put(b"SIP/2.0 ");
    sink.put(Decimal::new(usize::from(status)).as_bytes());
    sink.put(b" ");
    put_reason(sink, reason);
    sink.put(b"\r\n");
}

/// Builds a response to `request` (RFC 3261 8.2.6): copies every Via line, From, To, Call-ID,
/// CSeq (and Timestamp for 100), adds `;tag=to_tag` to To when the request had no To tag and a
/// tag is given, then `extra` headers in order, then the body.
///
/// Copied lines are byte-for-byte those of the request (compact names and folding survive).
/// Header names and values in `extra` must not contain bare line breaks.
pub fn build_response(
    request: &Message<'_>,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let to = request.header(HeaderName::To);
    let add_tag = to_tag.filter(|_| to.is_some_and(|h| !has_tag_param(h.value.as_bytes())));
    write_exact(|sink| {
        put_status_line(sink, status, reason);
        for via in request.headers_named(HeaderName::Via) {
            put_line(sink, request, via);
        }
        if let Some(from) = request.header(HeaderName::From) {
            put_line(sink, request, from);
        }
        if let Some(to) = to {
            match add_tag {
                Some(tag) => {
                    sink.put(to.name_raw.as_bytes());
                    sink.put(b": ");
                    sink.put(to.value.as_bytes());
                    sink.put(b";tag=");
                    sink.put(tag.as_bytes());
                    sink.put(b"\r\n");
                }
                None => put_line(sink, request, to),
            }
        }
        for name in [HeaderName::CallId, HeaderName::CSeq] {
            if let Some(header) = request.header(name) {
                put_line(sink, request, header);
            }
        }
        if status == 100 {
            if let Some(timestamp) = request.header(HeaderName::Timestamp) {
                put_line(sink, request, timestamp);
            }
        }
        for (name, value) in extra {
            put_header(sink, name.as_bytes(), value.as_bytes());
        }
        let body_len = match body {
            Some((content_type, bytes)) => {
                put_header(sink, b"Content-Type", content_type.as_bytes());
                bytes.len()
            }
            None => 0,
        };
        put_header(sink, b"Content-Length", Decimal::new(body_len).as_bytes());
        sink.put(b"\r\n");
        if let Some((_, bytes)) = body {
            sink.put(bytes);
        }
    })
}

/// True when a From/To value carries a `tag` header parameter: a `;tag` outside quoted
/// strings and outside `<...>` (inside the brackets it would be a URI parameter).
pub(super) fn has_tag_param(value: &[u8]) -> bool {
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        i += 1;
        match b {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b';' if !in_quotes && !in_angle => {
                let rest = value.get(i..).unwrap_or_default();
                let rest = trim_lws_start(rest);
                if let Some(after) = rest.get(..3) {
                    if after.eq_ignore_ascii_case(b"tag") {
                        let tail = trim_lws_start(rest.get(3..).unwrap_or_default());
                        if matches!(tail.first(), None | Some(b'=' | b';')) {
                            return true;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    false
}

fn trim_lws_start(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r' | b'\n', rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

fn trim_lws(bytes: &[u8]) -> &[u8] {
    let mut bytes = trim_lws_start(bytes);
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = bytes {
        bytes = rest;
    }
    bytes
}

/// One header of a message the parser rejected, found by a lenient line scan.
struct RawHeader<'a> {
    /// The name as written, without surrounding whitespace.
    name: &'a [u8],
    /// The value with continuation lines, without the final line break.
    value: &'a [u8],
}

/// The names [`build_response_to_unparseable`] copies, long and compact (RFC 3261 7.3.3).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Copied {
    Via,
    From,
    To,
    CallId,
    CSeq,
}

fn classify(name: &[u8]) -> Option<Copied> {
    let matches = |long: &[u8], compact: &[u8]| {
        name.eq_ignore_ascii_case(long)
            || (!compact.is_empty() && name.eq_ignore_ascii_case(compact))
    };
    if matches(b"Via", b"v") {
        Some(Copied::Via)
    } else if matches(b"From", b"f") {
        Some(Copied::From)
    } else if matches(b"To", b"t") {
        Some(Copied::To)
    } else if matches(b"Call-ID", b"i") {
        Some(Copied::CallId)
    } else if matches(b"CSeq", b"") {
        Some(Copied::CSeq)
    } else {
        None
    }
}

/// Splits the header section of `input` (after the start line) into headers, joining folded
/// continuation lines. Stops at the first empty line. Lines without a colon are skipped.
fn raw_headers(header_section: &[u8]) -> impl Iterator<Item = RawHeader<'_>> + '_ {
    let mut rest = header_section;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let mut end = line_end(rest, 0);
        let first_line = trim_line_end(&rest[..end]);
        if first_line.is_empty() {
            rest = &[];
            return None;
        }
        while matches!(rest.get(end), Some(b' ' | b'\t')) {
            end = line_end(rest, end);
        }
        let logical = &rest[..end];
        rest = &rest[end..];
        let Some(colon) = memchr::memchr(b':', logical) else {
            continue;
        };
        return Some(RawHeader {
            name: trim_lws(&logical[..colon]),
            value: trim_lws(&logical[colon + 1..]),
        });
    })
}

/// Index just past the line break of the line starting at `from` (or the end of `bytes`).
fn line_end(bytes: &[u8], from: usize) -> usize {
    let tail = bytes.get(from..).unwrap_or_default();
    memchr::memchr(b'\n', tail).map_or(bytes.len(), |lf| from + lf + 1)
}

/// Whether `line` looks like `Method SP Request-URI SP SIP/x.y`: a token method, at least three
/// space-separated parts, the last starting with `SIP/`. Loose on purpose: the message was
/// already found faulty, and the point is to answer it.
fn looks_like_request_line(line: &[u8]) -> bool {
    let mut parts = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|p| !p.is_empty());
    let Some(method) = parts.next() else {
        return false;
    };
    let is_token = method.iter().all(|&b| is_token_byte(b));
    if !is_token || method.len() >= 4 && method[..4].eq_ignore_ascii_case(b"SIP/") {
        return false;
    }
    let mut count = 1;
    let mut last: &[u8] = method;
    for part in parts {
        count += 1;
        last = part;
    }
    count >= 3 && last.len() >= 4 && last[..4].eq_ignore_ascii_case(b"SIP/")
}

/// Writes a raw header on one line: the name as written, the value with its folding and any
/// stray CR or NUL turned into spaces, so nothing the sender smuggled in can split the line.
fn put_raw_header(out: &mut Vec<u8>, header: &RawHeader<'_>) {
    out.extend_from_slice(header.name);
    out.extend_from_slice(b": ");
    out.extend(header.value.iter().map(|&b| match b {
        b'\r' | b'\n' | 0 => b' ',
        other => other,
    }));
}

/// A To tag for a stateless error response, derived from the request so that a retransmission
/// gets the same tag: 64-bit FNV-1a over the Call-ID, From and CSeq values, in hex.
pub(super) fn derived_tag(parts: &[&[u8]]) -> [u8; 16] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= 0xff;
    }
    let mut tag = [0u8; 16];
    for (i, slot) in tag.iter_mut().enumerate() {
        let nibble = (hash >> (60 - 4 * i)) & 0xf;
        *slot = b"0123456789abcdef"[nibble as usize];
    }
    tag
}

/// Best-effort error response for a request that [`Message::parse`] rejected: scans the raw
/// bytes leniently for Via, From, To, Call-ID and CSeq lines and builds a response with the
/// given status and reason. `None` when the input does not start like a request or has no Via.
///
/// Names are recognised in long and compact form and copied as written; values are put on
/// one line. When To has no tag and the status is not 100, a tag derived from the request is
/// added (RFC 3261 8.2.6.2).
pub fn build_response_to_unparseable(input: &[u8], status: u16, reason: &str) -> Option<Vec<u8>> {
    // Leading CRLFs before a start line are tolerated (RFC 3261 7.5).
    let start = input.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let input = &input[start..];
    let start_line_end = line_end(input, 0);
    if !looks_like_request_line(trim_line_end(&input[..start_line_end])) {
        return None;
    }
    let header_section = &input[start_line_end..];
    let headers = || raw_headers(header_section).filter_map(|h| Some((classify(h.name)?, h)));
    if !headers().any(|(kind, _)| kind == Copied::Via) {
        return None;
    }

    let first = |wanted: Copied| headers().find(|(kind, _)| *kind == wanted).map(|(_, h)| h);
    let from = first(Copied::From);
    let to = first(Copied::To);
    let call_id = first(Copied::CallId);
    let cseq = first(Copied::CSeq);

    let mut out = Vec::with_capacity(header_section.len().min(4096) + reason.len() + 96);
    {
        let sink: &mut dyn Sink = &mut out;
        put_status_line(sink, status, reason);
    }
    for (_, via) in headers().filter(|(kind, _)| *kind == Copied::Via) {
        put_raw_header(&mut out, &via);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(from) = &from {
        put_raw_header(&mut out, from);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(to) = &to {
        put_raw_header(&mut out, to);
        if status != 100 && !has_tag_param(to.value) {
            let empty: &[u8] = b"";
            let tag = derived_tag(&[
                call_id.as_ref().map_or(empty, |h| h.value),
                from.as_ref().map_or(empty, |h| h.value),
                cseq.as_ref().map_or(empty, |h| h.value),
            ]);
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(&tag);
        }
        out.extend_from_slice(b"\r\n");
    }
    for header in [&call_id, &cseq].into_iter().flatten() {
        put_raw_header(&mut out, header);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(out)
}

/// The raw start line of a request from the space after the method, without its line break.
fn request_line_tail<'a>(request: &Message<'a>) -> &'a [u8] {
    let line = trim_line_end(
        request
            .raw
            .get(request.start_line_range.clone())
            .unwrap_or_default(),
    );
    // From the space before the Request-URI to the end: ` sip:bob@example.com SIP/2.0`.
    memchr::memchr(b' ', line).map_or(b" ", |space| &line[space..])
}

/// The top Via of `request` on a line of its own: the first Via line verbatim when it holds
/// one value, else its first value under the name as written.
fn put_top_via(sink: &mut dyn Sink, request: &Message<'_>) {
    let Some(via) = request.header(HeaderName::Via) else {
        return;
    };
    let mut values = split_list(via.value);
    match (values.next(), values.next()) {
        (Some(first), Some(_)) => put_header(sink, via.name_raw.as_bytes(), first.as_bytes()),
        _ => put_line(sink, request, via),
    }
}

/// The CSeq number as written (the first word of the value).
fn cseq_number<'a>(request: &Message<'a>) -> &'a str {
    request
        .header(HeaderName::CSeq)
        .and_then(|h| h.value.split_ascii_whitespace().next())
        .unwrap_or("0")
}

/// Shared shape of ACK and CANCEL: method, the request's Request-URI, top Via, Route lines,
/// `Max-Forwards: 70`, From, `to` (from `to_source`), Call-ID, CSeq with `method`, no body.
fn build_in_transaction_request(
    method: &str,
    request: &Message<'_>,
    to_source: &Message<'_>,
) -> Vec<u8> {
    let tail = request_line_tail(request);
    let seq = cseq_number(request);
    write_exact(|sink| {
        sink.put(method.as_bytes());
        sink.put(tail);
        sink.put(b"\r\n");
        put_top_via(sink, request);
        for route in request.headers_named(HeaderName::Route) {
            put_line(sink, request, route);
        }
        sink.put(b"Max-Forwards: 70\r\n");
        if let Some(from) = request.header(HeaderName::From) {
            put_line(sink, request, from);
        }
        if let Some(to) = to_source.header(HeaderName::To) {
            put_line(sink, to_source, to);
        }
        if let Some(call_id) = request.header(HeaderName::CallId) {
            put_line(sink, request, call_id);
        }
        sink.put(b"CSeq: ");
        sink.put(seq.as_bytes());
        sink.put(b" ");
        sink.put(method.as_bytes());
        sink.put(b"\r\nContent-Length: 0\r\n\r\n");
    })
}

/// The ACK a client INVITE transaction sends for a non-2xx final response (RFC 3261
/// 17.1.1.3): Request-URI, Call-ID, From, CSeq number and the top Via of the request; To of the
/// response; the request's Route headers; `Max-Forwards: 70`; no body.
pub fn build_ack_for_non2xx(request: &Message<'_>, response: &Message<'_>) -> Vec<u8> {
    build_in_transaction_request("ACK", request, response)
}

/// A CANCEL for a request sent by this element (RFC 3261 9.1): same Request-URI, Call-ID, To,
/// From, CSeq number (method CANCEL), only the top Via, the request's Route headers.
pub fn build_cancel(request: &Message<'_>) -> Vec<u8> {
    build_in_transaction_request("CANCEL", request, request)
}
