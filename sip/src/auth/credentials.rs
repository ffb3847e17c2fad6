//! The users a server accepts, with HA1 hashes computed once at load time.

use std::collections::HashMap;
use std::fmt;

use super::digest::{ha1, HashFunction, HexDigest};
use super::{Credential, Secret};

/// Why a [`CredentialStore`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("more than {limit} credentials")]
    TooMany { limit: usize },
    #[error("duplicate credential {username}@{realm}")]
    Duplicate { username: String, realm: String },
    #[error("empty username in realm {realm}")]
    EmptyUsername { realm: String },
    #[error("realm of {username} is empty or longer than {limit} bytes")]
    BadRealm { username: String, limit: usize },
    #[error("{algorithm} HA1 of {username}@{realm} is not {digits} hex digits")]
    BadHa1 {
        username: String,
        realm: String,
        algorithm: &'static str,
        digits: usize,
    },
    #[error("{username}@{realm} has neither a password nor an HA1")]
    NoSecret { username: String, realm: String },
}

/// One user's HA1 values, ready to be hashed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StoredUser {
    /// The realm as configured, which the HA1 values were computed with.
    realm: Box<str>,
    /// Kept for password users so a realm spelled in another case can still be answered.
    password: Option<Box<str>>,
    md5: Option<HexDigest>,
    sha256: Option<HexDigest>,
}

impl StoredUser {
    /// The HA1 for `hash` as the client computed it from `username` (the key this entry
    /// was found under) and `realm` (the realm parameter it sent), or `None` if the user
    /// was configured without an HA1 for `hash`. HA1-only users can only answer a realm
    /// spelled exactly as configured.
    pub(crate) fn ha1(&self, hash: HashFunction, username: &str, realm: &str) -> Option<HexDigest> {
        let stored = match hash {
            HashFunction::Md5 => self.md5,
            HashFunction::Sha256 => self.sha256,
        }?;
        match &self.password {
            Some(password) if *realm != *self.realm => Some(ha1(hash, username, realm, password)),
            _ => Some(stored),
        }
    }
}

/// Checks a configured HA1's length and digits.
fn parse_ha1(
    text: &str,
    username: &str,
    realm: &str,
    hash: HashFunction,
    algorithm: &'static str,
) -> Result<HexDigest, CredentialError> {
    let digits = hash.output_len() * 2;
    if text.len() != digits || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(CredentialError::BadHa1 {
            username: username.to_owned(),
            realm: realm.to_owned(),
            algorithm,
            digits,
        });
    }
    Ok(HexDigest::from_checked_hex(text.as_bytes()))
}

/// Runs `f` on the ASCII-lower-cased `text` without allocating. Returns `None` when `text`
/// is longer than [`CredentialStore::MAX_REALM_LEN`], which no stored realm is.
fn with_lowercase<R>(text: &str, f: impl FnOnce(&str) -> R) -> Option<R> {
    if !text.bytes().any(|byte| byte.is_ascii_uppercase()) {
        return Some(f(text));
    }
    let mut buf = [0u8; CredentialStore::MAX_REALM_LEN];
    let lowered = buf.get_mut(..text.len())?;
    for (slot, byte) in lowered.iter_mut().zip(text.bytes()) {
        *slot = byte.to_ascii_lowercase();
    }
    // Lower-casing ASCII bytes keeps UTF-8 valid.
    std::str::from_utf8(lowered).ok().map(f)
}

/// Users by `(username, realm)`: usernames compare case-sensitively, realms
/// case-insensitively. Holds at most [`CredentialStore::MAX_ENTRIES`] users; building a
/// larger store fails rather than dropping users.
///
/// HA1 is computed at load time with the realm as configured; a client answering a realm
/// spelled in another case is handled by recomputing from the password, which HA1-only
/// users do not have.
#[derive(Clone, Default)]
pub struct CredentialStore {
    /// Lower-cased realm → username → HA1s. Realms are few, users many.
    realms: HashMap<Box<str>, HashMap<Box<str>, StoredUser>>,
    len: usize,
}

impl CredentialStore {
    /// Upper bound on the number of users.
    pub const MAX_ENTRIES: usize = 1 << 20;
    /// Upper bound on a realm's length in bytes.
    pub const MAX_REALM_LEN: usize = 255;

    /// Builds the store, computing MD5 and SHA-256 HA1 for password users and checking the
    /// hex of HA1-only users (who can then answer only the algorithms they have an HA1 for).
    pub fn new(credentials: Vec<Credential>) -> Result<CredentialStore, CredentialError> {
        if credentials.len() > Self::MAX_ENTRIES {
            return Err(CredentialError::TooMany {
                limit: Self::MAX_ENTRIES,
            });
        }
        let mut store = CredentialStore::default();
        for credential in credentials {
            store.insert(credential)?;
        }
        Ok(store)
    }

