//! The text form of delegations, and the delegation file a node operator is handed: one
//! delegation per line, each the base58 (bitcoin alphabet) of the standalone encoding
//! ([`Delegation::encode`]); blank lines and lines starting with `#` are ignored.

use super::Delegation;
use crate::record::RecordError;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Longest delegation text accepted, checked before decoding (base58 of
/// [`MAX_DELEGATION_BYTES`](super::MAX_DELEGATION_BYTES) is at most 1399 characters).
pub const MAX_DELEGATION_TEXT: usize = 1400;
/// Largest delegation file read.
pub const MAX_DELEGATION_FILE_BYTES: u64 = 64 * 1024;
/// Most delegations one file may hold.
pub const MAX_DELEGATIONS_PER_FILE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum DelegationFileError {
    #[error("delegation file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("delegation file {path}: larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("delegation file {path}: not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("delegation file {path}, line {line}: {reason}")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("delegation file {path}: more than {limit} delegations")]
    TooMany { path: PathBuf, limit: usize },
    #[error("delegation file {path}: holds no delegation")]
    Empty { path: PathBuf },
}

impl Delegation {
    /// One line of a delegation file: base58 of [`Delegation::encode`].
    pub fn to_text(&self) -> Result<String, RecordError> {
        Ok(bs58::encode(self.encode()?).into_string())
    }

    /// Parses [`Delegation::to_text`]'s form (surrounding whitespace ignored). The signature
    /// is not checked here; see [`Delegation::verify`].
    pub fn from_text(text: &str) -> Result<Delegation, RecordError> {
        let text = text.trim();
        if text.len() > MAX_DELEGATION_TEXT {
            return Err(RecordError::Malformed(format!(
                "delegation text longer than {MAX_DELEGATION_TEXT} characters"
            )));
        }
        let bytes = bs58::decode(text)
            .into_vec()
            .map_err(|e| RecordError::Malformed(format!("delegation text is not base58: {e}")))?;
        Delegation::decode(&bytes)
    }
}

/// A delegation read from a file, with the line it came from (1-based) for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationLine {
    pub line: usize,
    pub delegation: Delegation,
}

/// Parses the text of a delegation file; `path` only names the file in errors. A file
/// without any delegation is an error, so an empty or truncated file is noticed.
pub fn parse_delegation_file(
    path: &Path,
    text: &str,
) -> Result<Vec<DelegationLine>, DelegationFileError> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if found.len() == MAX_DELEGATIONS_PER_FILE {
            return Err(DelegationFileError::TooMany {
                path: path.to_owned(),
                limit: MAX_DELEGATIONS_PER_FILE,
            });
        }
        let delegation =
            Delegation::from_text(line).map_err(|error| DelegationFileError::BadLine {
                path: path.to_owned(),
                line: index + 1,
                reason: error.to_string(),
            })?;
        found.push(DelegationLine {
            line: index + 1,
            delegation,
        });
    }
    if found.is_empty() {
        return Err(DelegationFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(found)
}

/// Reads and parses a delegation file (at most [`MAX_DELEGATION_FILE_BYTES`]).
pub fn read_delegation_file(path: &Path) -> Result<Vec<DelegationLine>, DelegationFileError> {
    let io_error = |source| DelegationFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_DELEGATION_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_DELEGATION_FILE_BYTES {
        return Err(DelegationFileError::TooLarge {
            path: path.to_owned(),
            limit: MAX_DELEGATION_FILE_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| DelegationFileError::NotText {
        path: path.to_owned(),
    })?;
    parse_delegation_file(path, &text)
}
