//! Digest header values: `Authorization` / `Proxy-Authorization` credentials and
//! `WWW-Authenticate` / `Proxy-Authenticate` challenges (RFC 3261 25.1, RFC 7616 3.3-3.4).
//!
//! Values are borrowed from the header text; only a quoted string holding `\` escapes is
//! copied.

use std::borrow::Cow;

use super::digest::Algorithm;
use crate::message::parse::lex::is_token_byte;

/// Why a digest header value was rejected. The reason is short and names the fault
/// (`missing nonce`, `bad nc`, ...), fit for a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{reason}")]
pub struct DigestError {
    reason: &'static str,
}

impl DigestError {
    pub(crate) const fn new(reason: &'static str) -> DigestError {
        DigestError { reason }
    }

    pub fn reason(self) -> &'static str {
        self.reason
    }
}

const BAD_SYNTAX: DigestError = DigestError::new("bad parameter syntax");

/// Skips linear white space, including a folded line (CRLF followed by SP or HTAB).
fn skip_lws(text: &str) -> &str {
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t']);
        let after_break = trimmed
            .strip_prefix("\r\n")
            .or_else(|| trimmed.strip_prefix('\n'));
        match after_break {
            Some(next) if next.starts_with([' ', '\t']) => rest = next,
            _ => return trimmed,
        }
    }
}

/// Splits off a leading RFC 3261 token.
fn split_token(text: &str) -> (&str, &str) {
    let end = text
        .bytes()
        .position(|byte| !is_token_byte(byte))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Splits off an unquoted parameter value. More lenient than a token because some clients
/// send `nonce`, `uri` or `cnonce` unquoted.
fn split_unquoted(text: &str) -> (&str, &str) {
    let end = text
        .bytes()
        .position(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | b',' | b'"'))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Parses the rest of a quoted string whose opening quote is already consumed; returns the
/// unescaped content and what follows the closing quote.
fn split_quoted(text: &str) -> Result<(Cow<'_, str>, &str), DigestError> {
    const UNTERMINATED: DigestError = DigestError::new("unterminated quoted string");
    let mut unescaped: Option<String> = None;
    let mut segment_start = 0;
    let mut position = 0;
    while let Some(&byte) = text.as_bytes().get(position) {
        match byte {
            b'"' => {
                let segment = text.get(segment_start..position).ok_or(UNTERMINATED)?;
                let value = match unescaped {
                    None => Cow::Borrowed(segment),
                    Some(mut owned) => {
                        owned.push_str(segment);
                        Cow::Owned(owned)
                    }
                };
                let rest = text.get(position + 1..).ok_or(UNTERMINATED)?;
                return Ok((value, rest));
            }
            b'\\' => {
                let segment = text.get(segment_start..position).ok_or(UNTERMINATED)?;
                let escaped = text
                    .get(position + 1..)
                    .and_then(|after| after.chars().next())
                    .ok_or(UNTERMINATED)?;
                let owned = unescaped.get_or_insert_with(String::new);
                owned.push_str(segment);
                owned.push(escaped);
                position += 1 + escaped.len_utf8();
                segment_start = position;
            }
            _ => position += 1,
        }
    }
    Err(UNTERMINATED)
}

/// The auth-params after the scheme, in order. Stops after the first error.
pub(crate) struct AuthParams<'a> {
    rest: &'a str,
    finished: bool,
}

impl<'a> AuthParams<'a> {
    fn parse_next(&mut self) -> Option<Result<(&'a str, Cow<'a, str>), DigestError>> {
        let mut rest = skip_lws(self.rest);
        // The #rule list allows empty elements (`a=1,,b=2`).
        while let Some(after_comma) = rest.strip_prefix(',') {
            rest = skip_lws(after_comma);
        }
        if rest.is_empty() {
            return None;
        }
        let (name, after_name) = split_token(rest);
        if name.is_empty() {
            return Some(Err(BAD_SYNTAX));
        }
        let Some(after_equals) = skip_lws(after_name).strip_prefix('=') else {
            return Some(Err(BAD_SYNTAX));
        };
        let value_start = skip_lws(after_equals);
        let (value, after_value) = match value_start.strip_prefix('"') {
            Some(quoted) => match split_quoted(quoted) {
                Ok(split) => split,
                Err(error) => return Some(Err(error)),
            },
            None => {
                let (value, after_value) = split_unquoted(value_start);
                if value.is_empty() {
                    return Some(Err(DigestError::new("empty parameter value")));
                }
                (Cow::Borrowed(value), after_value)
            }
        };
        let after_value = skip_lws(after_value);
        if !after_value.is_empty() && !after_value.starts_with(',') {
            return Some(Err(BAD_SYNTAX));
        }
        self.rest = after_value;
        Some(Ok((name, value)))
    }
}

