//! Property tests of the message layer: the parser, typed accessors, framing and the
//! serializer must never panic on any input; a valid message survives an empty edit byte for
//! byte; framing a stream cut at arbitrary points yields the messages that were sent.
//!
//! Case counts are kept moderate so the file runs in a few seconds in a debug build. Failing
//! cases found by fuzzing are pinned in [`regressions`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../fuzz/exercise.rs"]
mod exercise;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use sip::message::edit::build_response;
use sip::message::{frame_stream, Framed, Message, MessageEditor};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Keep failures in the test output rather than in files next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- generators of valid messages ----

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9.!%*_+~-]{0,8}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9]{0,8}(\\.[a-z][a-z0-9]{0,6}){0,2}",
        (any::<u8>(), any::<u8>(), any::<u8>(), 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        Just("[2001:db8::1]".to_owned()),
    ]
}

fn host_port() -> impl Strategy<Value = String> {
    (host(), proptest::option::of(1u16..=65535)).prop_map(|(host, port)| match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn sip_uri() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("sip"), Just("sips")],
        proptest::option::of("[a-z0-9][a-z0-9.+-]{0,8}"),
        host_port(),
        prop_oneof![
            Just(""),
            Just(";transport=tcp"),
            Just(";lr"),
            Just(";user=phone")
        ],
    )
        .prop_map(|(scheme, user, host_port, params)| match user {
            Some(user) => format!("{scheme}:{user}@{host_port}{params}"),
            None => format!("{scheme}:{host_port}{params}"),
        })
}

fn name_addr() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just(String::new()),
            "[A-Za-z]{1,8} ",
            "\"[A-Za-z ,;]{0,10}\" ",
        ],
        sip_uri(),
    )
        .prop_map(|(display, uri)| format!("{display}<{uri}>"))
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("INVITE"),
        Just("REGISTER"),
        Just("OPTIONS"),
        Just("BYE"),
        Just("MESSAGE"),
        Just("ACK"),
        Just("CANCEL"),
        Just("PUBLISH"),
        Just("FOOBAR"),
    ]
}

/// A header name in long form, upper-cased long form or compact form.
fn spelled(long: &'static str, compact: Option<&'static str>) -> impl Strategy<Value = String> {
    (0u8..3).prop_map(move |form| match (form, compact) {
        (0, Some(compact)) => compact.to_owned(),
        (1, _) => long.to_uppercase(),
        _ => long.to_owned(),
    })
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(": "), Just(":"), Just(" :  "), Just(":\t")]
}

fn via_value() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("UDP"), Just("TCP"), Just("TLS")],
        host_port(),
        token(),
        any::<bool>(),
    )
        .prop_map(|(transport, sent_by, branch, rport)| {
            let rport = if rport { ";rport" } else { "" };
            format!("SIP/2.0/{transport} {sent_by};branch=z9hG4bK{branch}{rport}")
        })
}

fn via_line() -> impl Strategy<Value = (String, String)> {
    (
        spelled("Via", Some("v")),
        vec(via_value(), 1..3),
        prop_oneof![Just(", "), Just(","), Just(" ,\r\n ")],
    )
        .prop_map(|(name, values, joiner)| (name, values.join(joiner)))
}

fn extension_header() -> impl Strategy<Value = (String, String)> {
    (
        "X-[A-Za-z]{1,8}",
        prop_oneof![
            "[ -~]{0,20}".prop_map(|s| s.trim().to_owned()),
            "[a-z]{1,5}".prop_map(|s| format!("{s},\r\n  folded")),
        ],
    )
}

/// A valid request or response with a correct Content-Length, header order shuffled.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let headers = (
        vec(via_line(), 1..3),
        (spelled("From", Some("f")), name_addr(), token()),
        (
            spelled("To", Some("t")),
            name_addr(),
            proptest::option::of(token()),
        ),
        (spelled("Call-ID", Some("i")), token(), host()),
        0u8..=70,
        proptest::option::of((spelled("Contact", Some("m")), name_addr())),
        vec(extension_header(), 0..3),
    )
        .prop_map(|(vias, from, to, call_id, max_forwards, contact, extras)| {
            let mut headers = vias;
            headers.push((from.0, format!("{};tag={}", from.1, from.2)));
            headers.push(match to.2 {
                Some(tag) => (to.0, format!("{};tag={tag}", to.1)),
                None => (to.0, to.1),
            });
            headers.push((call_id.0, format!("{}@{}", call_id.1, call_id.2)));
            headers.push(("Max-Forwards".to_owned(), max_forwards.to_string()));
            headers.extend(contact);
            headers.extend(extras);
            headers
        })
        .prop_shuffle();
    (
        any::<bool>(),
        method(),
        sip_uri(),
        (100u16..=699, "[A-Z][A-Za-z ]{0,12}"),
        0u32..(1 << 31),
        headers,
        vec(separator(), 16),
        spelled("Content-Length", Some("l")),
        "[ -~\r\n]{0,60}",
    )
        .prop_map(
            |(request, method, uri, (status, reason), seq, headers, seps, cl_name, body)| {
                let mut out = if request {
                    format!("{method} {uri} SIP/2.0\r\n")
                } else {
                    format!("SIP/2.0 {status} {reason}\r\n")
                };
                let seps = seps.iter().cycle();
                for ((name, value), sep) in headers.iter().zip(seps) {
                    out.push_str(&format!("{name}{sep}{value}\r\n"));
                }
                out.push_str(&format!("CSeq: {seq} {method}\r\n"));
                if !body.is_empty() {
                    out.push_str("Content-Type: text/plain\r\n");
                }
                out.push_str(&format!("{cl_name}: {}\r\n\r\n{body}", body.len()));
                out.into_bytes()
            },
        )
}

