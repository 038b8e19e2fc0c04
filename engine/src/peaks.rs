//! Spectral peak picking: the constellation that landmarks are built from.
//!
//! Each frame is whitened by its own spectral envelope (a moving average across
//! frequency), so a peak means "stands out from its neighbourhood" whatever the
//! overall level and tilt of the music, and needs no history: a clip cut from
//! the middle of a track sees the same values as the whole track did. A peak is
//! a bin that is the maximum of its time-frequency neighbourhood and exceeds the
//! envelope by a contrast threshold. Its frequency is refined to a fraction of
//! a bin by a parabola through the log power of its neighbours.

use std::collections::VecDeque;

/// A spectral peak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// The STFT frame the peak is in.
    pub frame: u32,
    /// Frequency in FFT bins, refined to a fraction of a bin.
    pub bin: f32,
    /// How likely the peak is to survive noise: natural log of its power plus
    /// `tilt` times the log of its frequency (music and most noise lose power
    /// towards high frequencies, so a high peak of equal power stands out more).
    pub strength: f32,
    /// How many stronger peaks lie within `rank_window` frames of this one
    /// (0: the strongest around). Landmarks are built from low ranks only, so
    /// a catalog and a query that share music share those peaks, whatever
    /// else each of them holds.
    pub rank: u32,
}

/// How peaks are picked.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PeakOptions {
    /// Lowest bin considered.
    pub lo_bin: usize,
    /// Highest bin considered (inclusive).
    pub hi_bin: usize,
    /// A peak is the maximum over `+-freq_radius` bins...
    pub freq_radius: usize,
    /// ...and `+-time_radius` frames.
    pub time_radius: usize,
    /// Half-width, in bins, of the moving average that whitens each frame.
    pub envelope_radius: usize,
    /// Minimum ratio of a peak's power to its envelope.
    pub min_contrast: f32,
    /// Power below which a bin is treated as silence.
    pub floor_power: f32,
    /// At most this many peaks per frame, the strongest kept.
    pub max_per_frame: usize,
    /// Frequency weighting of [`Peak::strength`].
    pub tilt: f32,
    /// Half-width, in frames, of the window a peak's [`Peak::rank`] counts
    /// stronger peaks in. Unlike blocks of fixed position, a sliding window
    /// ranks a peak the same wherever a clip starts.
    pub rank_window: u32,
    /// Peaks of this rank or more are dropped (`None` keeps all). This evens
    /// out the density of a catalog across loud and quiet music.
    pub max_rank: Option<u32>,
}

impl Default for PeakOptions {
    fn default() -> Self {
        Self {
            lo_bin: 20,
            hi_bin: 480,
            freq_radius: 6,
            time_radius: 3,
            envelope_radius: 16,
            min_contrast: 3.0,
            floor_power: 1e-6,
            max_per_frame: 3,
            tilt: 1.0,
            rank_window: 15,
            max_rank: None,
        }
    }
}

/// One analysed frame kept while its neighbours arrive.
#[derive(Default)]
struct Row {
    power: Vec<f32>,
    contrast: Vec<f32>,
    freq_max: Vec<f32>,
}

/// Streaming peak picker: push power spectra, receive peaks in frame order.
pub struct PeakPicker {
    options: PeakOptions,
    rows: VecDeque<Row>,
    spare: Vec<Row>,
    /// Frame number of `rows[0]`.
    first_frame: u32,
    /// Frames pushed so far.
    frames: u32,
    prefix: Vec<f64>,
    candidates: Vec<Peak>,
    /// Peaks awaiting or serving as context for their rank, in frame order;
    /// those before `undecided` have been emitted.
    ranking: Ranking,
    undecided: usize,
}

