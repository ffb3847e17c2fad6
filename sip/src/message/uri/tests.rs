#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn parses_full_sip_uri() {
    let u =
        Uri::parse("sip:alice:secret@Example.COM:5070;transport=tcp;lr?subject=hi&x=y").unwrap();
    assert_eq!(u.scheme, Scheme::Sip);
    assert_eq!(u.user, Some("alice"));
    assert_eq!(u.password, Some("secret"));
    assert_eq!(u.host, "Example.COM");
    assert_eq!(u.port, Some(5070));
    assert_eq!(u.transport_param(), Some("tcp"));
    assert!(u.has_lr());
    assert_eq!(u.headers, Some("subject=hi&x=y"));
    assert_eq!(u.aor(), "alice@example.com");
    assert_eq!(u.host_lower(), "example.com");
}

#[test]
fn parses_hosts() {
    let u = Uri::parse("sips:192.0.2.1").unwrap();
    assert_eq!(
        (u.scheme, u.user, u.host, u.port),
        (Scheme::Sips, None, "192.0.2.1", None)
    );
    let u = Uri::parse("SIP:bob@[2001:DB8::1]:5061;maddr=[::1]").unwrap();
    assert_eq!(u.scheme, Scheme::Sip);
    assert_eq!(u.scheme_raw, "SIP");
    assert_eq!(u.host, "[2001:DB8::1]");
    assert_eq!(u.host_lower(), "2001:db8::1");
    assert_eq!(u.port, Some(5061));
    assert_eq!(u.aor(), "bob@[2001:db8::1]");
    assert_eq!(Uri::parse("sip:example.com").unwrap().aor(), "example.com");
}

#[test]
fn rejects_bad_uris() {
    for bad in [
        "",
        "sip:",
        "sip:@host",
        "sip:user@",
        "sip:user@host:",
        "sip:user@host:99999",
        "sip:user@host:12a",
        "sip:user@[::1",
        "sip:user@[zz::1]",
        "sip:user@ho st",
        "sip:user@host;a=%zz",
        "sip:us%2@host",
        "<sip:user@host>",
        "1sip:x",
        "nocolon",
        "sip:user@host/path",
    ] {
        assert!(Uri::parse(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn tel_and_other_schemes() {
    let u = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
    assert_eq!(u.scheme, Scheme::Tel);
    assert_eq!(u.user, Some("+1-201-555-0123"));
    assert_eq!(u.params.get("phone-context"), Some(Some("example.com")));
    assert_eq!(u.aor(), "+1-201-555-0123");
    let u = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
    assert_eq!(u.scheme, Scheme::Other);
    assert_eq!(u.scheme_raw, "soap.beep");
    let u = Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
    assert_eq!(u.scheme, Scheme::Other);
}

#[test]
fn unusual_user_parts() {
    let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
    assert_eq!(u.user, Some("user;par=u%40example.net"));
    assert_eq!(u.host, "example.com");
    assert!(u.params.is_empty());
    let u = Uri::parse(
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
    )
    .unwrap();
    assert_eq!(
        u.user,
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        u.password,
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(u.headers, None);
    let u = Uri::parse("sip:%75se%72@example.com").unwrap();
    assert_eq!(u.user_unescaped().unwrap(), "user");
    assert_eq!(u.aor(), "user@example.com");
}

#[test]
fn equivalence_rfc3261_examples() {
    let eq = |a: &str, b: &str| Uri::parse(a).unwrap().equivalent(&Uri::parse(b).unwrap());
    assert!(eq(
        "sip:%61lice@atlanta.com;transport=TCP",
        "sip:alice@AtLanTa.CoM;Transport=tcp"
    ));
    assert!(eq(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com;newparam=5"
    ));
    assert!(eq(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com;security=on"
    ));
    assert!(eq(
        "sip:carol@chicago.com;newparam=5",
        "sip:carol@chicago.com;security=on"
    ));
    assert!(eq(
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
    ));
    assert!(eq(
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
    ));
    assert!(eq("sip:[::1]", "sip:[0:0::1]"));

    assert!(!eq(
        "SIP:ALICE@AtLanTa.CoM;Transport=udp",
        "sip:alice@AtLanTa.CoM;Transport=UDP"
    ));
    assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
    assert!(!eq(
        "sip:bob@biloxi.com",
        "sip:bob@biloxi.com;transport=udp"
    ));
    assert!(!eq(
        "sip:bob@biloxi.com",
        "sip:bob@biloxi.com:6000;transport=tcp"
    ));
    assert!(!eq(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com?Subject=next%20meeting"
    ));
    assert!(!eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
    assert!(!eq("sip:alice@atlanta.com", "sips:alice@atlanta.com"));
    assert!(!eq(
        "sip:carol@chicago.com;security=on",
        "sip:carol@chicago.com;security=off"
    ));
}

#[test]
fn tel_equivalence() {
    let eq = |a: &str, b: &str| Uri::parse(a).unwrap().equivalent(&Uri::parse(b).unwrap());
    assert!(eq("tel:+1-201-555-0123", "tel:+1.201.555.0123"));
    assert!(eq(
        "tel:7042;phone-context=example.com",
        "TEL:7042;Phone-Context=EXAMPLE.com"
    ));
    assert!(!eq("tel:7042;phone-context=example.com", "tel:7042"));
    assert!(!eq("tel:+1-201-555-0123", "tel:+1-201-555-0124"));
    assert!(!eq("tel:+12015550123", "sip:+12015550123@example.com"));
}
