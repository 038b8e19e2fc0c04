//! Sliding windows over a fingerprinted stream.
//!
//! The fingerprinter emits peaks and landmarks with frame numbers counted
//! from the start of the stream. [`Windows`] keeps the recent ones and cuts
//! them into overlapping windows, each rebased to start at frame 0 so that it
//! can be identified like a clip. A batch scan cuts a window only once every
//! landmark anchored in it can have been emitted (pairs and triplets look up
//! to 64 frames ahead); a live monitor cuts it sooner and more often, and
//! makes each window's landmarks again from the peaks heard so far: those
//! anchored well inside come out as the stream made them, those of its last
//! two seconds pair with the targets already there. Peaks are kept
//! longer than windows, so that the tracker can look back to refine where a
//! play began.

use std::collections::VecDeque;

use earmark_engine::{Fingerprint, FingerprintOptions, Landmark, Landmarker, Peak};

/// Frames past its anchor by which every landmark is made.
const LANDMARK_REACH: u32 = 64;

/// Window geometry, in STFT frames.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowOptions {
    /// Length of a window.
    pub length: u32,
    /// Frames between the starts of consecutive windows.
    pub hop: u32,
    /// Frames of peaks kept behind the current window, for looking back.
    pub history: u32,
    /// Frames a window waits past its end for late peaks and landmarks
    /// (64: all of them; with less, the landmarks anchored near its end are
    /// made from the peaks that are there).
    pub wait: u32,
}

impl Default for WindowOptions {
    fn default() -> Self {
        // 10 s windows every 3 s, a minute of history (32 ms frames).
        Self {
            length: 312,
            hop: 93,
            history: 1_875,
            wait: 64,
        }
    }
}

impl WindowOptions {
    /// A live monitor's windows: 7 s every second, cut half a second after
    /// their end (when the peaks are in, before all landmarks are). Shorter
    /// windows hold less of the track before a crossfade, so the next one
    /// is named sooner (on the dev session: median 8.8 s after its start,
    /// 11.5 s with 10 s windows) without more false plays.
    pub fn live() -> Self {
        Self {
            length: 218,
            hop: 31,
            wait: 16,
            ..Self::default()
        }
    }
}

/// One window, rebased to frame 0.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Stream frame of the window's frame 0.
    pub start: u32,
    /// The window's peaks and landmarks.
    pub fingerprint: Fingerprint,
}

/// Cuts a stream's fingerprint into overlapping windows.
#[derive(Debug, Default)]
pub struct Windows {
    options: WindowOptions,
    peaks: VecDeque<Peak>,
    landmarks: VecDeque<Landmark>,
    /// Frames analysed so far.
    frames: u32,
    next_start: u32,
    /// Remakes the landmarks of windows cut before all of theirs are in.
    landmarker: Option<Landmarker>,
}

impl Windows {
    /// Empty windows with the given geometry over a stream fingerprinted
    /// with [`FingerprintOptions::query`].
    pub fn new(options: WindowOptions) -> Self {
        Self {
            options,
            landmarker: (options.wait < LANDMARK_REACH)
                .then(|| Landmarker::new(&FingerprintOptions::query())),
            ..Self::default()
        }
    }

    /// Frames analysed so far.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Adds what the fingerprinter emitted since the last call.
    pub fn push(&mut self, chunk: &Fingerprint) {
        let kept = self.peaks.len();
        self.peaks.extend(chunk.peaks.iter().copied());
        keep_sorted(&mut self.peaks, kept, |p| p.frame);
        if self.landmarker.is_none() {
            let kept = self.landmarks.len();
            self.landmarks.extend(chunk.landmarks.iter().copied());
            keep_sorted(&mut self.landmarks, kept, |l| l.frame);
        }
        self.frames += chunk.frames;
    }

    /// The next complete window, if the stream has reached past it.
    pub fn next_window(&mut self) -> Option<Window> {
        let o = self.options;
        if self.frames < self.next_start + o.length + o.wait {
            return None;
        }
        Some(self.cut(o.length))
    }

    /// At the end of the stream: the last window, covering what is left
    /// (shorter than the others), if anything is.
    pub fn last_window(&mut self) -> Option<Window> {
        let left = self.frames.saturating_sub(self.next_start);
        // A window that only repeats the end of the previous one adds nothing.
        if left == 0 || (self.next_start > 0 && left + self.options.hop <= self.options.length) {
            return None;
        }
        Some(self.cut(left))
    }

    /// The peaks between stream frames `from` and `to`, rebased to `from`,
    /// while they are still kept.
    pub fn peaks_between(&self, from: u32, to: u32) -> Vec<Peak> {
        let peaks = self.peaks.range(within(&self.peaks, |p| p.frame, from, to));
        Fingerprint::between(peaks, [], from, to).peaks
    }

