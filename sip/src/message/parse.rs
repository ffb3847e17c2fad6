//! The message parser (RFC 3261 section 25, with the robustness RFC 4475 asks for).

use super::{Message, Rejection};
use std::fmt;

/// A syntax error, with a short description of the fault suitable for a reason phrase
/// (`missing Call-ID`, `bad Via`, `negative Content-Length`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub what: &'static str,
}

impl ParseError {
    pub const fn new(what: &'static str) -> ParseError {
        ParseError { what }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }
}

impl std::error::Error for ParseError {}

pub(crate) fn parse_message(input: &[u8]) -> Result<Message<'_>, ParseError> {
    let _ = input;
    todo!("parse message")
}

pub(crate) fn parse_max_forwards(value: &str) -> Result<u8, ParseError> {
    let _ = value;
    todo!("max-forwards")
}

pub(crate) fn parse_delta_seconds(value: &str) -> Result<u32, ParseError> {
    let _ = value;
    todo!("delta-seconds")
}

pub(crate) fn validate_message(msg: &Message<'_>) -> Result<(), Rejection> {
    let _ = msg;
    todo!("validate")
}