impl<'a> Iterator for AuthParams<'a> {
    type Item = Result<(&'a str, Cow<'a, str>), DigestError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let item = self.parse_next();
        if !matches!(item, Some(Ok(_))) {
            self.finished = true;
        }
        item
    }
}

/// Splits a credentials or challenge value into its scheme and parameters.
pub(crate) fn split_scheme(value: &str) -> Result<(&str, AuthParams<'_>), DigestError> {
    let (scheme, rest) = split_token(skip_lws(value));
    if scheme.is_empty() {
        return Err(DigestError::new("missing scheme"));
    }
    let params = skip_lws(rest);
    if params.len() == rest.len() && !rest.is_empty() {
        return Err(DigestError::new("bad scheme"));
    }
    Ok((
        scheme,
        AuthParams {
            rest: params,
            finished: false,
        },
    ))
}

fn split_digest(value: &str) -> Result<AuthParams<'_>, DigestError> {
    let (scheme, params) = split_scheme(value)?;
    if scheme.eq_ignore_ascii_case("Digest") {
        Ok(params)
    } else {
        Err(DigestError::new("not a digest scheme"))
    }
}

/// Stores a parameter unless it was already seen.
fn store_once<'a>(
    slot: &mut Option<Cow<'a, str>>,
    value: Cow<'a, str>,
    duplicate: &'static str,
) -> Result<(), DigestError> {
    if slot.is_some() {
        return Err(DigestError::new(duplicate));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_algorithm(value: Option<Cow<'_, str>>) -> Result<Algorithm, DigestError> {
    match value {
        // RFC 7616 3.3: an absent algorithm means MD5.
        None => Ok(Algorithm::Md5),
        Some(token) => {
            Algorithm::from_token(&token).ok_or(DigestError::new("unsupported algorithm"))
        }
    }
}

/// The qop=auth part of a credentials value (RFC 7616 3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestQop<'a> {
    /// The qop value as sent (`auth` in any case); it is hashed as text.
    pub qop: Cow<'a, str>,
    pub cnonce: Cow<'a, str>,
    /// The nonce count.
    pub nc: u32,
    /// The nonce count as sent (8 hex digits); it is hashed as text.
    pub nc_text: Cow<'a, str>,
}

/// A parsed `Authorization` or `Proxy-Authorization` value with the Digest scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCredentials<'a> {
    pub username: Cow<'a, str>,
    pub realm: Cow<'a, str>,
    pub nonce: Cow<'a, str>,
    pub uri: Cow<'a, str>,
    /// The response digest as sent (hex).
    pub response: Cow<'a, str>,
    pub algorithm: Algorithm,
    /// `None` is the RFC 2069 form.
    pub qop: Option<DigestQop<'a>>,
    pub opaque: Option<Cow<'a, str>>,
}

