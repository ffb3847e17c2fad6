//! The digest computations of RFC 7616 3.4 (and RFC 2617 / RFC 2069 before it), shared by
//! the server check and the client helper. Everything hashes straight from borrowed parts
//! into stack buffers.

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256};

use super::hex;

/// A digest algorithm a client may answer with (RFC 7616 3.3, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// Parses an `algorithm` parameter value, case-insensitively.
    pub fn from_token(token: &str) -> Option<Algorithm> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|algorithm| algorithm.as_str().eq_ignore_ascii_case(token))
    }

    /// The token as registered with IANA.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Session variants hash the nonce and cnonce into HA1 (RFC 7616 3.4.2).
    pub fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// The hash function behind the algorithm.
    pub fn hash(self) -> HashFunction {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => HashFunction::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => HashFunction::Sha256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hash function of an [`Algorithm`]; it decides which HA1 a user needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashFunction {
    Md5,
    Sha256,
}

impl HashFunction {
    /// Output size in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashFunction::Md5 => 16,
            HashFunction::Sha256 => 32,
        }
    }

    /// Hashes `parts` joined with `:`, the way every digest input is built.
    pub(crate) fn hash_joined(self, parts: &[&[u8]]) -> RawDigest {
        match self {
            HashFunction::Md5 => RawDigest::from_hasher(Md5::new(), parts),
            HashFunction::Sha256 => RawDigest::from_hasher(Sha256::new(), parts),
        }
    }
}

/// A hash output of at most 32 bytes, on the stack.
#[derive(Clone, Copy)]
pub(crate) struct RawDigest {
    bytes: [u8; 32],
    len: usize,
}

impl RawDigest {
    fn from_hasher<D: Digest>(mut hasher: D, parts: &[&[u8]]) -> RawDigest {
        for (index, part) in parts.iter().enumerate() {
            if index > 0 {
                hasher.update(b":");
            }
            hasher.update(part);
        }
        let output = hasher.finalize();
        let mut bytes = [0u8; 32];
        let len = output.len().min(bytes.len());
        bytes[..len].copy_from_slice(&output[..len]);
        RawDigest { bytes, len }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub(crate) fn to_hex(self) -> HexDigest {
        let mut digest = HexDigest {
            buf: [0u8; 64],
            len: self.len * 2,
        };
        hex::encode_into(self.as_bytes(), &mut digest.buf);
        digest
    }
}

/// A digest in lower-case hex (32 characters for MD5, 64 for SHA-256), on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexDigest {
    buf: [u8; 64],
    len: usize,
}

impl HexDigest {
    /// Wraps hex digits that were already checked; longer input is cut at 64.
    pub(crate) fn from_checked_hex(hex: &[u8]) -> HexDigest {
        let mut digest = HexDigest {
            buf: [0u8; 64],
            len: hex.len().min(64),
        };
        for (slot, byte) in digest.buf.iter_mut().zip(hex) {
            *slot = byte.to_ascii_lowercase();
        }
        digest
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written, so this never falls back.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Display for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HexDigest({})", self.as_str())
    }
}

impl PartialEq<&str> for HexDigest {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// `H(username:realm:password)` in lower-case hex.
pub(crate) fn ha1(hash: HashFunction, username: &str, realm: &str, password: &str) -> HexDigest {
    hash.hash_joined(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
        .to_hex()
}

/// `MD5(username:realm:password)` in lower-case hex, as a users file stores it.
pub fn ha1_md5(username: &str, realm: &str, password: &str) -> String {
    ha1(HashFunction::Md5, username, realm, password)
        .as_str()
        .to_owned()
}

/// `SHA-256(username:realm:password)` in lower-case hex, as a users file stores it.
pub fn ha1_sha256(username: &str, realm: &str, password: &str) -> String {
    ha1(HashFunction::Sha256, username, realm, password)
        .as_str()
        .to_owned()
}

/// The `qop`, `nc` and `cnonce` values exactly as they appear (or will appear) in the
/// Authorization header; they are hashed as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QopInput<'a> {
    pub qop: &'a str,
    pub nc: &'a str,
    pub cnonce: &'a str,
}

/// Everything the `response` parameter is computed from (RFC 7616 3.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseInput<'a> {
    pub algorithm: Algorithm,
    /// `H(username:realm:password)` in lower-case hex, for `algorithm.hash()`.
    pub ha1: &'a str,
    pub nonce: &'a str,
    pub method: &'a str,
    /// The `uri` parameter, which is the Request-URI as the client wrote it.
    pub uri: &'a str,
    /// `None` is the RFC 2069 form without qop.
    pub qop: Option<QopInput<'a>>,
}

