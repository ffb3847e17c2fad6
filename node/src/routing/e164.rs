//! ENUM (RFC 6116, RFC 3761): an E.164 number becomes `<reversed digits>.<suffix>`, whose
//! NAPTR records map it to URIs by a substitution expression.

use hickory_resolver::proto::rr::rdata::NAPTR;
use regex::RegexBuilder;
use sip::message::uri::{Scheme, Uri};

/// Compiled size limit of an ENUM regular expression: a record is data from the network,
/// and a pattern that needs more is refused rather than built.
const REGEX_SIZE_LIMIT: usize = 64 * 1024;

/// Longest E.164 number (ITU-T E.164: at most 15 digits).
const MAX_DIGITS: usize = 15;

/// An E.164 number: `+` and 1 to 15 digits, visual separators removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E164(String);

impl E164 {
    /// The number in `text` (`+43 1 234-56.78`, `+43(1)2345678`), or None when it is not a
    /// global number.
    pub fn parse(text: &str) -> Option<E164> {
        let rest = text.strip_prefix('+')?;
        let mut number = String::with_capacity(rest.len() + 1);
        number.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => number.push(c),
                '-' | '.' | '(' | ')' | ' ' => {}
                _ => return None,
            }
        }
        let digits = number.len() - 1;
        (1..=MAX_DIGITS).contains(&digits).then_some(E164(number))
    }

    /// The number a URI names: a `tel:` URI's, or the user part of a SIP URI with
    /// `user=phone` or a user part that is a global number.
    pub fn of_uri(uri: &Uri<'_>) -> Option<E164> {
        match uri.scheme {
            Scheme::Tel | Scheme::Sip | Scheme::Sips => E164::parse(&uri.user_unescaped()?),
            Scheme::Other => None,
        }
    }

    /// `+4312345`: the application unique string of RFC 3761.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ENUM domain of the number under `suffix`: `5.4.3.2.1.3.4.e164.arpa.`
    pub fn domain(&self, suffix: &str) -> String {
        let digits = &self.0[1..];
        let mut name = String::with_capacity(digits.len() * 2 + suffix.len() + 1);
        for digit in digits.chars().rev() {
            name.push(digit);
            name.push('.');
        }
        name.push_str(suffix.trim_end_matches('.'));
        name.push('.');
        name
    }
}

/// Why an ENUM record could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnumError {
    #[error("bad NAPTR regexp {regexp:?}: {reason}")]
    BadRegexp { regexp: String, reason: String },
    #[error("NAPTR regexp {regexp:?} does not match {number}")]
    NoMatch { regexp: String, number: String },
    #[error("ENUM result {0:?} is not a SIP URI")]
    NotSip(String),
}

impl EnumError {
    /// A few words for a reason phrase (the details go to the log).
    pub fn short(&self) -> &'static str {
        match self {
            EnumError::BadRegexp { .. } => "ENUM: bad NAPTR regexp",
            EnumError::NoMatch { .. } => "ENUM: NAPTR regexp does not match",
            EnumError::NotSip(_) => "ENUM: result is not a SIP URI",
        }
    }
}

/// What one ENUM NAPTR record says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnumStep {
    /// A terminal rule: the regexp, to apply to the number.
    Rewrite(String),
    /// A non-terminal rule: look NAPTRs up again at this name.
    Continue(String),
}

/// The records of `records` that lead to SIP (`E2U+sip`, `E2U+sips`), best first: by
/// order, then preference (RFC 3403 4.1). A terminal rule (flag `u`) rewrites; a rule with
/// no flags and a replacement continues elsewhere; anything else is skipped.
pub fn sip_steps(records: &[NAPTR]) -> Vec<EnumStep> {
    let mut usable: Vec<&NAPTR> = records
        .iter()
        .filter(|naptr| is_sip_service(&naptr.services))
        .collect();
    usable.sort_by_key(|naptr| (naptr.order, naptr.preference));
    usable
        .into_iter()
        .filter_map(|naptr| {
            let flags = String::from_utf8_lossy(&naptr.flags).to_ascii_lowercase();
            if flags == "u" {
                Some(EnumStep::Rewrite(
                    String::from_utf8_lossy(&naptr.regexp).into_owned(),
                ))
            } else if flags.is_empty() && !naptr.replacement.is_root() {
                Some(EnumStep::Continue(naptr.replacement.to_ascii()))
            } else {
                None
            }
        })
        .collect()
}

