//! earmark's monitor: streaming identification of any source.
//!
//! [`window`] cuts a stream's fingerprint into overlapping windows;
//! [`tracker`] identifies them and turns the matches into plays with a start,
//! an end, a position in the track and a tempo; [`listener`] runs that chain
//! on one stream. A [`session`] feeds a [`source`] (a file, raw PCM, or the
//! sound card through [`capture`]) to a listener and writes what happens to
//! the append-only event [`log`], with the music no play explains
//! ([`unknown`]). The same code serves a live sound card and
//! a recording scanned as fast as it decodes.

#![forbid(unsafe_code)]

pub mod capture;
mod error;
pub mod listener;
pub mod log;
pub mod session;
pub mod source;
pub mod tracker;
pub mod unknown;
pub mod window;

pub use capture::{Capture, DeviceInfo, devices};
pub use error::Error;
pub use listener::{Follower, Listener, ListenerOptions};
pub use log::{
    Event, EventLog, History, LIKELY_SAME_WORK, PlayRecord, SimilarWork, UnidentifiedRecord,
    work_beat_chroma,
};
pub use session::{Resumed, Session};
pub use source::{Delivery, FileSource, PcmFormat, PcmSource, Source};
pub use tracker::{Play, PlayEvent, Tracker, TrackerOptions};
pub use window::{Window, WindowOptions, Windows};
