//! The DNS form of a domain's authority key.

use super::{public_key_from_text, public_key_to_text, AuthorityError, MAX_PUBLIC_KEY_TEXT};
use crate::key::canonical_domain;
use libp2p::identity::PublicKey;

/// The version tag that opens an authority TXT record.
pub const TXT_VERSION: &str = "p2psip1";

/// The content of a `TXT _p2psip.<domain>` record: `v=p2psip1; k=<public key text>`.
/// Fields are `name=value` separated by `;`, whitespace around them ignored; `v` comes
/// first; unknown fields are ignored so later versions can add some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityTxt {
    pub key: PublicKey,
}

impl AuthorityTxt {
    /// The owner name of the TXT record for a domain (any case).
    pub fn name(domain: &str) -> Result<String, AuthorityError> {
        Ok(format!("_p2psip.{}", canonical_domain(domain)?))
    }

    /// Parses the record's text; a TXT record split into several strings is joined first.
    pub fn parse(text: &str) -> Result<AuthorityTxt, AuthorityError> {
        let bad = |reason: &str| AuthorityError::BadTxt {
            text: text.chars().take(MAX_PUBLIC_KEY_TEXT * 2).collect(),
            reason: reason.to_owned(),
        };
        let mut fields = text
            .split(';')
            .map(str::trim)
            .filter(|field| !field.is_empty())
            .map(|field| {
                field
                    .split_once('=')
                    .map(|(name, value)| (name.trim(), value.trim()))
            });
        match fields.next() {
            Some(Some(("v", TXT_VERSION))) => {}
            Some(Some(("v", _))) => return Err(bad("unsupported version")),
            _ => return Err(bad("does not start with v=p2psip1")),
        }
        let mut key = None;
        for field in fields {
            match field {
                Some(("k", value)) if key.is_none() => {
                    key = Some(public_key_from_text(value).map_err(|e| bad(&e.to_string()))?);
                }
                Some(("k", _)) => return Err(bad("more than one k= field")),
                Some(_) => {}
                None => return Err(bad("a field is not name=value")),
            }
        }
        Ok(AuthorityTxt {
            key: key.ok_or_else(|| bad("no k= field"))?,
        })
    }

    pub fn to_text(&self) -> String {
        format!("v={TXT_VERSION}; k={}", public_key_to_text(&self.key))
    }
}
