//! Sans-IO NAT traversal for p2psip: bytes and addresses in, bytes out; no sockets, no
//! clock. Today: the STUN binding service (RFC 8489) that answers keepalives and address
//! discovery on a node's SIP UDP port (RFC 5626 4.4.2). RFC 5780 discovery, TURN and the
//! media relay build on it.

pub mod stun;