/// `E2U+sip` or `E2U+sips`, also as one of several services (`E2U+sip+voice:sip`... is not
/// SIP), case-insensitive.
fn is_sip_service(services: &[u8]) -> bool {
    let services = String::from_utf8_lossy(services);
    let mut parts = services.split('+');
    parts
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case("E2U"))
        && parts.any(|service| {
            let name = service.split(':').next().unwrap_or("");
            name.eq_ignore_ascii_case("sip") || name.eq_ignore_ascii_case("sips")
        })
}

/// Applies an ENUM substitution expression (`!^\+43(.*)$!sip:\1@example.net!`, RFC 3402
/// 3.2) to `number` and returns the URI it yields, which must be a SIP URI.
pub fn apply_regexp(regexp: &str, number: &E164) -> Result<String, EnumError> {
    let out = substitute(regexp, number.as_str())?;
    match Uri::parse(&out) {
        Ok(uri) if matches!(uri.scheme, Scheme::Sip | Scheme::Sips) => Ok(out),
        _ => Err(EnumError::NotSip(out)),
    }
}

/// Applies a NAPTR substitution expression (RFC 3402 3.2: delimiter, ERE, delimiter,
/// replacement with back-references, delimiter, optional `i`) to `input`.
pub fn substitute(regexp: &str, input: &str) -> Result<String, EnumError> {
    let bad = |reason: &str| EnumError::BadRegexp {
        regexp: regexp.to_owned(),
        reason: reason.to_owned(),
    };
    let mut chars = regexp.chars();
    let delimiter = chars.next().ok_or_else(|| bad("empty"))?;
    if delimiter.is_ascii_digit() || delimiter == '\\' || delimiter == 'i' {
        return Err(bad("not a delimiter"));
    }
    let parts = split_unescaped(chars.as_str(), delimiter);
    let [pattern, replacement, flags] = parts.as_slice() else {
        return Err(bad(
            "expected delimiter, pattern, delimiter, replacement, delimiter",
        ));
    };
    let case_insensitive = match flags.as_str() {
        "" => false,
        "i" => true,
        _ => return Err(bad("unknown flag")),
    };
    let regex = RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|error| bad(&error.to_string()))?;
    let captures = regex.captures(input).ok_or_else(|| EnumError::NoMatch {
        regexp: regexp.to_owned(),
        number: input.to_owned(),
    })?;
    let mut out = String::with_capacity(replacement.len() + input.len());
    let mut rest = replacement.chars();
    while let Some(c) = rest.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match rest.next() {
            Some(digit @ '0'..='9') => {
                let index = usize::from(digit as u8 - b'0');
                if index >= captures.len() {
                    return Err(bad("back-reference to a group the pattern does not have"));
                }
                out.push_str(captures.get(index).map_or("", |m| m.as_str()));
            }
            Some(other) => out.push(other),
            None => return Err(bad("replacement ends in a backslash")),
        }
    }
    Ok(out)
}

