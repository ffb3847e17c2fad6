//! TLS set-up: the server side from user PEM files or a self-signed certificate kept in the
//! data directory, and the client side used for outbound TLS connections to phones.

use crate::config::{ConfigError, TlsFiles};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where the generated certificate lives: `<data-dir>/tls/cert.pem` and `key.pem`.
pub fn generated_paths(data_dir: &Path) -> TlsFiles {
    let dir = data_dir.join("tls");
    TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

/// Builds the TLS server configuration. With no user files, reuses the certificate in the
/// data directory, generating it on first start for `hosts` (names or IP addresses).
pub fn server_config(
    files: Option<&TlsFiles>,
    data_dir: &Path,
    hosts: &[String],
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let files = match files {
        Some(files) => files.clone(),
        None => {
            let generated = generated_paths(data_dir);
            if !(generated.cert.exists() && generated.key.exists()) {
                generate_self_signed(&generated, hosts)?;
                tracing::info!(cert = %generated.cert.display(), "generated self-signed TLS certificate");
            }
            generated
        }
    };
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ConfigError(format!(
                "TLS certificate {} and key {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let err = |reason: String| ConfigError(format!("TLS certificate {}: {reason}", path.display()));
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate found".to_string()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let err = |reason: String| ConfigError(format!("TLS key {}: {reason}", path.display()));
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("no PEM private key found".to_string()))
}

fn generate_self_signed(files: &TlsFiles, hosts: &[String]) -> Result<(), ConfigError> {
    let mut names = vec!["localhost".to_string()];
    names.extend(
        hosts
            .iter()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string()),
    );
    names.dedup();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ConfigError(format!("TLS: cannot generate a certificate: {e}")))?;
    let io_err = |path: &PathBuf, e: std::io::Error| {
        ConfigError(format!("TLS: cannot write {}: {e}", path.display()))
    };
    if let Some(dir) = files.cert.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_err(&dir.to_path_buf(), e))?;
    }
    write_private(&files.key, generated.key_pair.serialize_pem().as_bytes())
        .map_err(|e| io_err(&files.key, e))?;
    std::fs::write(&files.cert, generated.cert.pem()).map_err(|e| io_err(&files.cert, e))?;
    Ok(())
}

/// Writes a file readable by the owner only.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        // The mode above applies only when the file is created.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(contents)
    }
    #[cfg(not(unix))]
    {
        options.open(path)?.write_all(contents)
    }
}

/// Client configuration for outbound TLS connections.
///
/// The node has no trust roots to check a phone's certificate against (phones present
/// self-signed certificates, if any, and are reached by IP address), so this verifier
/// accepts any server certificate while still checking handshake signatures. It is used
/// only for outbound connections to registered contacts, never for node-to-node trust.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate { provider }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// See [`client_config`]: accepts any certificate chain, verifies signatures.
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        server_config(None, dir.path(), &["127.0.0.1".into()]).unwrap();
        let paths = generated_paths(dir.path());
        let first = std::fs::read(&paths.cert).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        server_config(None, dir.path(), &[]).unwrap();
        assert_eq!(std::fs::read(&paths.cert).unwrap(), first);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not pem").unwrap();
        let files = TlsFiles {
            cert: cert.clone(),
            key: dir.path().join("missing.pem"),
        };
        let err = server_config(Some(&files), dir.path(), &[]).unwrap_err().0;
        assert!(err.contains(&cert.display().to_string()), "{err}");
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[tokio::test]
    async fn client_accepts_self_signed_server() {
        let dir = tempfile::tempdir().unwrap();
        let server = server_config(None, dir.path(), &[]).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(client_config().unwrap());
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server_task = tokio::spawn(async move {
            let mut stream = acceptor.accept(server_io).await.unwrap();
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.unwrap();
            stream.write_all(&buf).await.unwrap();
            stream.flush().await.unwrap();
        });
        let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let mut client = connector.connect(name, client_io).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        client.flush().await.unwrap();
        let mut echoed = [0u8; 4];
        client.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"ping");
        server_task.await.unwrap();
    }
}
