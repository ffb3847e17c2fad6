//! Digest authentication, client side (RFC 7616 / RFC 8760 for SIP): enough to answer a
//! registrar's challenge from a raw test.

use md5::{Digest as _, Md5};
use sha2::Sha256;

/// A digest algorithm a challenge can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The name used in `algorithm=`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lower-case hex of the hash of `data`.
    pub fn hash_hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One `WWW-Authenticate` / `Proxy-Authenticate` challenge.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub scheme: String,
    /// Parameters in order, names lower-cased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// Parses one header value (a single challenge).
    pub fn parse(value: &str) -> Option<Challenge> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(char::is_whitespace)?;
        let mut params = Vec::new();
        let mut rest = rest.trim_start();
        // Bounded by the input length: every turn consumes at least one character.
        while !rest.is_empty() {
            let (name, after) = rest.split_once('=')?;
            let name = name
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_ascii_lowercase();
            let after = after.trim_start();
            let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                let mut out = String::new();
                let mut end = None;
                let mut chars = quoted.char_indices();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                out.push(escaped);
                            }
                        }
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        _ => out.push(c),
                    }
                }
                (out, &quoted[end?..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            };
            params.push((name, val));
            rest = remaining.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Challenge {
            scheme: scheme.to_string(),
            params,
        })
    }

    /// The value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The algorithm (MD5 when absent); `None` for one this module does not know.
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.param("algorithm") {
            None => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            Some(_) => None,
        }
    }

    /// The `Authorization` header value answering this challenge for `method` and
    /// `uri`. Uses qop=auth when offered, with nonce count 1 and `cnonce`.
    pub fn answer(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> Option<String> {
        let algorithm = self.algorithm()?;
        let realm = self.param("realm")?;
        let nonce = self.param("nonce")?;
        let qop_auth = self
            .param("qop")
            .is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
        let ha1 = algorithm.hash_hex(&format!("{username}:{realm}:{password}"));
        let ha2 = algorithm.hash_hex(&format!("{method}:{uri}"));
        let nc = "00000001";
        let response = if qop_auth {
            algorithm.hash_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
        } else {
            algorithm.hash_hex(&format!("{ha1}:{nonce}:{ha2}"))
        };
        let mut value = format!(
            "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm={}",
            algorithm.name()
        );
        if qop_auth {
            value.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        }
        if let Some(opaque) = self.param("opaque") {
            value.push_str(&format!(", opaque=\"{opaque}\""));
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_challenge_with_quoted_and_bare_values() {
        let c = Challenge::parse(
            r#"Digest realm="example.com", nonce="a\"b,c", algorithm=SHA-256, qop="auth,auth-int""#,
        );
        let c = c.as_ref();
        assert_eq!(c.map(|c| c.scheme.as_str()), Some("Digest"));
        assert_eq!(c.and_then(|c| c.param("realm")), Some("example.com"));
        assert_eq!(c.and_then(|c| c.param("nonce")), Some("a\"b,c"));
        assert_eq!(c.and_then(|c| c.algorithm()), Some(Algorithm::Sha256));
        assert_eq!(c.and_then(|c| c.param("qop")), Some("auth,auth-int"));
    }

    #[test]
    fn md5_answer_matches_a_known_value() {
        // HA1 = MD5(alice:example.com:secret), HA2 = MD5(REGISTER:sip:example.com).
        let c = Challenge::parse(r#"Digest realm="example.com", nonce="abcmd5", qop="auth""#);
        let answer =
            c.and_then(|c| c.answer("alice", "secret", "REGISTER", "sip:example.com", "6b8b4567"));
        assert!(answer
            .unwrap_or_default()
            .contains(r#"response="b313dbb038af81b06b33b451f06638f4""#));
    }
}
