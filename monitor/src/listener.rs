//! One continuous stream, from samples to play events.
//!
//! The [`Listener`] fingerprints samples incrementally (nothing already
//! analysed is analysed again), cuts the fingerprint into windows and hands
//! them to the [`Tracker`]. `earmark scan`, `earmark monitor --input` and the
//! live sound card all go through it, so they report the same plays.

use earmark_engine::{Fingerprint, FingerprintOptions, Fingerprinter};
use earmark_index::{Catalog, MatchOptions, Matcher};

use crate::tracker::{Play, PlayEvent, Tracker, TrackerOptions};
use crate::window::{WindowOptions, Windows};

/// How a listener cuts windows and keeps plays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListenerOptions {
    /// Window geometry.
    pub windows: WindowOptions,
    /// How plays are kept and bounded.
    pub tracker: TrackerOptions,
}

impl ListenerOptions {
    /// A live monitor's: windows every second, cut as soon as their peaks
    /// are in, and a play announced once the next window confirms it, so
    /// that a new track is named within seconds. A batch scan takes the default:
    /// windows every 3 s, complete, as fast as possible.
    pub fn live() -> Self {
        Self {
            windows: WindowOptions::live(),
            tracker: TrackerOptions {
                confirm_after: 31,
                ..TrackerOptions::default()
            },
        }
    }
}

/// Samples in, play events out, for one stream at one sample rate.
#[derive(Debug)]
pub struct Listener<'c> {
    catalog: &'c Catalog,
    matcher: Matcher<'c>,
    fingerprinter: Fingerprinter,
    windows: Windows,
    tracker: Tracker,
    chunk: Fingerprint,
}

impl<'c> Listener<'c> {
    /// A listener for a stream at `rate_hz` whose plays are numbered from
    /// `first_play`.
    ///
    /// # Errors
    /// When the sample rate cannot be resampled to the analysis rate.
    pub fn try_new(
        catalog: &'c Catalog,
        rate_hz: u32,
        options: ListenerOptions,
        first_play: u64,
    ) -> earmark_engine::Result<Self> {
        Ok(Self {
            catalog,
            matcher: Matcher::new(catalog, MatchOptions::default()),
            fingerprinter: Fingerprinter::try_new(&FingerprintOptions::query(), rate_hz)?,
            windows: Windows::new(options.windows),
            tracker: Tracker::numbered_from(options.tracker, first_play),
            chunk: Fingerprint::default(),
        })
    }

    /// Seconds of audio heard so far.
    pub fn seconds(&self) -> f64 {
        self.fingerprinter.seconds_in()
    }

    /// Plays under way.
    pub fn active(&self) -> impl Iterator<Item = &Play> {
        self.tracker.active()
    }

    /// Feeds mono samples; returns what changed.
    pub fn push(&mut self, samples: &[f32]) -> Vec<PlayEvent> {
        self.fingerprinter.push(samples, &mut self.chunk);
        self.take_windows()
    }

    /// Ends the stream: the last window, then every play under way ends.
    pub fn finish(mut self) -> Vec<PlayEvent> {
        self.fingerprinter.flush(&mut self.chunk);
        let mut events = self.take_windows();
        if let Some(w) = self.windows.last_window() {
            events.extend(self.tracker.window(&mut self.matcher, &self.windows, &w));
        }
        events.extend(self.tracker.finish(self.catalog, &self.windows));
        events
    }

    fn take_windows(&mut self) -> Vec<PlayEvent> {
        self.windows.push(&self.chunk);
        self.chunk.clear();
        let mut events = Vec::new();
        while let Some(w) = self.windows.next_window() {
            events.extend(self.tracker.window(&mut self.matcher, &self.windows, &w));
        }
        events
    }
}
