#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::message::{ContactValue, Scheme};

const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
From: Bob <sip:bob@Example.com>;tag=456248\r\n\
To: Bob <sip:bob@example.com>\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.10>;expires=7200\r\n\
Content-Length: 0\r\n\
\r\n";

#[test]
fn parses_register() {
    let m = Message::parse(REGISTER).unwrap();
    assert!(m.is_request());
    assert_eq!(m.method(), Some(&Method::Register));
    assert_eq!(m.request_uri().unwrap().host, "example.com");
    assert_eq!(m.headers.len(), 8);
    assert!(!m.headers.spilled());
    assert_eq!(m.call_id(), Some("843817637684230@998sdasdh09"));
    let cseq = m.cseq().unwrap().unwrap();
    assert_eq!((cseq.seq, cseq.method), (1826, Method::Register));
    assert_eq!(m.max_forwards(), Some(Ok(70)));
    let via = m.top_via().unwrap().unwrap();
    assert_eq!(via.rport(), Some(None));
    assert_eq!(m.to().unwrap().unwrap().uri.aor(), "bob@example.com");
    assert_eq!(m.from().unwrap().unwrap().tag(), Some("456248"));
    let contacts: Vec<_> = m.contacts().collect();
    assert_eq!(contacts.len(), 1);
    assert!(matches!(contacts[0], Ok(ContactValue::Address(_))));
    assert_eq!(m.body, b"");
    assert_eq!(m.raw, REGISTER);
    assert_eq!(m.start_line_range, 0..34);
    let via_line = &m.headers[0];
    assert_eq!(
        &m.raw[via_line.line.clone()],
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n"
    );
    assert_eq!(m.validate(), Ok(()));
}

#[test]
fn parses_response_and_body() {
    let input =
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello trailing";
    let m = Message::parse(input).unwrap();
    assert_eq!(m.status(), Some(200));
    match &m.start_line {
        StartLine::Response(s) => {
            assert_eq!(s.reason, "OK");
            assert_eq!(s.version, Version::SIP_2_0);
        }
        StartLine::Request(_) => panic!("response expected"),
    }
    assert_eq!(m.body, b"hello");
    assert_eq!(m.raw.len(), input.len() - b" trailing".len());
}

#[test]
fn body_without_content_length_runs_to_end() {
    let m = Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nX: y\r\n\r\nbody\x00\xff").unwrap();
    assert_eq!(m.body, b"body\x00\xff");
}

#[test]
fn folding_compact_forms_and_colon_whitespace() {
    let input = b"\r\n\r\nINVITE sip:a@b SIP/2.0\r\nTO :\r\n sip:a@b\r\nSubject: one\r\n\ttwo\r\nv: SIP/2.0/UDP h\r\n\r\n";
    let m = Message::parse(input).unwrap();
    assert_eq!(m.headers.len(), 3);
    assert_eq!(m.headers[0].name, HeaderName::To);
    assert_eq!(m.headers[0].name_raw, "TO");
    assert_eq!(m.headers[0].value, "sip:a@b");
    assert_eq!(m.headers[1].value, "one\r\n\ttwo");
    assert_eq!(m.headers[1].name, HeaderName::Other);
    assert_eq!(
        &m.raw[m.headers[1].line.clone()],
        b"Subject: one\r\n\ttwo\r\n"
    );
    assert_eq!(m.headers[2].name, HeaderName::Via);
    // Leading CRLFs are not part of the message.
    assert!(m.raw.starts_with(b"INVITE"));
    assert_eq!(m.header_by_name("subject").unwrap().value, "one\r\n\ttwo");
}

#[test]
fn bare_lf_lines_are_accepted() {
    let m = Message::parse(b"OPTIONS sip:a@b SIP/2.0\nCall-ID: x\nl: 2\n\nab").unwrap();
    assert_eq!(m.call_id(), Some("x"));
    assert_eq!(m.body, b"ab");
}

