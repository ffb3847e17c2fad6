//! The STUN binding service: a Binding request gets a success response naming the address
//! it came from (XOR-MAPPED-ADDRESS), with a FINGERPRINT, so a phone keeping its NAT
//! mapping open on the SIP port (RFC 5626 4.4.2) or a client discovering its reflexive
//! address learns where it is seen. Other STUN messages (indications, responses, unknown
//! methods) are dropped; malformed ones too, with a reason for the caller's counters.

use std::net::SocketAddr;
use stun_rs::attributes::stun::{Fingerprint, Software, XorMappedAddress};
use stun_rs::methods::BINDING;
use stun_rs::{MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessageBuilder};

/// Largest response this service writes (header, XOR-MAPPED-ADDRESS for IPv6, SOFTWARE,
/// FINGERPRINT, with room to spare).
const RESPONSE_BUFFER: usize = 128;

/// The SOFTWARE attribute of responses (RFC 8489 14.14).
const SOFTWARE: &str = "p2psip";

/// True when `datagram` is a STUN message rather than SIP: the first two bits zero and the
/// magic cookie at bytes 4 to 8 (RFC 8489 5; RFC 7983's demultiplexing). A SIP message
/// starts with a letter, so the two never collide.
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20
        && datagram[0] & 0xc0 == 0
        && datagram[4..8] == stun_rs::MAGIC_COOKIE.as_u32().to_be_bytes()
}

/// Why a STUN datagram got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error("malformed STUN message: {0}")]
    Malformed(String),
    #[error("not a Binding request")]
    NotBindingRequest,
    #[error("response could not be encoded: {0}")]
    Encode(String),
}

/// The answer to a STUN datagram from `source`: a Binding success response, or why none.
pub fn answer_binding(datagram: &[u8], source: SocketAddr) -> Result<Vec<u8>, Dropped> {
    let decoder = MessageDecoderBuilder::default().build();
    let (request, _) = decoder
        .decode(datagram)
        .map_err(|error| Dropped::Malformed(format!("{error:?}")))?;
    if request.method() != BINDING || request.class() != MessageClass::Request {
        return Err(Dropped::NotBindingRequest);
    }
    let software = Software::new(SOFTWARE).map_err(|e| Dropped::Encode(format!("{e:?}")))?;
    let response = StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
        .with_transaction_id(*request.transaction_id())
        .with_attribute(XorMappedAddress::from(canonical(source)))
        .with_attribute(software)
        .with_attribute(Fingerprint::default())
        .build();
    let encoder = MessageEncoderBuilder::default().build();
    let mut buffer = [0u8; RESPONSE_BUFFER];
    let size = encoder
        .encode(&mut buffer, &response)
        .map_err(|error| Dropped::Encode(format!("{error:?}")))?;
    Ok(buffer.get(..size).unwrap_or_default().to_vec())
}

/// An IPv4-mapped IPv6 source (a dual-stack socket) is reported as the IPv4 address it is.
fn canonical(source: SocketAddr) -> SocketAddr {
    SocketAddr::new(source.ip().to_canonical(), source.port())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use stun_rs::TransactionId;

    fn binding_request(id: [u8; 12]) -> Vec<u8> {
        let request = StunMessageBuilder::new(BINDING, MessageClass::Request)
            .with_transaction_id(TransactionId::from(id))
            .with_attribute(Fingerprint::default())
            .build();
        let mut buffer = [0u8; 64];
        let size = MessageEncoderBuilder::default()
            .build()
            .encode(&mut buffer, &request)
            .unwrap();
        buffer[..size].to_vec()
    }

    #[test]
    fn a_binding_request_learns_where_it_came_from() {
        for source in [
            "198.51.100.7:40000",
            "[2001:db8::7]:5062",
            "[::ffff:192.0.2.9]:5060",
        ] {
            let source: SocketAddr = source.parse().unwrap();
            let request = binding_request([7; 12]);
            assert!(is_stun(&request));
            let response = answer_binding(&request, source).unwrap();
            let (decoded, _) = MessageDecoderBuilder::default()
                .build()
                .decode(&response)
                .unwrap();
            assert_eq!(decoded.class(), MessageClass::SuccessResponse);
            assert_eq!(decoded.transaction_id().as_bytes(), &[7; 12]);
            let mapped = decoded
                .get::<XorMappedAddress>()
                .unwrap()
                .as_xor_mapped_address()
                .unwrap();
            assert_eq!(*mapped.socket_address(), canonical(source));
            assert!(decoded.get::<Fingerprint>().is_some());
        }
    }

    /// RFC 5769 2.1: the sample request decodes (its FINGERPRINT and MESSAGE-INTEGRITY
    /// are those of the RFC) and is answered.
    #[test]
    fn the_rfc_5769_sample_request_is_answered() {
        let sample: [u8; 108] = [
            0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e,
            0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24,
            0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1,
            0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68,
            0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c,
            0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5,
            0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
        ];
        assert!(is_stun(&sample));
        let response = answer_binding(&sample, "192.0.2.1:32853".parse().unwrap()).unwrap();
        assert_eq!(
            &response[8..20],
            &sample[8..20],
            "the transaction id is kept"
        );
    }

    #[test]
    fn sip_and_garbage_are_told_apart() {
        assert!(!is_stun(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"));
        assert!(!is_stun(&[0u8; 19]));
        let mut broken = binding_request([1; 12]);
        broken.truncate(24);
        assert!(is_stun(&broken), "the header says STUN");
        assert!(matches!(
            answer_binding(&broken, "192.0.2.1:1".parse().unwrap()),
            Err(Dropped::Malformed(_))
        ));
        let mut indication = binding_request([2; 12]);
        indication[1] = 0x11; // class bits: indication
        assert!(answer_binding(&indication, "192.0.2.1:1".parse().unwrap()).is_err());
    }
}
