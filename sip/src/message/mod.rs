//! SIP messages (RFC 3261 section 7, grammar of section 25), parsed in place.
//!
//! [`Message::parse`] borrows every slice from the input buffer and allocates nothing for a
//! typical message (headers live in a `SmallVec`). It checks syntax only; [`Message::validate`]
//! then applies the checks a server makes before acting on a request (mandatory headers,
//! CSeq/method agreement, scalar ranges, SIP version) and returns a [`Rejection`] carrying
//! the status and a reason phrase that names the fault.
//!
//! Serialization (see [`edit`]) copies every header that is not touched byte for byte.

pub mod edit;
pub mod framing;
pub mod header;
pub mod method;
pub mod params;
pub mod parse;
pub mod uri;

pub use edit::MessageEditor;
pub use framing::{frame_stream, Framed, FramingError};
pub use header::{CSeq, ContactValue, NameAddr, Via};
pub use method::Method;
pub use params::Params;
pub use parse::ParseError;
pub use uri::{Scheme, Uri};

use smallvec::SmallVec;
use std::ops::Range;

/// Headers kept inline before a message spills to the heap.
pub const INLINE_HEADERS: usize = 24;

/// Header names the stack acts on; everything else is [`HeaderName::Other`] and is carried
/// through untouched. Compact forms (RFC 3261 7.3.3) map to the same variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Contact,
    ContentLength,
    ContentType,
    Route,
    RecordRoute,
    Expires,
    MinExpires,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    Require,
    ProxyRequire,
    Supported,
    Unsupported,
    Allow,
    Timestamp,
    Other,
}

/// One header line. `value` is the raw field value with surrounding whitespace trimmed; it may
/// contain folded line breaks (`CRLF` followed by SP/HT), which typed accessors treat as
/// whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: HeaderName,
    /// The name as written (e.g. `v`, `VIA`), for [`HeaderName::Other`] lookups.
    pub name_raw: &'a str,
    pub value: &'a str,
    /// Byte range of the whole header line in [`Message::raw`] (which starts at the start
    /// line, after any leading CRLFs), including its final CRLF, so an editor can copy it
    /// verbatim.
    pub line: Range<usize>,
}

/// The SIP version on a start line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
}

impl Version {
    pub const SIP_2_0: Version = Version { major: 2, minor: 0 };
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestLine<'a> {
    pub method: Method<'a>,
    pub uri: Uri<'a>,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine<'a> {
    pub version: Version,
    pub code: u16,
    pub reason: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StartLine<'a> {
    Request(RequestLine<'a>),
    Response(StatusLine<'a>),
}

/// A parsed SIP request or response borrowing from its input.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub start_line: StartLine<'a>,
    pub headers: SmallVec<[Header<'a>; INLINE_HEADERS]>,
    pub body: &'a [u8],
    /// The whole message as framed (start line to end of body).
    pub raw: &'a [u8],
    /// Byte range of the start line in [`Message::raw`], including its CRLF.
    pub start_line_range: Range<usize>,
}

/// Why a syntactically parsed request must not be processed, and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 400, 505, 416, ...
    pub status: u16,
    /// A full reason phrase naming the fault, e.g. `Bad Request (missing Call-ID)`.
    pub reason: String,
}

impl<'a> Message<'a> {
    /// Parses one message. For datagrams pass the whole datagram; for streams pass exactly the
    /// bytes [`frame_stream`] reported. Without Content-Length the body runs to the end of the
    /// input (allowed for UDP, RFC 3261 18.3).
    pub fn parse(input: &'a [u8]) -> Result<Message<'a>, ParseError> {
        parse::parse_message(input)
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start_line, StartLine::Request(_))
    }

    /// The request method, `None` for responses.
    pub fn method(&self) -> Option<&Method<'a>> {
        match &self.start_line {
            StartLine::Request(r) => Some(&r.method),
            StartLine::Response(_) => None,
        }
    }

    pub fn request_uri(&self) -> Option<&Uri<'a>> {
        match &self.start_line {
            StartLine::Request(r) => Some(&r.uri),
            StartLine::Response(_) => None,
        }
    }

    /// The status code, `None` for requests.
    pub fn status(&self) -> Option<u16> {
        match &self.start_line {
            StartLine::Response(s) => Some(s.code),
            StartLine::Request(_) => None,
        }
    }

    /// First header line with this name.
    pub fn header(&self, name: HeaderName) -> Option<&Header<'a>> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// First header line whose name matches `name` case-insensitively (for extension headers).
    pub fn header_by_name(&self, name: &str) -> Option<&Header<'a>> {
        self.headers
            .iter()
            .find(|h| h.name_raw.eq_ignore_ascii_case(name))
    }

    /// All header lines with this name, in order.
    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = &Header<'a>> + '_ {
        self.headers.iter().filter(move |h| h.name == name)
    }

    /// All values of a list header (Via, Contact, Route, Record-Route, Require, Supported,
    /// Allow, ...) across repeated lines, split at top-level commas (not inside quotes or
    /// angle brackets), trimmed.
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &'a str> + '_ {
        self.headers_named(name)
            .flat_map(|h| header::split_list(h.value))
    }

    /// The Call-ID value, if present.
    pub fn call_id(&self) -> Option<&'a str> {
        self.header(HeaderName::CallId).map(|h| h.value)
    }

    pub fn cseq(&self) -> Option<Result<CSeq<'a>, ParseError>> {
        self.header(HeaderName::CSeq).map(|h| CSeq::parse(h.value))
    }

    /// The topmost Via value (first value of the first Via line).
    pub fn top_via(&self) -> Option<Result<Via<'a>, ParseError>> {
        self.header_values(HeaderName::Via).next().map(Via::parse)
    }

    pub fn from(&self) -> Option<Result<NameAddr<'a>, ParseError>> {
        self.header(HeaderName::From)
            .map(|h| NameAddr::parse(h.value))
    }

    pub fn to(&self) -> Option<Result<NameAddr<'a>, ParseError>> {
        self.header(HeaderName::To)
            .map(|h| NameAddr::parse(h.value))
    }

    /// Every Contact value, in order. `*` is [`ContactValue::Star`].
    pub fn contacts(&self) -> impl Iterator<Item = Result<ContactValue<'a>, ParseError>> + '_ {
        self.header_values(HeaderName::Contact)
            .map(ContactValue::parse)
    }

    /// Max-Forwards as a number (0..=255 accepted; larger is a syntax error).
    pub fn max_forwards(&self) -> Option<Result<u8, ParseError>> {
        self.header(HeaderName::MaxForwards)
            .map(|h| parse::parse_max_forwards(h.value))
    }

    /// The Expires header as delta-seconds (values above 2^32-1 are an error).
    pub fn expires(&self) -> Option<Result<u32, ParseError>> {
        self.header(HeaderName::Expires)
            .map(|h| parse::parse_delta_seconds(h.value))
    }

    /// Checks a request is fit for processing: SIP/2.0 (else 505), mandatory To, From,
    /// Call-ID, CSeq, Via present and parseable, CSeq method equals the request method,
    /// scalar fields in range, Request-URI without escaped headers and not enclosed in `<>`.
    /// Responses are checked with the same header rules; a response that fails is dropped by
    /// the caller.
    pub fn validate(&self) -> Result<(), Rejection> {
        parse::validate_message(self)
    }
}
