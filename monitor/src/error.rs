//! The monitor's error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while monitoring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file (the event log, a clip, the input) could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said (in the message, not chained
        /// beneath it, so that a report of the chain says it once).
        error: std::io::Error,
    },
    /// The input could not be decoded.
    #[error(transparent)]
    Audio(#[from] earmark_engine::Error),
    /// The sound card could not be found or opened.
    #[error("audio device: {0}")]
    Device(String),
    /// A file given as an event log holds something else.
    #[error(
        "{0}: not an earmark event log (its first line is not an event); give a new or an earlier log"
    )]
    NotALog(PathBuf),
    /// An event could not be written as JSON.
    #[error("event log: {0}")]
    Log(String),
}

impl Error {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            error,
        }
    }
}
