//! sip:, sips: and tel: URIs (RFC 3261 19.1, RFC 3966), parsed in place.

use super::params::Params;
use super::parse::ParseError;
use std::borrow::Cow;

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
    /// Host as written: hostname, IPv4, or IPv6 reference including brackets. Empty for tel:.
    pub host: &'a str,
    pub port: Option<u16>,
    /// Parameters after the host/port (`;transport=tcp;lr`), or after the tel number.
    pub params: Params<'a>,
    /// Header part after `?`, without the `?`.
    pub headers: Option<&'a str>,
    /// The whole URI as written.
    pub raw: &'a str,
}

impl<'a> Uri<'a> {
    /// Parses a URI with no surrounding whitespace or angle brackets. Rejects embedded
    /// whitespace, bad escapes, bad ports and bad IPv6 references.
    pub fn parse(input: &'a str) -> Result<Uri<'a>, ParseError> {
        let _ = input;
        todo!("uri parse")
    }

    /// The user part with `%` escapes decoded.
    pub fn user_unescaped(&self) -> Option<Cow<'a, str>> {
        todo!("user unescape")
    }

    /// The canonical address-of-record `user@domain` (user unescaped, host lower-cased, no
    /// port, no parameters); `domain` alone when there is no user. Used as the location-table
    /// key and, later, hashed for the DHT key.
    pub fn aor(&self) -> String {
        todo!("aor")
    }

    /// Host lower-cased without IPv6 brackets.
    pub fn host_lower(&self) -> Cow<'a, str> {
        todo!("host lower")
    }

    /// URI equality per RFC 3261 19.1.4 (escapes decoded, case rules, parameter rules).
    pub fn equivalent(&self, other: &Uri<'_>) -> bool {
        let _ = other;
        todo!("uri equivalence")
    }

    pub fn transport_param(&self) -> Option<&'a str> {
        self.params.get("transport").flatten()
    }

    pub fn has_lr(&self) -> bool {
        self.params.contains("lr")
    }
}
