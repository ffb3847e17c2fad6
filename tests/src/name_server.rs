//! A DNS name server in the test process: hickory-server's, serving in-memory zones on
//! 127.0.0.1 over UDP and TCP (one port for both), answering the nodes' real DNS queries.

use anyhow::{ensure, Context, Result};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{CNAME, NAPTR, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use hickory_server::Server;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Bound on starting and stopping the name server.
const LIMIT: Duration = Duration::from_secs(5);
/// TTL of every record served.
const TTL: u32 = 300;

/// One zone's records, built up before the server starts.
pub struct Zone {
    origin: Name,
    records: Vec<Record>,
}

impl Zone {
    /// An empty zone (with its SOA) for `origin`, e.g. `"e164.arpa"`.
    pub fn new(origin: &str) -> Result<Zone> {
        let origin = absolute(origin)?;
        let soa = SOA::new(
            Name::from_ascii("ns.invalid.")?,
            Name::from_ascii("hostmaster.invalid.")?,
            1,
            3600,
            600,
            86_400,
            60,
        );
        Ok(Zone {
            records: vec![Record::from_rdata(origin.clone(), 3600, RData::SOA(soa))],
            origin,
        })
    }

    fn push(mut self, owner: &str, data: RData) -> Result<Zone> {
        self.records
            .push(Record::from_rdata(absolute(owner)?, TTL, data));
        Ok(self)
    }

    /// `owner NAPTR order preference "flags" "services" "regexp" replacement`.
    pub fn naptr(
        self,
        owner: &str,
        (order, preference): (u16, u16),
        flags: &str,
        services: &str,
        regexp: &str,
        replacement: &str,
    ) -> Result<Zone> {
        let data = NAPTR::new(
            order,
            preference,
            flags.as_bytes().into(),
            services.as_bytes().into(),
            regexp.as_bytes().into(),
            absolute(replacement)?,
        );
        self.push(owner, RData::NAPTR(data))
    }

    /// `owner SRV priority weight port target`.
    pub fn srv(
        self,
        owner: &str,
        priority: u16,
        weight: u16,
        port: u16,
        target: &str,
    ) -> Result<Zone> {
        let data = SRV::new(priority, weight, port, absolute(target)?);
        self.push(owner, RData::SRV(data))
    }

    /// `owner A address`.
    pub fn a(self, owner: &str, address: Ipv4Addr) -> Result<Zone> {
        self.push(owner, RData::A(address.into()))
    }

    /// `owner CNAME target`.
    pub fn cname(self, owner: &str, target: &str) -> Result<Zone> {
        self.push(owner, RData::CNAME(CNAME(absolute(target)?)))
    }

    /// `owner TXT text`.
    pub fn txt(self, owner: &str, text: &str) -> Result<Zone> {
        self.push(owner, RData::TXT(TXT::new(vec![text.to_string()])))
    }
}

fn absolute(name: &str) -> Result<Name> {
    let name = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(&name).with_context(|| format!("bad DNS name {name:?}"))
}

/// A running name server, stopped when dropped.
pub struct NameServer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    server: Option<Server<Catalog>>,
}

impl NameServer {
    /// Serves `zones` on 127.0.0.1, UDP and TCP on the same free port.
    pub fn start(zones: Vec<Zone>) -> Result<NameServer> {
        NameServer::start_on(zones, true)
    }

    /// Serves `zones` over UDP alone: an answer too big for a datagram arrives truncated
    /// and cannot be fetched again over TCP.
    pub fn start_udp_only(zones: Vec<Zone>) -> Result<NameServer> {
        NameServer::start_on(zones, false)
    }

    fn start_on(zones: Vec<Zone>, tcp: bool) -> Result<NameServer> {
        let mut catalog = Catalog::new();
        for zone in zones {
            let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
                zone.origin.clone(),
                ZoneType::Primary,
                AxfrPolicy::Deny,
            );
            for record in zone.records {
                let described = format!("{record}");
                ensure!(
                    handler.upsert_mut(record, 1),
                    "record not added: {described}"
                );
            }
            catalog.upsert(LowerName::new(&zone.origin), vec![Arc::new(handler)]);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (server, addr) = runtime.block_on(async {
            let mut server = Server::new(catalog);
            // A port free for both UDP and TCP: bind UDP, then TCP on the same number.
            for _ in 0..16 {
                let socket = tokio::time::timeout(
                    LIMIT,
                    tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)),
                )
                .await
                .context("binding the name server's socket took too long")??;
                let addr = socket.local_addr()?;
                if tcp {
                    let Ok(listener) = tokio::net::TcpListener::bind(addr).await else {
                        continue;
                    };
                    server.register_listener(listener, LIMIT, 64);
                }
                server.register_socket(socket);
                return anyhow::Ok((server, addr));
            }
            anyhow::bail!("no port free for both UDP and TCP")
        })?;
        Ok(NameServer {
            addr,
            runtime: Some(runtime),
            server: Some(server),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        if let (Some(runtime), Some(mut server)) = (self.runtime.take(), self.server.take()) {
            runtime.block_on(async {
                let _ = tokio::time::timeout(LIMIT, server.shutdown_gracefully()).await;
            });
            runtime.shutdown_timeout(Duration::from_millis(200));
        }
    }
}
