//! The client side: answering a challenge from a server (a provider, or this node's own
//! registrar in tests).

use super::digest::{compute_response, ha1, QopInput, ResponseInput};
use super::header::{push_quoted, DigestChallenge, DigestError};

/// The first challenge among `values` (the `WWW-Authenticate` or `Proxy-Authenticate`
/// values of one response, in order) that this crate can answer. Servers list the
/// algorithm they prefer first (RFC 8760 2.4), so the first usable one is taken.
pub fn first_supported_challenge<'v, I>(values: I) -> Option<DigestChallenge<'v>>
where
    I: IntoIterator<Item = &'v str>,
{
    values
        .into_iter()
        .filter_map(|value| DigestChallenge::parse(value).ok())
        .find(|challenge| challenge.qop.is_none() || challenge.offers_qop_auth())
}

/// Writes `nc` as the 8 lower-case hex digits the header carries.
fn nc_text(nc: u32) -> [u8; 8] {
    let mut text = [0u8; 8];
    super::hex::encode_into(&nc.to_be_bytes(), &mut text);
    text
}

/// The `Authorization` (or `Proxy-Authorization`) value answering `challenge` for a request
/// with `method` and Request-URI `uri`. With a qop challenge the answer uses qop=auth with
/// `cnonce` (pick it at random) and nonce count `nc` (1 for a new nonce, then counting up);
/// without one it is the RFC 2069 form and `cnonce`/`nc` are unused.
pub fn authorization_value(
    challenge: &DigestChallenge<'_>,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> Result<String, DigestError> {
    let use_qop = match challenge.qop {
        None => false,
        Some(_) if challenge.offers_qop_auth() => true,
        Some(_) => return Err(DigestError::new("unsupported qop")),
    };
    if use_qop && cnonce.is_empty() {
        return Err(DigestError::new("bad cnonce"));
    }
    let nc_digits = nc_text(nc);
    let nc_digits = std::str::from_utf8(&nc_digits).unwrap_or_default();
    let algorithm = challenge.algorithm;
    let ha1 = ha1(algorithm.hash(), username, &challenge.realm, password);
    let qop = use_qop.then_some(QopInput {
        qop: "auth",
        nc: nc_digits,
        cnonce,
    });
    let response = compute_response(&ResponseInput {
        algorithm,
        ha1: ha1.as_str(),
        nonce: &challenge.nonce,
        method,
        uri,
        qop,
    })
    .ok_or(DigestError::new("session algorithm without qop"))?;

    let mut value = String::with_capacity(
        200 + username.len() + challenge.realm.len() + challenge.nonce.len() + uri.len(),
    );
    value.push_str("Digest username=");
    push_quoted(&mut value, username);
    value.push_str(", realm=");
    push_quoted(&mut value, &challenge.realm);
    value.push_str(", nonce=");
    push_quoted(&mut value, &challenge.nonce);
    value.push_str(", uri=");
    push_quoted(&mut value, uri);
    value.push_str(", response=\"");
    value.push_str(response.as_str());
    value.push_str("\", algorithm=");
    value.push_str(algorithm.as_str());
    if use_qop {
        value.push_str(", cnonce=");
        push_quoted(&mut value, cnonce);
        value.push_str(", qop=auth, nc=");
        value.push_str(nc_digits);
    }
    if let Some(opaque) = &challenge.opaque {
        value.push_str(", opaque=");
        push_quoted(&mut value, opaque);
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::{Algorithm, DigestCredentials};

    #[test]
    fn formats_nonce_counts() {
        assert_eq!(&nc_text(1), b"00000001");
        assert_eq!(&nc_text(0xabcdef12), b"abcdef12");
    }

    #[test]
    fn picks_the_first_answerable_challenge() {
        let values = [
            "Basic realm=\"r\"",
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256, qop=\"auth\"",
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=\"auth-int\"",
            "Digest realm=\"r\", nonce=\"n\", algorithm=MD5, qop=\"auth\"",
        ];
        let challenge = first_supported_challenge(values).unwrap();
        assert_eq!(challenge.algorithm, Algorithm::Md5);
    }

    #[test]
    fn answers_rfc2069_challenges_without_qop() {
        let challenge = DigestChallenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
        let value = authorization_value(&challenge, "u", "p", "REGISTER", "sip:r", "", 1).unwrap();
        let credentials = DigestCredentials::parse(&value).unwrap();
        assert!(credentials.qop.is_none());
        assert!(!value.contains("nc="));
        assert!(!value.contains("opaque"));
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        let auth_int =
            DigestChallenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"").unwrap();
        assert_eq!(
            authorization_value(&auth_int, "u", "p", "REGISTER", "sip:r", "c", 1),
            Err(DigestError::new("unsupported qop"))
        );
        let sess_without_qop =
            DigestChallenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess").unwrap();
        assert_eq!(
            authorization_value(&sess_without_qop, "u", "p", "REGISTER", "sip:r", "c", 1),
            Err(DigestError::new("session algorithm without qop"))
        );
    }
}
