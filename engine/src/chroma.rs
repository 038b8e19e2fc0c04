//! A key- and tempo-insensitive embedding of a musical passage, for finding
//! covers and adaptations of a work and music that keeps coming back.
//!
//! From the same power spectra as the landmarks: each frame's energy is
//! folded into 12 pitch classes (chroma) and its rise over the last frame
//! into an onset strength. Beats are tracked on the onsets (tempo from their
//! autocorrelation, beat times by dynamic programming), chroma is averaged
//! between beats, and every patch of [`PATCH_BEATS`] beats is turned into the
//! magnitude of its 2D Fourier transform, which does not change when the
//! music is transposed (a circular shift of the chroma) or shifted in time.
//! The embedding is the median of the patches' magnitudes, scaled to unit
//! length (after Bertin-Mahieux and Ellis, 2012).

use std::sync::Arc;

use realfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::fingerprint::{ANALYSIS_RATE_HZ, FRAME_LEN, HOP_SAMPLES, frame_seconds};
use crate::resample::Resampler;
use crate::stft::Stft;

/// Pitch classes.
pub const CHROMA: usize = 12;
/// Beats per patch.
pub const PATCH_BEATS: usize = 32;
/// Values in an embedding: every chroma frequency by the non-negative time
/// frequencies of a patch (the rest mirror them).
pub const EMBEDDING_DIMS: usize = CHROMA * (PATCH_BEATS / 2 + 1);
/// Fewest beats that make an embedding (a patch is padded with silence).
pub const MIN_BEATS: usize = PATCH_BEATS / 2;
/// Lowest and highest frequencies folded into chroma, in Hz.
const CHROMA_HZ: (f32, f32) = (200.0, 3000.0);
/// Half width of the neighbourhood a bin is whitened against.
const WHITEN_BINS: usize = 8;
/// Bands whose log energy rises make the onset strength.
const ONSET_BANDS: usize = 24;
/// Beat periods searched, in seconds (240 down to 40 beats per minute).
const PERIOD_S: (f64, f64) = (0.25, 1.5);
/// How strongly the beat tracker holds to the tempo.
const TIGHTNESS: f32 = 100.0;
/// Patches start every this many beats.
const PATCH_HOP: usize = 2;

/// Chroma and onset strength of each frame of a stream.
#[derive(Debug, Clone, Default)]
pub struct ChromaFrames {
    /// Pitch class of each spectrum bin folded into chroma.
    classes: Vec<(usize, usize)>,
    /// First bin of each onset band, then the end.
    bands: Vec<usize>,
    previous: Vec<f32>,
    /// Log band energies of the frame being taken in.
    now: Vec<f32>,
    /// Running sums of the spectrum being taken in.
    prefix: Vec<f64>,
    /// Each class bin's power over its neighbourhood's mean.
    excess: Vec<f32>,
    /// Energy of each pitch class, per frame.
    pub chroma: Vec<[f32; CHROMA]>,
    /// Rise of the log band energies over the last frame, per frame.
    pub onset: Vec<f32>,
}

impl ChromaFrames {
    /// A collector for spectra of `bins` bins (frames of [`FRAME_LEN`]
    /// samples at the analysis rate).
    pub fn new(bins: usize) -> Self {
        let hz = |k: usize| k as f32 * ANALYSIS_RATE_HZ as f32 / FRAME_LEN as f32;
        // Bins whose whole neighbourhood is in the spectrum (all of them
        // at the analysis rate's frames).
        let classes = (WHITEN_BINS..bins.saturating_sub(WHITEN_BINS))
            .filter(|&k| (CHROMA_HZ.0..=CHROMA_HZ.1).contains(&hz(k)))
            .map(|k| {
                // Semitones above C, folded into one octave.
                let semitones = 12.0 * (hz(k) / 261.626).log2();
                (k, semitones.round().rem_euclid(12.0) as usize)
            })
            .collect();
        // Bands equally spaced in log frequency from 60 Hz to 3.8 kHz.
        let bands = (0..=ONSET_BANDS)
            .map(|b| {
                let f = 60.0 * (3800.0f32 / 60.0).powf(b as f32 / ONSET_BANDS as f32);
                ((f / hz(1)).round() as usize).clamp(1, bins)
            })
            .collect();
        Self {
            classes,
            bands,
            ..Self::default()
        }
    }

