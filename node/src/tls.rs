//! TLS set-up, server side: the certificate from user PEM files or a self-signed one kept in
//! the data directory, and, when federations are configured, client certificates checked
//! against their CAs (offered, not required: phones connect without one). The client side
//! is [`crate::tls_client`].

use crate::config::{ConfigError, TlsFiles};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
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
/// data directory, generating it on first start for `hosts` (names or IP addresses). A
/// client certificate issued under one of `client_cas` marks its connection as an
/// authenticated peer; clients without one are still accepted.
pub fn server_config(
    files: Option<&TlsFiles>,
    data_dir: &Path,
    hosts: &[String],
    client_cas: &[PathBuf],
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
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("TLS: {e}")))?;
    let builder = if client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for ca in client_cas {
            crate::tls_client::add_cas(&mut roots, ca)?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| ConfigError(format!("TLS client CAs: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        ConfigError(format!(
            "TLS certificate {} and key {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    Ok(Arc::new(config))
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
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

pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        server_config(None, dir.path(), &["127.0.0.1".into()], &[]).unwrap();
        let paths = generated_paths(dir.path());
        let first = std::fs::read(&paths.cert).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        server_config(None, dir.path(), &[], &[]).unwrap();
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
        let err = server_config(Some(&files), dir.path(), &[], &[])
            .unwrap_err()
            .0;
        assert!(err.contains(&cert.display().to_string()), "{err}");
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[tokio::test]
    async fn client_accepts_self_signed_contact() {
        let dir = tempfile::tempdir().unwrap();
        let server = server_config(None, dir.path(), &[], &[]).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        // A contact's address (not named by routing): the lenient verifier.
        let clients = crate::tls_client::TlsClients::new(&[], &[]).unwrap();
        let (connector, name) = clients.connector_for("127.0.0.1:5061".parse().unwrap());
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server_task = tokio::spawn(async move {
            let mut stream = acceptor.accept(server_io).await.unwrap();
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.unwrap();
            stream.write_all(&buf).await.unwrap();
            stream.flush().await.unwrap();
        });
        let mut client = connector.connect(name, client_io).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        client.flush().await.unwrap();
        let mut echoed = [0u8; 4];
        client.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"ping");
        server_task.await.unwrap();
    }
}
