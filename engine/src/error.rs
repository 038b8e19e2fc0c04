//! The engine's error type.

use std::path::PathBuf;

/// Everything that can go wrong while turning audio into landmarks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said (in the message, not chained
        /// beneath it, so that a report of the chain says it once).
        error: std::io::Error,
    },
    /// The file is not audio that earmark can decode.
    #[error("{path}: {reason}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Why it cannot be decoded.
        reason: String,
    },
    /// The file is audio but is damaged beyond what decoding can skip over.
    #[error("{path}: corrupt audio: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// An input is larger or stranger than the configured limits allow.
    #[error("{what} exceeds the limit of {max}")]
    Limit {
        /// What was too large.
        what: String,
        /// The limit.
        max: u64,
    },
}

/// Result alias for the engine.
pub type Result<T> = std::result::Result<T, Error>;
