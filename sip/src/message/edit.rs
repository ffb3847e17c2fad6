//! Serializing messages by editing a parsed one: every header line that is not touched is
//! copied byte for byte; edits are applied in a single pass into one output buffer.
//!
//! This is the single serialization mechanism of the stack: response generation, request
//! forwarding (Via, Max-Forwards, Route, Record-Route, Request-URI), response forwarding
//! (top Via removal), and later NAT fix-ups all go through [`MessageEditor`].

use super::{HeaderName, Message};

/// Accumulates edits on a parsed message and writes the result.
pub struct MessageEditor<'m, 'a> {
    msg: &'m Message<'a>,
    _todo: (),
}

impl<'m, 'a> MessageEditor<'m, 'a> {
    pub fn new(msg: &'m Message<'a>) -> Self {
        MessageEditor { msg, _todo: () }
    }

    /// Replaces the Request-URI (requests only).
    pub fn set_request_uri(&mut self, uri: &str) -> &mut Self {
        let _ = uri;
        todo!()
    }

    /// Inserts a header line before all others (e.g. a new top Via or Record-Route).
    pub fn prepend_header(&mut self, name: &str, value: &str) -> &mut Self {
        let _ = (name, value);
        todo!()
    }

    /// Appends a header line after the existing ones.
    pub fn append_header(&mut self, name: &str, value: &str) -> &mut Self {
        let _ = (name, value);
        todo!()
    }

    /// Replaces the value of the header at index `index` of `msg.headers`.
    pub fn replace_header(&mut self, index: usize, value: &str) -> &mut Self {
        let _ = (index, value);
        todo!()
    }

    /// Removes the header line at index `index` of `msg.headers`.
    pub fn remove_header(&mut self, index: usize) -> &mut Self {
        let _ = index;
        todo!()
    }

    /// Removes the first value of the first line named `name`; if that line holds several
    /// comma-separated values, only the first is dropped (top Via, top Route).
    pub fn remove_first_value(&mut self, name: HeaderName) -> &mut Self {
        let _ = name;
        todo!()
    }

    /// Replaces the body and rewrites (or adds) Content-Length; `content_type` replaces or
    /// adds Content-Type when given.
    pub fn set_body(&mut self, content_type: Option<&str>, body: &[u8]) -> &mut Self {
        let _ = (content_type, body);
        todo!()
    }

    /// Writes the edited message. Content-Length is always made correct.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let _ = (out, self.msg);
        todo!()
    }

    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.msg.raw.len() + 256);
        self.write_to(&mut out);
        out
    }
}

/// Builds a response to `request` (RFC 3261 8.2.6): copies every Via line, From, To, Call-ID,
/// CSeq (and Timestamp for 100), adds `;tag=to_tag` to To when the request had no To tag and a
/// tag is given, then `extra` headers in order, then the body.
pub fn build_response(
    request: &Message<'_>,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let _ = (request, status, reason, to_tag, extra, body);
    todo!()
}

/// Best-effort error response for a request that [`Message::parse`] rejected: scans the raw
/// bytes leniently for Via, From, To, Call-ID and CSeq lines and builds a response with the
/// given status and reason. `None` when the input does not start like a request or has no Via.
pub fn build_response_to_unparseable(input: &[u8], status: u16, reason: &str) -> Option<Vec<u8>> {
    let _ = (input, status, reason);
    todo!()
}

/// The ACK a client INVITE transaction sends for a non-2xx final response (RFC 3261
/// 17.1.1.3): Request-URI, Call-ID, From, CSeq number and the top Via of the request; To of the
/// response; the request's Route headers; `Max-Forwards: 70`; no body.
pub fn build_ack_for_non2xx(request: &Message<'_>, response: &Message<'_>) -> Vec<u8> {
    let _ = (request, response);
    todo!()
}

/// A CANCEL for a request sent by this element (RFC 3261 9.1): same Request-URI, Call-ID, To,
/// From, CSeq number (method CANCEL), only the top Via, the request's Route headers.
pub fn build_cancel(request: &Message<'_>) -> Vec<u8> {
    let _ = request;
    todo!()
}
