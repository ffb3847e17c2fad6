//! `;name=value` parameter lists (URI parameters, header parameters), parsed lazily so that
//! carrying a message through allocates nothing.

use super::parse::lex::{find_top_level, is_token, quoted_string_end, trim_lws};

/// A borrowed parameter list such as `;transport=tcp;lr;tag=abc` (the leading `;` is
/// optional). Names compare case-insensitively; values are returned raw (quoted strings keep
/// their quotes; URI parameters keep their `%` escapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    pub raw: &'a str,
}

impl<'a> Params<'a> {
    pub fn new(raw: &'a str) -> Params<'a> {
        Params { raw }
    }

    /// Iterates `(name, value)` pairs; `value` is `None` for a flag such as `lr`.
    /// Semicolons inside quoted strings do not split. Whitespace (including folded line
    /// breaks) around names, `=` and values is trimmed; empty elements are skipped.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        ParamsIter { rest: self.raw }
    }

    /// The value of the first parameter called `name`: `Some(None)` for a flag,
    /// `Some(Some(v))` for `name=v`, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn is_empty(&self) -> bool {
        trim_lws(self.raw).is_empty()
    }

    /// Checks the header-parameter grammar strictly (RFC 3261 `generic-param`): every element
    /// between semicolons has a token name and, after `=`, a non-empty token, host or quoted
    /// string. `;;` and `;=x` are rejected.
    pub fn is_well_formed(&self) -> bool {
        let raw = trim_lws(self.raw);
        if raw.is_empty() {
            return true;
        }
        let Some(mut rest) = raw.strip_prefix(';') else {
            return false;
        };
        loop {
            let end = find_top_level(rest.as_bytes(), b';', false).unwrap_or(rest.len());
            let (element, after) = match (rest.get(..end), rest.get(end + 1..)) {
                (Some(element), after) => (element, after),
                (None, _) => return false,
            };
            if !generic_param_ok(element) {
                return false;
            }
            match after {
                Some(after) => rest = after,
                None => return true,
            }
        }
    }
}

fn generic_param_ok(element: &str) -> bool {
    let (name, value) = match element.split_once('=') {
        Some((n, v)) => (trim_lws(n), Some(trim_lws(v))),
        None => (trim_lws(element), None),
    };
    if !is_token(name) {
        return false;
    }
    match value {
        None => true,
        Some(v) if v.starts_with('"') => quoted_string_end(v.as_bytes()) == Some(v.len()),
        Some(v) => {
            !v.is_empty()
                && v.bytes()
                    .all(|b| super::parse::lex::is_token_byte(b) || matches!(b, b'[' | b']' | b':'))
        }
    }
}

/// Iterator behind [`Params::iter`].
struct ParamsIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ParamsIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let end = find_top_level(self.rest.as_bytes(), b';', false).unwrap_or(self.rest.len());
            let element = self.rest.get(..end).unwrap_or("");
            self.rest = self.rest.get(end + 1..).unwrap_or("");
            let element = trim_lws(element);
            if element.is_empty() {
                continue;
            }
            return Some(match element.split_once('=') {
                Some((name, value)) => (trim_lws(name), Some(trim_lws(value))),
                None => (element, None),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_pairs_and_flags() {
        let p = Params::new(";transport=TCP;lr; tag = abc ;;x=\"a;b\"");
        let v: Vec<_> = p.iter().collect();
        assert_eq!(
            v,
            vec![
                ("transport", Some("TCP")),
                ("lr", None),
                ("tag", Some("abc")),
                ("x", Some("\"a;b\"")),
            ]
        );
        assert_eq!(p.get("TRANSPORT"), Some(Some("TCP")));
        assert_eq!(p.get("lr"), Some(None));
        assert!(p.contains("LR"));
        assert_eq!(p.get("maddr"), None);
        assert!(!p.is_empty());
        assert!(Params::new("  ").is_empty());
    }

    #[test]
    fn folded_whitespace_is_trimmed() {
        let p = Params::new("  ;\r\n  tag = 98asjd8");
        assert_eq!(p.get("tag"), Some(Some("98asjd8")));
        assert!(p.is_well_formed());
    }

    #[test]
    fn strict_grammar() {
        assert!(Params::new("").is_well_formed());
        assert!(Params::new(";tag=1;lr;received=[2001:db8::1]").is_well_formed());
        assert!(Params::new(";x=\"quoted ; value\"").is_well_formed());
        assert!(!Params::new(";;tag=1").is_well_formed());
        assert!(!Params::new(";tag=1;").is_well_formed());
        assert!(!Params::new(";=1").is_well_formed());
        assert!(!Params::new(";a=").is_well_formed());
        assert!(!Params::new("tag=1").is_well_formed());
        assert!(!Params::new(";x=\"open").is_well_formed());
    }
}
