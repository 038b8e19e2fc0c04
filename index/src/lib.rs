//! earmark's catalog: landmark postings on disk, the track table, and matching.
//!
//! A catalog is a directory ([`catalog`]) of immutable, checksummed postings
//! segments ([`segment`]), a track table ([`tracks`]), rights metadata
//! ([`rights`]) and licences ([`licence`]), tied together by an atomically
//! replaced manifest. [`vote`] identifies queries against it; [`coverage`]
//! decides whether a licence covers a play.

#![deny(unsafe_code)]

pub mod catalog;
pub mod constellation;
pub mod coverage;
mod error;
pub mod licence;
mod mmap;
pub mod rights;
pub mod segment;
pub mod similar;
pub mod stretch;
pub mod tracks;
pub mod verify;
pub mod vote;

pub use catalog::{Catalog, CatalogInfo, CatalogWriter, NewTrack};
pub use coverage::{Coverage, Decision, Heard, Reason};
pub use error::{Error, Result};
pub use licence::{Licence, LicenceKind, Period, Works};
pub use rights::{Rights, RightsTable};
pub use tracks::{Track, TrackId, TrackMeta, TrackTable, content_key};
pub use verify::Alignment;
pub use vote::{
    Candidate, Identification, Match, MatchOptions, Matcher, Paths, WholeCounts,
    decide_after_quick, lookups, merge_by, quick_landmarks, ranked,
};
