//! Verification of a candidate alignment against a track's stored peaks.
//!
//! Hash votes need two or three peaks to survive, so under heavy noise a true
//! match may get only a few more votes than chance. An alignment (a start in
//! the track, a tempo and a pitch factor) is therefore checked peak by peak:
//! the share of the track's peaks in the aligned span that reappear among the
//! query's peaks (within a frame and a bin) is compared with the share at
//! deliberately wrong alignments of the same track. Those measure how much
//! two unrelated stretches of this music overlap by chance (shared keys,
//! sustained notes), which a uniform chance model underestimates. The excess,
//! in standard errors, is the score.

use earmark_engine::Peak;

use crate::constellation::{PeakList, StoredPeak};

/// How a query lines up with a track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    /// Frame in the track heard at the query's first frame.
    pub start_frame: f64,
    /// Track frames per query frame: above 1 the query plays faster.
    pub tempo: f64,
    /// Query frequency over track frequency: above 1 the query sounds higher.
    pub pitch: f64,
}

impl Alignment {
    /// An alignment at the original tempo and pitch.
    pub fn plain(start_frame: f64) -> Self {
        Self {
            start_frame,
            tempo: 1.0,
            pitch: 1.0,
        }
    }

    /// The same alignment shifted by `frames` of the query.
    pub fn shifted(self, frames: f64) -> Self {
        Self {
            start_frame: self.start_frame + frames * self.tempo,
            ..self
        }
    }
}

/// The outcome of checking one alignment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Overlap {
    /// Track peaks that map inside the query.
    pub peaks: u32,
    /// Of those, found again among the query's peaks.
    pub matched: u32,
}

/// Offsets, in query frames, of the wrong alignments that measure chance
/// overlap: 1.2 to 8.2 seconds either way, irregular so that a looped track
/// does not line up with itself at all of them.
const BACKGROUND_SHIFTS: [i32; 8] = [-257, -173, -97, -37, 37, 97, 173, 257];

/// The query's peaks dilated by the tolerances, as a bitmap over
/// `(frame, bin)`.
#[derive(Debug, Default)]
pub struct PeakMask {
    frames: usize,
    bits: Vec<u64>,
}

const WORDS_PER_FRAME: usize = 8;
const BINS: usize = WORDS_PER_FRAME * 64;

impl PeakMask {
    /// Rebuilds the mask from a query's peaks.
    pub fn build(&mut self, peaks: &[Peak], frames: usize, frame_tol: i32, bin_tol: i32) {
        self.frames = frames;
        self.bits.clear();
        self.bits.resize(frames * WORDS_PER_FRAME, 0);
        for p in peaks {
            let bin = p.bin.round() as i64;
            for df in -frame_tol..=frame_tol {
                let f = p.frame as i64 + df as i64;
                if f < 0 || f >= frames as i64 {
                    continue;
                }
                for db in -bin_tol..=bin_tol {
                    let b = bin + db as i64;
                    if (0..BINS as i64).contains(&b) {
                        let b = b as usize;
                        self.bits[f as usize * WORDS_PER_FRAME + b / 64] |= 1 << (b % 64);
                    }
                }
            }
        }
    }

    /// Number of query frames.
    pub fn frames(&self) -> usize {
        self.frames
    }

    fn contains(&self, frame: usize, bin: usize) -> bool {
        bin < BINS
            && frame < self.frames
            && self.bits[frame * WORDS_PER_FRAME + bin / 64] & (1 << (bin % 64)) != 0
    }

    /// How many track peaks fall inside the query under `a`, and how many of
    /// those hit the mask.
    pub fn overlap(&self, peaks: &PeakList<'_>, a: Alignment) -> Overlap {
        let (from, to) = self.span(a);
        self.count(peaks.range(from, to), a)
    }

    /// The track frames `from..to` that can fall inside the query under `a`.
    fn span(&self, a: Alignment) -> (u32, u32) {
        let end = a.start_frame + a.tempo * self.frames as f64;
        (
            a.start_frame.max(0.0).floor() as u32,
            end.max(0.0).ceil() as u32,
        )
    }

    /// [`PeakMask::overlap`] over the track peaks of its span.
    fn count(&self, peaks: impl Iterator<Item = StoredPeak>, a: Alignment) -> Overlap {
        let mut o = Overlap::default();
        let per_ref_frame = 1.0 / a.tempo;
        let pitch = a.pitch as f32;
        for p in peaks {
            // Adding 0.5 and truncating rounds; negatives are rejected first.
            let q = (p.frame as f64 - a.start_frame) * per_ref_frame + 0.5;
            if q < 0.0 || q >= self.frames as f64 {
                continue;
            }
            o.peaks += 1;
            // Both are below 2^32 or miss the mask anyway: converted to u32,
            // which takes a third of the instructions of usize.
            if self.contains(q as u32 as usize, (p.bin * pitch + 0.5) as u32 as usize) {
                o.matched += 1;
            }
        }
        o
    }

