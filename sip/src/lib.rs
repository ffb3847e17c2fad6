//! Sans-IO SIP for p2psip.
//!
//! Nothing in this crate touches a socket, a task or a clock: every entry point takes the
//! bytes that arrived and the current [`std::time::Instant`], and the caller drains what to
//! send with `poll_*` methods and the next deadline with `poll_timeout`. The `p2psip` binary
//! wires these cores to tokio sockets; tests drive them with virtual time.

pub mod auth;
pub mod message;
pub mod registrar;
pub mod server;
pub mod transaction;
pub mod transport;
