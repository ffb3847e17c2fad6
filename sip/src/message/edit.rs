//! Serializing messages by editing a parsed one: every header line that is not touched is
//! copied byte for byte; edits are applied in a single pass into one output buffer.
//!
//! This is the single serialization mechanism of the stack: response generation, request
//! forwarding (Via, Max-Forwards, Route, Record-Route, Request-URI), response forwarding
//! (top Via removal), and later NAT fix-ups all go through [`MessageEditor`].

mod build;
#[cfg(test)]
mod tests;

pub use build::{
    build_ack_for_non2xx, build_cancel, build_response, build_response_to_unparseable,
};

use super::header::split_list;
use super::parse::lex::trim_lws;
use super::parse::parse_content_length;
use super::{Header, HeaderName, Message, StartLine};
use smallvec::SmallVec;
use std::ops::Range;

/// Bytes of edit text (header values, Request-URI, body) held inside the editor before it
/// spills to the heap: enough for a Via, a Record-Route and a Request-URI.
const INLINE_EDIT_TEXT: usize = 512;
/// Header edits held inside the editor before it spills to the heap.
const INLINE_EDITS: usize = 8;

/// One queued header edit. Text lives in [`MessageEditor::text`].
#[derive(Debug, Clone)]
enum Edit {
    Prepend {
        name: Range<usize>,
        value: Range<usize>,
    },
    Append {
        name: Range<usize>,
        value: Range<usize>,
    },
    Replace {
        index: usize,
        value: Range<usize>,
    },
    Remove {
        index: usize,
    },
}

/// Accumulates edits on a parsed message and writes the result.
///
/// The editor copies the text it is given into an inline buffer, so a typical forwarding
/// edit allocates nothing until [`MessageEditor::write_to`]. The number of edits is decided by
/// the calling code, never by the network; edits past the inline capacity move to the heap.
///
/// Rules applied when writing:
/// * Header values must not contain bare line breaks (folding, `CRLF` + SP/HT, is fine).
/// * Content-Length lines always carry the length of the body that is written: the first one
///   keeps its name as written (and is copied verbatim when already right), later ones are
///   dropped, and `Content-Length` is appended when there was none. Index edits on
///   Content-Length lines are therefore ignored.
/// * When several index edits name the same header, the last one wins.
/// * [`MessageEditor::remove_first_value`] skips lines edited by index.
pub struct MessageEditor<'m, 'a> {
    msg: &'m Message<'a>,
    text: SmallVec<[u8; INLINE_EDIT_TEXT]>,
    edits: SmallVec<[Edit; INLINE_EDITS]>,
    request_uri: Option<Range<usize>>,
    /// Number of leading values to drop, per header name.
    drop_values: SmallVec<[(HeaderName, usize); 2]>,
    body: Option<Range<usize>>,
    content_type: Option<Range<usize>>,
}

impl<'m, 'a> MessageEditor<'m, 'a> {
    pub fn new(msg: &'m Message<'a>) -> Self {
        MessageEditor {
            msg,
            text: SmallVec::new(),
            edits: SmallVec::new(),
            request_uri: None,
            drop_values: SmallVec::new(),
            body: None,
            content_type: None,
        }
    }

    fn stash(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.text.len();
        self.text.extend_from_slice(bytes);
        start..self.text.len()
    }

    fn text(&self, range: &Range<usize>) -> &[u8] {
        self.text.get(range.clone()).unwrap_or_default()
    }

    /// Replaces the Request-URI (requests only).
    pub fn set_request_uri(&mut self, uri: &str) -> &mut Self {
        self.request_uri = Some(self.stash(uri.as_bytes()));
        self
    }

    /// Inserts a header line before all others (e.g. a new top Via or Record-Route). The line
    /// added by the latest call comes first.
    pub fn prepend_header(&mut self, name: &str, value: &str) -> &mut Self {
        let name = self.stash(name.as_bytes());
        let value = self.stash(value.as_bytes());
        self.edits.push(Edit::Prepend { name, value });
        self
    }

    /// Appends a header line after the existing ones.
    pub fn append_header(&mut self, name: &str, value: &str) -> &mut Self {
        let name = self.stash(name.as_bytes());
        let value = self.stash(value.as_bytes());
        self.edits.push(Edit::Append { name, value });
        self
    }

