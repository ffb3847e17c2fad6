//! `;name=value` parameter lists (URI parameters, header parameters), parsed lazily so that
//! carrying a message through allocates nothing.

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
    /// Semicolons inside quoted strings do not split.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        todo!("params iterator");
        #[allow(unreachable_code)]
        std::iter::empty()
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
        self.raw.trim().is_empty()
    }
}
