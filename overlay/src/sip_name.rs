//! Names of overlay nodes inside SIP: a node appears in Via, Record-Route and Route as
//! `<base32 of its peer id>.p2p.invalid` with `transport=p2p`. Peer ids in their usual
//! base58 form are case-sensitive, SIP host names are not, so the name uses lower-case
//! RFC 4648 base32 without padding (61 characters for an Ed25519 peer id: one DNS label).
//! `.invalid` (RFC 6761) guarantees the name is never looked up in DNS.

use libp2p::PeerId;

/// The domain every overlay node name ends with.
pub const OVERLAY_DOMAIN: &str = "p2p.invalid";

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The SIP host name of an overlay node.
pub fn host_name(peer: &PeerId) -> String {
    let bytes = peer.to_bytes();
    let mut name = String::with_capacity(bytes.len() * 8 / 5 + 2 + OVERLAY_DOMAIN.len());
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            name.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        name.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    name.push('.');
    name.push_str(OVERLAY_DOMAIN);
    name
}

/// The peer id behind an overlay host name (any case), or `None` if it is not one.
pub fn peer_of_host(host: &str) -> Option<PeerId> {
    let label = host
        .len()
        .checked_sub(OVERLAY_DOMAIN.len() + 1)
        .and_then(|end| {
            let (label, rest) = host.split_at_checked(end)?;
            rest.strip_prefix('.')
                .filter(|domain| domain.eq_ignore_ascii_case(OVERLAY_DOMAIN))
                .map(|_| label)
        })?;
    let mut bytes = Vec::with_capacity(label.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in label.bytes() {
        let value = ALPHABET.iter().position(|a| *a == c.to_ascii_lowercase())?;
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
        }
    }
    // Only node ids that carry their Ed25519 key name overlay nodes (records are verified
    // against that key), which also rejects short labels that happen to decode.
    let peer = PeerId::from_bytes(&bytes).ok()?;
    crate::record::peer_public_key(&peer)?;
    (host_name(&peer).eq_ignore_ascii_case(host)).then_some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    #[test]
    fn round_trip_and_case_insensitive() {
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        let name = host_name(&peer);
        assert!(name.ends_with(".p2p.invalid"));
        let label = name.split('.').next().unwrap();
        assert!(label.len() <= 63, "one DNS label: {}", label.len());
        assert_eq!(peer_of_host(&name), Some(peer));
        assert_eq!(peer_of_host(&name.to_ascii_uppercase()), Some(peer));
    }

    #[test]
    fn other_names_are_not_peers() {
        assert_eq!(peer_of_host("example.com"), None);
        assert_eq!(peer_of_host("p2p.invalid"), None);
        assert_eq!(peer_of_host(".p2p.invalid"), None);
        assert_eq!(peer_of_host("0189.p2p.invalid"), None);
        assert_eq!(peer_of_host("aaaa.p2p.invalid"), None);
    }
}
