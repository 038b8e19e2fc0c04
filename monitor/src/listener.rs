//! One continuous stream, from samples to play events.
//!
//! The [`Listener`] fingerprints samples incrementally (nothing already
//! analysed is analysed again) and hands the fingerprint to a [`Follower`],
//! which cuts it into windows for the [`Tracker`]. A batch scan may also run
//! followers on stretches of one fingerprint in parallel. `earmark scan`, `earmark monitor --input` and the
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
    /// are in, a play announced once the next window confirms it (at once
    /// on a sure score), the incoming track of a crossfade taken while the
    /// outgoing one still leads, and the last 2.5 s of each window
    /// identified on their own, so that a new track is named within
    /// seconds. A batch scan takes the default:
    /// windows every 3 s, complete, as fast as possible.
    pub fn live() -> Self {
        Self {
            windows: WindowOptions::live(),
            tracker: TrackerOptions {
                confirm_after: 31,
                // Over the dev sessions at four frame phases and 5.3 h of
                // music outside the catalog, 8 named a track a median 5.6 s
                // after it began and 7 did in 5.3 s; the chance plays it
                // announced (5 instead of 2) were all withdrawn.
                sure_score: Some(7.0),
                early_newcomers: true,
                fresh_frames: Some(78),
                ..TrackerOptions::default()
            },
        }
    }
}

/// Fingerprints in, play events out: windows of a stream's fingerprint
/// through the tracker. Frames count from the stream's start.
#[derive(Debug)]
pub struct Follower<'c> {
    catalog: &'c Catalog,
    matcher: Matcher<'c>,
    windows: Windows,
    tracker: Tracker,
}

impl<'c> Follower<'c> {
    /// A follower whose plays are numbered from `first_play`.
    pub fn new(catalog: &'c Catalog, options: ListenerOptions, first_play: u64) -> Self {
        Self {
            catalog,
            matcher: Matcher::new(catalog, MatchOptions::default()),
            windows: Windows::new(options.windows),
            tracker: Tracker::numbered_from(options.tracker, first_play),
        }
    }

    /// Plays under way.
    pub fn active(&self) -> impl Iterator<Item = &Play> {
        self.tracker.active()
    }

    /// Adds the next stretch of the fingerprint; returns what changed.
    pub fn push(&mut self, chunk: &Fingerprint) -> Vec<PlayEvent> {
        self.windows.push(chunk);
        let mut events = Vec::new();
        while let Some(w) = self.windows.next_window() {
            events.extend(self.tracker.window(&mut self.matcher, &self.windows, &w));
        }
        events
    }

    /// Ends the fingerprint: the last window, then every play under way
    /// ends. `ended` says the stream ends here too; a stretch of a longer
    /// one followed on its own does not, and its plays end on the evidence
    /// alone.
    pub fn finish(mut self, ended: bool) -> Vec<PlayEvent> {
        let mut events = Vec::new();
        if let Some(w) = self.windows.last_window() {
            events.extend(self.tracker.window(&mut self.matcher, &self.windows, &w));
        }
        events.extend(self.tracker.finish(self.catalog, &self.windows, ended));
        events
    }
}

/// Samples in, play events out, for one stream at one sample rate.
#[derive(Debug)]
pub struct Listener<'c> {
    fingerprinter: Fingerprinter,
    follower: Follower<'c>,
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
            fingerprinter: Fingerprinter::try_new(&FingerprintOptions::query(), rate_hz)?,
            follower: Follower::new(catalog, options, first_play),
            chunk: Fingerprint::default(),
        })
    }

    /// Seconds of audio heard so far.
    pub fn seconds(&self) -> f64 {
        self.fingerprinter.seconds_in()
    }

    /// Plays under way.
    pub fn active(&self) -> impl Iterator<Item = &Play> {
        self.follower.active()
    }

    /// Feeds mono samples; returns what changed.
    pub fn push(&mut self, samples: &[f32]) -> Vec<PlayEvent> {
        self.fingerprinter.push(samples, &mut self.chunk);
        let events = self.follower.push(&self.chunk);
        self.chunk.clear();
        events
    }

    /// Ends the stream: the last window, then every play under way ends.
    pub fn finish(mut self) -> Vec<PlayEvent> {
        self.fingerprinter.flush(&mut self.chunk);
        let mut events = self.follower.push(&self.chunk);
        events.extend(self.follower.finish(true));
        events
    }
}