    fn insert(&mut self, credential: Credential) -> Result<(), CredentialError> {
        if credential.username.is_empty() {
            return Err(CredentialError::EmptyUsername {
                realm: credential.realm,
            });
        }
        if credential.realm.is_empty() || credential.realm.len() > Self::MAX_REALM_LEN {
            return Err(CredentialError::BadRealm {
                username: credential.username,
                limit: Self::MAX_REALM_LEN,
            });
        }
        let stored = match credential.secret {
            Secret::Password(password) => {
                let (username, realm) = (&credential.username, &credential.realm);
                StoredUser {
                    realm: realm.as_str().into(),
                    md5: Some(ha1(HashFunction::Md5, username, realm, &password)),
                    sha256: Some(ha1(HashFunction::Sha256, username, realm, &password)),
                    password: Some(password.into_boxed_str()),
                }
            }
            Secret::Ha1 { md5, sha256 } => {
                let (username, realm) = (&credential.username, &credential.realm);
                if md5.is_none() && sha256.is_none() {
                    return Err(CredentialError::NoSecret {
                        username: username.clone(),
                        realm: realm.clone(),
                    });
                }
                StoredUser {
                    realm: credential.realm.as_str().into(),
                    password: None,
                    md5: md5
                        .as_deref()
                        .map(|text| parse_ha1(text, username, realm, HashFunction::Md5, "MD5"))
                        .transpose()?,
                    sha256: sha256
                        .as_deref()
                        .map(|text| {
                            parse_ha1(text, username, realm, HashFunction::Sha256, "SHA-256")
                        })
                        .transpose()?,
                }
            }
        };
        let users = self
            .realms
            .entry(credential.realm.to_ascii_lowercase().into_boxed_str())
            .or_default();
        if users.contains_key(credential.username.as_str()) {
            return Err(CredentialError::Duplicate {
                username: credential.username,
                realm: credential.realm,
            });
        }
        users.insert(credential.username.into_boxed_str(), stored);
        self.len += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when some user is configured in `realm` (any case).
    pub fn has_realm(&self, realm: &str) -> bool {
        with_lowercase(realm, |lowered| self.realms.contains_key(lowered)).unwrap_or(false)
    }

    /// True when `username@realm` is a known user.
    pub fn contains(&self, username: &str, realm: &str) -> bool {
        self.lookup(username, realm).is_some()
    }

    /// The HA1s of `username@realm`, without allocating.
    pub(crate) fn lookup(&self, username: &str, realm: &str) -> Option<&StoredUser> {
        with_lowercase(realm, |realm| self.realms.get(realm))
            .flatten()?
            .get(username)
    }
}

/// Shows sizes only: the store holds passwords and password-equivalent hashes.
impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore")
            .field("realms", &self.realms.len())
            .field("users", &self.len)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::{ha1_md5, ha1_sha256};

    fn password(username: &str, realm: &str, password: &str) -> Credential {
        Credential {
            username: username.into(),
            realm: realm.into(),
            secret: Secret::Password(password.into()),
        }
    }

    #[test]
    fn password_users_get_both_hashes() {
        let store = CredentialStore::new(vec![password("alice", "Example.com", "pw")]).unwrap();
        let stored = store.lookup("alice", "EXAMPLE.COM").unwrap();
        for (hash, expected) in [
            (HashFunction::Md5, ha1_md5("alice", "Example.com", "pw")),
            (
                HashFunction::Sha256,
                ha1_sha256("alice", "Example.com", "pw"),
            ),
        ] {
            let ha1 = stored.ha1(hash, "alice", "Example.com").unwrap();
            assert_eq!(ha1.as_str(), expected);
        }
        // A client that got the realm in another spelling hashed that spelling.
        let ha1 = stored
            .ha1(HashFunction::Md5, "alice", "example.com")
            .unwrap();
        assert_eq!(ha1.as_str(), ha1_md5("alice", "example.com", "pw"));
        assert!(store.lookup("Alice", "example.com").is_none());
        assert!(store.contains("alice", "example.com"));
        assert_eq!(store.len(), 1);
        assert!(!format!("{store:?}").contains("pw"));
    }

    #[test]
    fn ha1_only_users_get_what_they_have() {
        let md5 = ha1_md5("bob", "example.com", "pw").to_ascii_uppercase();
        let store = CredentialStore::new(vec![Credential {
            username: "bob".into(),
            realm: "example.com".into(),
            secret: Secret::Ha1 {
                md5: Some(md5),
                sha256: None,
            },
        }])
        .unwrap();
        let stored = store.lookup("bob", "example.com").unwrap();
        let ha1 = stored.ha1(HashFunction::Md5, "bob", "example.com").unwrap();
        assert_eq!(ha1.as_str(), ha1_md5("bob", "example.com", "pw"));
        assert_eq!(stored.ha1(HashFunction::Sha256, "bob", "example.com"), None);
    }

    #[test]
    fn rejects_bad_entries() {
        let short_ha1 = Credential {
            username: "bob".into(),
            realm: "example.com".into(),
            secret: Secret::Ha1 {
                md5: None,
                sha256: Some("abc".into()),
            },
        };
        assert!(matches!(
            CredentialStore::new(vec![short_ha1]),
            Err(CredentialError::BadHa1 { digits: 64, .. })
        ));
        let no_secret = Credential {
            username: "bob".into(),
            realm: "example.com".into(),
            secret: Secret::Ha1 {
                md5: None,
                sha256: None,
            },
        };
        assert!(matches!(
            CredentialStore::new(vec![no_secret]),
            Err(CredentialError::NoSecret { .. })
        ));
        assert!(matches!(
            CredentialStore::new(vec![
                password("a", "example.com", "1"),
                password("a", "EXAMPLE.com", "2"),
            ]),
            Err(CredentialError::Duplicate { .. })
        ));
        assert!(matches!(
            CredentialStore::new(vec![password("", "example.com", "1")]),
            Err(CredentialError::EmptyUsername { .. })
        ));
        assert!(matches!(
            CredentialStore::new(vec![password("a", &"r".repeat(256), "1")]),
            Err(CredentialError::BadRealm { .. })
        ));
    }

    #[test]
    fn long_lookup_realm_is_unknown() {
        let store = CredentialStore::new(vec![password("a", "example.com", "1")]).unwrap();
        assert!(!store.contains("a", &"R".repeat(300)));
    }
}