    /// Takes in one power spectrum.
    pub fn push(&mut self, power: &[f32]) {
        // Each bin's excess over its neighbourhood (the spectral envelope),
        // so that the notes count rather than the instruments' timbre.
        let mut chroma = [0.0f32; CHROMA];
        self.prefix.resize(power.len() + 1, 0.0);
        let mut sum = 0.0f64;
        for (total, &p) in self.prefix[1..].iter_mut().zip(power) {
            sum += p as f64;
            *total = sum;
        }
        // The classes' bins are consecutive, each with its whole
        // neighbourhood in the spectrum: their envelope is the difference of
        // two shifted runs of the sums, a bin at a time without branches.
        self.excess.clear();
        if let (Some(&(first, _)), Some(&(last, _))) = (self.classes.first(), self.classes.last()) {
            let width = (2 * WHITEN_BINS + 1) as f64;
            let sums = |from: usize| self.prefix.get(from..).unwrap_or_default();
            self.excess.extend(
                (power.get(first..=last).unwrap_or_default().iter())
                    .zip(sums(first + WHITEN_BINS + 1))
                    .zip(sums(first - WHITEN_BINS))
                    .map(|((&p, &b), &a)| p / (((b - a) / width) as f32 + 1e-12)),
            );
        }
        // Sum of the log excesses, as the log of their product: one
        // logarithm per class (the product is kept far from overflowing).
        let mut product = [1.0f64; CHROMA];
        // Without a branch: which bins stand out is unpredictable, and a
        // factor of 1 leaves the product as it is.
        for (&excess, &(_, class)) in self.excess.iter().zip(&self.classes) {
            let factor = if excess > 1.0 { excess as f64 } else { 1.0 };
            product[class] = (product[class] * factor).min(1e300);
        }
        for (c, p) in chroma.iter_mut().zip(product) {
            *c = p.ln() as f32;
        }
        self.chroma.push(chroma);
        let mut rise = 0.0;
        self.now.clear();
        for band in self.bands.windows(2) {
            let energy: f32 = power.get(band[0]..band[1]).map_or(0.0, |p| p.iter().sum());
            self.now.push((1e-9 + energy).ln());
        }
        if self.previous.len() == self.now.len() {
            rise = (self.now.iter().zip(&self.previous))
                .map(|(n, p)| (n - p).max(0.0))
                .sum();
        }
        std::mem::swap(&mut self.previous, &mut self.now);
        self.onset.push(rise);
    }

    /// The frames of mono `samples` at `rate_hz`, resampled and analysed
    /// like a fingerprint.
    ///
    /// # Errors
    /// [`crate::Error::Limit`] for a sample rate that cannot be resampled.
    pub fn of_samples(samples: &[f32], rate_hz: u32) -> crate::Result<Self> {
        let mut resampler = Resampler::try_new(rate_hz, ANALYSIS_RATE_HZ)?;
        let mut resampled = Vec::new();
        resampler.push(samples, &mut resampled);
        resampler.flush(&mut resampled);
        let mut stft = Stft::new(FRAME_LEN, HOP_SAMPLES);
        let mut frames = Self::new(stft.bins());
        stft.push(&resampled, |power| frames.push(power));
        stft.flush(|power| frames.push(power));
        Ok(frames)
    }

