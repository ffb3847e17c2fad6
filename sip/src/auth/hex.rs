//! Lower-case hex encoding into caller buffers, so hashing stays allocation-free.

use crate::message::parse::lex::hex_value;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lower-case hex into `out`, which must be twice as long; returns the
/// written prefix of `out`.
pub(crate) fn encode_into<'o>(bytes: &[u8], out: &'o mut [u8]) -> &'o [u8] {
    let len = bytes.len() * 2;
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    &out[..len.min(out.len())]
}

/// Decodes hex of either case into `out`. Fails unless `text` is exactly `2 * out.len()`
/// hex digits.
pub(crate) fn decode_exact(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(())
}

/// Compares in time that depends only on the lengths, so a response or MAC check does not
/// leak how many leading bytes matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes() {
        let mut out = [0u8; 8];
        assert_eq!(
            encode_into(&[0x00, 0x9f, 0xa0, 0xff], &mut out),
            b"009fa0ff"
        );
        let mut back = [0u8; 4];
        assert!(decode_exact(b"009FA0ff", &mut back).is_some());
        assert_eq!(back, [0x00, 0x9f, 0xa0, 0xff]);
        assert!(decode_exact(b"009fa0f", &mut back).is_none());
        assert!(decode_exact(b"009fa0fg", &mut back).is_none());
    }

    #[test]
    fn compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
