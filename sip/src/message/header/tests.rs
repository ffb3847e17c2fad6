#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::message::uri::Scheme;

#[test]
fn header_names() {
    for (name, expected) in [
        ("Via", HeaderName::Via),
        ("v", HeaderName::Via),
        ("VIA", HeaderName::Via),
        ("i", HeaderName::CallId),
        ("call-id", HeaderName::CallId),
        ("m", HeaderName::Contact),
        ("l", HeaderName::ContentLength),
        ("c", HeaderName::ContentType),
        ("f", HeaderName::From),
        ("t", HeaderName::To),
        ("TO", HeaderName::To),
        ("k", HeaderName::Supported),
        ("cseq", HeaderName::CSeq),
        ("max-forwards", HeaderName::MaxForwards),
        ("Record-Route", HeaderName::RecordRoute),
        ("www-authenticate", HeaderName::WwwAuthenticate),
        ("Proxy-Authorization", HeaderName::ProxyAuthorization),
        ("Proxy-Authenticate", HeaderName::ProxyAuthenticate),
        ("Proxy-Require", HeaderName::ProxyRequire),
        ("Unsupported", HeaderName::Unsupported),
        ("Min-Expires", HeaderName::MinExpires),
        ("Subject", HeaderName::Other),
        ("s", HeaderName::Other),
        ("X-Foo", HeaderName::Other),
    ] {
        assert_eq!(HeaderName::from_name(name), expected, "{name}");
    }
    // Every canonical name maps back to its variant.
    for h in [
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
    ] {
        assert_eq!(HeaderName::from_name(h.as_str()), h);
    }
}

#[test]
fn list_splitting() {
    let v: Vec<_> = split_list(r#" "a, b" <sip:x@y;p=1,2>;q=1 , ,sip:z@w ,"#).collect();
    assert_eq!(v, vec![r#""a, b" <sip:x@y;p=1,2>;q=1"#, "sip:z@w"]);
    let v: Vec<_> = split_list("SIP/2.0/UDP a;branch=1,\r\n SIP/2.0/TCP b").collect();
    assert_eq!(v, vec!["SIP/2.0/UDP a;branch=1", "SIP/2.0/TCP b"]);
    assert_eq!(split_list("").count(), 0);
    assert_eq!(split_list(" , ,").count(), 0);
}

#[test]
fn via_basic_and_rport() {
    let v =
        Via::parse("SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK776;rport;received=10.0.0.1").unwrap();
    assert_eq!((v.protocol, v.version, v.transport), ("SIP", "2.0", "UDP"));
    assert_eq!((v.host, v.port), ("192.0.2.1", Some(5062)));
    assert_eq!(v.branch(), Some("z9hG4bK776"));
    assert!(v.is_rfc3261_branch());
    assert_eq!(v.rport(), Some(None));
    assert_eq!(v.received(), Some("10.0.0.1"));
    let v = Via::parse("SIP/2.0/TLS [2001:db8::9]:5061;rport=3000;branch=abc").unwrap();
    assert_eq!((v.host, v.port), ("[2001:db8::9]", Some(5061)));
    assert_eq!(v.rport(), Some(Some(3000)));
    assert!(!v.is_rfc3261_branch());
    let v = Via::parse("SIP/2.0/UDP [::1]").unwrap();
    assert_eq!((v.host, v.port, v.rport()), ("[::1]", None, None));
}

#[test]
fn via_with_folded_whitespace() {
    let v =
        Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8")
            .unwrap();
    assert_eq!((v.protocol, v.version, v.transport), ("SIP", "2.0", "TCP"));
    assert_eq!((v.host, v.port), ("spindle.example.com", None));
    assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
    let v = Via::parse("SIP/2.0/UDP host.example.com : 5060 ;branch=\r\n z9hG4bK30239").unwrap();
    assert_eq!((v.host, v.port), ("host.example.com", Some(5060)));
    assert_eq!(v.branch(), Some("z9hG4bK30239"));
}

#[test]
fn via_rejects() {
    for bad in [
        "",
        ";",
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDPhost",
        "SIP/2.0/UDP 192.0.2.15;;",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP host:port",
        "SIP/2.0/UDP ho st",
        "SIP/2.0/UDP ::1",
        "SIP/2.0/UDP host:70000",
    ] {
        assert!(Via::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn name_addr_forms() {
    let na = NameAddr::parse(r#""J Rosenberg \\\""  <sip:jdrosen@example.com>  ;  tag = 98asjd8"#)
        .unwrap();
    assert_eq!(na.display_name, Some(r#""J Rosenberg \\\"""#));
    assert_eq!(na.uri.user, Some("jdrosen"));
    assert_eq!(na.tag(), Some("98asjd8"));
    assert!(na.bracketed);

    let na = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
    assert_eq!(na.display_name, Some("caller"));
    assert_eq!(na.tag(), Some("323"));

    let na = NameAddr::parse("Alice Smith <sip:alice@atlanta.com;transport=tcp>").unwrap();
    assert_eq!(na.display_name, Some("Alice Smith"));
    assert_eq!(na.uri.transport_param(), Some("tcp"));
    assert!(na.params.is_empty());

    // Bare addr-spec: the parameters are header parameters.
    let na = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam;tag=x").unwrap();
    assert!(!na.bracketed);
    assert!(na.uri.params.is_empty());
    assert!(na.params.contains("unknownparam"));
    assert_eq!(na.tag(), Some("x"));

    let na = NameAddr::parse("<isbn:2983792873>").unwrap();
    assert_eq!(na.uri.scheme, Scheme::Other);
    let na = NameAddr::parse("isbn:2983792873").unwrap();
    assert_eq!(na.uri.scheme, Scheme::Other);
}

#[test]
fn name_addr_rejects() {
    for bad in [
        r#""unterminated <sip:a@b>"#,
        "Bell, Alexander <sip:a.g.bell@bell-tel.com>;tag=43",
        r#""Watson, Thomas" < sip:t.watson@example.org >"#,
        "sip:caller@example.net;;tag=134161461246",
        r#""Joe" <sip:joe@example.org>;;;;"#,
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "<sip:a@b",
        r#""name" sip:a@b"#,
        "",
    ] {
        assert!(NameAddr::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn contacts() {
    assert_eq!(ContactValue::parse(" * ").unwrap(), ContactValue::Star);
    match ContactValue::parse("<sip:u@h>;expires=60;q=0.5").unwrap() {
        ContactValue::Address(na) => {
            assert_eq!(na.params.get("expires"), Some(Some("60")));
            assert_eq!(na.params.get("q"), Some(Some("0.5")));
        }
        ContactValue::Star => panic!("not a star"),
    }
}

#[test]
fn cseq() {
    let c = CSeq::parse("0009\r\n  INVITE").unwrap();
    assert_eq!((c.seq, c.method), (9, Method::Invite));
    let c = CSeq::parse("2147483647 RE%47IST%45R").unwrap();
    assert_eq!(c.seq, 2_147_483_647);
    assert_eq!(c.method, Method::Extension("RE%47IST%45R"));
    assert_eq!(
        CSeq::parse("2147483648 INVITE").unwrap_err().what,
        "CSeq number out of range"
    );
    assert_eq!(
        CSeq::parse("36893488147419103232 INVITE").unwrap_err().what,
        "CSeq number out of range"
    );
    for bad in [
        "",
        "INVITE",
        "1",
        "1INVITE",
        "-1 INVITE",
        "1 INVITE x",
        "1 INV<ITE",
    ] {
        assert!(CSeq::parse(bad).is_err(), "{bad:?}");
    }
}
