//! Typed views of the headers the stack acts on. Each borrows from the header value.

use super::method::Method;
use super::params::Params;
use super::parse::ParseError;
use super::uri::Uri;
use super::HeaderName;

impl HeaderName {
    /// Maps a header name (long or compact form, any case) to a known header.
    pub fn from_name(name: &str) -> HeaderName {
        let _ = name;
        todo!("header name lookup")
    }

    /// Canonical long form, e.g. `Call-ID`. `Other` has no canonical name.
    pub fn as_str(&self) -> &'static str {
        todo!("header canonical name")
    }
}

/// Splits a list header value at top-level commas (outside quoted strings and `<...>`),
/// trimming whitespace (including folded line breaks) and skipping empty elements.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> + '_ {
    let _ = value;
    todo!("split list");
    #[allow(unreachable_code)]
    std::iter::empty()
}

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
    pub fn parse(value: &'a str) -> Result<Via<'a>, ParseError> {
        let _ = value;
        todo!("via parse")
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// True when the branch carries the RFC 3261 magic cookie `z9hG4bK`.
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }

    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// `None`: no rport; `Some(None)`: `;rport` without value; `Some(Some(p))`: `;rport=p`.
    pub fn rport(&self) -> Option<Option<u16>> {
        todo!("via rport")
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
    pub fn parse(value: &'a str) -> Result<NameAddr<'a>, ParseError> {
        let _ = value;
        todo!("name-addr parse")
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
        let _ = value;
        todo!("contact parse")
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
        let _ = value;
        todo!("cseq parse")
    }
}
