//! earmark's engine: audio in, landmark hashes out.
//!
//! Decode ([`decode`]) gives mono PCM at the file's rate, [`resample`] brings it
//! to the analysis rate, [`stft`] turns it into power spectra, [`peaks`] picks
//! the constellation and [`hash`] pairs peaks into [`Landmark`]s.
//! [`fingerprint`] runs the whole chain on a stream. Pure and free of global
//! state except symphonia's codec registry.

#![forbid(unsafe_code)]

pub mod chroma;
pub mod decode;
mod error;
pub mod fingerprint;
pub mod hash;
pub mod peaks;
pub mod resample;
pub mod stft;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;
mod unfinished;

pub use decode::AudioFile;
pub use error::{Error, Result};
pub use fingerprint::{
    FileFingerprint, Fingerprint, FingerprintOptions, Fingerprinter, Landmarker, fingerprint_audio,
    fingerprint_file, fingerprint_samples,
};
pub use hash::Landmark;
pub use peaks::Peak;
