//! Parser and serializer throughput on the messages a registrar and proxy see most.
//!
//! Run with `cargo bench -p p2psip-sip --bench message`. Each benchmark uses a short warm-up
//! and measurement window so the whole file finishes in well under a minute.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sip::message::edit::build_response;
use sip::message::{HeaderName, Message, MessageEditor};
use std::time::Duration;

/// A REGISTER as a softphone sends it over UDP behind NAT.
const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bK-524287-1---a4d2c1e0f7b3a9d8\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@192.168.1.20:5060;rinstance=3f1c2b9a7e6d5c4b;transport=UDP>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-00a0c91e6bf6>\";reg-id=1\r\n\
To: <sip:alice@example.com>\r\n\
From: <sip:alice@example.com>;tag=4f2a8c1d\r\n\
Call-ID: 9b1e6f3ad2c74e58b0a1c3d5e7f9a2b4\r\n\
CSeq: 2 REGISTER\r\n\
Expires: 3600\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Supported: replaces, outbound, path\r\n\
User-Agent: Zoiper rv2.10.19.9\r\n\
Allow-Events: presence, kpml, talk\r\n\
Content-Length: 0\r\n\
\r\n";

/// An INVITE with an SDP offer, as it reaches the proxy from the caller.
const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bK-524287-1---77f2a1c3b5d7e9f0\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@192.168.1.20:5060;transport=UDP>\r\n\
To: <sip:bob@example.com>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=8d3e1f2a\r\n\
Call-ID: 3c7a9e1b5d2f4a6c8e0b1d3f5a7c9e2b\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, norefersub, extended-refer, timer, outbound, path, X-cisco-serviceuri\r\n\
User-Agent: Zoiper rv2.10.19.9\r\n\
Allow-Events: presence, kpml, talk\r\n\
Content-Length: 325\r\n\
\r\n\
v=0\r\n\
o=Z 0 123456 IN IP4 192.168.1.20\r\n\
s=Z\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
m=audio 8000 RTP/AVP 106 9 98 101 0 8 3\r\n\
a=rtpmap:106 opus/48000/2\r\n\
a=fmtp:106 sprop-maxcapturerate=16000; minptime=20; useinbandfec=1\r\n\
a=rtpmap:98 telephone-event/48000\r\n\
a=fmtp:98 0-16\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=sendrecv\r\n";

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

fn parse(c: &mut Criterion) {
    assert!(Message::parse(REGISTER).is_ok());
    assert!(Message::parse(INVITE).is_ok());
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("register", |b| {
        b.iter(|| Message::parse(black_box(REGISTER)).map(|m| m.headers.len()))
    });
    group.bench_function("register+validate", |b| {
        b.iter(|| {
            let msg = Message::parse(black_box(REGISTER)).unwrap();
            msg.validate().is_ok()
        })
    });
    group.bench_function("invite_sdp", |b| {
        b.iter(|| Message::parse(black_box(INVITE)).map(|m| m.headers.len()))
    });
    group.finish();
}

fn serialize(c: &mut Criterion) {
    let register = Message::parse(REGISTER).unwrap();
    let invite = Message::parse(INVITE).unwrap();
    let mut group = c.benchmark_group("serialize");
    group.throughput(Throughput::Elements(1));
    group.bench_function("register_200_ok", |b| {
        b.iter(|| {
            build_response(
                black_box(&register),
                200,
                "OK",
                Some("a1b2c3d4"),
                &[
                    (
                        "Contact",
                        "<sip:alice@192.168.1.20:5060;rinstance=3f1c2b9a7e6d5c4b;transport=UDP>;expires=3600",
                    ),
                    ("Expires", "3600"),
                ],
                None,
            )
        })
    });
    let max_forwards = invite
        .headers
        .iter()
        .position(|h| h.name == HeaderName::MaxForwards)
        .unwrap();
    group.bench_function("invite_proxy_forward", |b| {
        b.iter(|| {
            MessageEditor::new(black_box(&invite))
                .set_request_uri("sip:bob@203.0.113.9:49152;transport=udp")
                .prepend_header("Record-Route", "<sip:198.51.100.1;lr>")
                .prepend_header(
                    "Via",
                    "SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK-p2p-5e1d0c9b8a7f6e5d",
                )
                .replace_header(max_forwards, "69")
                .finish()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = parse, serialize
}
criterion_main!(benches);
