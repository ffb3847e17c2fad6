//! Stateless nonces: any node holding the secret can check a nonce it issued without
//! remembering it.
//!
//! Layout, hex encoded (56 characters): issue time in whole seconds since the epoch
//! instant (4 bytes, big endian) | salt (8 bytes) | HMAC-SHA256(secret, "N" | time | salt |
//! lower-cased realm) truncated to 16 bytes. Binding the realm stops a nonce issued for one
//! domain from being used in another.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use super::hex;

type HmacSha256 = Hmac<Sha256>;

const ISSUED_LEN: usize = 4;
const SALT_LEN: usize = 8;
const MAC_LEN: usize = 16;
const RAW_LEN: usize = ISSUED_LEN + SALT_LEN + MAC_LEN;
/// Length of a nonce as it appears in a header.
pub(crate) const NONCE_TEXT_LEN: usize = RAW_LEN * 2;

/// Identifies one issued nonce, for the nonce-count table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct NonceKey {
    /// Issue time in seconds since the epoch instant.
    pub(crate) issued: u32,
    pub(crate) salt: u64,
}

/// What a nonce from a request turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    /// Not issued by this secret for this realm (or garbled).
    Invalid,
    Fresh(NonceKey),
    /// Genuine but past its lifetime.
    Expired(NonceKey),
}

/// Issues and checks nonces.
pub(crate) struct NonceCodec {
    /// Keyed once; cloned for each MAC so the key schedule is not redone.
    keyed_mac: HmacSha256,
    salts: StdRng,
    epoch: Instant,
    lifetime: Duration,
}

impl NonceCodec {
    pub(crate) fn new(secret: &[u8], epoch: Instant, lifetime: Duration) -> NonceCodec {
        let keyed_mac = keyed_hmac(secret);
        let salt_seed = derive(&keyed_mac, b"salt-seed");
        NonceCodec {
            keyed_mac,
            salts: StdRng::from_seed(salt_seed),
            epoch,
            lifetime,
        }
    }

    pub(crate) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    pub(crate) fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }

    /// A value derived from the secret for `label`, distinct from every nonce MAC.
    pub(crate) fn derive(&self, label: &[u8]) -> [u8; 32] {
        derive(&self.keyed_mac, label)
    }

    /// Whole seconds from the epoch to `now`.
    pub(crate) fn seconds_since_epoch(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    fn mac(&self, issued: u32, salt: u64, client: IpAddr, realm: &str) -> [u8; MAC_LEN] {
        let mut mac = self.keyed_mac.clone();
        mac.update(b"N");
        mac.update(&issued.to_be_bytes());
        mac.update(&salt.to_be_bytes());
        // An IPv4 client seen over an IPv6 socket is the same client.
        match client.to_canonical() {
            IpAddr::V4(v4) => {
                mac.update(b"4");
                mac.update(&v4.octets());
            }
            IpAddr::V6(v6) => {
                mac.update(b"6");
                mac.update(&v6.octets());
            }
        }
        // Realms compare case-insensitively, so the MAC covers the lower-cased realm.
        let mut lowered = [0u8; 64];
        for chunk in realm.as_bytes().chunks(lowered.len()) {
            for (slot, byte) in lowered.iter_mut().zip(chunk) {
                *slot = byte.to_ascii_lowercase();
            }
            mac.update(&lowered[..chunk.len()]);
        }
        let full = mac.finalize().into_bytes();
        let mut truncated = [0u8; MAC_LEN];
        for (slot, byte) in truncated.iter_mut().zip(full.iter()) {
            *slot = *byte;
        }
        truncated
    }

    /// Issues a nonce for `realm`, to the client at `client`, as lower-case hex ASCII.
    pub(crate) fn issue(
        &mut self,
        now: Instant,
        realm: &str,
        client: IpAddr,
    ) -> [u8; NONCE_TEXT_LEN] {
        // Saturates after 136 years of uptime, when nonces simply stay stale.
        let issued = u32::try_from(self.seconds_since_epoch(now)).unwrap_or(u32::MAX);
        let salt = self.salts.next_u64();
        let mut raw = [0u8; RAW_LEN];
        let (issued_bytes, rest) = raw.split_at_mut(ISSUED_LEN);
        let (salt_bytes, mac_bytes) = rest.split_at_mut(SALT_LEN);
        issued_bytes.copy_from_slice(&issued.to_be_bytes());
        salt_bytes.copy_from_slice(&salt.to_be_bytes());
        mac_bytes.copy_from_slice(&self.mac(issued, salt, client, realm));
        let mut text = [0u8; NONCE_TEXT_LEN];
        hex::encode_into(&raw, &mut text);
        text
    }

    /// Checks a nonce from a request from `client` against `realm`; a nonce issued to
    /// another address is [`NonceCheck::Invalid`]. A nonce is fresh while
    /// `now < epoch + issued + lifetime`; as `issued` is rounded down to whole seconds, a
    /// nonce may live up to one second less than the lifetime.
    pub(crate) fn check(
        &self,
        now: Instant,
        nonce: &str,
        realm: &str,
        client: IpAddr,
    ) -> NonceCheck {
        let mut raw = [0u8; RAW_LEN];
        if hex::decode_exact(nonce.as_bytes(), &mut raw).is_none() {
            return NonceCheck::Invalid;
        }
        let (issued_bytes, rest) = raw.split_at(ISSUED_LEN);
        let (salt_bytes, mac_bytes) = rest.split_at(SALT_LEN);
        let mut issued = [0u8; ISSUED_LEN];
        issued.copy_from_slice(issued_bytes);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(salt_bytes);
        let key = NonceKey {
            issued: u32::from_be_bytes(issued),
            salt: u64::from_be_bytes(salt),
        };
        let expected = self.mac(key.issued, key.salt, client, realm);
        if !hex::constant_time_eq(&expected, mac_bytes) {
            return NonceCheck::Invalid;
        }
        let elapsed = now.saturating_duration_since(self.epoch);
        let issued_at = Duration::from_secs(u64::from(key.issued));
        if issued_at > elapsed {
            // Only possible if the secret outlived a restart; never trust it.
            return NonceCheck::Invalid;
        }
        if elapsed >= issued_at.saturating_add(self.lifetime) {
            NonceCheck::Expired(key)
        } else {
            NonceCheck::Fresh(key)
        }
    }
}