impl std::fmt::Debug for PeakPicker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeakPicker")
            .field("options", &self.options)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl PeakPicker {
    /// A picker with the given options; `bins` is the spectrum length.
    pub fn new(options: PeakOptions, bins: usize) -> Self {
        let mut options = options;
        options.hi_bin = options.hi_bin.min(bins.saturating_sub(2));
        options.lo_bin = options.lo_bin.clamp(1, options.hi_bin.max(1));
        Self {
            options,
            rows: VecDeque::new(),
            spare: Vec::new(),
            first_frame: 0,
            frames: 0,
            prefix: Vec::with_capacity(bins + 1),
            candidates: Vec::new(),
            ranking: Ranking::default(),
            undecided: 0,
        }
    }

    /// The options in force (bins clamped to the spectrum).
    pub fn options(&self) -> &PeakOptions {
        &self.options
    }

    /// Adds a frame's power spectrum; emits the peaks that are now final.
    pub fn push(&mut self, power: &[f32], out: &mut impl FnMut(Peak)) {
        let mut row = self.spare.pop().unwrap_or_default();
        self.analyse(power, &mut row);
        self.rows.push_back(row);
        self.frames += 1;
        let width = 2 * self.options.time_radius + 1;
        let centre = self.frames as i64 - 1 - self.options.time_radius as i64;
        if centre >= 0 {
            self.emit(centre as u32, out);
        }
        if self.rows.len() >= width {
            if let Some(old) = self.rows.pop_front() {
                self.spare.push(old);
            }
            self.first_frame += 1;
        }
    }

    /// Emits the peaks of the last frames, which have no future neighbours,
    /// and resets the picker for a new stream.
    pub fn flush(&mut self, out: &mut impl FnMut(Peak)) {
        let start = self.frames.saturating_sub(self.options.time_radius as u32);
        for frame in start..self.frames {
            self.emit(frame, out);
        }
        self.rank(u32::MAX, out);
        self.ranking.clear();
        self.undecided = 0;
        self.spare.extend(self.rows.drain(..));
        self.first_frame = 0;
        self.frames = 0;
    }

    fn analyse(&mut self, power: &[f32], row: &mut Row) {
        let o = &self.options;
        let n = power.len();
        row.power.clear();
        row.power
            .extend(power.iter().map(|&p| if p.is_finite() { p } else { 0.0 }));
        // Moving-average envelope through prefix sums (in f64: powers span
        // many orders of magnitude).
        self.prefix.resize(n + 1, 0.0);
        let mut acc = 0.0f64;
        for (sum, &p) in self.prefix[1..].iter_mut().zip(&row.power) {
            acc += p as f64;
            *sum = acc;
        }
        row.contrast.clear();
        row.contrast.resize(n, 0.0);
        let floor = o.floor_power;
        let r = o.envelope_radius;
        for f in o.lo_bin..=o.hi_bin {
            let a = f.saturating_sub(r);
            let b = (f + r + 1).min(n);
            row.contrast[f] = ((self.prefix[b] - self.prefix[a]) / (b - a) as f64) as f32;
        }
        // The envelope becomes the contrast in place, without branches so
        // that the division is done eight bins at a time.
        let bins = o.lo_bin..=o.hi_bin;
        for (c, &p) in row.contrast[bins.clone()].iter_mut().zip(&row.power[bins]) {
            let contrast = p / (*c + floor);
            *c = if p > floor { contrast } else { 0.0 };
        }
        sliding_max(
            &row.contrast[o.lo_bin..=o.hi_bin],
            o.freq_radius,
            &mut row.freq_max,
        );
    }

    fn emit(&mut self, frame: u32, out: &mut impl FnMut(Peak)) {
        let o = &self.options;
        let Some(index) = frame.checked_sub(self.first_frame) else {
            return;
        };
        let index = index as usize;
        let Some(row) = self.rows.get(index) else {
            return;
        };
        self.candidates.clear();
        let lo = index.saturating_sub(o.time_radius);
        let hi = (index + o.time_radius).min(self.rows.len() - 1);
        let (min_contrast, contrast) = (o.min_contrast, &row.contrast[o.lo_bin..]);
        // Bins that are the maximum of their frequency neighbourhood and
        // contrasted enough, found 32 at a time without a branch per bin:
        // a few in a hundred are.
        let maxima = (row.freq_max.chunks(32).zip(contrast.chunks(32)))
            .enumerate()
            .flat_map(|(chunk, (max, own))| {
                let bits = (max.iter().zip(own).enumerate()).fold(0u32, |bits, (i, (&c, &own))| {
                    bits | u32::from((c >= min_contrast) & (own == c)) << i
                });
                set_bits(bits).map(move |i| 32 * chunk + i)
            });
        for k in maxima {
            let c = row.freq_max[k];
            let f = o.lo_bin + k;
            // Ties go to the lowest bin...
            if k > 0 && contrast[k - 1] == c {
                continue;
            }
            // ...and to the earliest frame.
            let dominated = (lo..=hi).any(|j| {
                j != index && {
                    let other = self.rows[j].freq_max[k];
                    if j < index { other >= c } else { other > c }
                }
            });
            if dominated {
                continue;
            }
            self.candidates.push(Peak {
                frame,
                bin: f as f32 + refine(&row.power, f),
                strength: row.power[f].ln() + o.tilt * (f as f32).ln(),
                rank: 0,
            });
        }
        if self.candidates.len() > o.max_per_frame {
            strongest_first(&mut self.candidates);
            self.candidates.truncate(o.max_per_frame);
            self.candidates
                .sort_unstable_by(|a, b| a.bin.total_cmp(&b.bin));
        }
        for p in self.candidates.drain(..) {
            self.ranking.push(p);
        }
        // Peaks more than a window before this frame have all their context.
        if let Some(complete) = frame.checked_sub(o.rank_window + 1) {
            self.rank(complete, out);
        }
    }

    /// Ranks and emits the undecided peaks up to frame `upto`, then forgets
    /// peaks that no undecided peak can see.
    fn rank(&mut self, upto: u32, out: &mut impl FnMut(Peak)) {
        let w = self.options.rank_window;
        while let Some(p) = self.ranking.get(self.undecided) {
            if p.frame > upto {
                break;
            }
            let rank = self.ranking.outranking(&p, w);
            if self.options.max_rank.is_none_or(|m| rank < m) {
                out(Peak { rank, ..p });
            }
            self.undecided += 1;
        }
        let horizon = self
            .ranking
            .get(self.undecided)
            .map_or(u32::MAX, |p| p.frame.saturating_sub(w));
        let unseen = self.ranking.forget_before(horizon);
        self.undecided -= unseen;
    }
}