impl<'a> DigestCredentials<'a> {
    /// Parses a credentials value. Parameter names and the scheme are case-insensitive and
    /// may come in any order; unknown parameters are ignored; a repeated known parameter is
    /// an error. `qop=auth-int` and `userhash=true` are not supported.
    pub fn parse(value: &'a str) -> Result<DigestCredentials<'a>, DigestError> {
        let mut username = None;
        let mut realm = None;
        let mut nonce = None;
        let mut uri = None;
        let mut response = None;
        let mut algorithm = None;
        let mut cnonce = None;
        let mut qop = None;
        let mut nc = None;
        let mut opaque = None;
        let mut userhash = None;
        for param in split_digest(value)? {
            let (name, value) = param?;
            let (slot, duplicate) = if name.eq_ignore_ascii_case("username") {
                (&mut username, "duplicate username")
            } else if name.eq_ignore_ascii_case("realm") {
                (&mut realm, "duplicate realm")
            } else if name.eq_ignore_ascii_case("nonce") {
                (&mut nonce, "duplicate nonce")
            } else if name.eq_ignore_ascii_case("uri") {
                (&mut uri, "duplicate uri")
            } else if name.eq_ignore_ascii_case("response") {
                (&mut response, "duplicate response")
            } else if name.eq_ignore_ascii_case("algorithm") {
                (&mut algorithm, "duplicate algorithm")
            } else if name.eq_ignore_ascii_case("cnonce") {
                (&mut cnonce, "duplicate cnonce")
            } else if name.eq_ignore_ascii_case("qop") {
                (&mut qop, "duplicate qop")
            } else if name.eq_ignore_ascii_case("nc") {
                (&mut nc, "duplicate nc")
            } else if name.eq_ignore_ascii_case("opaque") {
                (&mut opaque, "duplicate opaque")
            } else if name.eq_ignore_ascii_case("userhash") {
                (&mut userhash, "duplicate userhash")
            } else {
                continue;
            };
            store_once(slot, value, duplicate)?;
        }
        if userhash.is_some_and(|value| value.eq_ignore_ascii_case("true")) {
            return Err(DigestError::new("userhash not supported"));
        }
        let qop = match qop {
            None => None,
            Some(qop) => Some(parse_qop(qop, cnonce, nc)?),
        };
        Ok(DigestCredentials {
            username: username.ok_or(DigestError::new("missing username"))?,
            realm: realm.ok_or(DigestError::new("missing realm"))?,
            nonce: nonce.ok_or(DigestError::new("missing nonce"))?,
            uri: uri.ok_or(DigestError::new("missing uri"))?,
            response: response.ok_or(DigestError::new("missing response"))?,
            algorithm: parse_algorithm(algorithm)?,
            qop,
            opaque,
        })
    }
}

fn parse_qop<'a>(
    qop: Cow<'a, str>,
    cnonce: Option<Cow<'a, str>>,
    nc: Option<Cow<'a, str>>,
) -> Result<DigestQop<'a>, DigestError> {
    if qop.eq_ignore_ascii_case("auth-int") {
        return Err(DigestError::new("unsupported qop"));
    }
    if !qop.eq_ignore_ascii_case("auth") {
        return Err(DigestError::new("bad qop"));
    }
    let cnonce = cnonce.ok_or(DigestError::new("missing cnonce"))?;
    if cnonce.is_empty() {
        return Err(DigestError::new("bad cnonce"));
    }
    let nc_text = nc.ok_or(DigestError::new("missing nc"))?;
    // RFC 7616 3.4: nc is exactly 8 hex digits.
    let nc = if nc_text.len() == 8 && nc_text.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(&nc_text, 16).map_err(|_| DigestError::new("bad nc"))?
    } else {
        return Err(DigestError::new("bad nc"));
    };
    Ok(DigestQop {
        qop,
        cnonce,
        nc,
        nc_text,
    })
}

/// A parsed `WWW-Authenticate` or `Proxy-Authenticate` value with the Digest scheme, for
/// the client side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge<'a> {
    pub realm: Cow<'a, str>,
    pub nonce: Cow<'a, str>,
    pub opaque: Option<Cow<'a, str>>,
    pub algorithm: Algorithm,
    /// The raw `qop` options list (`auth,auth-int`), if the server sent one.
    pub qop: Option<Cow<'a, str>>,
    pub stale: bool,
}

