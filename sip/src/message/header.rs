//! Typed views of the headers the stack acts on. Each borrows from the header value.

use super::method::Method;
use super::params::Params;
use super::parse::lex::{
    find_top_level, is_lws_char, is_token, is_token_byte, quoted_string_end, trim_lws,
};
use super::parse::ParseError;
use super::uri::{parse_host_port, Uri};
use super::HeaderName;

impl HeaderName {
    /// Maps a header name (long or compact form, any case) to a known header.
    pub fn from_name(name: &str) -> HeaderName {
        use HeaderName::*;
        let bytes = name.as_bytes();
        let Some(first) = bytes.first().map(u8::to_ascii_lowercase) else {
            return Other;
        };
        // Dispatch on length and first letter so that a name costs at most two comparisons.
        let candidates: &[(&str, HeaderName)] = match (bytes.len(), first) {
            (1, b'v') => return Via,
            (1, b'f') => return From,
            (1, b't') => return To,
            (1, b'i') => return CallId,
            (1, b'm') => return Contact,
            (1, b'l') => return ContentLength,
            (1, b'c') => return ContentType,
            (1, b'k') => return Supported,
            (2, b't') => &[("To", To)],
            (3, b'v') => &[("Via", Via)],
            (4, b'f') => &[("From", From)],
            (4, b'c') => &[("CSeq", CSeq)],
            (5, b'r') => &[("Route", Route)],
            (5, b'a') => &[("Allow", Allow)],
            (7, b'c') => &[("Call-ID", CallId), ("Contact", Contact)],
            (7, b'e') => &[("Expires", Expires)],
            (7, b'r') => &[("Require", Require)],
            (9, b's') => &[("Supported", Supported)],
            (9, b't') => &[("Timestamp", Timestamp)],
            (11, b'm') => &[("Min-Expires", MinExpires)],
            (11, b'u') => &[("Unsupported", Unsupported)],
            (12, b'm') => &[("Max-Forwards", MaxForwards)],
            (12, b'r') => &[("Record-Route", RecordRoute)],
            (12, b'c') => &[("Content-Type", ContentType)],
            (13, b'a') => &[("Authorization", Authorization)],
            (13, b'p') => &[("Proxy-Require", ProxyRequire)],
            (14, b'c') => &[("Content-Length", ContentLength)],
            (16, b'w') => &[("WWW-Authenticate", WwwAuthenticate)],
            (18, b'p') => &[("Proxy-Authenticate", ProxyAuthenticate)],
            (19, b'p') => &[("Proxy-Authorization", ProxyAuthorization)],
            _ => return Other,
        };
        candidates
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(Other, |&(_, h)| h)
    }

    /// Canonical long form, e.g. `Call-ID`. `Other` has no canonical name.
    pub fn as_str(&self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Contact => "Contact",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Expires => "Expires",
            HeaderName::MinExpires => "Min-Expires",
            HeaderName::Authorization => "Authorization",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Supported => "Supported",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::Allow => "Allow",
            HeaderName::Timestamp => "Timestamp",
            HeaderName::Other => "",
        }
    }
}

/// Splits a list header value at top-level commas (outside quoted strings and `<...>`),
/// trimming whitespace (including folded line breaks) and skipping empty elements.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> + '_ {
    ListIter { rest: Some(value) }
}

/// Iterator behind [`split_list`].
struct ListIter<'a> {
    /// `None` once the last element has been returned.
    rest: Option<&'a str>,
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let rest = self.rest?;
            let element = match find_top_level(rest.as_bytes(), b',', true) {
                Some(comma) => {
                    self.rest = rest.get(comma + 1..);
                    rest.get(..comma).unwrap_or_default()
                }
                None => {
                    self.rest = None;
                    rest
                }
            };
            let element = trim_lws(element);
            if !element.is_empty() {
                return Some(element);
            }
        }
    }
}