    /// Scores `a`: matched peaks above the count expected from wrong
    /// alignments, in standard errors (0 when nothing can be compared).
    pub fn score(&self, peaks: &PeakList<'_>, a: Alignment) -> (Overlap, f32) {
        self.score_in(&self.decode(peaks, &[a]), a)
    }

    /// The track's peaks that [`PeakMask::score_in`] and
    /// [`PeakMask::overlap_in`] compare under any alignment between the
    /// first and the last of `alignments` (which differ in start or tempo
    /// about a common pivot), decoded once: the spans overlap.
    pub fn decode(&self, peaks: &PeakList<'_>, alignments: &[Alignment]) -> TrackPeaks {
        let (mut from, mut to) = (u32::MAX, 0);
        for &a in alignments {
            let shifted = BACKGROUND_SHIFTS.map(|shift| a.shifted(shift as f64));
            for b in std::iter::once(a).chain(shifted) {
                let (lo, hi) = self.span(b);
                (from, to) = (from.min(lo), to.max(hi));
            }
        }
        TrackPeaks {
            from,
            to,
            peaks: peaks.range(from, to).collect(),
        }
    }

    /// [`PeakMask::overlap`] over decoded peaks.
    pub fn overlap_in(&self, peaks: &TrackPeaks, a: Alignment) -> Overlap {
        self.count(peaks.within(self.span(a)), a)
    }

    /// [`PeakMask::score`] over decoded peaks.
    pub fn score_in(&self, peaks: &TrackPeaks, a: Alignment) -> (Overlap, f32) {
        let here = self.overlap_in(peaks, a);
        let (mut n, mut matched) = (0u64, 0u64);
        for &shift in &BACKGROUND_SHIFTS {
            let o = self.overlap_in(peaks, a.shifted(shift as f64));
            n += o.peaks as u64;
            matched += o.matched as u64;
        }
        if n == 0 || here.peaks == 0 {
            return (here, 0.0);
        }
        let share = matched as f64 / n as f64;
        let expected = here.peaks as f64 * share;
        let variance = (expected * (1.0 - share)).max(1.0);
        (
            here,
            ((here.matched as f64 - expected) / variance.sqrt()) as f32,
        )
    }
}

/// A track's stored peaks over a span of frames (see [`PeakMask::decode`]).
#[derive(Debug, Clone, Default)]
pub struct TrackPeaks {
    from: u32,
    to: u32,
    peaks: Vec<StoredPeak>,
}

impl TrackPeaks {
    /// The peaks with `from <= frame < to`, which must lie in the span.
    fn within(&self, (from, to): (u32, u32)) -> impl Iterator<Item = StoredPeak> + '_ {
        debug_assert!(from >= to || (self.from <= from && to <= self.to));
        let first = self.peaks.partition_point(|p| p.frame < from);
        let end = self.peaks.partition_point(|p| p.frame < to).max(first);
        self.peaks[first..end].iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constellation::{StoredPeak, encode};

    fn peak(frame: u32, bin: f32) -> Peak {
        Peak {
            frame,
            bin,
            strength: 0.0,
            rank: 0,
        }
    }

    #[test]
    fn mask_dilates_peaks() {
        let mut mask = PeakMask::default();
        mask.build(&[peak(5, 100.4)], 10, 1, 1);
        assert!(mask.contains(4, 99) && mask.contains(6, 101) && mask.contains(5, 100));
        assert!(!mask.contains(3, 100) && !mask.contains(5, 102) && !mask.contains(10, 100));
    }

    #[test]
    fn overlap_follows_tempo_and_pitch() {
        // Track peaks every 4 frames from frame 100; the query plays them 10%
        // faster and a whole tone higher, starting at track frame 120.
        let track: Vec<StoredPeak> = (0..50)
            .map(|i| StoredPeak {
                frame: 100 + 4 * i,
                bin: 50.0 + (i % 7) as f32 * 30.0,
            })
            .collect();
        let (entries, bases) = encode(&track);
        let e: Vec<u8> = entries.iter().flat_map(|x| x.to_le_bytes()).collect();
        let b: Vec<u8> = bases.iter().flat_map(|x| x.to_le_bytes()).collect();
        let list = PeakList::new(&e, &b);
        let (tempo, pitch) = (1.1, 2f64.powf(2.0 / 12.0));
        let query: Vec<Peak> = track
            .iter()
            .filter(|p| p.frame >= 120)
            .map(|p| {
                peak(
                    ((p.frame - 120) as f64 / tempo).round() as u32,
                    p.bin * pitch as f32,
                )
            })
            .collect();
        let mut mask = PeakMask::default();
        mask.build(&query, 150, 1, 1);
        let right = Alignment {
            start_frame: 120.0,
            tempo,
            pitch,
        };
        let o = mask.overlap(&list, right);
        assert!(o.peaks >= 35 && o.matched == o.peaks, "{o:?}");
        let wrong_pitch = mask.overlap(
            &list,
            Alignment {
                pitch: 1.0,
                ..right
            },
        );
        assert!(wrong_pitch.matched * 3 < o.matched, "{wrong_pitch:?}");
    }
}