impl<'a> DigestChallenge<'a> {
    /// Parses a challenge value. An algorithm this crate cannot compute is an error, so a
    /// client can skip to the next challenge.
    pub fn parse(value: &'a str) -> Result<DigestChallenge<'a>, DigestError> {
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = None;
        let mut qop = None;
        let mut stale = None;
        for param in split_digest(value)? {
            let (name, value) = param?;
            let (slot, duplicate) = if name.eq_ignore_ascii_case("realm") {
                (&mut realm, "duplicate realm")
            } else if name.eq_ignore_ascii_case("nonce") {
                (&mut nonce, "duplicate nonce")
            } else if name.eq_ignore_ascii_case("opaque") {
                (&mut opaque, "duplicate opaque")
            } else if name.eq_ignore_ascii_case("algorithm") {
                (&mut algorithm, "duplicate algorithm")
            } else if name.eq_ignore_ascii_case("qop") {
                (&mut qop, "duplicate qop")
            } else if name.eq_ignore_ascii_case("stale") {
                (&mut stale, "duplicate stale")
            } else {
                continue;
            };
            store_once(slot, value, duplicate)?;
        }
        Ok(DigestChallenge {
            realm: realm.ok_or(DigestError::new("missing realm"))?,
            nonce: nonce.ok_or(DigestError::new("missing nonce"))?,
            opaque,
            algorithm: parse_algorithm(algorithm)?,
            qop,
            stale: stale.is_some_and(|value| value.eq_ignore_ascii_case("true")),
        })
    }

    /// True when the qop options include `auth`.
    pub fn offers_qop_auth(&self) -> bool {
        self.qop.as_deref().is_some_and(|options| {
            options
                .split(',')
                .any(|option| option.trim().eq_ignore_ascii_case("auth"))
        })
    }
}

/// Picks, among the `Authorization` (or `Proxy-Authorization`) values of one request, the
/// Digest value whose realm matches `realm` (case-insensitively). A request may carry one
/// per realm it was challenged for (RFC 3261 22.3). Values that do not parse are skipped;
/// `None` means no value is for this realm, so the request should be challenged.
pub fn select_for_realm<'v, I>(values: I, realm: &str) -> Option<&'v str>
where
    I: IntoIterator<Item = &'v str>,
{
    values.into_iter().find(|value| {
        digest_realm(value).is_some_and(|value_realm| value_realm.eq_ignore_ascii_case(realm))
    })
}

fn digest_realm(value: &str) -> Option<Cow<'_, str>> {
    split_digest(value)
        .ok()?
        .map_while(Result::ok)
        .find(|(name, _)| name.eq_ignore_ascii_case("realm"))
        .map(|(_, realm)| realm)
}