/// Splits at every `delimiter` not preceded by a backslash; an escaped delimiter becomes
/// the delimiter itself, other escapes are kept for the pattern or replacement.
fn split_unescaped(text: &str, delimiter: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let Some(current) = parts.last_mut() else {
            break;
        };
        if c == '\\' {
            match chars.next() {
                Some(next) if next == delimiter => current.push(next),
                Some(next) => {
                    current.push('\\');
                    current.push(next);
                }
                None => current.push('\\'),
            }
        } else if c == delimiter {
            parts.push(String::new());
        } else {
            current.push(c);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::Name;

    fn number(text: &str) -> E164 {
        E164::parse(text).unwrap()
    }

    #[test]
    fn numbers_and_their_enum_domains() {
        assert_eq!(number("+43 1 234-5").as_str(), "+4312345");
        assert_eq!(
            number("+4312345").domain("e164.arpa"),
            "5.4.3.2.1.3.4.e164.arpa."
        );
        assert_eq!(
            number("+4312345").domain("e164.example."),
            "5.4.3.2.1.3.4.e164.example."
        );
        assert!(
            E164::parse("4312345").is_none(),
            "a local number is no E.164 number"
        );
        assert!(E164::parse("+").is_none());
        assert!(E164::parse("+1234567890123456").is_none(), "16 digits");
        assert!(E164::parse("+43a").is_none());
        let tel = Uri::parse("tel:+43-1-2345").unwrap();
        assert_eq!(E164::of_uri(&tel), Some(number("+4312345")));
        let sip = Uri::parse("sip:+4312345@example.com;user=phone").unwrap();
        assert_eq!(E164::of_uri(&sip), Some(number("+4312345")));
        assert!(E164::of_uri(&Uri::parse("sip:bob@example.com").unwrap()).is_none());
    }

    #[test]
    fn regexps_are_applied_with_back_references() {
        let n = number("+4312345");
        assert_eq!(
            apply_regexp(r"!^\+43(.*)$!sip:\1@itsp-a.example!", &n).unwrap(),
            "sip:12345@itsp-a.example"
        );
        assert_eq!(
            apply_regexp(r"!^.*$!sip:info@example.net!", &n).unwrap(),
            "sip:info@example.net"
        );
        assert_eq!(
            apply_regexp(r"/^\+(.*)$/sip:+\1@gw.example;user=phone/", &n).unwrap(),
            "sip:+4312345@gw.example;user=phone"
        );
        assert_eq!(
            apply_regexp(r"!^\+43(1)(.*)$!sip:\2\!x@example.net!i", &n).unwrap(),
            "sip:2345!x@example.net",
            "an escaped delimiter is the character itself"
        );
    }

    #[test]
    fn bad_regexps_are_errors_not_panics() {
        let n = number("+4312345");
        for bad in [
            "",
            "!^(.*$!sip:\\1@x!",
            "!^.*$!sip:x@y",
            "!^.*$!sip:x@y!q",
            "1^.*1sip:x@y1",
            "!^(.*)$!sip:\\2@x!",
            "!^.*$!sip:x@y!!",
            "!(a{1000}){1000}!sip:x@y!",
        ] {
            assert!(
                matches!(apply_regexp(bad, &n), Err(EnumError::BadRegexp { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            apply_regexp("!^\\+49.*$!sip:x@y!", &n),
            Err(EnumError::NoMatch { .. })
        ));
        assert!(matches!(
            apply_regexp("!^.*$!mailto:x@y!", &n),
            Err(EnumError::NotSip(_))
        ));
    }

    fn naptr(
        order: u16,
        preference: u16,
        flags: &str,
        services: &str,
        regexp: &str,
        replacement: &str,
    ) -> NAPTR {
        NAPTR::new(
            order,
            preference,
            flags.as_bytes().into(),
            services.as_bytes().into(),
            regexp.as_bytes().into(),
            Name::from_ascii(replacement).unwrap(),
        )
    }

    #[test]
    fn sip_rules_are_sorted_and_others_skipped() {
        let records = [
            naptr(100, 20, "u", "E2U+sip", "!^.*$!sip:second@x!", "."),
            naptr(100, 10, "u", "E2U+sip", "!^.*$!sip:first@x!", "."),
            naptr(50, 10, "u", "E2U+mailto", "!^.*$!mailto:x@y!", "."),
            naptr(200, 10, "", "E2U+sip", "", "next.e164.example."),
            naptr(10, 10, "u", "E2U+tel", "!^.*$!tel:+1!", "."),
        ];
        assert_eq!(
            sip_steps(&records),
            [
                EnumStep::Rewrite("!^.*$!sip:first@x!".into()),
                EnumStep::Rewrite("!^.*$!sip:second@x!".into()),
                EnumStep::Continue("next.e164.example.".into()),
            ]
        );
    }
}
