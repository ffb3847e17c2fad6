#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::build::{derived_tag, has_tag_param};
use super::*;

const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1, SIP/2.0/UDP h2;branch=z9hG4bK2\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Route: <sip:p3.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

const COMPACT: &str = "REGISTER sip:example.com SIP/2.0\r\n\
v: SIP/2.0/TCP 192.0.2.4:5060;branch=z9hG4bKnashds7;rport\r\n\
f: <sip:alice@example.com>;tag=456248\r\n\
t: <sip:alice@example.com>\r\n\
i: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
m: <sip:alice@192.0.2.4>\r\n\
X-Folded: first,\r\n  second\r\n\
l: 0\r\n\
\r\n";

fn parse(text: &str) -> Message<'_> {
    Message::parse(text.as_bytes()).unwrap()
}

fn index_of(msg: &Message<'_>, name: HeaderName) -> usize {
    msg.headers.iter().position(|h| h.name == name).unwrap()
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn empty_editor_is_byte_identical() {
    for input in [INVITE, COMPACT] {
        let msg = parse(input);
        assert_eq!(text(&MessageEditor::new(&msg).finish()), input);
    }
}

#[test]
fn lf_only_message_round_trips() {
    let input =
        "OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:c@d>;tag=1\n\
                 To: <sip:a@b>\nCall-ID: x\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n";
    let msg = parse(input);
    assert_eq!(text(&MessageEditor::new(&msg).finish()), input);
}

#[test]
fn proxy_forward_edits() {
    let msg = parse(INVITE);
    let mf = index_of(&msg, HeaderName::MaxForwards);
    let out = MessageEditor::new(&msg)
        .set_request_uri("sip:bob@192.0.2.4:5062;transport=tcp")
        .prepend_header("Record-Route", "<sip:p.example.net;lr>")
        .prepend_header("Via", "SIP/2.0/TCP p.example.net;branch=z9hG4bKnew")
        .replace_header(mf, "69")
        .remove_first_value(HeaderName::Route)
        .finish();
    let expected = INVITE
        .replace(
            "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n",
            "INVITE sip:bob@192.0.2.4:5062;transport=tcp SIP/2.0\r\n\
             Via: SIP/2.0/TCP p.example.net;branch=z9hG4bKnew\r\n\
             Record-Route: <sip:p.example.net;lr>\r\n",
        )
        .replace("Max-Forwards: 70", "Max-Forwards: 69")
        .replace(
            "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
            "Route: <sip:p2.example.com;lr>",
        );
    assert_eq!(text(&out), expected);
}

#[test]
fn remove_first_value_of_single_value_line_drops_the_line() {
    let msg = parse(INVITE);
    let out = MessageEditor::new(&msg)
        .remove_first_value(HeaderName::Via)
        .finish();
    let expected = INVITE.replace(
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
        "",
    );
    assert_eq!(text(&out), expected);
}

#[test]
fn remove_first_value_repeatedly_walks_across_lines() {
    let msg = parse(INVITE);
    let out = MessageEditor::new(&msg)
        .remove_first_value(HeaderName::Via)
        .remove_first_value(HeaderName::Via)
        .finish();
    let expected = INVITE
        .replace(
            "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
            "",
        )
        .replace(
            "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1, SIP/2.0/UDP h2;branch=z9hG4bK2",
            "Via: SIP/2.0/UDP h2;branch=z9hG4bK2",
        );
    assert_eq!(text(&out), expected);

    let out = MessageEditor::new(&msg)
        .remove_first_value(HeaderName::Route)
        .remove_first_value(HeaderName::Route)
        .finish();
    let expected = INVITE.replace(
        "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n",
        "",
    );
    assert_eq!(text(&out), expected);
}

#[test]
fn remove_first_value_respects_quotes_and_brackets() {
    let input = "SIP/2.0 200 OK\r\n\
                 Via: SIP/2.0/UDP a;branch=z9hG4bK1;x=\"p,q\", SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
                 Contact: \"Doe, J\" <sip:j@h;a=1,2>, <sip:k@h>\r\n\
                 From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
                 Content-Length: 0\r\n\r\n";
    let msg = parse(input);
    let out = MessageEditor::new(&msg)
        .remove_first_value(HeaderName::Via)
        .remove_first_value(HeaderName::Contact)
        .finish();
    let expected = input
        .replace(
            "Via: SIP/2.0/UDP a;branch=z9hG4bK1;x=\"p,q\", SIP/2.0/UDP b",
            "Via: SIP/2.0/UDP b",
        )
        .replace(
            "Contact: \"Doe, J\" <sip:j@h;a=1,2>, <sip:k@h>",
            "Contact: <sip:k@h>",
        );
    assert_eq!(text(&out), expected);
}

#[test]
fn compact_and_folded_headers_survive_verbatim() {
    let msg = parse(COMPACT);
    let out = MessageEditor::new(&msg)
        .append_header("Expires", "3600")
        .finish();
    let expected = COMPACT.replace("l: 0\r\n", "l: 0\r\nExpires: 3600\r\n");
    assert_eq!(text(&out), expected);
}

#[test]
fn replace_keeps_name_as_written_and_remove_drops_line() {
    let msg = parse(COMPACT);
    let contact = index_of(&msg, HeaderName::Contact);
    let call_id = index_of(&msg, HeaderName::CallId);
    let out = MessageEditor::new(&msg)
        .replace_header(contact, "<sip:alice@198.51.100.7:4000>")
        .remove_header(call_id)
        .remove_header(999)
        .finish();
    let expected = COMPACT
        .replace(
            "m: <sip:alice@192.0.2.4>",
            "m: <sip:alice@198.51.100.7:4000>",
        )
        .replace("i: 843817637684230@998sdasdh09\r\n", "");
    assert_eq!(text(&out), expected);
}

#[test]
fn set_body_rewrites_length_and_type() {
    let msg = parse(INVITE);
    let out = MessageEditor::new(&msg)
        .set_body(Some("text/plain"), b"hello world")
        .finish();
    let expected = INVITE
        .replace("Content-Type: application/sdp", "Content-Type: text/plain")
        .replace(
            "Content-Length: 4\r\n\r\nv=0\n",
            "Content-Length: 11\r\n\r\nhello world",
        );
    assert_eq!(text(&out), expected);

    let msg = parse(COMPACT);
    let out = MessageEditor::new(&msg)
        .set_body(Some("text/plain"), b"hi")
        .finish();
    let expected = COMPACT.replace("l: 0\r\n\r\n", "l: 2\r\nContent-Type: text/plain\r\n\r\nhi");
    assert_eq!(text(&out), expected);
}

#[test]
fn content_length_is_corrected_or_added() {
    // Missing on a datagram: the body runs to the end, and the editor adds the header.
    let input = "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 From: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\n\r\nhey";
    let msg = parse(input);
    let out = MessageEditor::new(&msg).finish();
    let expected = input.replace("\r\n\r\nhey", "\r\nContent-Length: 3\r\n\r\nhey");
    assert_eq!(text(&out), expected);

    // Duplicates collapse to one correct line.
    let input = "MESSAGE sip:a@b SIP/2.0\r\nl: 3\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 Content-Length: 3\r\nCall-ID: x\r\n\r\nhey";
    let msg = parse(input);
    let out = MessageEditor::new(&msg).set_body(None, b"four").finish();
    assert_eq!(
        text(&out),
        "MESSAGE sip:a@b SIP/2.0\r\nl: 4\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
         Call-ID: x\r\n\r\nfour"
    );
}

#[test]
fn write_to_does_not_regrow() {
    let msg = parse(INVITE);
    let mut editor = MessageEditor::new(&msg);
    editor
        .set_request_uri("sip:bob@192.0.2.4:5062;transport=tcp")
        .prepend_header("Via", "SIP/2.0/TCP p.example.net;branch=z9hG4bKnew")
        .remove_first_value(HeaderName::Via)
        .set_body(Some("application/sdp"), &[b'x'; 300]);
    let out = editor.finish();
    assert!(out.len() <= editor.size_bound());
    assert_eq!(out.capacity(), editor.size_bound());
}

// ---- builders ----

#[test]
fn response_copies_rfc3261_headers_and_adds_tag() {
    let msg = parse(INVITE);
    let out = build_response(
        &msg,
        486,
        "Busy Here",
        Some("xyz"),
        &[("Retry-After", "60")],
        None,
    );
    assert_eq!(
        text(&out),
        "SIP/2.0 486 Busy Here\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
         Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1, SIP/2.0/UDP h2;branch=z9hG4bK2\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         To: Bob <sip:bob@biloxi.example.com>;tag=xyz\r\n\
         Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
         CSeq: 314159 INVITE\r\n\
         Retry-After: 60\r\n\
         Content-Length: 0\r\n\r\n"
    );
    assert_eq!(out.capacity(), out.len());
}

#[test]
fn response_keeps_existing_to_tag_and_compact_lines() {
    let input = COMPACT.replace(
        "t: <sip:alice@example.com>",
        "t: <sip:alice@example.com> ; TAG = 99",
    );
    let msg = parse(&input);
    let out = build_response(
        &msg,
        200,
        "OK",
        Some("new"),
        &[
            ("Contact", "<sip:alice@192.0.2.4>;expires=3600"),
            ("Expires", "3600"),
        ],
        Some(("text/plain", b"ok")),
    );
    assert_eq!(
        text(&out),
        "SIP/2.0 200 OK\r\n\
         v: SIP/2.0/TCP 192.0.2.4:5060;branch=z9hG4bKnashds7;rport\r\n\
         f: <sip:alice@example.com>;tag=456248\r\n\
         t: <sip:alice@example.com> ; TAG = 99\r\n\
         i: 843817637684230@998sdasdh09\r\n\
         CSeq: 1826 REGISTER\r\n\
         Contact: <sip:alice@192.0.2.4>;expires=3600\r\n\
         Expires: 3600\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: 2\r\n\r\nok"
    );
}

#[test]
fn response_ignores_tag_inside_uri_and_copies_timestamp_for_100() {
    let input = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 To: \"x;tag=no\" <sip:a@b;tag=uri>\r\nFrom: <sip:c@d>;tag=1\r\n\
                 Call-ID: x\r\nCSeq: 1 INVITE\r\nTimestamp: 54.2\r\n\
                 Folded: a,\r\n b\r\nContent-Length: 0\r\n\r\n";
    let msg = parse(input);
    let trying = build_response(&msg, 100, "Trying", None, &[], None);
    assert!(text(&trying).contains("To: \"x;tag=no\" <sip:a@b;tag=uri>\r\n"));
    assert!(text(&trying).contains("Timestamp: 54.2\r\n"));
    let ringing = build_response(&msg, 180, "Ringing", Some("t1"), &[], None);
    assert!(text(&ringing).contains("To: \"x;tag=no\" <sip:a@b;tag=uri>;tag=t1\r\n"));
    assert!(!text(&ringing).contains("Timestamp"));
}

#[test]
fn response_copies_folded_via_intact() {
    let input = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1,\r\n\
                 \tSIP/2.0/UDP g;branch=z9hG4bK2\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\n\
                 Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let msg = parse(input);
    let out = build_response(&msg, 200, "OK", Some("t"), &[], None);
    assert!(text(&out).starts_with(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1,\r\n\tSIP/2.0/UDP g;branch=z9hG4bK2\r\n"
    ));
}

#[test]
fn response_reason_cannot_break_the_status_line() {
    let msg = parse(INVITE);
    let out = build_response(&msg, 400, "Bad\r\nX: y", None, &[], None);
    assert!(text(&out).starts_with("SIP/2.0 400 Bad  X: y\r\nVia:"));
}

#[test]
fn unparseable_request_gets_a_response() {
    let input = b"INVITE sip:bob@example.com SIP/2.0\r\n\
        v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
        Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2,\r\n SIP/2.0/UDP 192.0.2.3\r\n\
        Max-Forwards: not a number\r\n\
        f  : <sip:alice@example.com>;tag=a\r\n\
        T: <sip:bob@example.com>\r\n\
        i: abc\xff@host\r\n\
        CSeq: 1 INVITE\r\n\
        Content-Length: 0\r\n\r\n";
    let out = build_response_to_unparseable(input, 400, "Bad Request (bad Max-Forwards)").unwrap();
    let out = String::from_utf8_lossy(&out);
    let tag = std::str::from_utf8(&derived_tag(&[
        b"abc\xff@host",
        b"<sip:alice@example.com>;tag=a",
        b"1 INVITE",
    ]))
    .unwrap()
    .to_owned();
    assert_eq!(
        out,
        format!(
            "SIP/2.0 400 Bad Request (bad Max-Forwards)\r\n\
             v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2,   SIP/2.0/UDP 192.0.2.3\r\n\
             f: <sip:alice@example.com>;tag=a\r\n\
             T: <sip:bob@example.com>;tag={tag}\r\n\
             i: abc\u{fffd}@host\r\n\
             CSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        )
    );
}

#[test]
fn unparseable_needs_request_line_and_via() {
    assert!(build_response_to_unparseable(b"", 400, "Bad").is_none());
    assert!(build_response_to_unparseable(b"\r\n\r\n", 400, "Bad").is_none());
    let response = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n";
    assert!(build_response_to_unparseable(response, 400, "Bad").is_none());
    let no_via = b"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n";
    assert!(build_response_to_unparseable(no_via, 400, "Bad").is_none());
    let short = b"INVITE sip:a@b\r\nVia: SIP/2.0/UDP h\r\n\r\n";
    assert!(build_response_to_unparseable(short, 400, "Bad").is_none());
    // A Via after the header section is body, not a header.
    let body_via = b"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\nVia: SIP/2.0/UDP h\r\n";
    assert!(build_response_to_unparseable(body_via, 400, "Bad").is_none());
    let version = b"\r\nINVITE sip:a@b SIP/3.0\nv: SIP/3.0/UDP h\n";
    let out = build_response_to_unparseable(version, 505, "Version Not Supported").unwrap();
    assert_eq!(
        text(&out),
        "SIP/2.0 505 Version Not Supported\r\nv: SIP/3.0/UDP h\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn ack_for_non2xx() {
    let request = parse(INVITE);
    let response = "SIP/2.0 486 Busy Here\r\n\
                    Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
                    t: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n\
                    From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
                    Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
                    CSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n";
    let response = parse(response);
    let ack = build_ack_for_non2xx(&request, &response);
    assert_eq!(
        text(&ack),
        "ACK sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
         Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
         Route: <sip:p3.example.com;lr>\r\n\
         Max-Forwards: 70\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         t: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n\
         Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
         CSeq: 314159 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    assert_eq!(ack.capacity(), ack.len());
}

#[test]
fn cancel_uses_only_top_via() {
    let input = INVITE
        .replace(
            "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
            "",
        )
        .replace("Route: <sip:p3.example.com;lr>\r\n", "");
    let request = parse(&input);
    let cancel = build_cancel(&request);
    assert_eq!(
        text(&cancel),
        "CANCEL sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1\r\n\
         Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
         Max-Forwards: 70\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         To: Bob <sip:bob@biloxi.example.com>\r\n\
         Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
         CSeq: 314159 CANCEL\r\n\
         Content-Length: 0\r\n\r\n"
    );
}

#[test]
fn tag_detection() {
    let has_tag = has_tag_param;
    assert!(has_tag(b"<sip:a@b>;tag=1"));
    assert!(has_tag(b"sip:a@b;tag=1"));
    assert!(has_tag(b"<sip:a@b> ;\r\n TAG = 1"));
    assert!(!has_tag(b"<sip:a@b;tag=1>"));
    assert!(!has_tag(b"\"a;tag=1\" <sip:a@b>"));
    assert!(!has_tag(b"\"a\\\";tag=1\" <sip:a@b>"));
    assert!(!has_tag(b"<sip:a@b>;tagx=1"));
}

#[test]
fn decimal_formatting() {
    for n in [0usize, 7, 10, 65535, usize::MAX] {
        assert_eq!(text(Decimal::new(n).as_bytes()), n.to_string());
    }
}
