//! The `--users` file: who may register.
//!
//! ```toml
//! [[user]]
//! username = "alice"
//! domain = "example.com"
//! password = "secret"
//!
//! [[user]]
//! username = "bob"
//! domain = "example.com"
//! ha1_md5 = "..."      # MD5(bob:example.com:password), hex
//! ha1_sha256 = "..."   # SHA-256 of the same, hex
//! ```

use crate::config::{toml_error, ConfigError};
use serde::Deserialize;
use sip::auth::{Credential, Secret};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    username: String,
    domain: String,
    password: Option<String>,
    ha1_md5: Option<String>,
    ha1_sha256: Option<String>,
}

/// Reads and validates a users file.
pub fn load(path: &Path) -> Result<Vec<Credential>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("users file {}: {e}", path.display())))?;
    parse(&text).map_err(|e| ConfigError(format!("users file {}: {e}", path.display())))
}

/// Parses users-file text; the error lacks the file name, which [`load`] adds.
fn parse(text: &str) -> Result<Vec<Credential>, String> {
    let file: UsersFile = toml::from_str(text).map_err(|e| toml_error(&e, text))?;
    let mut seen = HashSet::with_capacity(file.user.len());
    let mut credentials = Vec::with_capacity(file.user.len());
    for (index, entry) in file.user.into_iter().enumerate() {
        let name = format!("user #{} ({:?})", index + 1, entry.username);
        let credential = credential(entry).map_err(|reason| format!("{name}: {reason}"))?;
        // Realms compare case-insensitively like the domains they are.
        let key = (
            credential.username.clone(),
            credential.realm.to_ascii_lowercase(),
        );
        if !seen.insert(key) {
            return Err(format!(
                "{name}: listed twice for domain {:?}",
                credential.realm
            ));
        }
        credentials.push(credential);
    }
    Ok(credentials)
}

fn credential(entry: UserEntry) -> Result<Credential, String> {
    if entry.username.is_empty() {
        return Err("username is empty".to_string());
    }
    if entry.domain.is_empty() || entry.domain.contains(char::is_whitespace) {
        return Err(format!("domain {:?} is not a domain name", entry.domain));
    }
    let secret = match (entry.password, entry.ha1_md5, entry.ha1_sha256) {
        (None, None, None) => return Err("needs password, ha1_md5 or ha1_sha256".to_string()),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err("password excludes ha1_md5 and ha1_sha256".to_string())
        }
        (Some(password), None, None) => Secret::Password(password),
        (None, md5, sha256) => Secret::Ha1 {
            md5: md5.map(|h| hex_digest("ha1_md5", h, 32)).transpose()?,
            sha256: sha256
                .map(|h| hex_digest("ha1_sha256", h, 64))
                .transpose()?,
        },
    };
    Ok(Credential {
        username: entry.username,
        realm: entry.domain,
        secret,
    })
}

/// Checks a hex digest's length and digits and lower-cases it (HA1 values are compared as
/// lower-case hex).
fn hex_digest(key: &str, value: String, len: usize) -> Result<String, String> {
    if value.len() != len || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{key} must be {len} hex digits"));
    }
    Ok(value.to_ascii_lowercase())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_password_and_ha1_users() {
        let users = parse(
            r#"
[[user]]
username = "alice"
domain = "example.com"
password = "pw"

[[user]]
username = "bob"
domain = "example.com"
ha1_md5 = "0123456789ABCDEF0123456789abcdef"
"#,
        )
        .unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(
            users[0],
            Credential {
                username: "alice".into(),
                realm: "example.com".into(),
                secret: Secret::Password("pw".into()),
            }
        );
        assert_eq!(
            users[1].secret,
            Secret::Ha1 {
                md5: Some("0123456789abcdef0123456789abcdef".into()),
                sha256: None
            }
        );
    }

    #[test]
    fn empty_file_has_no_users() {
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn missing_secret_names_the_entry() {
        let err = parse(
            r#"
[[user]]
username = "a"
domain = "d"
password = "x"
[[user]]
username = "b"
domain = "d"
password = "x"
[[user]]
username = "bob"
domain = "d"
"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "user #3 (\"bob\"): needs password, ha1_md5 or ha1_sha256"
        );
    }

    #[test]
    fn bad_entries_are_rejected() {
        let one = |body: &str| parse(&format!("[[user]]\n{body}\n")).unwrap_err();
        assert!(one("username = \"a\"\ndomain = \"d\"\nha1_md5 = \"xyz\"")
            .contains("ha1_md5 must be 32 hex digits"));
        assert!(one("username = \"a\"\ndomain = \"d\"\nha1_sha256 = \"00\"")
            .contains("ha1_sha256 must be 64 hex digits"));
        assert!(
            one("username = \"\"\ndomain = \"d\"\npassword = \"p\"").contains("username is empty")
        );
        assert!(one(
            "username = \"a\"\ndomain = \"d\"\npassword = \"p\"\nha1_md5 = \"0123456789abcdef0123456789abcdef\""
        )
        .contains("excludes"));
        let unknown = one("username = \"a\"\ndomain = \"d\"\npasword = \"p\"");
        assert!(unknown.contains("unknown field `pasword`"), "{unknown}");
        let missing = one("username = \"a\"\npassword = \"p\"");
        assert!(missing.contains("missing field `domain`"), "{missing}");
    }

    #[test]
    fn duplicates_are_rejected() {
        let err = parse(
            "[[user]]\nusername = \"a\"\ndomain = \"D\"\npassword = \"p\"\n\
             [[user]]\nusername = \"a\"\ndomain = \"d\"\npassword = \"q\"\n",
        )
        .unwrap_err();
        assert!(err.starts_with("user #2 (\"a\"): listed twice"), "{err}");
    }

    #[test]
    fn load_prefixes_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.toml");
        std::fs::write(&path, "[[user]]\nusername = \"bob\"\ndomain = \"d\"\n").unwrap();
        let err = load(&path).unwrap_err().0;
        assert_eq!(
            err,
            format!(
                "users file {}: user #1 (\"bob\"): needs password, ha1_md5 or ha1_sha256",
                path.display()
            )
        );
    }
}