/// Computes the `response` parameter. Returns `None` for a session algorithm without qop,
/// which has no cnonce to hash in.
pub fn compute_response(input: &ResponseInput<'_>) -> Option<HexDigest> {
    response_digest(input).map(RawDigest::to_hex)
}

/// [`compute_response`] as raw bytes, for comparing against a decoded header value.
pub(crate) fn response_digest(input: &ResponseInput<'_>) -> Option<RawDigest> {
    let hash = input.algorithm.hash();
    let session_ha1;
    let ha1 = if input.algorithm.is_session() {
        let qop = input.qop?;
        session_ha1 = hash
            .hash_joined(&[
                input.ha1.as_bytes(),
                input.nonce.as_bytes(),
                qop.cnonce.as_bytes(),
            ])
            .to_hex();
        session_ha1.as_bytes()
    } else {
        input.ha1.as_bytes()
    };
    let ha2 = hash
        .hash_joined(&[input.method.as_bytes(), input.uri.as_bytes()])
        .to_hex();
    let response = match input.qop {
        Some(qop) => hash.hash_joined(&[
            ha1,
            input.nonce.as_bytes(),
            qop.nc.as_bytes(),
            qop.cnonce.as_bytes(),
            qop.qop.as_bytes(),
            ha2.as_bytes(),
        ]),
        None => hash.hash_joined(&[ha1, input.nonce.as_bytes(), ha2.as_bytes()]),
    };
    Some(response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_tokens() {
        assert_eq!(Algorithm::from_token("sha-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_token("MD5-SESS"), Some(Algorithm::Md5Sess));
        assert_eq!(Algorithm::from_token("SHA-512-256"), None);
        assert_eq!(Algorithm::Sha256Sess.to_string(), "SHA-256-sess");
    }

    #[test]
    fn ha1_vectors() {
        // HA1 of the RFC 2617 3.5 example user.
        assert_eq!(
            ha1_md5("Mufasa", "testrealm@host.com", "Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
        assert_eq!(
            ha1_md5("Mufasa", "http-auth@example.org", "Circle of Life").len(),
            32
        );
        assert_eq!(
            ha1_sha256("Mufasa", "http-auth@example.org", "Circle of Life").len(),
            64
        );
    }

    #[test]
    fn rfc2617_example_response() {
        // RFC 2617 3.5: qop=auth, MD5.
        let ha1 = ha1_md5("Mufasa", "testrealm@host.com", "Circle Of Life");
        let response = compute_response(&ResponseInput {
            algorithm: Algorithm::Md5,
            ha1: &ha1,
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            method: "GET",
            uri: "/dir/index.html",
            qop: Some(QopInput {
                qop: "auth",
                nc: "00000001",
                cnonce: "0a4f113b",
            }),
        });
        assert_eq!(
            response.map(|r| r.to_string()).as_deref(),
            Some("6629fae49393a05397450978507c4ef1")
        );
    }

    #[test]
    fn session_without_qop_has_no_response() {
        let input = ResponseInput {
            algorithm: Algorithm::Sha256Sess,
            ha1: "00",
            nonce: "n",
            method: "REGISTER",
            uri: "sip:example.com",
            qop: None,
        };
        assert!(compute_response(&input).is_none());
    }
}
