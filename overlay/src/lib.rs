//! The p2psip overlay: registrations stored, signed, in a Kademlia DHT under
//! `kind byte + sha1("user@domain")`, domain authority delegations that decide who may
//! write a user's record, and SIP messages carried between nodes over libp2p streams.
//!
//! - [`key`], [`record`], [`authority`], [`validate`]: the data model and its checks, pure
//!   and synchronous; every node runs the same validation before storing a record and after
//!   fetching one. The wire format is documented in `overlay/WIRE.md`.
//! - [`network`]: the libp2p swarm (Kademlia, identify, ping, mDNS, AutoNAT, relay, DCUtR
//!   and the SIP stream protocol) behind an async handle used by the node.

pub mod authority;
pub mod key;
pub mod network;
pub mod record;
pub mod sip_name;
pub mod validate;