    /// Replaces the value of the header at index `index` of `msg.headers`. The name is kept
    /// as written. An index past the end is ignored.
    pub fn replace_header(&mut self, index: usize, value: &str) -> &mut Self {
        let value = self.stash(value.as_bytes());
        self.edits.push(Edit::Replace { index, value });
        self
    }

    /// Removes the header line at index `index` of `msg.headers`. An index past the end is
    /// ignored.
    pub fn remove_header(&mut self, index: usize) -> &mut Self {
        self.edits.push(Edit::Remove { index });
        self
    }

    /// Removes the first value of the first line named `name`; if that line holds several
    /// comma-separated values, only the first is dropped (top Via, top Route). Calling it again
    /// drops the next value, moving on to the following line of that name when one is used up.
    /// [`HeaderName::Other`] stands for every extension header alike; use index edits for those.
    pub fn remove_first_value(&mut self, name: HeaderName) -> &mut Self {
        match self.drop_values.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => self.drop_values.push((name, 1)),
        }
        self
    }

    /// Replaces the body and rewrites (or adds) Content-Length; `content_type` replaces or
    /// adds Content-Type when given.
    pub fn set_body(&mut self, content_type: Option<&str>, body: &[u8]) -> &mut Self {
        self.content_type = content_type.map(|ct| self.stash(ct.as_bytes()));
        self.body = Some(self.stash(body));
        self
    }

    /// An upper bound of the output size, so that writing never grows the buffer twice.
    fn size_bound(&self) -> usize {
        let dropped: usize = self.drop_values.len();
        // Per edit: ": " and CRLF, plus slack for lines rewritten around a kept name.
        self.msg.raw.len() + self.text.len() + 8 * (self.edits.len() + dropped) + 96
    }

    /// Writes the edited message. Content-Length is always made correct.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.size_bound());
        let msg = self.msg;
        self.write_start_line(out);
        for edit in self.edits.iter().rev() {
            if let Edit::Prepend { name, value } = edit {
                push_line(out, self.text(name), self.text(value));
            }
        }

        let body = match &self.body {
            Some(range) => self.text(range),
            None => msg.body,
        };
        let content_type = self.content_type.as_ref().map(|r| self.text(r));
        let has_index_edits = self
            .edits
            .iter()
            .any(|e| matches!(e, Edit::Replace { .. } | Edit::Remove { .. }));
        let mut drops = self.drop_values.clone();
        let mut wrote_length = false;
        let mut wrote_type = false;

        for (index, header) in msg.headers.iter().enumerate() {
            match header.name {
                HeaderName::ContentLength => {
                    if !wrote_length {
                        write_content_length(out, msg, header, body.len());
                        wrote_length = true;
                    }
                    continue;
                }
                HeaderName::ContentType => {
                    if let Some(ct) = content_type {
                        if !wrote_type {
                            push_line(out, header.name_raw.as_bytes(), ct);
                            wrote_type = true;
                        }
                        continue;
                    }
                }
                _ => {}
            }
            if has_index_edits {
                match self.index_edit(index) {
                    Some(Edit::Replace { value, .. }) => {
                        push_line(out, header.name_raw.as_bytes(), self.text(value));
                        continue;
                    }
                    Some(Edit::Remove { .. }) => continue,
                    _ => {}
                }
            }
            if let Some((_, count)) = drops.iter_mut().find(|(n, c)| *n == header.name && *c > 0) {
                *count = write_without_leading_values(out, header, *count);
                continue;
            }
            copy_line(out, msg, header);
        }

        for edit in &self.edits {
            if let Edit::Append { name, value } = edit {
                push_line(out, self.text(name), self.text(value));
            }
        }
        if let (Some(ct), false) = (content_type, wrote_type) {
            push_line(out, b"Content-Type", ct);
        }
        if !wrote_length {
            push_line(out, b"Content-Length", Decimal::new(body.len()).as_bytes());
        }
        out.extend_from_slice(header_body_separator(msg));
        out.extend_from_slice(body);
    }

    /// The last Replace or Remove aimed at header `index`.
    fn index_edit(&self, index: usize) -> Option<&Edit> {
        self.edits.iter().rev().find(|e| match e {
            Edit::Replace { index: i, .. } | Edit::Remove { index: i } => *i == index,
            _ => false,
        })
    }

    fn write_start_line(&self, out: &mut Vec<u8>) {
        let msg = self.msg;
        let original = msg
            .raw
            .get(msg.start_line_range.clone())
            .unwrap_or_default();
        let (Some(uri), StartLine::Request(request)) = (&self.request_uri, &msg.start_line) else {
            out.extend_from_slice(original);
            return;
        };
        let uri = self.text(uri);
        // Keep method and version exactly as written; only the middle changes.
        let content = trim_line_end(original);
        let first_space = memchr::memchr(b' ', content);
        let last_space = memchr::memrchr(b' ', content);
        match (first_space, last_space) {
            (Some(first), Some(last)) if first < last => {
                out.extend_from_slice(&content[..=first]);
                out.extend_from_slice(uri);
                out.extend_from_slice(&content[last..]);
            }
            _ => {
                out.extend_from_slice(request.method.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(uri);
                out.extend_from_slice(b" SIP/2.0");
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_bound());
        self.write_to(&mut out);
        out
    }
}

/// Writes `header` without its first `count` values; returns how many values are still to
/// be dropped from later lines. A line left with no values is omitted.
fn write_without_leading_values(out: &mut Vec<u8>, header: &Header<'_>, count: usize) -> usize {
    let mut values = split_list(header.value);
    let mut left = count;
    while left > 0 {
        if values.next().is_none() {
            return left;
        }
        left -= 1;
    }
    let Some(first_kept) = values.next() else {
        return 0;
    };
    // The kept values are copied as written (with their separators and any folding) when
    // the list splitter hands out sub-slices of the value, which it does.
    let kept = offset_in(header.value, first_kept).and_then(|start| header.value.get(start..));
    out.extend_from_slice(header.name_raw.as_bytes());
    out.extend_from_slice(b": ");
    match kept {
        Some(rest) => out.extend_from_slice(rest.as_bytes()),
        None => {
            out.extend_from_slice(first_kept.as_bytes());
            for value in values {
                out.extend_from_slice(b", ");
                out.extend_from_slice(value.as_bytes());
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    0
}

/// Byte offset of `part` inside `whole` when `part` is a sub-slice of it.
fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let offset = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (offset + part.len() <= whole.len()).then_some(offset)
}

fn write_content_length(out: &mut Vec<u8>, msg: &Message<'_>, header: &Header<'_>, len: usize) {
    if parse_content_length(trim_lws(header.value)).ok() == Some(len) {
        copy_line(out, msg, header);
    } else {
        push_line(
            out,
            header.name_raw.as_bytes(),
            Decimal::new(len).as_bytes(),
        );
    }
}

/// The header line exactly as received, or rebuilt from its parts if its range is unusable.
pub(crate) fn copy_line(out: &mut Vec<u8>, msg: &Message<'_>, header: &Header<'_>) {
    match line_bytes(msg, header) {
        Some(line) => out.extend_from_slice(line),
        None => push_line(out, header.name_raw.as_bytes(), header.value.as_bytes()),
    }
}

pub(crate) fn line_bytes<'a>(msg: &Message<'a>, header: &Header<'_>) -> Option<&'a [u8]> {
    msg.raw.get(header.line.clone())
}

pub(crate) fn push_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The empty line between headers and body as received when it is a plain `LF`, so that a
/// message using bare line feeds round-trips unchanged; `CRLF` otherwise.
fn header_body_separator<'a>(msg: &Message<'a>) -> &'a [u8] {
    let headers_end = msg
        .headers
        .last()
        .map_or(msg.start_line_range.end, |h| h.line.end);
    let body_start = msg.raw.len().saturating_sub(msg.body.len());
    match msg.raw.get(headers_end..body_start) {
        Some(b"\n") => b"\n",
        _ => b"\r\n",
    }
}

pub(crate) fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A number formatted in decimal without going through `fmt`.
pub(crate) struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(crate) fn new(mut n: usize) -> Decimal {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { digits, start }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.digits.get(self.start..).unwrap_or_default()
    }
}