/// Unranked peaks in frame order, kept as columns of frames, strengths and
/// bins: counting the peaks that outrank one then compares several at a
/// time.
#[derive(Default)]
struct Ranking {
    frames: Vec<u32>,
    strengths: Vec<f32>,
    /// The bins' bits, which order them as the floats do (they are positive).
    bins: Vec<u32>,
    /// Index of the first peak kept; those before it are forgotten.
    first: usize,
}

impl Ranking {
    fn push(&mut self, p: Peak) {
        self.frames.push(p.frame);
        self.strengths.push(p.strength);
        self.bins.push(p.bin.to_bits());
    }

    /// The `i`th peak kept, unranked (rank 0).
    fn get(&self, i: usize) -> Option<Peak> {
        let i = self.first + i;
        Some(Peak {
            frame: *self.frames.get(i)?,
            bin: f32::from_bits(self.bins[i]),
            strength: self.strengths[i],
            rank: 0,
        })
    }

    /// How many peaks kept within `w` frames of `p` outrank it: are
    /// stronger, ties broken by frame then bin. Counted without branches:
    /// which peaks outrank which is unpredictable.
    fn outranking(&self, p: &Peak, w: u32) -> u32 {
        let (frame, strength, bin) = (p.frame, p.strength, p.bin.to_bits());
        let kept = self.first..;
        let columns = self.frames[kept.clone()]
            .iter()
            .zip(&self.strengths[kept.clone()]);
        columns
            .zip(&self.bins[kept])
            .map(|((&f, &s), &b)| {
                let earlier = (f < frame) | ((f == frame) & (b < bin));
                let outranks = (s > strength) | ((s == strength) & earlier);
                u32::from((f.abs_diff(frame) <= w) & outranks)
            })
            .sum()
    }

    /// Forgets the peaks kept before frame `horizon`; returns how many.
    fn forget_before(&mut self, horizon: u32) -> usize {
        let n = self.frames[self.first..]
            .iter()
            .take_while(|&&f| f < horizon)
            .count();
        self.first += n;
        // The columns move down now and then, not at every frame.
        if self.first >= 4096 && 2 * self.first >= self.frames.len() {
            let first = std::mem::take(&mut self.first);
            self.frames.drain(..first);
            self.strengths.drain(..first);
            self.bins.drain(..first);
        }
        n
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.strengths.clear();
        self.bins.clear();
        self.first = 0;
    }
}

/// The indices of the bits set in `bits`, lowest first.
fn set_bits(mut bits: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let i = bits.trailing_zeros();
        bits &= bits.wrapping_sub(1);
        (i < 32).then_some(i as usize)
    })
}

fn strongest_first(peaks: &mut [Peak]) {
    peaks.sort_unstable_by(|a, b| {
        b.strength
            .total_cmp(&a.strength)
            .then(a.frame.cmp(&b.frame))
            .then(a.bin.total_cmp(&b.bin))
    });
}

/// `out[i] = max(x[i - radius ..= i + radius])`, clipped at the ends: one
/// pass per offset either side, each an element-wise maximum of two slices
/// that compiles to vector instructions (for the few bins of a peak's
/// neighbourhood, several times faster than a constant-work-per-element
/// scheme with its branches and scratch arrays).
fn sliding_max(x: &[f32], radius: usize, out: &mut Vec<f32>) {
    let n = x.len();
    out.clear();
    out.extend_from_slice(x);
    // Inputs are never NaN, so a plain comparison is a maximum (and cheaper
    // than `f32::max`, which must handle NaN).
    let max = |a: f32, b: f32| if a > b { a } else { b };
    for k in 1..=radius.min(n.saturating_sub(1)) {
        for (o, &v) in out[..n - k].iter_mut().zip(&x[k..]) {
            *o = max(*o, v);
        }
        for (o, &v) in out[k..].iter_mut().zip(&x[..n - k]) {
            *o = max(*o, v);
        }
    }
}

