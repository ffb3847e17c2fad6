//! SIP NAT handling for phones that do not do ICE:
//! - the `received` and `rport` parameters of the top Via (RFC 3261 18.2.1, RFC 3581), so
//!   that responses and the phone itself see the address the request really came from;
//! - a UDP binding whose Contact names a private address other than its REGISTER's source
//!   is reached at that source, the flow the phone's NAT keeps open (as Kamailio's
//!   fix_nated_register and received-alias handling do);
//! - CRLF keepalives on UDP are taken quietly, not counted as bad messages.

use super::SipServer;
use crate::message::uri::Uri;
use crate::message::{HeaderName, Message, MessageEditor};
use crate::transport::{is_private_address, Peer, Transport};
use std::net::IpAddr;

impl SipServer {
    /// The request with `received` and `rport` filled in on its top Via, when the sender
    /// asked for rport or its sent-by is not the address the request came from; None when
    /// the Via is right as it is (or the request came over the overlay, which has no
    /// addresses).
    pub(super) fn with_received(msg: &Message<'_>, from: Peer) -> Option<Vec<u8>> {
        if from.transport == Transport::Overlay {
            return None;
        }
        let via = msg.top_via()?.ok()?;
        let source = from.remote.ip().to_canonical();
        let sent_by_is_source = via
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical() == source);
        let wants_rport = via.rport().is_some();
        if sent_by_is_source && !wants_rport {
            return None;
        }
        let prefix = via.raw.split(';').next().unwrap_or(via.raw).trim_end();
        let mut value = String::with_capacity(via.raw.len() + 48);
        value.push_str(prefix);
        for (name, param) in via.params.iter() {
            if name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("rport") {
                continue;
            }
            value.push(';');
            value.push_str(name);
            if let Some(param) = param {
                value.push('=');
                value.push_str(param);
            }
        }
        // RFC 3581 4: with rport, received is added even when sent-by is the source.
        value.push_str(";received=");
        value.push_str(&source.to_string());
        if wants_rport {
            value.push_str(";rport=");
            value.push_str(&from.remote.port().to_string());
        }
        let mut editor = MessageEditor::new(msg);
        editor.remove_first_value(HeaderName::Via);
        editor.prepend_header("Via", &value);
        Some(editor.finish())
    }
}

/// True for a UDP datagram that is only a keepalive: CR and LF, nothing else (RFC 5626
/// 4.4.1 defines CRLF keepalives for streams; phones send them over UDP too).
pub(super) fn is_crlf_keepalive(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len() <= 8 && bytes.iter().all(|b| matches!(b, b'\r' | b'\n'))
}

/// True when a binding registered from `source` with this Contact sits behind a NAT: the
/// Contact names a private address (RFC 1918, shared address space, unique-local or
/// link-local) that is not the source's. Such a contact cannot be reached from here; the
/// REGISTER's source, the NAT's mapping, can.
pub(super) fn contact_behind_nat(contact: &Uri<'_>, source: Peer) -> bool {
    let Ok(ip) = contact
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return false;
    };
    let ip = ip.to_canonical();
    ip != source.remote.ip().to_canonical() && is_private_address(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(remote: &str) -> Peer {
        Peer {
            transport: Transport::Udp,
            remote: remote.parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            connection: None,
        }
    }

    #[test]
    fn private_contacts_other_than_the_source_are_behind_nat() {
        let behind = |contact: &str, source: &str| {
            contact_behind_nat(&Uri::parse(contact).unwrap(), peer(source))
        };
        assert!(behind("sip:bob@192.168.1.5:5060", "198.51.100.7:40000"));
        assert!(behind("sip:bob@10.0.0.5", "198.51.100.7:40000"));
        assert!(behind("sip:bob@100.64.1.2:5060", "198.51.100.7:40000"));
        assert!(behind("sip:bob@[fd00::5]:5060", "[2001:db8::7]:40000"));
        assert!(
            !behind("sip:bob@192.168.1.5:5060", "192.168.1.5:5062"),
            "same host"
        );
        assert!(
            !behind("sip:bob@203.0.113.9:5060", "198.51.100.7:40000"),
            "public contact"
        );
        assert!(!behind("sip:bob@phone.example.com", "198.51.100.7:40000"));
    }

    #[test]
    fn keepalives_are_only_line_ends() {
        assert!(is_crlf_keepalive(b"\r\n\r\n"));
        assert!(is_crlf_keepalive(b"\r\n"));
        assert!(!is_crlf_keepalive(b""));
        assert!(!is_crlf_keepalive(b"\r\nX"));
    }
}
