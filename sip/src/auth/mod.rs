//! Digest authentication (RFC 3261 22, RFC 7616, RFC 8760: MD5 and SHA-256).

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
