//! Outbound TLS: which certificate a server must present, and which identity this node
//! shows.
//!
//! A server the routing chain found (a provider through RFC 3263, a peering gateway, a
//! federation's ingress) is reached by name: its certificate must be valid for that SIP
//! domain (RFC 5922) under the system's roots plus the configured `tls_ca` files, or, for
//! a federation, under the federation's CA; toward a federation the node shows the
//! federation's client certificate. The chain's answers name these targets by address in
//! a bounded table ([`TLS_TARGETS`]); an address not in it (a phone's registered contact,
//! reached by IP address when its own connection is gone) gets the lenient verifier:
//! phones present self-signed certificates, if any.

use crate::config::ConfigError;
use crate::lru::LruMap;
use crate::routing::policy::Federation;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_rustls::TlsConnector;

/// Addresses whose TLS identity is remembered; the least recently routed are forgotten
/// (a connection to one then gets the lenient verifier, as for a contact).
pub const TLS_TARGETS: usize = 16_384;

/// What a TLS server at some address must be, from the routing chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsTarget {
    /// The name its certificate must carry.
    pub name: String,
    /// The federation whose CA and client certificate apply.
    pub federation: Option<String>,
}

/// The connectors for outbound TLS and the targets the routing chain named.
pub struct TlsClients {
    verified: TlsConnector,
    lenient: TlsConnector,
    federations: HashMap<String, TlsConnector>,
    targets: Mutex<LruMap<SocketAddr, TlsTarget>>,
}

impl TlsClients {
    /// Builds the connectors: system roots plus `extra_cas` for named servers; each
    /// federation's CA and client certificate for its members.
    pub fn new(
        extra_cas: &[PathBuf],
        federations: &[Federation],
    ) -> Result<TlsClients, ConfigError> {
        let provider = provider();
        // The system's roots are read once, here: named servers trust them, and so do
        // federations without a CA of their own.
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "a system trust root could not be read");
        }
        let mut system = RootCertStore::empty();
        let (_added, _ignored) = system.add_parsable_certificates(native.certs);
        let mut roots = system.clone();
        for path in extra_cas {
            add_cas(&mut roots, path)?;
        }
        let verified = client(provider.clone(), roots, None)?;
        let mut by_id = HashMap::new();
        for federation in federations {
            let roots = match &federation.tls_ca {
                Some(ca) => {
                    let mut roots = RootCertStore::empty();
                    add_cas(&mut roots, ca)?;
                    roots
                }
                None => system.clone(),
            };
            let identity = match (&federation.tls_cert, &federation.tls_key) {
                (Some(cert), Some(key)) => {
                    Some((crate::tls::read_certs(cert)?, crate::tls::read_key(key)?))
                }
                _ => None,
            };
            by_id.insert(
                federation.id.clone(),
                client(provider.clone(), roots, identity)?,
            );
        }
        let lenient = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCertificate { provider }))
            .with_no_client_auth();
        Ok(TlsClients {
            verified,
            lenient: TlsConnector::from(Arc::new(lenient)),
            federations: by_id,
            targets: Mutex::new(LruMap::new(TLS_TARGETS)),
        })
    }

    /// Remembers what the server at `addr` must be.
    pub fn remember(&self, addr: SocketAddr, target: TlsTarget) {
        if let Ok(mut targets) = self.targets.lock() {
            targets.insert(addr, target);
        }
    }

    /// The connector and server name for a new connection to `addr`.
    pub fn connector_for(&self, addr: SocketAddr) -> (TlsConnector, ServerName<'static>) {
        let target = self
            .targets
            .lock()
            .ok()
            .and_then(|mut targets| targets.get_mut(&addr).cloned());
        let Some(target) = target else {
            return (
                self.lenient.clone(),
                ServerName::IpAddress(addr.ip().into()),
            );
        };
        let connector = target
            .federation
            .as_ref()
            .and_then(|id| self.federations.get(id))
            .unwrap_or(&self.verified)
            .clone();
        match ServerName::try_from(target.name.clone()) {
            Ok(name) => (connector, name),
            Err(_) => (connector, ServerName::IpAddress(addr.ip().into())),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client(
    provider: Arc<CryptoProvider>,
    roots: RootCertStore,
    identity: Option<(
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<TlsConnector, ConfigError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| ConfigError(format!("TLS client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Adds every certificate of the PEM file at `path` to `roots`.
pub fn add_cas(roots: &mut RootCertStore, path: &Path) -> Result<(), ConfigError> {
    for cert in crate::tls::read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| ConfigError(format!("TLS CA {}: {e}", path.display())))?;
    }
    Ok(())
}

/// For contacts only (see the module documentation): accepts any certificate chain, but
/// still checks the handshake signatures.
#[derive(Debug)]
struct AnyServerCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