#[test]
fn errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty message"),
        (b"\r\n\r\n", "empty message"),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nX: y\r\n",
            "missing empty line after headers",
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nl: 10\r\n\r\nshort",
            "Content-Length larger than message",
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n",
            "negative Content-Length",
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nl: x\r\n\r\n",
            "bad Content-Length",
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nl: 99999999999999999999999\r\n\r\n",
            "Content-Length larger than message",
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nab",
            "conflicting Content-Length",
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n",
            "invalid UTF-8",
        ),
        (b"OPTIONS sip:a@\xc3\xa9 SIP/2.0\r\n\r\n", "bad Request-URI"),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\n folded\r\n\r\n",
            "bad header line",
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nnocolon\r\n\r\n",
            "bad header line",
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
            "bad header name",
        ),
        (b"OPT<IONS sip:a@b SIP/2.0\r\n\r\n", "bad method"),
        (b"OPTIONS sip:a@b\r\n\r\n", "bad Request-Line"),
        (b"OPTIONS\r\n\r\n", "bad Request-Line"),
        (b"OPTIONS sip:a@b HTTP/1.1\r\n\r\n", "bad SIP version"),
        (b"OPTIONS sip:a@b SIP/2.x\r\n\r\n", "bad SIP version"),
        (b"SIP/2.0 4294967301 Big\r\n\r\n", "bad status code"),
        (b"SIP/2.0 99 Small\r\n\r\n", "bad status code"),
        (b"SIP/2.0 700 Large\r\n\r\n", "bad status code"),
        (b"SIP/2.0 20x OK\r\n\r\n", "bad status code"),
    ];
    for (input, what) in cases {
        let err = Message::parse(input).unwrap_err();
        assert_eq!(err.what, *what, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn too_many_headers() {
    let mut input = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    for _ in 0..MAX_HEADERS {
        input.extend_from_slice(b"X: y\r\n");
    }
    input.extend_from_slice(b"\r\n");
    assert_eq!(Message::parse(&input).unwrap().headers.len(), MAX_HEADERS);
    let at = input.len() - 2;
    input.splice(at..at, b"X: y\r\n".iter().copied());
    assert_eq!(Message::parse(&input).unwrap_err().what, "too many headers");
}

#[test]
fn version_case_insensitive_and_odd_versions() {
    let m = Message::parse(b"OPTIONS sip:a@b sip/2.0\r\n\r\n").unwrap();
    assert_eq!(m.request_uri().unwrap().scheme, Scheme::Sip);
    let m = Message::parse(b"OPTIONS sip:a@b SIP/7.0\r\n\r\n").unwrap();
    match m.start_line {
        StartLine::Request(r) => assert_eq!(r.version, Version { major: 7, minor: 0 }),
        StartLine::Response(_) => panic!(),
    }
    let m = Message::parse(b"SIP/2.0 100 \r\n\r\n").unwrap();
    match m.start_line {
        StartLine::Response(s) => assert_eq!((s.code, s.reason), (100, "")),
        StartLine::Request(_) => panic!(),
    }
}

#[test]
fn scalars() {
    assert_eq!(parse_max_forwards(" 0068 "), Ok(68));
    assert_eq!(parse_max_forwards("255"), Ok(255));
    assert_eq!(
        parse_max_forwards("256").unwrap_err().what,
        "Max-Forwards out of range"
    );
    assert_eq!(
        parse_max_forwards("-1").unwrap_err().what,
        "bad Max-Forwards"
    );
    assert_eq!(parse_delta_seconds("4294967295"), Ok(u32::MAX));
    assert_eq!(
        parse_delta_seconds("4294967296").unwrap_err().what,
        "delta-seconds out of range"
    );
    assert_eq!(
        parse_delta_seconds("").unwrap_err().what,
        "bad delta-seconds"
    );
    assert_eq!(
        parse_delta_seconds("1 2").unwrap_err().what,
        "bad delta-seconds"
    );
}

#[test]
fn never_panics_on_truncations() {
    for end in 0..=REGISTER.len() {
        let _ = Message::parse(&REGISTER[..end]).map(|m| m.validate());
    }
    // Flip every byte to a few odd values.
    let mut buf = REGISTER.to_vec();
    for i in 0..buf.len() {
        let original = buf[i];
        for b in [0u8, b'\r', b'\n', b' ', b':', b'"', b'<', b';', 0xff] {
            buf[i] = b;
            if let Ok(m) = Message::parse(&buf) {
                let _ = m.validate();
                let _ = m.contacts().count();
                let _ = m.top_via();
            }
        }
        buf[i] = original;
    }
}

/// REGISTER with one header line replaced (or removed when `with` is empty).
fn register_with(header: &str, with: &str) -> Vec<u8> {
    let text = std::str::from_utf8(REGISTER).unwrap();
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line.starts_with(header) {
            out.push_str(with);
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

fn rejection(input: &[u8]) -> (u16, String) {
    let m = Message::parse(input).unwrap();
    let r = m.validate().unwrap_err();
    (r.status, r.reason)
}

#[test]
fn validate_reasons_name_the_fault() {
    let cases: &[(&str, &str, &str)] = &[
        ("Call-ID:", "", "Bad Request (missing Call-ID)"),
        ("From:", "", "Bad Request (missing From)"),
        ("To:", "", "Bad Request (missing To)"),
        ("CSeq:", "", "Bad Request (missing CSeq)"),
        ("Via:", "", "Bad Request (missing Via)"),
        ("Via:", "Via: \r\n", "Bad Request (missing Via)"),
        ("Via:", "Via: SIP/2.0/UDP\r\n", "Bad Request (bad Via)"),
        (
            "From:",
            "From: <sip:bob@example.com\r\n",
            "Bad Request (bad From)",
        ),
        (
            "To:",
            "To: Bob, Smith <sip:bob@example.com>\r\n",
            "Bad Request (bad To)",
        ),
        ("Call-ID:", "Call-ID:\r\n", "Bad Request (bad Call-ID)"),
        ("CSeq:", "CSeq: 1826\r\n", "Bad Request (bad CSeq)"),
        (
            "CSeq:",
            "CSeq: 2147483648 REGISTER\r\n",
            "Bad Request (CSeq number out of range)",
        ),
        (
            "CSeq:",
            "CSeq: 1 INVITE\r\n",
            "Bad Request (CSeq method does not match request method)",
        ),
        (
            "CSeq:",
            "CSeq: 1 register\r\n",
            "Bad Request (CSeq method does not match request method)",
        ),
        (
            "Max-Forwards:",
            "Max-Forwards: 300\r\n",
            "Bad Request (Max-Forwards out of range)",
        ),
        (
            "Max-Forwards:",
            "Max-Forwards: seventy\r\n",
            "Bad Request (bad Max-Forwards)",
        ),
        (
            "Max-Forwards:",
            "Max-Forwards: 70\r\nMax-Forwards: 70\r\n",
            "Bad Request (multiple Max-Forwards headers)",
        ),
        (
            "Contact:",
            "Contact: <sip:bob@192.0.2.10>;expires=4294967296\r\n",
            "Bad Request (Contact expires out of range)",
        ),
        (
            "Contact:",
            "Contact: <sip:bob@192.0.2.10>;expires=soon\r\n",
            "Bad Request (bad Contact expires)",
        ),
        (
            "Contact:",
            "Contact: *, <sip:bob@192.0.2.10>\r\n",
            "Bad Request (Contact * mixed with addresses)",
        ),
        (
            "Contact:",
            "Contact: <sip:bob@ 192.0.2.10>\r\n",
            "Bad Request (bad Contact)",
        ),
        (
            "Content-Length:",
            "Content-Length: 0\r\nExpires: 99999999999\r\n",
            "Bad Request (Expires out of range)",
        ),
        (
            "Content-Length:",
            "Content-Length: 0\r\nExpires: never\r\n",
            "Bad Request (bad Expires)",
        ),
        (
            "To:",
            "To: <sip:bob@example.com>\r\nt: <sip:bob@example.com>\r\n",
            "Bad Request (multiple To headers)",
        ),
    ];
    for (header, with, reason) in cases {
        let input = register_with(header, with);
        assert_eq!(
            rejection(&input),
            (400, reason.to_string()),
            "{}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn validate_request_line_faults() {
    let replace_start = |line: &str| {
        let text = std::str::from_utf8(REGISTER).unwrap();
        let rest = &text[text.find("\r\n").unwrap()..];
        format!("{line}{rest}").into_bytes()
    };
    for (line, status, reason) in [
        (
            "REGISTER sip:example.com SIP/2.1",
            505,
            "SIP Version Not Supported",
        ),
        (
            "REGISTER sip:example.com SIP/3.0",
            505,
            "SIP Version Not Supported",
        ),
        (
            "REGISTER <sip:example.com> SIP/2.0",
            400,
            "Bad Request (Request-URI enclosed in <>)",
        ),
        (
            "REGISTER sip:example.com; lr SIP/2.0",
            400,
            "Bad Request (whitespace in Request-URI)",
        ),
        (
            "REGISTER  sip:example.com SIP/2.0",
            400,
            "Bad Request (extra whitespace in Request-Line)",
        ),
        (
            "REGISTER sip:example.com?Subject=x SIP/2.0",
            400,
            "Bad Request (escaped headers in Request-URI)",
        ),
    ] {
        assert_eq!(
            rejection(&replace_start(line)),
            (status, reason.to_string()),
            "{line}"
        );
    }
    // Unknown schemes are left to the server (416), and trailing SP is tolerated.
    for line in [
        "REGISTER mailto:bob@example.com SIP/2.0",
        "REGISTER sip:example.com SIP/2.0 \t",
    ] {
        let input = replace_start(line);
        assert_eq!(Message::parse(&input).unwrap().validate(), Ok(()), "{line}");
    }
}

#[test]
fn validate_responses() {
    let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:a@b>;tag=2\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(Message::parse(ok).unwrap().validate(), Ok(()));
    let bad = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:a@b>;tag=2\r\nCSeq: 1 REGISTER\r\n\r\n";
    assert!(Message::parse(bad).unwrap().validate().is_err());
}
