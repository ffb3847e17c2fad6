//! DHT keys and canonical addresses-of-record.
//!
//! A DHT key is one [`RecordKind`] byte followed by `sha1` of a canonical name (21 bytes):
//! the canonical AoR `user@domain` for registrations and mailboxes, the canonical domain for
//! domain authority records. There is exactly one way to canonicalize: every constructor of
//! [`Aor`] goes through [`sip::message::Uri::parse`] and [`Uri::aor`], the same function the
//! registrar uses for its location table, so a phone's AoR and its DHT key always agree.

use sha1::{Digest, Sha1};
use sip::message::{Scheme, Uri};
use std::fmt;

/// Length of a DHT key: kind byte plus a sha1 digest.
pub const KEY_LEN: usize = 1 + HASH_LEN;
/// Length of the sha1 digest in a DHT key.
pub const HASH_LEN: usize = 20;
/// Longest canonical AoR accepted (bytes). Bounds keys, records and log lines.
pub const MAX_AOR_BYTES: usize = 256;
/// Longest canonical domain accepted (bytes): the DNS limit for a name.
pub const MAX_DOMAIN_BYTES: usize = 253;

/// What a DHT value holds; the first byte of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum RecordKind {
    /// A [`crate::record::RegistrationRecord`], keyed by the canonical AoR.
    Registration = 0x01,
    /// A [`crate::authority::AuthorityRecord`], keyed by the canonical domain.
    DomainAuthority = 0x02,
    /// An offline-message mailbox, keyed by the canonical AoR.
    Mailbox = 0x03,
}

impl RecordKind {
    pub fn as_byte(self) -> u8 {
        self as u8
    }

    pub fn from_byte(byte: u8) -> Option<RecordKind> {
        match byte {
            0x01 => Some(RecordKind::Registration),
            0x02 => Some(RecordKind::DomainAuthority),
            0x03 => Some(RecordKind::Mailbox),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("cannot parse {input:?} as a SIP URI: {reason}")]
    BadUri { input: String, reason: &'static str },
    #[error("{0:?} is not a sip: or sips: URI")]
    NotSip(String),
    #[error("{0:?} has no user part")]
    NoUser(String),
    #[error("{0:?} is not a bare domain (no user, port or parameters)")]
    BadDomain(String),
    #[error("the user part of {0:?} holds control characters")]
    ControlCharacters(String),
    #[error("{what} is {len} bytes, more than the limit of {limit}")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{0:?} is not in canonical form")]
    NotCanonical(String),
    #[error("a DHT key is {KEY_LEN} bytes, not {0}")]
    WrongLength(usize),
    #[error("unknown record kind {0:#04x}")]
    UnknownKind(u8),
}

/// A canonical address-of-record `user@domain`: user `%`-unescaped, domain lower-cased, no
/// scheme, port or parameters. Only sip:/sips: AoRs with a user part exist in the overlay.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aor {
    text: String,
    /// Byte index of the `@` that separates user and domain: the last one, since an unescaped
    /// user may itself contain `@` but a domain never does.
    at: usize,
}

impl Aor {
    /// The AoR of `user` (as written in a SIP URI, `%` escapes allowed) at `domain` (a bare
    /// host name or IP literal, any case).
    pub fn new(user: &str, domain: &str) -> Result<Aor, KeyError> {
        canonical_domain(domain)?;
        let uri_text = format!("sip:{user}@{domain}");
        let uri = Uri::parse(&uri_text).map_err(|e| KeyError::BadUri {
            input: uri_text.clone(),
            reason: e.what,
        })?;
        Aor::from_uri(&uri)
    }

