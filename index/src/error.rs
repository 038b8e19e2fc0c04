//! The index's error type.

use std::path::PathBuf;

/// Everything that can go wrong with a catalog on disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said (in the message, not chained
        /// beneath it, so that a report of the chain says it once).
        error: std::io::Error,
    },
    /// A file failed its checksum or does not have the expected layout.
    #[error("{path}: corrupt index: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The catalog was written by an incompatible version of earmark.
    #[error("{path}: index format {found} is not supported (this build reads {supported})")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version on disk.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// Another process is writing to the catalog.
    #[error("{path}: the catalog is locked by another writer")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// No catalog exists in the directory.
    #[error("{path}: no catalog here (create one with `earmark index add`)")]
    Missing {
        /// The directory.
        path: PathBuf,
    },
    /// A value is larger than the format can hold.
    #[error("{what} exceeds the limit of {max}")]
    Limit {
        /// What was too large.
        what: String,
        /// The limit.
        max: u64,
    },
    /// A track is already in the catalog.
    #[error("{0}")]
    Duplicate(String),
    /// A metadata or licence file has a bad value.
    #[error("{path}: line {line}, field {field}: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line of the file, from 1.
        line: usize,
        /// The column or key.
        field: String,
        /// What is wrong.
        what: String,
    },
    /// A request names something that is not in the catalog.
    #[error("{0}")]
    NotFound(String),
}

/// Result alias for the index.
pub type Result<T> = std::result::Result<T, Error>;

/// Wraps an I/O error with the path it concerns.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_owned(),
        error,
    }
}
