//! Semantic checks a server applies to a parsed message before acting on it (RFC 3261 8.2,
//! 16.3; RFC 4475 3.1.2).

use super::super::header::{ContactValue, NameAddr};
use super::super::uri::Scheme;
use super::super::{HeaderName, Message, Rejection, StartLine, Version};
use super::ParseError;
use super::{content_length, parse_delta_seconds, parse_max_forwards, request_uri_text};

fn bad_request(fault: &str) -> Rejection {
    Rejection {
        status: 400,
        reason: format!("Bad Request ({fault})"),
    }
}

/// Headers that must appear exactly once.
const SINGLE: [(HeaderName, &str, &str); 4] = [
    (HeaderName::From, "missing From", "multiple From headers"),
    (HeaderName::To, "missing To", "multiple To headers"),
    (
        HeaderName::CallId,
        "missing Call-ID",
        "multiple Call-ID headers",
    ),
    (HeaderName::CSeq, "missing CSeq", "multiple CSeq headers"),
];

pub(super) fn validate(msg: &Message<'_>) -> Result<(), Rejection> {
    let version = match &msg.start_line {
        StartLine::Request(r) => r.version,
        StartLine::Response(s) => s.version,
    };
    if version != Version::SIP_2_0 {
        return Err(Rejection {
            status: 505,
            reason: "SIP Version Not Supported".to_string(),
        });
    }
    if msg.is_request() {
        check_request_uri(msg)?;
    }
    for (name, missing, multiple) in SINGLE {
        let mut lines = msg.headers_named(name);
        if lines.next().is_none() {
            return Err(bad_request(missing));
        }
        if lines.next().is_some() {
            return Err(bad_request(multiple));
        }
    }
    if msg.header_values(HeaderName::Via).next().is_none() {
        return Err(bad_request("missing Via"));
    }
    if msg
        .header_values(HeaderName::Via)
        .any(|v| super::super::Via::parse(v).is_err())
    {
        return Err(bad_request("bad Via"));
    }
    check_name_addr(msg.from(), "bad From")?;
    check_name_addr(msg.to(), "bad To")?;
    if msg.call_id().is_none_or(|id| id.is_empty()) {
        return Err(bad_request("bad Call-ID"));
    }
    let cseq = match msg.cseq() {
        Some(Ok(cseq)) => cseq,
        Some(Err(e)) => return Err(bad_request(e.what)),
        None => return Err(bad_request("missing CSeq")),
    };
    if let Some(method) = msg.method() {
        if cseq.method != *method {
            return Err(bad_request("CSeq method does not match request method"));
        }
    }
    check_scalars(msg)?;
    check_contacts(msg)
}

fn check_request_uri(msg: &Message<'_>) -> Result<(), Rejection> {
    let line = msg
        .raw
        .get(msg.start_line_range.clone())
        .and_then(|l| std::str::from_utf8(l).ok())
        .unwrap_or_default()
        .trim_end_matches(['\r', '\n']);
    let (_, uri_text, _) = request_uri_text(line).unwrap_or_default();
    if uri_text.trim_start().starts_with('<') {
        return Err(bad_request("Request-URI enclosed in <>"));
    }
    if uri_text.starts_with([' ', '\t']) || uri_text.ends_with([' ', '\t']) {
        return Err(bad_request("extra whitespace in Request-Line"));
    }
    if uri_text.contains([' ', '\t']) {
        return Err(bad_request("whitespace in Request-URI"));
    }
    if let Some(uri) = msg.request_uri() {
        if matches!(uri.scheme, Scheme::Sip | Scheme::Sips) && uri.headers.is_some() {
            return Err(bad_request("escaped headers in Request-URI"));
        }
    }
    Ok(())
}

fn check_name_addr(
    value: Option<Result<NameAddr<'_>, ParseError>>,
    fault: &'static str,
) -> Result<(), Rejection> {
    match value {
        Some(Ok(_)) => Ok(()),
        _ => Err(bad_request(fault)),
    }
}

fn check_scalars(msg: &Message<'_>) -> Result<(), Rejection> {
    let mut max_forwards = msg.headers_named(HeaderName::MaxForwards);
    if let Some(h) = max_forwards.next() {
        if max_forwards.next().is_some() {
            return Err(bad_request("multiple Max-Forwards headers"));
        }
        parse_max_forwards(h.value).map_err(|e| bad_request(e.what))?;
    }
    for h in msg.headers_named(HeaderName::Expires) {
        parse_delta_seconds(h.value).map_err(|e| match e.what {
            "delta-seconds out of range" => bad_request("Expires out of range"),
            _ => bad_request("bad Expires"),
        })?;
    }
    content_length(&msg.headers).map_err(|e| bad_request(e.what))?;
    Ok(())
}

fn check_contacts(msg: &Message<'_>) -> Result<(), Rejection> {
    let mut star = false;
    let mut count = 0usize;
    for contact in msg.contacts() {
        count += 1;
        match contact {
            Ok(ContactValue::Star) => star = true,
            Ok(ContactValue::Address(na)) => {
                if let Some(expires) = na.params.get("expires") {
                    parse_delta_seconds(expires.unwrap_or_default()).map_err(|e| match e.what {
                        "delta-seconds out of range" => bad_request("Contact expires out of range"),
                        _ => bad_request("bad Contact expires"),
                    })?;
                }
            }
            Err(_) => return Err(bad_request("bad Contact")),
        }
    }
    if star && count > 1 {
        return Err(bad_request("Contact * mixed with addresses"));
    }
    Ok(())
}