    /// The frames of a whole stream, decoded and analysed chunk by chunk.
    ///
    /// # Errors
    /// Any decoding error, naming the file.
    pub fn of_audio(file: &mut crate::AudioFile) -> crate::Result<Self> {
        let mut resampler = Resampler::try_new(file.rate_hz(), ANALYSIS_RATE_HZ)?;
        let mut stft = Stft::new(FRAME_LEN, HOP_SAMPLES);
        let mut frames = Self::new(stft.bins());
        let mut resampled = Vec::new();
        while let Some(samples) = file.next_mono()? {
            resampled.clear();
            resampler.push(samples, &mut resampled);
            stft.push(&resampled, |power| frames.push(power));
        }
        resampled.clear();
        resampler.flush(&mut resampled);
        stft.push(&resampled, |power| frames.push(power));
        stft.flush(|power| frames.push(power));
        Ok(frames)
    }

    /// Beat-synchronous chroma of frames `from..to`.
    pub fn beat_chroma(&self, from: usize, to: usize) -> Vec<[f32; CHROMA]> {
        let to = to.min(self.len());
        let from = from.min(to);
        beat_chroma(&self.chroma[from..to], &self.onset[from..to])
    }

    /// Frames taken in.
    pub fn len(&self) -> usize {
        self.chroma.len()
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.chroma.is_empty()
    }

    /// The embedding of frames `from..to`, or `None` when they hold fewer
    /// than [`MIN_BEATS`] beats.
    pub fn embedding(&self, from: usize, to: usize) -> Option<Vec<f32>> {
        let to = to.min(self.len());
        let from = from.min(to);
        embed(&self.chroma[from..to], &self.onset[from..to])
    }
}

/// Onset strengths shifted and scaled to mean 0 and deviation 1; `None`
/// for a flat curve.
fn standardise(onset: &[f32]) -> Option<Vec<f32>> {
    let n = onset.len().max(1) as f32;
    let mean = onset.iter().sum::<f32>() / n;
    let spread = (onset.iter().map(|o| (o - mean).powi(2)).sum::<f32>() / n).sqrt();
    (spread > 1e-9).then(|| onset.iter().map(|o| (o - mean) / spread).collect())
}

/// Beat periods searched, in frames.
fn periods() -> std::ops::RangeInclusive<usize> {
    let frame_s = frame_seconds();
    (PERIOD_S.0 / frame_s).round() as usize..=(PERIOD_S.1 / frame_s).round() as usize
}

/// Sum of products of standardised strengths `lag` frames apart.
fn autocorrelation(strength: &[f32], lag: usize) -> f32 {
    strength
        .iter()
        .zip(strength.get(lag..).unwrap_or(&[]))
        .map(|(a, b)| a * b)
        .sum()
}

/// How clearly onsets repeat at a beat period: the highest correlation of
/// the onset strength with itself a beat period later (about 0 for speech,
/// whose syllables come irregularly; well above for music with a beat).
pub fn pulse(onset: &[f32]) -> f32 {
    let Some(strength) = standardise(onset) else {
        return 0.0;
    };
    periods()
        .filter(|&lag| lag < strength.len() / 2)
        .map(|lag| autocorrelation(&strength, lag) / (strength.len() - lag) as f32)
        .fold(0.0, f32::max)
}