/// Appends `value` as a quoted string. Line breaks are replaced by spaces so a value can
/// never end the header line.
pub(crate) fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for character in value.chars() {
        match character {
            '"' | '\\' => {
                out.push('\\');
                out.push(character);
            }
            '\r' | '\n' => out.push(' '),
            _ => out.push(character),
        }
    }
    out.push('"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const RFC_SHA256: &str = "Digest username=\"Mufasa\",\r\n    realm=\"http-auth@example.org\",\r\n    uri=\"/dir/index.html\",\r\n    algorithm=SHA-256,\r\n    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n    nc=00000001,\r\n    cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n    qop=auth,\r\n    response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\",\r\n    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

    fn reason(value: &str) -> &'static str {
        match DigestCredentials::parse(value) {
            Ok(_) => "ok",
            Err(error) => error.reason(),
        }
    }

    #[test]
    fn parses_folded_rfc_example() {
        let credentials = DigestCredentials::parse(RFC_SHA256).unwrap();
        assert_eq!(credentials.username, "Mufasa");
        assert_eq!(credentials.realm, "http-auth@example.org");
        assert_eq!(credentials.uri, "/dir/index.html");
        assert_eq!(credentials.algorithm, Algorithm::Sha256);
        let qop = credentials.qop.unwrap();
        assert_eq!(qop.nc, 1);
        assert_eq!(qop.nc_text, "00000001");
        assert_eq!(qop.cnonce, "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ");
        assert_eq!(
            credentials.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
        assert!(matches!(credentials.nonce, Cow::Borrowed(_)));
    }

    #[test]
    fn any_order_case_and_unknown_params() {
        let value = "dIgEsT Response=\"ab\" ,,URI=\"sip:a.example\",x-vendor=\"1\",Nonce=n, \
                     REALM=\"a.example\",username=\"bob\"";
        let credentials = DigestCredentials::parse(value).unwrap();
        assert_eq!(credentials.username, "bob");
        assert_eq!(credentials.nonce, "n");
        assert_eq!(credentials.algorithm, Algorithm::Md5);
        assert!(credentials.qop.is_none());
    }

    #[test]
    fn unescapes_quoted_strings() {
        let value = r#"Digest username="a\"b\\c", realm="r", nonce="n", uri="u", response="00""#;
        let credentials = DigestCredentials::parse(value).unwrap();
        assert_eq!(credentials.username, "a\"b\\c");
        assert!(matches!(credentials.username, Cow::Owned(_)));
    }

    #[test]
    fn errors_name_the_fault() {
        let base = "Digest username=\"u\", realm=\"r\", uri=\"u\", response=\"00\"";
        assert_eq!(reason(base), "missing nonce");
        assert_eq!(reason("Basic dXNlcjpwYXNz"), "not a digest scheme");
        assert_eq!(reason(""), "missing scheme");
        assert_eq!(reason("Digest username=\"u"), "unterminated quoted string");
        assert_eq!(reason("Digest username"), "bad parameter syntax");
        assert_eq!(
            reason("Digest username=\"u\" realm=\"r\""),
            "bad parameter syntax"
        );
        assert_eq!(reason("Digest username="), "empty parameter value");
        assert_eq!(
            reason(&format!("{base}, nonce=n, NONCE=m")),
            "duplicate nonce"
        );
        assert_eq!(
            reason(&format!("{base}, nonce=n, algorithm=SHA-512-256")),
            "unsupported algorithm"
        );
        assert_eq!(
            reason(&format!("{base}, nonce=n, qop=auth, cnonce=c, nc=1")),
            "bad nc"
        );
        assert_eq!(
            reason(&format!("{base}, nonce=n, qop=auth, cnonce=c, nc=0000000g")),
            "bad nc"
        );
        assert_eq!(
            reason(&format!("{base}, nonce=n, qop=auth, nc=00000001")),
            "missing cnonce"
        );
        assert_eq!(
            reason(&format!("{base}, nonce=n, qop=auth, cnonce=c")),
            "missing nc"
        );
        assert_eq!(
            reason(&format!(
                "{base}, nonce=n, qop=auth-int, cnonce=c, nc=00000001"
            )),
            "unsupported qop"
        );
        assert_eq!(
            reason(&format!("{base}, nonce=n, userhash=true")),
            "userhash not supported"
        );
        assert_eq!(
            reason(&format!(
                "{base}, nonce=n, qop=\"auth\", cnonce=c, nc=0000000A"
            )),
            "ok"
        );
    }

    #[test]
    fn parses_challenges() {
        let challenge = DigestChallenge::parse(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=MD5, \
             nonce=\"abc\", opaque=\"xyz\", stale=TRUE",
        )
        .unwrap();
        assert_eq!(challenge.realm, "http-auth@example.org");
        assert!(challenge.offers_qop_auth());
        assert!(challenge.stale);
        assert_eq!(challenge.opaque.as_deref(), Some("xyz"));
        let legacy = DigestChallenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert!(!legacy.offers_qop_auth());
        assert!(!legacy.stale);
        assert_eq!(
            DigestChallenge::parse("Digest realm=\"r\"").map(|_| ()),
            Err(DigestError::new("missing nonce"))
        );
    }

    #[test]
    fn selects_value_by_realm() {
        let values = [
            "Basic abc",
            "Digest username=\"u\", realm=\"other.example\"",
            "Digest username=\"u\", realm=\"A.Example\", nonce=\"n\"",
        ];
        assert_eq!(select_for_realm(values, "a.example"), Some(values[2]));
        assert_eq!(select_for_realm(values, "b.example"), None);
    }

    #[test]
    fn quotes_values() {
        let mut out = String::new();
        push_quoted(&mut out, "a\"b\\c\r\nd");
        assert_eq!(out, r#""a\"b\\c  d""#);
    }
}
