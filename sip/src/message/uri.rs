//! sip:, sips: and tel: URIs (RFC 3261 19.1, RFC 3966), parsed in place.

use super::params::Params;
use super::parse::lex::{escapes_well_formed, unescaped_bytes, unescaped_eq};
use super::parse::ParseError;
use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other absolute URI scheme (e.g. `mailto`, `http`); kept so a message that carries
    /// one in a header still parses. A Request-URI with such a scheme is answered 416.
    Other,
}

/// A URI borrowing from the message. Escaped forms are kept as written; use the `*_unescaped`
/// accessors to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    /// The scheme as written (e.g. `SIP`, `mailto`).
    pub scheme_raw: &'a str,
    /// userinfo user part, as written (may hold `%` escapes). For tel: the number.
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    /// Host as written: hostname, IPv4, or IPv6 reference including brackets. Empty for tel:
    /// and other schemes.
    pub host: &'a str,
    pub port: Option<u16>,
    /// Parameters after the host/port (`;transport=tcp;lr`), or after the tel number.
    pub params: Params<'a>,
    /// Header part after `?`, without the `?`.
    pub headers: Option<&'a str>,
    /// The whole URI as written.
    pub raw: &'a str,
}

const BAD_URI: ParseError = ParseError::new("bad URI");

/// Bytes that never appear in a URI as written in SIP (RFC 3986 excludes them; in SIP they
/// delimit URIs): controls, space, non-ASCII, `<`, `>`, `"`.
fn is_uri_byte(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'<' | b'>' | b'"')
}

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// hostname or IPv4address; IPv6 references are checked separately.
fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Parses `host [":" port]` (the sent-by of a Via uses it too).
pub(crate) fn parse_host_port(s: &str) -> Result<(&str, Option<u16>), ParseError> {
    const BAD_HOST: ParseError = ParseError::new("bad host");
    let (host, port_text) = if s.starts_with('[') {
        let close = s.find(']').ok_or(BAD_HOST)?;
        let host = s.get(..close + 1).ok_or(BAD_HOST)?;
        let inner = host.get(1..close).ok_or(BAD_HOST)?;
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(BAD_HOST);
        }
        let after = s.get(close + 1..).unwrap_or("");
        if after.is_empty() {
            (host, None)
        } else {
            (host, Some(after.strip_prefix(':').ok_or(BAD_HOST)?))
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if !host.starts_with('[') && !is_hostname(host) {
        return Err(BAD_HOST);
    }
    let port = match port_text {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::new("bad port"));
            }
            Some(p.parse::<u16>().map_err(|_| ParseError::new("bad port"))?)
        }
    };
    Ok((host, port))
}

impl<'a> Uri<'a> {
    /// Parses a URI with no surrounding whitespace or angle brackets. Rejects embedded
    /// whitespace, bad escapes, bad ports and bad IPv6 references.
    pub fn parse(input: &'a str) -> Result<Uri<'a>, ParseError> {
        if !input.bytes().all(is_uri_byte) {
            return Err(BAD_URI);
        }
        let (scheme_raw, rest) = input.split_once(':').ok_or(BAD_URI)?;
        if !is_scheme(scheme_raw) {
            return Err(ParseError::new("bad URI scheme"));
        }
        let scheme = if scheme_raw.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_raw.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_raw.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let mut uri = Uri {
            scheme,
            scheme_raw,
            user: None,
            password: None,
            host: "",
            port: None,
            params: Params::default(),
            headers: None,
            raw: input,
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => parse_sip_rest(&mut uri, rest)?,
            Scheme::Tel => {
                let (number, params) = match rest.find(';') {
                    Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
                    None => (rest, ""),
                };
                if number.is_empty() || !escapes_well_formed(rest) {
                    return Err(BAD_URI);
                }
                uri.user = Some(number);
                uri.params = Params::new(params);
            }
            Scheme::Other => {
                if rest.is_empty() || !escapes_well_formed(rest) {
                    return Err(BAD_URI);
                }
            }
        }
        Ok(uri)
    }

    /// The user part with `%` escapes decoded.
    pub fn user_unescaped(&self) -> Option<Cow<'a, str>> {
        self.user.map(unescape)
    }

    /// The canonical address-of-record `user@domain` (user unescaped, host lower-cased, no
    /// port, no parameters); `domain` alone when there is no user, the number for tel:. Used
    /// as the location-table key and, later, hashed for the DHT key.
    pub fn aor(&self) -> String {
        let mut out = String::with_capacity(self.user.map_or(0, str::len) + 1 + self.host.len());
        if let Some(user) = self.user_unescaped() {
            out.push_str(&user);
            if !self.host.is_empty() {
                out.push('@');
            }
        }
        for c in self.host.chars() {
            out.push(c.to_ascii_lowercase());
        }
        out
    }