/// Beat frames of an onset strength curve.
pub fn beats(onset: &[f32]) -> Vec<usize> {
    let frame_s = frame_seconds();
    let (shortest, longest) = (*periods().start(), *periods().end());
    if onset.len() < 2 * longest {
        return Vec::new();
    }
    let Some(strength) = standardise(onset) else {
        return Vec::new();
    };
    // The period whose autocorrelation, weighted towards 120 beats per
    // minute (a log-Gaussian an octave wide), is highest.
    let period = periods()
        .map(|lag| {
            let octaves = (lag as f64 * frame_s / 0.5).log2();
            let weight = (-0.5 * octaves * octaves).exp() as f32;
            (autocorrelation(&strength, lag) * weight, lag)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(shortest, |(_, lag)| lag);
    // Best score of a beat at each frame and the beat before it.
    // The penalty of a beat `d` frames after the one before.
    let penalty: Vec<f32> = (0..=2 * period)
        .map(|d| {
            let ratio = (d.max(1) as f32 / period as f32).ln();
            TIGHTNESS * ratio * ratio
        })
        .collect();
    let mut score = strength.clone();
    let mut before = vec![usize::MAX; onset.len()];
    for t in 0..onset.len() {
        let from = t.saturating_sub(2 * period);
        let to = t.saturating_sub(period / 2);
        let best = (from..to)
            .map(|u| (score[u] - penalty[t - u], u))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((s, u)) = best.filter(|b| b.0 > 0.0) {
            score[t] += s;
            before[t] = u;
        }
    }
    let tail = onset.len().saturating_sub(period);
    let Some(mut t) = (tail..onset.len()).max_by(|&a, &b| score[a].total_cmp(&score[b])) else {
        return Vec::new();
    };
    let mut beats = vec![t];
    while before[t] != usize::MAX {
        t = before[t];
        beats.push(t);
    }
    beats.reverse();
    beats
}

/// The embedding of a passage's chroma and onsets.
pub fn embed(chroma: &[[f32; CHROMA]], onset: &[f32]) -> Option<Vec<f32>> {
    let mut synced = beat_chroma(chroma, onset);
    if synced.len() < MIN_BEATS {
        return None;
    }
    if synced.len() < PATCH_BEATS {
        synced.resize(PATCH_BEATS, [0.0; CHROMA]);
    }
    let transform = PatchTransform::new();
    let patches: Vec<Vec<f32>> = (0..=synced.len() - PATCH_BEATS)
        .step_by(PATCH_HOP)
        .map(|start| transform.magnitude(&synced[start..start + PATCH_BEATS]))
        .collect();
    let mut embedding: Vec<f32> = (0..EMBEDDING_DIMS)
        .map(|d| {
            let mut values: Vec<f32> = patches.iter().map(|p| p[d]).collect();
            let middle = values.len() / 2;
            *values
                .select_nth_unstable_by(middle, |a, b| a.total_cmp(b))
                .1
        })
        .collect();
    let norm = embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm <= 0.0 {
        return None;
    }
    for v in &mut embedding {
        *v /= norm;
    }
    Some(embedding)
}

/// Chroma averaged between beats, each beat normalised to its strongest
/// class and squared so that strong classes stand out.
pub fn beat_chroma(chroma: &[[f32; CHROMA]], onset: &[f32]) -> Vec<[f32; CHROMA]> {
    beats(onset)
        .windows(2)
        .map(|w| {
            let frames = &chroma[w[0]..w[1]];
            let mut mean = [0.0f32; CHROMA];
            for f in frames {
                for (m, c) in mean.iter_mut().zip(f) {
                    *m += c;
                }
            }
            let top = mean.iter().copied().fold(0.0f32, f32::max);
            if top > 0.0 {
                // Normalised, then expanded so strong classes stand out.
                for m in &mut mean {
                    *m = (*m / top).powi(2);
                }
            }
            mean
        })
        .collect()
}

/// Beats joined into one vector when beats are compared, so that a match
/// needs a short sequence of harmonies, not one chord.
const STACK_BEATS: usize = 3;
/// Share of another passage's beats that count as recurrences of a beat.
const RECURRENCE_SHARE: f32 = 0.1;
/// Score lost where a path leaves the recurrences, and per beat it stays out.
const GAP_OPEN: f32 = 5.0;
const GAP_EXTEND: f32 = 0.5;

/// How much of two passages' harmony ([`beat_chroma`]) follows the same
/// course: the longest path of mutually recurring beats through their cross-
/// recurrence plot (Qmax, Serrà et al. 2009), which may bend between half
/// and twice the tempo and bridge short breaks, as a share of the shorter
/// passage (about 0 for unrelated music, towards 1 for the same notes).
/// The best of the 12 transpositions counts. Unlike the embedding it checks
/// the order of the harmonies.
pub fn cross_similarity(a: &[[f32; CHROMA]], b: &[[f32; CHROMA]]) -> f32 {
    let (a, b) = (centred(a), centred(b));
    let (n, m) = (
        a.len().saturating_sub(STACK_BEATS - 1),
        b.len().saturating_sub(STACK_BEATS - 1),
    );
    if n == 0 || m == 0 {
        return 0.0;
    }
    let mut moved = b.clone();
    let mut paths: Vec<f32> = (0..CHROMA)
        .map(|shift| {
            for (to, from) in moved.iter_mut().zip(&b) {
                *to = std::array::from_fn(|c| from[(c + CHROMA - shift) % CHROMA]);
            }
            let plot = recurrences(&stacked_similarity(&a, &moved), m);
            qmax(&plot, m)
        })
        .collect();
    paths.sort_by(f32::total_cmp);
    // What chance alone gives passages of these lengths: the median path of
    // the 12 transpositions.
    let chance = (paths[CHROMA / 2 - 1] + paths[CHROMA / 2]) / 2.0;
    (paths[CHROMA - 1] - chance) / n.min(m) as f32
}

/// Each beat's chroma centred and scaled to unit length, so that two beats
/// correlate only when the same classes stand out (chroma is never negative:
/// plain cosines are all high).
fn centred(beats: &[[f32; CHROMA]]) -> Vec<[f32; CHROMA]> {
    beats
        .iter()
        .map(|v| {
            let mean = v.iter().sum::<f32>() / CHROMA as f32;
            let centred = v.map(|x| x - mean);
            let norm = centred.iter().map(|x| x * x).sum::<f32>().sqrt();
            centred.map(|x| if norm > 0.0 { x / norm } else { 0.0 })
        })
        .collect()
}

/// Dot product of two beats, in four lanes so that it vectorises.
fn dot(x: &[f32; CHROMA], y: &[f32; CHROMA]) -> f32 {
    let mut lanes = [0.0f32; 4];
    for (xs, ys) in x.chunks_exact(4).zip(y.chunks_exact(4)) {
        for k in 0..4 {
            lanes[k] += xs[k] * ys[k];
        }
    }
    lanes.iter().sum()
}

/// Mean correlation of each run of [`STACK_BEATS`] beats of `a` with each
/// run of `b`, row major (`a`'s runs by `b`'s).
fn stacked_similarity(a: &[[f32; CHROMA]], b: &[[f32; CHROMA]]) -> Vec<f32> {
    let single: Vec<f32> = (a.iter())
        .flat_map(|x| b.iter().map(move |y| dot(x, y)))
        .collect();
    let (n, m) = (a.len() + 1 - STACK_BEATS, b.len() + 1 - STACK_BEATS);
    let mut stacked = Vec::with_capacity(n * m);
    for i in 0..n {
        for j in 0..m {
            let sum: f32 = (0..STACK_BEATS)
                .map(|k| single[(i + k) * b.len() + j + k])
                .sum();
            stacked.push(sum / STACK_BEATS as f32);
        }
    }
    stacked
}

/// The cross-recurrence plot of a similarity matrix with rows of `m`:
/// pairs that are among each other's [`RECURRENCE_SHARE`] most similar.
fn recurrences(similar: &[f32], m: usize) -> Vec<bool> {
    let n = similar.len() / m;
    // Columns as rows, to rank them alike.
    let mut transposed = vec![0.0; similar.len()];
    for (i, row) in similar.chunks(m).enumerate() {
        for (j, &s) in row.iter().enumerate() {
            transposed[j * n + i] = s;
        }
    }
    // The similarity each row's most similar share reaches.
    let thresholds = |matrix: &[f32], width: usize| -> Vec<f32> {
        let k = ((width as f32 * RECURRENCE_SHARE) as usize).min(width - 1);
        let mut row = Vec::with_capacity(width);
        (matrix.chunks(width))
            .map(|r| {
                row.clear();
                row.extend_from_slice(r);
                *row.select_nth_unstable_by(k, |x, y| y.total_cmp(x)).1
            })
            .collect()
    };
    let (rows, columns) = (thresholds(similar, m), thresholds(&transposed, n));
    similar
        .chunks(m)
        .zip(&rows)
        .flat_map(|(r, &row)| {
            r.iter()
                .zip(&columns)
                .map(move |(&s, &column)| s > 0.0 && s >= row && s >= column)
        })
        .collect()
}

/// Length of the best path through a cross-recurrence plot with rows of
/// `m`: steps of one beat in both passages or two in one of them; each
/// recurrence adds 1, a break costs [`GAP_OPEN`] where it starts and
/// [`GAP_EXTEND`] per step after.
fn qmax(plot: &[bool], m: usize) -> f32 {
    // Two rows and columns of zeros before the plot spare the bounds tests.
    let width = m + 2;
    let rows = plot.len() / m + 2;
    let mut q = vec![0.0f32; rows * width];
    let mut hit = vec![false; rows * width];
    let mut best = 0.0f32;
    for (i, row) in plot.chunks(m).enumerate() {
        for (j, &recurs) in row.iter().enumerate() {
            let at = (i + 2) * width + j + 2;
            let steps = [at - width - 1, at - 2 * width - 1, at - width - 2];
            let value = if recurs {
                1.0 + steps.iter().map(|&s| q[s]).fold(0.0, f32::max)
            } else {
                (steps.iter())
                    .map(|&s| q[s] - if hit[s] { GAP_OPEN } else { GAP_EXTEND })
                    .fold(0.0, f32::max)
            };
            q[at] = value;
            hit[at] = recurs;
            best = best.max(value);
        }
    }
    best
}

/// The 2D Fourier transform magnitude of a patch.
struct PatchTransform {
    time: Arc<dyn Fft<f32>>,
    /// DFT of the chroma axis: `twiddles[k][c]`.
    twiddles: Vec<[Complex<f32>; CHROMA]>,
}

impl PatchTransform {
    fn new() -> Self {
        let twiddles = (0..CHROMA)
            .map(|k| {
                std::array::from_fn(|c| {
                    let angle = -2.0 * std::f32::consts::PI * (k * c) as f32 / CHROMA as f32;
                    Complex::new(angle.cos(), angle.sin())
                })
            })
            .collect();
        Self {
            time: FftPlanner::new().plan_fft_forward(PATCH_BEATS),
            twiddles,
        }
    }

    /// Magnitudes for every chroma frequency and time frequencies
    /// `0..=PATCH_BEATS / 2`, chroma frequency major.
    fn magnitude(&self, patch: &[[f32; CHROMA]]) -> Vec<f32> {
        let mut out = Vec::with_capacity(EMBEDDING_DIMS);
        let mut row = vec![Complex::new(0.0f32, 0.0); PATCH_BEATS];
        for twiddle in &self.twiddles {
            for (r, beat) in row.iter_mut().zip(patch) {
                *r = beat
                    .iter()
                    .zip(twiddle)
                    .map(|(&v, &w)| w * v)
                    .sum::<Complex<f32>>();
            }
            self.time.process(&mut row);
            out.extend(row[..=PATCH_BEATS / 2].iter().map(|c| c.norm()));
        }
        // The constant term is the patch's loudness, not its music.
        if let Some(dc) = out.first_mut() {
            *dc = 0.0;
        }
        out
    }
}

/// [`pulse`] of mono `samples` at `rate_hz`.
///
/// # Errors
/// [`crate::Error::Limit`] for a sample rate that cannot be resampled.
pub fn pulse_of_samples(samples: &[f32], rate_hz: u32) -> crate::Result<f32> {
    Ok(pulse(&ChromaFrames::of_samples(samples, rate_hz)?.onset))
}

/// Euclidean distance of two embeddings (both of unit length: 0 is the
/// same, 2 the farthest).
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f32>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::tune;

    const RATE: f32 = ANALYSIS_RATE_HZ as f32;

    fn frames(samples: &[f32]) -> ChromaFrames {
        let mut stft = Stft::new(FRAME_LEN, HOP_SAMPLES);
        let mut chroma = ChromaFrames::new(stft.bins());
        stft.push(samples, |power| chroma.push(power));
        chroma
    }

    const MELODY: [i32; 16] = [0, 4, 7, 12, 7, 4, 2, 5, 9, 5, 2, 11, 7, 2, 0, 0];
    const OTHER: [i32; 16] = [0, 1, 3, 1, 8, 6, 8, 10, 3, 3, 1, 6, 10, 8, 6, 1];

    #[test]
    fn beats_follow_the_tempo() {
        let f = frames(&tune(ANALYSIS_RATE_HZ, &MELODY, 100.0, 0, 64));
        let b = beats(&f.onset);
        let gaps: Vec<f64> = b
            .windows(2)
            .map(|w| (w[1] - w[0]) as f64 * frame_seconds())
            .collect();
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        assert!(
            (median - 0.6).abs() < 0.05,
            "median beat {median} s, want 0.6"
        );
    }

    #[test]
    fn a_transposed_faster_rendition_is_nearer_than_another_tune() {
        let embedding = |s: &[f32]| {
            let f = frames(s);
            f.embedding(0, f.len()).expect("an embedding")
        };
        let original = embedding(&tune(ANALYSIS_RATE_HZ, &MELODY, 100.0, 0, 96));
        let cover = embedding(&tune(ANALYSIS_RATE_HZ, &MELODY, 112.0, 3, 96));
        let other = embedding(&tune(ANALYSIS_RATE_HZ, &OTHER, 100.0, 0, 96));
        assert_eq!(original.len(), EMBEDDING_DIMS);
        let (near, far) = (distance(&original, &cover), distance(&original, &other));
        assert!(near < 0.75 * far, "cover {near} vs other {far}");
    }

    #[test]
    fn samples_at_any_rate_embed_like_the_analysis_rate() {
        let at_8k = tune(ANALYSIS_RATE_HZ, &MELODY, 100.0, 0, 96);
        let direct = {
            let f = frames(&at_8k);
            f.embedding(0, f.len()).expect("an embedding")
        };
        let resampled = ChromaFrames::of_samples(&at_8k, ANALYSIS_RATE_HZ).expect("rate");
        let via = resampled
            .embedding(0, resampled.len())
            .expect("an embedding");
        assert!(
            distance(&direct, &via) < 0.05,
            "{}",
            distance(&direct, &via)
        );
    }

    #[test]
    fn a_beat_pulses_and_noise_does_not() {
        let f = frames(&tune(ANALYSIS_RATE_HZ, &MELODY, 100.0, 0, 10));
        assert!(pulse(&f.onset) > 0.5, "{}", pulse(&f.onset));
        let noise = crate::testutil::noise(ANALYSIS_RATE_HZ, 6.0, 0.5, 7);
        let f = frames(&noise);
        assert!(pulse(&f.onset) < 0.2, "{}", pulse(&f.onset));
    }

    #[test]
    fn cross_similarity_follows_the_notes_through_transposition() {
        let beat_chroma_of = |s: &[f32]| {
            let f = frames(s);
            f.beat_chroma(0, f.len())
        };
        let original = beat_chroma_of(&tune(ANALYSIS_RATE_HZ, &MELODY, 100.0, 0, 64));
        let cover = beat_chroma_of(&tune(ANALYSIS_RATE_HZ, &MELODY, 110.0, 5, 48));
        let other = beat_chroma_of(&tune(ANALYSIS_RATE_HZ, &OTHER, 100.0, 0, 64));
        let (near, far) = (
            cross_similarity(&cover, &original),
            cross_similarity(&cover, &other),
        );
        assert!(
            near > 0.6 && near > far + 0.3,
            "cover {near} vs other {far}"
        );
    }

    #[test]
    fn silence_and_short_passages_have_none() {
        let f = frames(&vec![0.0; 20 * RATE as usize]);
        assert!(f.embedding(0, f.len()).is_none());
        let f = frames(&tune(ANALYSIS_RATE_HZ, &MELODY, 100.0, 0, 8));
        assert!(f.embedding(0, f.len()).is_none());
    }
}
