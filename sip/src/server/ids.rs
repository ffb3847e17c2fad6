//! Branch parameters, tags and loop-detection hashes.
//!
//! Branches and tags are a per-process random salt plus a counter: unique, unguessable from
//! outside without the salt, and free of per-message randomness cost.

use sha2::{Digest, Sha256};
use std::fmt::Write;

/// Generates Via branches and To/From tags.
#[derive(Debug, Clone)]
pub struct IdGenerator {
    salt: u64,
    counter: u64,
}

/// Length in hex digits of the loop-detection part of our branches.
const LOOP_HASH_HEX: usize = 16;

impl IdGenerator {
    pub fn new(seed: u64) -> IdGenerator {
        IdGenerator {
            salt: seed,
            counter: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        // A bijective mix so consecutive ids do not look consecutive on the wire.
        let mut x = self.counter ^ self.salt;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// A branch for a request this node forwards: the magic cookie, the loop-detection hash of
    /// the incoming request (RFC 3261 16.6 step 8) and a unique part.
    pub fn branch(&mut self, loop_hash: &str) -> String {
        let mut b = String::with_capacity(7 + LOOP_HASH_HEX + 1 + 16);
        b.push_str("z9hG4bK");
        b.push_str(loop_hash);
        b.push('.');
        let _ = write!(b, "{:x}", self.next());
        b
    }

    /// A branch for a request this node originates (CANCEL reuses the INVITE's branch instead).
    pub fn plain_branch(&mut self) -> String {
        format!("z9hG4bK{:x}", self.next())
    }

    /// A To tag for responses this node generates as a UAS.
    pub fn tag(&mut self) -> String {
        format!("{:x}", self.next())
    }
}

/// A salt for [`IdGenerator`] derived one-way from the node's random seed.
pub fn derive_salt(seed: &[u8]) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"p2psip ids")
        .chain_update(seed)
        .finalize();
    let mut salt = [0u8; 8];
    salt.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(salt)
}

/// The loop-detection hash of a request (RFC 3261 16.6 step 8 / 16.3 step 4): over the fields
/// that change when a request legitimately spirals back (Request-URI, Route, Proxy-Require)
/// and those that identify it (From tag, To tag, Call-ID, CSeq number, top Via branch).
pub fn loop_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut out = String::with_capacity(LOOP_HASH_HEX);
    for byte in digest.iter().take(LOOP_HASH_HEX / 2) {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Extracts the loop-detection part from a branch this node generated, if it is one of ours.
pub fn loop_hash_of_branch(branch: &str) -> Option<&str> {
    let rest = branch.strip_prefix("z9hG4bK")?;
    let (hash, _) = rest.split_once('.')?;
    (hash.len() == LOOP_HASH_HEX).then_some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_are_unique_and_carry_the_loop_hash() {
        let mut ids = IdGenerator::new(42);
        let h = loop_hash(&["sip:bob@example.com", "tag1", "", "call", "1", "z9hG4bKx"]);
        let a = ids.branch(&h);
        let b = ids.branch(&h);
        assert_ne!(a, b);
        assert_eq!(loop_hash_of_branch(&a), Some(h.as_str()));
        assert!(a.starts_with("z9hG4bK"));
        assert_eq!(loop_hash_of_branch("z9hG4bKabc"), None);
    }

    #[test]
    fn loop_hash_depends_on_request_uri() {
        assert_ne!(loop_hash(&["sip:a@x", "t"]), loop_hash(&["sip:b@x", "t"]));
        // Separators keep field boundaries apart.
        assert_ne!(loop_hash(&["ab", "c"]), loop_hash(&["a", "bc"]));
    }
}