/// HMAC keyed with `secret`. Builds the key block as HMAC itself would (RFC 2104 2: hash
/// keys longer than a block, zero-pad the rest), which keeps construction infallible.
fn keyed_hmac(secret: &[u8]) -> HmacSha256 {
    let mut block = [0u8; 64];
    if secret.len() > block.len() {
        let hashed = Sha256::digest(secret);
        for (slot, byte) in block.iter_mut().zip(hashed.iter()) {
            *slot = *byte;
        }
    } else {
        for (slot, byte) in block.iter_mut().zip(secret) {
            *slot = *byte;
        }
    }
    <HmacSha256 as hmac::digest::KeyInit>::new(&block.into())
}

fn derive(keyed_mac: &HmacSha256, label: &[u8]) -> [u8; 32] {
    let mut mac = keyed_mac.clone();
    mac.update(b"D");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn codec(epoch: Instant) -> NonceCodec {
        NonceCodec::new(
            b"0123456789abcdef0123456789abcdef",
            epoch,
            Duration::from_secs(300),
        )
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn text(nonce: &[u8; NONCE_TEXT_LEN]) -> &str {
        std::str::from_utf8(nonce).unwrap()
    }

    #[test]
    fn keyed_hmac_matches_hmac_of_the_secret() {
        for secret in [&b"short"[..], &[7u8; 64][..], &[9u8; 100][..]] {
            let mut ours = keyed_hmac(secret);
            let mut reference = HmacSha256::new_from_slice(secret).unwrap();
            ours.update(b"x");
            reference.update(b"x");
            assert_eq!(
                ours.finalize().into_bytes(),
                reference.finalize().into_bytes()
            );
        }
    }

    #[test]
    fn fresh_then_expired() {
        let epoch = Instant::now();
        let mut codec = codec(epoch);
        let issued_at = epoch + Duration::from_secs(10);
        let nonce = codec.issue(issued_at, "Example.com", CLIENT);
        assert_eq!(text(&nonce).len(), NONCE_TEXT_LEN);
        let key = match codec.check(issued_at, text(&nonce), "example.COM", CLIENT) {
            NonceCheck::Fresh(key) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key.issued, 10);
        assert_eq!(
            codec.check(
                issued_at + Duration::from_secs(299),
                text(&nonce),
                "example.com",
                CLIENT
            ),
            NonceCheck::Fresh(key)
        );
        assert_eq!(
            codec.check(
                issued_at + Duration::from_secs(300),
                text(&nonce),
                "example.com",
                CLIENT
            ),
            NonceCheck::Expired(key)
        );
    }

    #[test]
    fn rejects_tampering_other_realms_and_secrets() {
        let epoch = Instant::now();
        let mut codec = codec(epoch);
        let nonce = codec.issue(epoch, "example.com", CLIENT);
        assert_eq!(
            codec.check(epoch, text(&nonce), "other.com", CLIENT),
            NonceCheck::Invalid
        );
        let mut tampered = nonce;
        tampered[7] = if tampered[7] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            codec.check(epoch, text(&tampered), "example.com", CLIENT),
            NonceCheck::Invalid
        );
        assert_eq!(
            codec.check(epoch, "zz", "example.com", CLIENT),
            NonceCheck::Invalid
        );
        let other = NonceCodec::new(b"another secret", epoch, Duration::from_secs(300));
        assert_eq!(
            other.check(epoch, text(&nonce), "example.com", CLIENT),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn a_nonce_is_valid_only_from_the_address_it_was_issued_to() {
        let epoch = Instant::now();
        let mut codec = codec(epoch);
        let nonce = codec.issue(epoch, "example.com", CLIENT);
        let elsewhere = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(
            codec.check(epoch, text(&nonce), "example.com", elsewhere),
            NonceCheck::Invalid
        );
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert!(matches!(
            codec.check(epoch, text(&nonce), "example.com", mapped),
            NonceCheck::Fresh(_)
        ));
    }

    #[test]
    fn nonces_differ() {
        let epoch = Instant::now();
        let mut codec = codec(epoch);
        assert_ne!(
            codec.issue(epoch, "r", CLIENT),
            codec.issue(epoch, "r", CLIENT)
        );
    }
}
