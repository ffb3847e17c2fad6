//! Character classes and small scanners of the RFC 3261 grammar (section 25.1), shared by
//! the message, URI and header parsers. Everything works on bytes of already UTF-8 checked
//! text, so every index returned falls on a char boundary (it is the index of an ASCII byte
//! or the end).

/// `token` characters: alphanum and `-.!%*_+`'~`.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    table
};

pub(crate) fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

/// A non-empty `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Linear white space, including the CR and LF of a folded line.
pub(crate) fn is_lws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_lws_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims linear white space (SP, HT and folded line breaks) at both ends.
pub(crate) fn trim_lws(s: &str) -> &str {
    // Byte-wise: the trimmed bytes are ASCII, so both cut points are char boundaries.
    let bytes = s.as_bytes();
    let start = bytes
        .iter()
        .position(|&b| !is_lws_byte(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_lws_byte(b))
        .map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// For `s` starting with `"`, the index just past the closing quote, honouring `\` escapes.
/// `None` when the quoted string is not terminated.
pub(crate) fn quoted_string_end(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Index of the first `needle` byte in `s` that is outside quoted strings (and, when
/// `skip_angle` is set, outside `<...>`).
pub(crate) fn find_top_level(s: &[u8], needle: u8, skip_angle: bool) -> Option<usize> {
    let mut i = 0;
    let mut in_angle = false;
    while let Some(&b) = s.get(i) {
        if b == b'"' {
            // An unterminated quote swallows the rest: no top-level needle after it.
            i += quoted_string_end(s.get(i..)?)?;
            continue;
        }
        if skip_angle && in_angle {
            if b == b'>' {
                in_angle = false;
            }
        } else if b == needle {
            return Some(i);
        } else if skip_angle && b == b'<' {
            in_angle = true;
        }
        i += 1;
    }
    None
}

pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True when every `%` in `s` starts a `%HH` escape.
pub(crate) fn escapes_well_formed(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            if hi.is_none() || lo.is_none() {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// The bytes of `s` with `%HH` escapes decoded; a malformed escape is kept literally.
pub(crate) fn unescaped_bytes(s: &str) -> Unescaped<'_> {
    Unescaped {
        bytes: s.as_bytes(),
        pos: 0,
    }
}

#[derive(Clone)]
pub(crate) struct Unescaped<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Iterator for Unescaped<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        if b == b'%' {
            let hi = self.bytes.get(self.pos + 1).copied().and_then(hex_value);
            let lo = self.bytes.get(self.pos + 2).copied().and_then(hex_value);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                self.pos += 3;
                return Some(hi << 4 | lo);
            }
        }
        self.pos += 1;
        Some(b)
    }
}

/// Compares two escaped strings after decoding, optionally ignoring ASCII case.
pub(crate) fn unescaped_eq(a: &str, b: &str, ignore_case: bool) -> bool {
    if ignore_case {
        unescaped_bytes(a)
            .map(|c| c.to_ascii_lowercase())
            .eq(unescaped_bytes(b).map(|c| c.to_ascii_lowercase()))
    } else {
        unescaped_bytes(a).eq(unescaped_bytes(b))
    }
}

/// Parses a non-empty run of ASCII digits; `Err(true)` on overflow, `Err(false)` on syntax.
pub(crate) fn parse_decimal(s: &str) -> Result<u64, bool> {
    if s.is_empty() {
        return Err(false);
    }
    let mut value: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return Err(false);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(true)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_string_scanning() {
        assert_eq!(quoted_string_end(br#""a\"b" x"#), Some(6));
        assert_eq!(quoted_string_end(br#""abc"#), None);
        assert_eq!(quoted_string_end(br#""ab\"#), None);
        assert_eq!(find_top_level(br#""a,b" <c,d>, e"#, b',', true), Some(11));
        assert_eq!(find_top_level(br#""a;b";c"#, b';', false), Some(5));
    }

    #[test]
    fn escapes() {
        assert!(escapes_well_formed("a%20b%3a"));
        assert!(!escapes_well_formed("a%2"));
        assert!(!escapes_well_formed("a%zz"));
        assert!(unescaped_eq("%75se%72", "user", false));
        assert!(unescaped_eq("%6C%72", "LR", true));
        assert!(!unescaped_eq("%6C%72", "LR", false));
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("0068"), Ok(68));
        assert_eq!(parse_decimal(""), Err(false));
        assert_eq!(parse_decimal("-1"), Err(false));
        assert_eq!(parse_decimal("36893488147419103232"), Err(true));
    }
}