    fn cut(&mut self, length: u32) -> Window {
        let start = self.next_start;
        let end = start + length;
        let peaks = within(&self.peaks, |p| p.frame, start, end);
        let landmarks = within(&self.landmarks, |l| l.frame, start, end);
        let mut fingerprint = Fingerprint::between(
            self.peaks.range(peaks),
            self.landmarks.range(landmarks),
            start,
            end,
        );
        if let Some(landmarker) = &mut self.landmarker {
            fingerprint.landmarks = remade_landmarks(
                landmarker,
                &self.peaks,
                start..start + length,
                start + length + self.options.wait,
            );
        }
        self.next_start += self.options.hop;
        // Landmarks are only needed for windows still to come; peaks for the
        // history as well. Both are in frame order: anything older than the
        // horizon is dropped from the front.
        let next = self.next_start;
        while self.landmarks.front().is_some_and(|l| l.frame < next) {
            self.landmarks.pop_front();
        }
        let keep_from = next.saturating_sub(self.options.history);
        while self.peaks.front().is_some_and(|p| p.frame < keep_from) {
            self.peaks.pop_front();
        }
        Window { start, fingerprint }
    }
}

/// Sorts `items`, whose first `kept` are sorted, by `frame` unless the rest
/// follow in order: peaks come out in frame order, landmarks nearly (pairs
/// and triplets as their targets arrive), and the windows are cut by
/// bisection.
fn keep_sorted<T>(items: &mut VecDeque<T>, kept: usize, frame: impl Fn(&T) -> u32) {
    if !items
        .range(kept.saturating_sub(1)..)
        .is_sorted_by_key(&frame)
    {
        items.make_contiguous().sort_by_key(frame);
    }
}

/// The positions in `items`, sorted by `frame`, of those in frames
/// `from..to`.
fn within<T>(
    items: &VecDeque<T>,
    frame: impl Fn(&T) -> u32,
    from: u32,
    to: u32,
) -> std::ops::Range<usize> {
    let first = items.partition_point(|x| frame(x) < from);
    first..items.partition_point(|x| frame(x) < to).max(first)
}

/// The landmarks anchored in `anchors`, rebased to its start, made from the
/// peaks before `heard`: those whose targets are not all there yet pair
/// with the ones that are.
fn remade_landmarks(
    landmarker: &mut Landmarker,
    peaks: &VecDeque<Peak>,
    anchors: std::ops::Range<u32>,
    heard: u32,
) -> Vec<Landmark> {
    let mut landmarks = Vec::new();
    for &p in peaks.range(within(peaks, |p| p.frame, anchors.start, heard)) {
        landmarker.push(p, &mut landmarks);
    }
    landmarker.flush(&mut landmarks);
    landmarks.retain(|l| anchors.contains(&l.frame));
    for l in &mut landmarks {
        l.frame -= anchors.start;
    }
    landmarks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(frames: std::ops::Range<u32>) -> Fingerprint {
        Fingerprint {
            peaks: frames
                .clone()
                .map(|f| Peak {
                    frame: f,
                    bin: 100.0,
                    strength: 0.0,
                    rank: 0,
                })
                .collect(),
            landmarks: frames
                .clone()
                .map(|f| Landmark { hash: 1, frame: f })
                .collect(),
            frames: frames.len() as u32,
        }
    }

    #[test]
    fn windows_are_rebased_and_overlap() {
        let mut w = Windows::new(WindowOptions {
            length: 100,
            hop: 50,
            history: 200,
            wait: 64,
        });
        w.push(&chunk(0..150));
        assert!(w.next_window().is_none(), "must wait for late landmarks");
        w.push(&chunk(150..400));
        let first = w.next_window().expect("first");
        assert_eq!(first.start, 0);
        assert_eq!(first.fingerprint.peaks.len(), 100);
        let second = w.next_window().expect("second");
        assert_eq!(second.start, 50);
        assert_eq!(
            second.fingerprint.landmarks.first().map(|l| l.frame),
            Some(0)
        );
        assert_eq!(second.fingerprint.frames, 100);
        // The history keeps peaks that windows no longer need.
        assert_eq!(w.peaks_between(0, 10).len(), 10);
    }

    #[test]
    fn early_windows_remake_the_landmarks_not_yet_in() {
        use earmark_engine::fingerprint::HOP_SAMPLES;
        use earmark_engine::{Fingerprinter, testutil::song};
        const RATE: u32 = 8_000;
        let music = song(RATE, 20.0, 3);
        // A window cut `wait` frames after its end, from what the
        // fingerprinter has emitted by then.
        let first = |wait: u32| {
            let mut fingerprinter =
                Fingerprinter::try_new(&FingerprintOptions::query(), RATE).expect("fingerprinter");
            let mut heard = Fingerprint::default();
            let samples = (218 + wait as usize + 8) * HOP_SAMPLES;
            fingerprinter.push(&music[..samples], &mut heard);
            let mut w = Windows::new(WindowOptions {
                length: 218,
                hop: 31,
                history: 1_875,
                wait,
            });
            w.push(&heard);
            w.next_window().expect("a window").fingerprint.landmarks
        };
        let (complete, early) = (first(64), first(16));
        let tail = |l: &&Landmark| l.frame >= 218 - 48;
        // Those anchored well inside are made again as they were...
        let inside = |ls: &[Landmark]| {
            let mut v: Vec<Landmark> = ls.iter().filter(|l| !tail(l)).copied().collect();
            v.sort_unstable();
            v
        };
        assert_eq!(inside(&early), inside(&complete));
        // ...and those near the end, whose targets are not all in, from
        // the targets that are: more than half of them.
        let near_end = |ls: &[Landmark]| ls.iter().filter(tail).count();
        assert!(
            near_end(&early) * 2 >= near_end(&complete),
            "{} of {}",
            near_end(&early),
            near_end(&complete)
        );
    }
}