    /// Parses `user@domain`, `sip:user@domain[:port][;params]` or the sips: form, optionally
    /// in angle brackets.
    pub fn parse(text: &str) -> Result<Aor, KeyError> {
        let trimmed = text.trim();
        let inner = trimmed
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .unwrap_or(trimmed);
        let has_scheme =
            starts_with_ignore_case(inner, "sip:") || starts_with_ignore_case(inner, "sips:");
        let uri_text = if has_scheme {
            inner.to_owned()
        } else if inner
            .split('@')
            .next()
            .is_some_and(|user| user.contains(':'))
        {
            // `tel:+1@x` or `mailto:a@b`: another scheme, not a bare user@domain.
            return Err(KeyError::NotSip(text.to_owned()));
        } else {
            format!("sip:{inner}")
        };
        let uri = Uri::parse(&uri_text).map_err(|e| KeyError::BadUri {
            input: text.to_owned(),
            reason: e.what,
        })?;
        Aor::from_uri(&uri)
    }

    /// The AoR of a parsed SIP URI, e.g. a REGISTER's To header.
    pub fn from_uri(uri: &Uri<'_>) -> Result<Aor, KeyError> {
        if !matches!(uri.scheme, Scheme::Sip | Scheme::Sips) {
            return Err(KeyError::NotSip(uri.raw.to_owned()));
        }
        if uri.user.is_none_or(str::is_empty) {
            return Err(KeyError::NoUser(uri.raw.to_owned()));
        }
        let text = uri.aor();
        let at = text
            .rfind('@')
            .ok_or_else(|| KeyError::NoUser(uri.raw.to_owned()))?;
        if text.len() > MAX_AOR_BYTES {
            return Err(KeyError::TooLong {
                what: "AoR",
                len: text.len(),
                limit: MAX_AOR_BYTES,
            });
        }
        if text
            .get(..at)
            .is_some_and(|user| user.chars().any(char::is_control))
        {
            return Err(KeyError::ControlCharacters(uri.raw.to_owned()));
        }
        Ok(Aor { text, at })
    }

    /// Accepts `text` only if it already is a canonical AoR, as found in a record on the wire.
    /// Re-escapes the user and canonicalizes again, so the check is the canonicalization
    /// itself rather than a second set of rules.
    pub fn from_canonical(text: &str) -> Result<Aor, KeyError> {
        let (user, domain) = text
            .rsplit_once('@')
            .ok_or_else(|| KeyError::NoUser(text.to_owned()))?;
        let aor = Aor::new(&escape_user(user), domain)?;
        if aor.text != text {
            return Err(KeyError::NotCanonical(text.to_owned()));
        }
        Ok(aor)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The user part, unescaped.
    pub fn user(&self) -> &str {
        self.text.get(..self.at).unwrap_or("")
    }

    /// The domain part, lower-case; what a domain authority is looked up by.
    pub fn domain(&self) -> &str {
        self.text.get(self.at + 1..).unwrap_or("")
    }

    /// The DHT key of this AoR's record of `kind` (registration or mailbox).
    pub fn dht_key(&self, kind: RecordKind) -> Vec<u8> {
        dht_key(kind, &self.text)
    }
}

impl fmt::Display for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aor({:?})", self.text)
    }
}

/// The canonical form of a bare domain (host name or IP literal): lower-cased, no port,
/// no parameters. Same rules as the domain part of [`Aor`].
pub fn canonical_domain(domain: &str) -> Result<String, KeyError> {
    if domain.len() > MAX_DOMAIN_BYTES {
        return Err(KeyError::TooLong {
            what: "domain",
            len: domain.len(),
            limit: MAX_DOMAIN_BYTES,
        });
    }
    let uri_text = format!("sip:{domain}");
    let uri = Uri::parse(&uri_text).map_err(|e| KeyError::BadUri {
        input: domain.to_owned(),
        reason: e.what,
    })?;
    // The host spanning the whole input rules out a user part, port, parameters and headers.
    if uri.user.is_some() || uri.host.len() != domain.len() || domain.is_empty() {
        return Err(KeyError::BadDomain(domain.to_owned()));
    }
    Ok(uri.aor())
}

