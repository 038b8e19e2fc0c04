//! earmark's catalog: landmark postings on disk, the track table, and matching.
//!
//! A catalog is a directory ([`catalog`]) of immutable, checksummed postings
//! segments ([`segment`]) and a track table ([`tracks`]), tied together by an
//! atomically replaced manifest. [`vote`] identifies queries against it.

#![deny(unsafe_code)]

pub mod catalog;
pub mod constellation;
mod error;
mod mmap;
pub mod segment;
pub mod stretch;
pub mod tracks;
pub mod verify;
pub mod vote;

pub use catalog::{Catalog, CatalogInfo, CatalogWriter, NewTrack};
pub use error::{Error, Result};
pub use tracks::{Track, TrackId, TrackMeta, TrackTable};
pub use verify::Alignment;
pub use vote::{Candidate, Identification, Match, MatchOptions, Matcher};