/// The branch prefix of RFC 3261 transaction identifiers (section 8.1.1.7).
const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/UDP host:port;branch=z9hG4bK...;rport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// Protocol name and version as written (`SIP`, `2.0`).
    pub protocol: &'a str,
    pub version: &'a str,
    /// Transport token as written (`UDP`, `tcp`, `SCTP`, ...).
    pub transport: &'a str,
    /// sent-by host as written (IPv6 with brackets).
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// The whole value as written.
    pub raw: &'a str,
}

impl<'a> Via<'a> {
    /// Parses one Via value (one element of a Via list), allowing linear white space around
    /// `/`, `:`, `;` and `=` as RFC 3261 does. Parameters must be well formed (no `;;`).
    pub fn parse(value: &'a str) -> Result<Via<'a>, ParseError> {
        const BAD_VIA: ParseError = ParseError::new("bad Via");
        let raw = trim_lws(value);
        let (protocol, rest) = raw.split_once('/').ok_or(BAD_VIA)?;
        let (version, rest) = rest.split_once('/').ok_or(BAD_VIA)?;
        let (protocol, version) = (trim_lws(protocol), trim_lws(version));
        if !is_token(protocol) || !is_token(version) {
            return Err(BAD_VIA);
        }
        let rest = trim_lws(rest);
        let transport_len = rest.bytes().take_while(|&b| is_token_byte(b)).count();
        let transport = rest.get(..transport_len).unwrap_or_default();
        let rest = rest.get(transport_len..).unwrap_or_default();
        if transport.is_empty() || !rest.starts_with(is_lws_char) {
            return Err(BAD_VIA);
        }
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (
                rest.get(..i).unwrap_or_default(),
                rest.get(i..).unwrap_or_default(),
            ),
            None => (rest, ""),
        };
        let sent_by = trim_lws(sent_by);
        // Whitespace may surround the colon of sent-by; nowhere else inside it.
        let (host, port) = match sent_by.rfind(':') {
            Some(i) if !sent_by.ends_with(']') => {
                let host = trim_lws(sent_by.get(..i).unwrap_or_default());
                let port = trim_lws(sent_by.get(i + 1..).unwrap_or_default());
                if host.contains(is_lws_char) {
                    return Err(BAD_VIA);
                }
                let (host, _) = parse_host_port(host).map_err(|_| BAD_VIA)?;
                if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(BAD_VIA);
                }
                (host, Some(port.parse::<u16>().map_err(|_| BAD_VIA)?))
            }
            _ => {
                if sent_by.contains(is_lws_char) {
                    return Err(BAD_VIA);
                }
                parse_host_port(sent_by).map_err(|_| BAD_VIA)?
            }
        };
        let params = Params::new(params);
        if !params.is_well_formed() {
            return Err(BAD_VIA);
        }
        Ok(Via {
            protocol,
            version,
            transport,
            host,
            port,
            params,
            raw,
        })
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// True when the branch is the RFC 3261 magic cookie `z9hG4bK` followed by an
    /// identifier. A branch that is only the cookie identifies nothing (RFC 4475 3.2.1), so
    /// such a request is matched the RFC 2543 way.
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// `None`: no rport; `Some(None)`: `;rport` without value (or with a value that is not a
    /// port); `Some(Some(p))`: `;rport=p`.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse::<u16>().ok()))
    }
}

/// `name-addr` or `addr-spec` with header parameters: From, To, Contact, Route,
/// Record-Route. For an addr-spec without `<>`, parameters after the URI belong to the header,
/// not the URI (RFC 3261 20.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written: a token sequence or a quoted string including quotes.
    pub display_name: Option<&'a str>,
    pub uri: Uri<'a>,
    /// Header parameters after the address (`;tag=...;expires=...`).
    pub params: Params<'a>,
    /// True when the URI was enclosed in `<>`.
    pub bracketed: bool,
    pub raw: &'a str,
}

