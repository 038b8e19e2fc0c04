//! earmark's monitor: streaming identification of any source.
//!
//! [`window`] cuts a stream's fingerprint into overlapping windows;
//! [`tracker`] identifies them and turns the matches into plays with a start,
//! an end, a position in the track and a tempo. The same code serves a live
//! sound card and a recording scanned as fast as it decodes.

#![forbid(unsafe_code)]

pub mod tracker;
pub mod window;

pub use tracker::{Play, PlayEvent, Tracker, TrackerOptions};
pub use window::{Window, WindowOptions, Windows};
