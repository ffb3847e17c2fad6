//! Drives every entry point of the message layer with one input. Shared by the cargo-fuzz
//! target and by `tests/parser_proptest.rs`, so that both check the same surface.
//!
//! The only property checked besides "no panic" belongs to the editor: a message whose single
//! Content-Length is already right comes out of an empty editor byte for byte.

use sip::message::edit::{
    build_ack_for_non2xx, build_cancel, build_response, build_response_to_unparseable,
};
use sip::message::{
    frame_stream, CSeq, ContactValue, HeaderName, Message, MessageEditor, NameAddr, Params, Uri,
    Via,
};

const ALL_NAMES: [HeaderName; 24] = [
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::Contact,
    HeaderName::ContentLength,
    HeaderName::ContentType,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::Expires,
    HeaderName::MinExpires,
    HeaderName::Authorization,
    HeaderName::ProxyAuthorization,
    HeaderName::WwwAuthenticate,
    HeaderName::ProxyAuthenticate,
    HeaderName::Require,
    HeaderName::ProxyRequire,
    HeaderName::Supported,
    HeaderName::Unsupported,
    HeaderName::Allow,
    HeaderName::Timestamp,
    HeaderName::Other,
];

/// Feeds `data` to framing, the lenient error-response builder, the parser and, when it
/// parses, everything that reads or writes a parsed message.
pub fn exercise(data: &[u8]) {
    let _ = frame_stream(data, 65_535);
    let _ = frame_stream(data, 32);
    let _ = frame_stream(data, 0);
    let _ = build_response_to_unparseable(data, 400, "Bad Request");
    if let Ok(msg) = Message::parse(data) {
        exercise_message(&msg);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        exercise_value(text);
    }
}

pub fn exercise_message(msg: &Message<'_>) {
    let _ = msg.validate();
    let _ = (msg.is_request(), msg.method(), msg.status());
    if let Some(uri) = msg.request_uri() {
        exercise_uri(uri);
    }
    for name in ALL_NAMES {
        let _ = msg.header(name);
        let _ = name.as_str();
        for value in msg.header_values(name) {
            exercise_value(value);
        }
    }
    for header in &msg.headers {
        let _ = HeaderName::from_name(header.name_raw);
        let _ = msg.header_by_name(header.name_raw);
        exercise_value(header.value);
    }
    let _ = msg.call_id();
    let _ = msg.cseq();
    if let Some(Ok(via)) = msg.top_via() {
        exercise_via(&via);
    }
    for addr in [msg.from(), msg.to()].into_iter().flatten().flatten() {
        exercise_name_addr(&addr);
    }
    for contact in msg.contacts().flatten() {
        if let ContactValue::Address(addr) = contact {
            exercise_name_addr(&addr);
        }
    }
    let _ = msg.max_forwards();
    let _ = msg.expires();
    exercise_editor(msg);
}

fn exercise_editor(msg: &Message<'_>) {
    let verbatim = MessageEditor::new(msg).finish();
    if content_length_already_right(msg) {
        assert_eq!(verbatim, msg.raw, "empty editor changed a message");
    }
    let mut editor = MessageEditor::new(msg);
    editor
        .set_request_uri("sip:x@192.0.2.1:5060;transport=tcp")
        .prepend_header("Via", "SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKfuzz")
        .prepend_header("Record-Route", "<sip:192.0.2.1;lr>")
        .append_header("X-Fuzz", "1")
        .remove_first_value(HeaderName::Via)
        .remove_first_value(HeaderName::Route)
        .remove_first_value(HeaderName::Route)
        .set_body(Some("text/plain"), b"body");
    if !msg.headers.is_empty() {
        editor
            .replace_header(0, "replaced")
            .remove_header(msg.headers.len() - 1);
    }
    editor.replace_header(usize::MAX, "ignored");
    let _ = editor.finish();

    let _ = build_response(
        msg,
        200,
        "OK",
        Some("t1"),
        &[("Contact", "<sip:a@192.0.2.1>;expires=60")],
        Some(("text/plain", b"x")),
    );
    let _ = build_response(msg, 100, "Trying", None, &[], None);
    let _ = build_ack_for_non2xx(msg, msg);
    let _ = build_cancel(msg);
}

/// True when the message has exactly one Content-Length line and its value equals the body
/// length: then an empty editor must reproduce the input.
pub fn content_length_already_right(msg: &Message<'_>) -> bool {
    let mut lengths = msg.headers_named(HeaderName::ContentLength);
    let (Some(only), None) = (lengths.next(), lengths.next()) else {
        return false;
    };
    let value = only.value.trim();
    msg.start_line_range.start == 0
        && !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && value.parse::<usize>().ok() == Some(msg.body.len())
        && msg.raw.len() == msg.start_line_range.end + header_section_rest(msg)
}

/// Bytes from the end of the start line to the end of the message, assuming the header lines
/// are contiguous and followed by an empty CRLF or LF line and the body.
fn header_section_rest(msg: &Message<'_>) -> usize {
    let lines: usize = msg.headers.iter().map(|h| h.line.len()).sum();
    let headers_end = msg
        .headers
        .last()
        .map_or(msg.start_line_range.end, |h| h.line.end);
    let separator = match msg.raw.get(headers_end..) {
        Some([b'\r', b'\n', ..]) => 2,
        Some([b'\n', ..]) => 1,
        _ => return usize::MAX / 2,
    };
    lines + separator + msg.body.len()
}

/// Runs every typed parser over one header value.
pub fn exercise_value(value: &str) {
    if let Ok(via) = Via::parse(value) {
        exercise_via(&via);
    }
    if let Ok(addr) = NameAddr::parse(value) {
        exercise_name_addr(&addr);
    }
    if let Ok(ContactValue::Address(addr)) = ContactValue::parse(value) {
        exercise_name_addr(&addr);
    }
    if let Ok(cseq) = CSeq::parse(value) {
        let _ = cseq.method.as_str();
    }
    if let Ok(uri) = Uri::parse(value) {
        exercise_uri(&uri);
    }
    exercise_params(Params::new(value));
}

fn exercise_via(via: &Via<'_>) {
    let _ = (
        via.branch(),
        via.is_rfc3261_branch(),
        via.received(),
        via.rport(),
    );
    exercise_params(via.params);
}

fn exercise_name_addr(addr: &NameAddr<'_>) {
    let _ = addr.tag();
    exercise_uri(&addr.uri);
    exercise_params(addr.params);
}

fn exercise_uri(uri: &Uri<'_>) {
    let _ = uri.user_unescaped();
    let _ = uri.aor();
    let _ = uri.host_lower();
    let _ = uri.equivalent(uri);
    let _ = (uri.transport_param(), uri.has_lr());
    exercise_params(uri.params);
}

fn exercise_params(params: Params<'_>) {
    for (name, _) in params.iter() {
        let _ = params.get(name);
    }
    let _ = (params.contains("lr"), params.is_empty());
}