impl<'a> NameAddr<'a> {
    /// Parses `[display-name] <URI> *(;param)` or `URI *(;param)`. Rejects an unterminated
    /// quoted display name, a display name that is not a token sequence, whitespace inside
    /// `<>`, malformed parameters, and a bare URI holding `,` or `?` (which RFC 3261 20
    /// requires to be enclosed in `<>`).
    pub fn parse(value: &'a str) -> Result<NameAddr<'a>, ParseError> {
        let raw = trim_lws(value);
        let bytes = raw.as_bytes();
        let (display_name, after_name) = if bytes.first() == Some(&b'"') {
            let end =
                quoted_string_end(bytes).ok_or(ParseError::new("unterminated quoted string"))?;
            (raw.get(..end), raw.get(end..).unwrap_or_default())
        } else {
            match raw.find('<') {
                Some(lt) => {
                    let name = trim_lws(raw.get(..lt).unwrap_or_default());
                    let tokens_ok = name
                        .split(is_lws_char)
                        .filter(|t| !t.is_empty())
                        .all(is_token);
                    if !tokens_ok {
                        return Err(ParseError::new("bad display name"));
                    }
                    let name = if name.is_empty() { None } else { Some(name) };
                    (name, raw.get(lt..).unwrap_or_default())
                }
                None => (None, raw),
            }
        };
        let rest = trim_lws(after_name);
        if let Some(inner_and_rest) = rest.strip_prefix('<') {
            let gt = inner_and_rest
                .find('>')
                .ok_or(ParseError::new("unterminated <>"))?;
            let uri = Uri::parse(inner_and_rest.get(..gt).unwrap_or_default())?;
            let params = Params::new(inner_and_rest.get(gt + 1..).unwrap_or_default());
            if !params.is_well_formed() {
                return Err(ParseError::new("bad header parameters"));
            }
            return Ok(NameAddr {
                display_name,
                uri,
                params,
                bracketed: true,
                raw,
            });
        }
        if display_name.is_some() {
            return Err(ParseError::new("missing <> after display name"));
        }
        let (uri_text, params) = match rest.find(';') {
            Some(i) => (
                rest.get(..i).unwrap_or_default(),
                rest.get(i..).unwrap_or_default(),
            ),
            None => (rest, ""),
        };
        let uri_text = trim_lws(uri_text);
        if uri_text.contains([',', '?']) {
            return Err(ParseError::new("URI with , or ? must be enclosed in <>"));
        }
        let uri = Uri::parse(uri_text)?;
        let params = Params::new(params);
        if !params.is_well_formed() {
            return Err(ParseError::new("bad header parameters"));
        }
        Ok(NameAddr {
            display_name,
            uri,
            params,
            bracketed: false,
            raw,
        })
    }

    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }
}

/// A Contact value: `*` or an address with parameters (`expires`, `q`, `+sip.instance`,
/// `reg-id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactValue<'a> {
    Star,
    Address(NameAddr<'a>),
}

impl<'a> ContactValue<'a> {
    pub fn parse(value: &'a str) -> Result<ContactValue<'a>, ParseError> {
        if trim_lws(value) == "*" {
            return Ok(ContactValue::Star);
        }
        NameAddr::parse(value).map(ContactValue::Address)
    }
}

/// `CSeq: 4711 INVITE`. The number must fit in 32 bits and be below 2^31 (RFC 3261 8.1.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    pub fn parse(value: &'a str) -> Result<CSeq<'a>, ParseError> {
        const BAD_CSEQ: ParseError = ParseError::new("bad CSeq");
        let value = trim_lws(value);
        let digits = value.bytes().take_while(u8::is_ascii_digit).count();
        let number = value.get(..digits).unwrap_or_default();
        let rest = value.get(digits..).unwrap_or_default();
        if !rest.starts_with(is_lws_char) {
            return Err(BAD_CSEQ);
        }
        let method = trim_lws(rest);
        if !is_token(method) {
            return Err(BAD_CSEQ);
        }
        let seq = match super::parse::lex::parse_decimal(number) {
            Ok(n) if n < 1 << 31 => n as u32,
            Ok(_) | Err(true) => return Err(ParseError::new("CSeq number out of range")),
            Err(false) => return Err(BAD_CSEQ),
        };
        Ok(CSeq {
            seq,
            method: Method::from_token(method),
        })
    }
}

#[cfg(test)]
mod tests;