/// `kind` byte followed by `sha1(canonical)`: 21 bytes. `canonical` must already be
/// canonical ([`Aor::as_str`] or [`canonical_domain`]).
pub fn dht_key(kind: RecordKind, canonical: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(KEY_LEN);
    key.push(kind.as_byte());
    key.extend_from_slice(&Sha1::digest(canonical.as_bytes()));
    key
}

/// Splits a DHT key into its kind and hash.
pub fn parse_dht_key(key: &[u8]) -> Result<(RecordKind, [u8; HASH_LEN]), KeyError> {
    let (&kind_byte, hash) = key.split_first().ok_or(KeyError::WrongLength(0))?;
    let hash: [u8; HASH_LEN] = hash
        .try_into()
        .map_err(|_| KeyError::WrongLength(key.len()))?;
    let kind = RecordKind::from_byte(kind_byte).ok_or(KeyError::UnknownKind(kind_byte))?;
    Ok((kind, hash))
}

/// The hash part of a DHT key (after the kind byte) as lower-case hex, as logs name keys;
/// the whole key in hex when it is not a well-formed DHT key.
pub fn key_hash_hex(key: &[u8]) -> String {
    let hash = match parse_dht_key(key) {
        Ok((_, hash)) => hash.to_vec(),
        Err(_) => key.to_vec(),
    };
    let mut text = String::with_capacity(hash.len() * 2);
    for byte in hash {
        text.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// `%`-escapes every byte of an unescaped user that may not appear literally in the user
/// part of a SIP URI (RFC 3261 25.1: unreserved and user-unreserved stay).
fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for &byte in user.as_bytes() {
        let literal = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
                    | b'&'
                    | b'='
                    | b'+'
                    | b'$'
                    | b','
                    | b';'
                    | b'?'
                    | b'/'
            );
        if literal {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_domain_canonicalize() {
        let aor = Aor::new("alice", "Example.COM").unwrap();
        assert_eq!(aor.as_str(), "alice@example.com");
        assert_eq!(aor.user(), "alice");
        assert_eq!(aor.domain(), "example.com");
        assert_eq!(Aor::new("al%69ce", "example.com").unwrap(), aor);
    }

    #[test]
    fn parse_accepts_uris_and_bare_aors() {
        let want = "alice@example.com";
        for text in [
            "alice@example.com",
            "alice@EXAMPLE.com",
            "sip:alice@example.com",
            "SIP:alice@example.com:5060;transport=tcp",
            "sips:alice@example.com",
            "<sip:alice@example.com>",
            " sip:%61lice@example.com ",
            "sip:alice:secret@example.com",
        ] {
            assert_eq!(Aor::parse(text).unwrap().as_str(), want, "{text}");
        }
        let uri = Uri::parse("sip:alice@Example.com;user=phone").unwrap();
        assert_eq!(Aor::from_uri(&uri).unwrap().as_str(), want);
    }

    #[test]
    fn parse_agrees_with_the_registrar_key() {
        for text in [
            "sip:bob@[2001:db8::1]",
            "sip:a%40b@Example.com",
            "sip:100%25@x.org",
        ] {
            let uri = Uri::parse(text).unwrap();
            assert_eq!(Aor::parse(text).unwrap().as_str(), uri.aor(), "{text}");
        }
        let odd = Aor::parse("sip:a%40b@example.com").unwrap();
        assert_eq!(odd.user(), "a@b");
        assert_eq!(odd.domain(), "example.com");
    }

    #[test]
    fn parse_refuses_non_aors() {
        assert!(matches!(
            Aor::parse("tel:+15551234"),
            Err(KeyError::NotSip(_))
        ));
        assert!(matches!(
            Aor::parse("mailto:a@b.org"),
            Err(KeyError::NotSip(_))
        ));
        assert!(matches!(
            Aor::parse("sip:example.com"),
            Err(KeyError::NoUser(_))
        ));
        assert!(matches!(
            Aor::parse("example.com"),
            Err(KeyError::NoUser(_))
        ));
        assert!(matches!(Aor::parse("a b@x"), Err(KeyError::BadUri { .. })));
        assert!(matches!(Aor::parse(""), Err(KeyError::BadUri { .. })));
        assert!(matches!(
            Aor::parse("sip:a%00b@x.org"),
            Err(KeyError::ControlCharacters(_))
        ));
        let long = format!("{}@example.com", "u".repeat(MAX_AOR_BYTES));
        assert!(matches!(Aor::parse(&long), Err(KeyError::TooLong { .. })));
    }

    #[test]
    fn new_refuses_a_domain_with_port_or_params() {
        assert!(matches!(
            Aor::new("alice", "example.com:5060"),
            Err(KeyError::BadDomain(_))
        ));
        assert!(matches!(
            Aor::new("alice", "example.com;lr"),
            Err(KeyError::BadDomain(_))
        ));
        assert!(Aor::new("a@b", "example.com").is_err());
        assert!(Aor::new("", "example.com").is_err());
    }

    #[test]
    fn canonical_check_round_trips() {
        for text in [
            "alice@example.com",
            "a@b@example.com",
            "100%@x.org",
            "Bob Smith@x.org",
            "bob@[2001:db8::1]",
            "ünïcode@x.org",
        ] {
            let aor = Aor::from_canonical(text).unwrap();
            assert_eq!(aor.as_str(), text);
        }
        for text in [
            "alice@Example.com",
            "alice@example.com:5060",
            "alice",
            "@x.org",
        ] {
            assert!(Aor::from_canonical(text).is_err(), "{text}");
        }
    }

    #[test]
    fn domains_canonicalize() {
        assert_eq!(canonical_domain("Example.COM").unwrap(), "example.com");
        assert_eq!(canonical_domain("[2001:DB8::1]").unwrap(), "[2001:db8::1]");
        assert!(canonical_domain("").is_err());
        assert!(canonical_domain("a@example.com").is_err());
        assert!(canonical_domain("example.com:5060").is_err());
        assert!(canonical_domain(&"a".repeat(300)).is_err());
    }

    #[test]
    fn keys_are_kind_byte_and_sha1() {
        let aor = Aor::parse("alice@example.com").unwrap();
        let key = aor.dht_key(RecordKind::Registration);
        assert_eq!(key.len(), KEY_LEN);
        assert_eq!(key[0], 0x01);
        // sha1("alice@example.com")
        let hash: Vec<u8> = Sha1::digest(b"alice@example.com").to_vec();
        assert_eq!(&key[1..], &hash[..]);
        let (kind, parsed) = parse_dht_key(&key).unwrap();
        assert_eq!(kind, RecordKind::Registration);
        assert_eq!(&parsed[..], &hash[..]);
        assert_eq!(dht_key(RecordKind::Mailbox, aor.as_str())[0], 0x03);
        assert_eq!(dht_key(RecordKind::DomainAuthority, "example.com")[0], 0x02);
        // The hash in hex, without the kind byte; a malformed key in full.
        assert_eq!(
            key_hash_hex(&key),
            "fc2398a73dd54d6237c4fdb58fd7d75347cf5af3"
        );
        assert_eq!(key_hash_hex(&[0x01, 0xab]), "01ab");
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(parse_dht_key(&[]), Err(KeyError::WrongLength(0)));
        assert_eq!(parse_dht_key(&[1; 20]), Err(KeyError::WrongLength(20)));
        assert_eq!(parse_dht_key(&[1; 22]), Err(KeyError::WrongLength(22)));
        assert_eq!(parse_dht_key(&[9; 21]), Err(KeyError::UnknownKind(9)));
        for byte in [1, 2, 3] {
            let kind = RecordKind::from_byte(byte).unwrap();
            assert_eq!(kind.as_byte(), byte);
        }
    }
}
