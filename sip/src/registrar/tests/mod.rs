//! Registrar tests with virtual time. Plain-data tests compare URIs byte for byte; the
//! URI equivalence rules proper go through the parser in `message`.

#![allow(clippy::unwrap_used)]

mod bulk;
mod identity;
mod message;
mod rules;
mod table;

use super::*;
use crate::transport::{ConnectionId, Transport};
use std::net::SocketAddr;

pub(super) fn policy() -> RegistrarPolicy {
    RegistrarPolicy {
        min_expires: 60,
        max_expires: 7200,
        default_expires: 3600,
        max_aors: 100,
        max_bindings_per_aor: 4,
        table_full_retry_after: 30,
    }
}

pub(super) fn table_with(policy: &RegistrarPolicy) -> LocationTable {
    LocationTable::for_policy(policy)
}

/// The default policy, an empty table for it, and the current instant.
pub(super) fn setup() -> (RegistrarPolicy, LocationTable, Instant) {
    let policy = policy();
    let table = table_with(&policy);
    (policy, table, Instant::now())
}

pub(super) fn udp(port: u16) -> Peer {
    Peer {
        transport: Transport::Udp,
        remote: SocketAddr::from(([192, 0, 2, 1], port)),
        local: SocketAddr::from(([198, 51, 100, 1], 5060)),
        connection: None,
    }
}

pub(super) fn tcp(port: u16, connection: u64) -> Peer {
    Peer {
        transport: Transport::Tcp,
        connection: Some(ConnectionId(connection)),
        ..udp(port)
    }
}

pub(super) fn request<'a>(
    aor: &str,
    call_id: &'a str,
    cseq: u32,
    expires: Option<u32>,
    contacts: &[ContactSpec<'a>],
) -> RegisterRequest<'a> {
    RegisterRequest {
        aor: aor.to_string(),
        call_id,
        cseq,
        expires,
        contacts: contacts.iter().copied().collect(),
    }
}

pub(super) fn contact(uri: &str) -> ContactSpec<'_> {
    ContactSpec::Address(ContactUpdate::new(uri))
}

pub(super) fn contact_with(uri: &str, f: impl FnOnce(&mut ContactUpdate<'_>)) -> ContactSpec<'_> {
    let mut update = ContactUpdate::new(uri);
    f(&mut update);
    ContactSpec::Address(update)
}

pub(super) fn apply(
    table: &mut LocationTable,
    now: Instant,
    request: RegisterRequest<'_>,
    source: Peer,
    policy: &RegistrarPolicy,
) -> Result<RegisterOutcome, RegisterRejection> {
    table.apply_with(now, request, source, policy, |a, b| a == b)
}

pub(super) fn uris(table: &LocationTable, now: Instant, aor: &str) -> Vec<String> {
    table.lookup(now, aor).map(|b| b.uri.to_string()).collect()
}

pub(super) const ALICE: &str = "alice@example.com";
