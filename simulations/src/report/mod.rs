//! Outputs of a run: the report files (JSON, CSV, SVG plots), the terminal summary table
//! and the progress display shown while the run goes on.

mod files;
mod model;
mod plots;
mod progress;
mod table;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use files::{summary_csv_header, summary_csv_row, write_report_files};
pub use model::*;
pub use progress::Progress;
pub use table::summary_table;

/// Why writing a report file failed; every variant names the file (or directory).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("creating report directory {}: {source}", .path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("serialising {}: {source}", .path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("drawing {}: {message}", .path.display())]
    Plot { path: PathBuf, message: String },
}