fn mutate(mut bytes: Vec<u8>, mutations: &[(Index, u8, u8)]) -> Vec<u8> {
    for (at, op, byte) in mutations {
        let position = at.index(bytes.len() + 1);
        match op % 3 {
            0 => bytes.insert(position, *byte),
            1 if position < bytes.len() => {
                bytes.remove(position);
            }
            _ if position < bytes.len() => bytes[position] ^= byte | 1,
            _ => bytes.push(*byte),
        }
    }
    bytes
}

/// Feeds `stream` to the framer in the given chunks as a connection would, returning the
/// framed messages and whatever stays buffered.
fn frame_in_chunks(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut buffer = Vec::new();
    let mut messages = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            match frame_stream(&buffer, 65_535).unwrap() {
                Framed::Incomplete => break,
                Framed::Message { len } => messages.push(buffer.drain(..len).collect()),
                Framed::KeepAlive { len, .. } => {
                    buffer.drain(..len);
                }
            }
        }
    }
    (messages, buffer)
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..600)) {
        exercise::exercise(&data);
    }

    #[test]
    fn sip_looking_text_never_panics(
        start in prop_oneof![
            Just("INVITE sip:a@b SIP/2.0\r\n"),
            Just("SIP/2.0 200 OK\r\n"),
            Just(""),
        ],
        rest in "([A-Za-z-]{1,8} ?: ?)?[a-zA-Z0-9:;,<>@\"=.?%\\[\\] \t/\\\\-]{0,40}(\r\n|\n|\r\n[ \t])",
        more in vec("[A-Za-z-]{1,6}:[a-zA-Z0-9:;,<>@\"=.?%\\[\\] \t/\\\\-]{0,30}\r\n", 0..8),
    ) {
        let text = format!("{start}{rest}{}\r\n", more.concat());
        exercise::exercise(text.as_bytes());
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn mutated_valid_messages_never_panic(
        msg in message(),
        mutations in vec((any::<Index>(), any::<u8>(), any::<u8>()), 1..8),
    ) {
        exercise::exercise(&mutate(msg, &mutations));
    }

    #[test]
    fn valid_messages_parse_and_survive_an_empty_edit(msg in message()) {
        let parsed = Message::parse(&msg);
        prop_assert!(parsed.is_ok(), "{:?} for {}", parsed.err(), String::from_utf8_lossy(&msg));
        let parsed = parsed.unwrap();
        if parsed.is_request() {
            let valid = parsed.validate();
            prop_assert!(valid.is_ok(), "{:?} for {}", valid, String::from_utf8_lossy(&msg));
            let response = build_response(&parsed, 200, "OK", Some("abc"), &[], None);
            let reparsed = Message::parse(&response);
            prop_assert!(reparsed.is_ok(), "{:?} for {}", reparsed.err(), String::from_utf8_lossy(&response));
        }
        let out = MessageEditor::new(&parsed).finish();
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&msg));
        exercise::exercise_message(&parsed);
    }

    #[test]
    fn framing_reassembles_split_streams(
        msgs in vec(message(), 1..4),
        keep_alives in vec(prop_oneof![Just(""), Just("\r\n"), Just("\r\n\r\n")], 4),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let mut stream = Vec::new();
        for (msg, keep_alive) in msgs.iter().zip(&keep_alives) {
            stream.extend_from_slice(keep_alive.as_bytes());
            stream.extend_from_slice(msg);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([stream.len()]) {
            chunks.push(&stream[from..cut]);
            from = cut;
        }
        let (framed, left) = frame_in_chunks(&chunks);
        prop_assert!(left.is_empty());
        prop_assert_eq!(framed, msgs);
    }
}

/// Inputs that once broke something, as hex, each with the place it failed.
const REGRESSIONS: &[&str] = &[];

#[test]
fn regressions() {
    for hex in REGRESSIONS {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        exercise::exercise(&bytes);
    }
}

#[test]
fn hand_picked_edge_cases_never_panic() {
    let cases: &[&[u8]] = &[
        b"",
        b"\r\n\r\n",
        b"INVITE",
        b"INVITE sip:a@b SIP/2.0\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia:\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: ,,,\r\nContent-Length: 99\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\n v: x\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nTo: \"\\\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nTo: <<<>>>;tag\r\nFrom: \"unterminated\r\n\r\n",
        b"SIP/2.0 999999 X\r\n\r\n",
        b"INVITE sip:[::1 SIP/2.0\r\nl: -1\r\n\r\n",
        b"INVITE sip:a@b:99999 SIP/2.0\r\nContent-Length: 18446744073709551616\r\n\r\n",
        b"INVITE sip:%zz@b SIP/2.0\r\nCSeq: 4294967296 INVITE\r\nMax-Forwards: 256\r\n\r\n",
        "INVITE sip:é@ü SIP/2.0\r\nVia: SIP/2.0/UDP é;branch=ü\r\n\r\n".as_bytes(),
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\xff\r\n\r\n",
    ];
    for case in cases {
        exercise::exercise(case);
    }
}