/// Offset of the true maximum from bin `f`, in bins, from a parabola through
/// the log power at `f - 1`, `f`, `f + 1`.
fn refine(power: &[f32], f: usize) -> f32 {
    let (Some(&a), Some(&b), Some(&c)) = (
        f.checked_sub(1).and_then(|i| power.get(i)),
        power.get(f),
        power.get(f + 1),
    ) else {
        return 0.0;
    };
    let tiny = 1e-20f32;
    let (a, b, c) = ((a + tiny).ln(), (b + tiny).ln(), (c + tiny).ln());
    let denom = a - 2.0 * b + c;
    if denom >= 0.0 {
        return 0.0;
    }
    (0.5 * (a - c) / denom).clamp(-0.5, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames_with_blip(n: usize, bins: usize, at: (usize, usize)) -> Vec<Vec<f32>> {
        (0..n)
            .map(|t| {
                (0..bins)
                    .map(|f| if (t, f) == at { 1.0 } else { 1e-3 })
                    .collect()
            })
            .collect()
    }

    fn pick_with(options: PeakOptions, frames: &[Vec<f32>]) -> Vec<Peak> {
        let mut picker = PeakPicker::new(options, frames[0].len());
        let mut peaks = Vec::new();
        for f in frames {
            picker.push(f, &mut |p| peaks.push(p));
        }
        picker.flush(&mut |p| peaks.push(p));
        peaks
    }

    fn pick(frames: &[Vec<f32>]) -> Vec<Peak> {
        pick_with(PeakOptions::default(), frames)
    }

    #[test]
    fn isolated_blip_is_the_only_peak() {
        let peaks = pick(&frames_with_blip(20, 513, (7, 100)));
        assert_eq!(peaks.len(), 1);
        assert_eq!(peaks[0].frame, 7);
        assert!((peaks[0].bin - 100.0).abs() < 0.01);
    }

    #[test]
    fn blips_at_the_edges_are_found() {
        assert_eq!(pick(&frames_with_blip(20, 513, (0, 50)))[0].frame, 0);
        assert_eq!(pick(&frames_with_blip(20, 513, (19, 50)))[0].frame, 19);
    }

    #[test]
    fn silence_has_no_peaks() {
        let frames = vec![vec![0.0f32; 513]; 30];
        assert!(pick(&frames).is_empty());
    }

    #[test]
    fn ranks_count_stronger_peaks_in_the_window() {
        // One blip per frame, alternately strong and weak, each in its bin.
        let frames: Vec<Vec<f32>> = (0..40)
            .map(|t| {
                let mut row = vec![1e-3f32; 513];
                row[60 + 20 * (t % 20)] = if t % 2 == 0 { 1.0 } else { 0.1 };
                row
            })
            .collect();
        let options = || PeakOptions {
            time_radius: 0,
            tilt: 0.0,
            rank_window: 2,
            max_rank: Some(2),
            ..PeakOptions::default()
        };
        let peaks = pick_with(options(), &frames);
        // A weak peak has two strong ones within 2 frames: rank 2, dropped.
        // Equal strong peaks tie, and the earlier one outranks: rank 1 but
        // for the first.
        assert!(peaks.iter().all(|p| p.frame % 2 == 0 && p.rank < 2));
        assert_eq!(peaks.len(), 20);
        // The same stream cut at another place ranks its middle the same.
        let later = pick_with(options(), &frames[10..]);
        let mid = |ps: &[Peak], shift: u32| -> Vec<(u32, u32)> {
            ps.iter()
                .filter(|p| (15..30).contains(&(p.frame + shift)))
                .map(|p| (p.frame + shift, p.rank))
                .collect()
        };
        assert_eq!(mid(&peaks, 0), mid(&later, 10));
    }

    #[test]
    fn refine_finds_the_vertex() {
        // Log power is a parabola with its vertex at 10.25.
        let power: Vec<f32> = (0..20)
            .map(|i| (-(i as f32 - 10.25).powi(2)).exp())
            .collect();
        assert!((refine(&power, 10) - 0.25).abs() < 1e-3);
    }

    proptest! {
        #[test]
        fn sliding_max_matches_the_naive_one(
            x in proptest::collection::vec(0.0f32..100.0, 1..200),
            radius in 0usize..12,
        ) {
            let mut out = Vec::new();
            sliding_max(&x, radius, &mut out);
            for (i, &got) in out.iter().enumerate() {
                let a = i.saturating_sub(radius);
                let b = (i + radius).min(x.len() - 1);
                let naive = x[a..=b].iter().fold(f32::MIN, |m, &v| m.max(v));
                prop_assert_eq!(got, naive);
            }
        }
    }
}
