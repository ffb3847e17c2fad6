//! Digest authentication (RFC 3261 22, RFC 7616, RFC 8760: MD5 and SHA-256).
//!
//! A registrar builds a [`CredentialStore`] from the configured users and keeps one
//! [`DigestAuthenticator`] and one [`FailureLimiter`]. For each request it picks the
//! `Authorization` value for its realm with [`select_for_realm`], checks it with
//! [`DigestAuthenticator::verify`], and answers anything but
//! [`AuthOutcome::Authenticated`] with [`DigestAuthenticator::challenge_values`] (or 403
//! while the limiter blocks the source). The client side is [`authorization_value`].

mod client;
mod credentials;
mod digest;
mod header;
mod hex;
mod limiter;
mod nonce;
mod replay;
mod server;
#[cfg(test)]
mod tests;

pub use client::{authorization_value, first_supported_challenge};
pub use credentials::{CredentialError, CredentialStore};
pub use digest::{
    compute_response, ha1_md5, ha1_sha256, Algorithm, HashFunction, HexDigest, QopInput,
    ResponseInput,
};
pub use header::{select_for_realm, DigestChallenge, DigestCredentials, DigestError, DigestQop};
pub use limiter::FailureLimiter;
pub use server::{AuthOutcome, DigestAuthenticator};

/// How a user's secret is stored. HA1 hashes are `H(username:realm:password)` in lower-case
/// hex, so a users file need not hold clear-text passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    Password(String),
    Ha1 {
        md5: Option<String>,
        sha256: Option<String>,
    },
}

/// One user allowed to register: `username@realm`. The realm is the SIP domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub realm: String,
    pub secret: Secret,
}
