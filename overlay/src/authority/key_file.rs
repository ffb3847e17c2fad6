//! The domain authority key file: the libp2p protobuf encoding of an Ed25519 keypair,
//! mode 0600.

use libp2p::identity::{KeyType, Keypair};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest authority key file read (its protobuf is 68 bytes).
const MAX_KEY_FILE_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum AuthorityFileError {
    #[error("authority key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("authority key file {path}: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("authority key file {path}: not an Ed25519 key")]
    NotEd25519 { path: PathBuf },
    #[error(
        "authority key file {path}: mode {mode:o} lets others read the secret key; \
         run chmod 600 on it"
    )]
    Permissions { path: PathBuf, mode: u32 },
}

/// A new domain authority key.
pub fn generate_authority_key() -> Keypair {
    Keypair::generate_ed25519()
}

/// Writes `keypair` to `path` (libp2p protobuf encoding, mode 0600). Writes a temporary file
/// beside it and renames it, so a crash never leaves a truncated key behind.
pub fn save_authority_key(path: &Path, keypair: &Keypair) -> Result<(), AuthorityFileError> {
    if keypair.key_type() != KeyType::Ed25519 {
        return Err(AuthorityFileError::NotEd25519 {
            path: path.to_owned(),
        });
    }
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| AuthorityFileError::Decode {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| AuthorityFileError::Io { path, source }
    };
    // A leftover temporary file could have a wider mode; creating afresh sets ours.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(&tmp)(e)),
        _ => {}
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io_error(&tmp))?;
    file.write_all(&bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_error(path))
}

/// Reads a key written by [`save_authority_key`]. Refuses a file that group or others may
/// read, as ssh does for private keys.
pub fn load_authority_key(path: &Path) -> Result<Keypair, AuthorityFileError> {
    let io_error = |source| AuthorityFileError::Io {
        path: path.to_owned(),
        source,
    };
    let metadata = fs::metadata(path).map_err(io_error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuthorityFileError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    if metadata.len() > MAX_KEY_FILE_BYTES {
        return Err(AuthorityFileError::Decode {
            path: path.to_owned(),
            reason: format!("{} bytes is too long for a key", metadata.len()),
        });
    }
    let bytes = fs::read(path).map_err(io_error)?;
    let keypair =
        Keypair::from_protobuf_encoding(&bytes).map_err(|e| AuthorityFileError::Decode {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if keypair.key_type() != KeyType::Ed25519 {
        return Err(AuthorityFileError::NotEd25519 {
            path: path.to_owned(),
        });
    }
    Ok(keypair)
}