    /// Host lower-cased without IPv6 brackets.
    pub fn host_lower(&self) -> Cow<'a, str> {
        let host = strip_brackets(self.host);
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        }
    }

    /// URI equality per RFC 3261 19.1.4 (escapes decoded, case rules, parameter rules). tel:
    /// URIs compare per RFC 3966 5: the number without visual separators, and every parameter
    /// present in both with equal values. Other schemes compare as written after the scheme.
    pub fn equivalent(&self, other: &Uri<'_>) -> bool {
        if self.scheme != other.scheme {
            return false;
        }
        match self.scheme {
            Scheme::Sip | Scheme::Sips => {}
            Scheme::Tel => return tel_equivalent(self, other),
            Scheme::Other => {
                return self.scheme_raw.eq_ignore_ascii_case(other.scheme_raw)
                    && uri_tail(self).is_some_and(|a| {
                        uri_tail(other).is_some_and(|b| unescaped_eq(a, b, false))
                    })
            }
        }
        opt_eq(self.user, other.user, false)
            && opt_eq(self.password, other.password, false)
            && hosts_equal(self.host, other.host)
            && self.port == other.port
            && params_equivalent(self, other)
            && headers_equivalent(self.headers, other.headers)
    }

    pub fn transport_param(&self) -> Option<&'a str> {
        self.params.get("transport").flatten()
    }

    pub fn has_lr(&self) -> bool {
        self.params.contains("lr")
    }
}

fn parse_sip_rest<'a>(uri: &mut Uri<'a>, rest: &'a str) -> Result<(), ParseError> {
    // The user part may itself hold `;`, `?`, `/` and `,` (user-unreserved), but never an
    // unescaped `@`, and neither can the parts after the host: the first `@` ends userinfo.
    let hostpart = match rest.split_once('@') {
        Some((userinfo, hostpart)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if user.is_empty() || !escapes_well_formed(userinfo) {
                return Err(ParseError::new("bad URI user"));
            }
            uri.user = Some(user);
            uri.password = password;
            hostpart
        }
        None => rest,
    };
    let host_end = hostpart.find([';', '?']).unwrap_or(hostpart.len());
    let (host, port) = parse_host_port(hostpart.get(..host_end).unwrap_or(""))?;
    uri.host = host;
    uri.port = port;
    let after = hostpart.get(host_end..).unwrap_or("");
    let (params, headers) = match after.split_once('?') {
        Some((p, h)) => (p, Some(h)),
        None => (after, None),
    };
    if !escapes_well_formed(after) {
        return Err(ParseError::new("bad URI escape"));
    }
    uri.params = Params::new(params);
    uri.headers = headers;
    Ok(())
}

fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes: Vec<u8> = unescaped_bytes(s).collect();
    match String::from_utf8(bytes) {
        Ok(text) => Cow::Owned(text),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Everything after `scheme:`.
fn uri_tail<'a>(uri: &Uri<'a>) -> Option<&'a str> {
    uri.raw.get(uri.scheme_raw.len() + 1..)
}

fn opt_eq(a: Option<&str>, b: Option<&str>, ignore_case: bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => unescaped_eq(a, b, ignore_case),
        _ => false,
    }
}

fn hosts_equal(a: &str, b: &str) -> bool {
    if a.starts_with('[') || b.starts_with('[') {
        // IPv6 references compare as addresses (`[::1]` equals `[0:0::1]`).
        return match (
            strip_brackets(a).parse::<IpAddr>(),
            strip_brackets(b).parse::<IpAddr>(),
        ) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        };
    }
    a.eq_ignore_ascii_case(b)
}

/// Parameters that, when present in only one URI, make the URIs differ (RFC 3261 19.1.4).
const SIGNIFICANT_PARAMS: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];

fn is_significant(name: &str) -> bool {
    SIGNIFICANT_PARAMS
        .iter()
        .any(|p| unescaped_eq(name, p, true))
}

fn find_param<'b>(params: &Params<'b>, name: &str) -> Option<Option<&'b str>> {
    params
        .iter()
        .find(|(n, _)| unescaped_eq(n, name, true))
        .map(|(_, v)| v)
}

fn params_equivalent(a: &Uri<'_>, b: &Uri<'_>) -> bool {
    for (name, value) in a.params.iter() {
        match find_param(&b.params, name) {
            Some(other) if !opt_eq(value, other, true) => return false,
            Some(_) => {}
            None if is_significant(name) => return false,
            None => {}
        }
    }
    b.params
        .iter()
        .all(|(name, _)| !is_significant(name) || find_param(&a.params, name).is_some())
}

fn tel_equivalent(a: &Uri<'_>, b: &Uri<'_>) -> bool {
    if !tel_digits(a).eq(tel_digits(b)) || a.params.iter().count() != b.params.iter().count() {
        return false;
    }
    a.params
        .iter()
        .all(|(name, value)| find_param(&b.params, name).is_some_and(|v| opt_eq(value, v, true)))
}

/// The tel: number without visual separators, lower-cased.
fn tel_digits<'u>(uri: &Uri<'u>) -> impl Iterator<Item = u8> + 'u {
    unescaped_bytes(uri.user.unwrap_or_default())
        .filter(|c| !matches!(c, b'-' | b'.' | b'(' | b')'))
        .map(|c| c.to_ascii_lowercase())
}

fn headers_equivalent(a: Option<&str>, b: Option<&str>) -> bool {
    let a = a.unwrap_or("");
    let b = b.unwrap_or("");
    let fields = |s: &str| s.split('&').filter(|f| !f.is_empty()).count();
    if fields(a) != fields(b) {
        return false;
    }
    a.split('&').filter(|f| !f.is_empty()).all(|fa| {
        let (na, va) = header_field(fa);
        b.split('&').filter(|f| !f.is_empty()).any(|fb| {
            let (nb, vb) = header_field(fb);
            unescaped_eq(na, nb, true) && unescaped_eq(va, vb, false)
        })
    })
}

fn header_field(field: &str) -> (&str, &str) {
    field.split_once('=').unwrap_or((field, ""))
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests;
