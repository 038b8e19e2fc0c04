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
    /// Natural log of the peak's contrast over its spectral envelope.
    pub strength: f32,
}

/// How peaks are picked.
#[derive(Debug, Clone, PartialEq)]
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
}

impl Default for PeakOptions {
    fn default() -> Self {
        Self {
            lo_bin: 20,
            hi_bin: 480,
            freq_radius: 9,
            time_radius: 4,
            envelope_radius: 16,
            min_contrast: 3.0,
            floor_power: 1e-6,
            max_per_frame: 3,
        }
    }
}

/// One analysed frame kept while its neighbours arrive.
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
        }
    }

    /// The options in force (bins clamped to the spectrum).
    pub fn options(&self) -> &PeakOptions {
        &self.options
    }

    /// Adds a frame's power spectrum; emits the peaks of the frame that is now
    /// `time_radius` frames old.
    pub fn push(&mut self, power: &[f32], out: &mut impl FnMut(Peak)) {
        let row = self.analyse(power);
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
        self.spare.extend(self.rows.drain(..));
        self.first_frame = 0;
        self.frames = 0;
    }

    fn analyse(&mut self, power: &[f32]) -> Row {
        let o = &self.options;
        let n = power.len();
        let mut row = self.spare.pop().unwrap_or_else(|| Row {
            power: Vec::new(),
            contrast: Vec::new(),
            freq_max: Vec::new(),
        });
        row.power.clear();
        row.power
            .extend(power.iter().map(|&p| if p.is_finite() { p } else { 0.0 }));
        // Moving-average envelope through prefix sums.
        self.prefix.clear();
        self.prefix.push(0.0);
        let mut acc = 0.0f64;
        for &p in &row.power {
            acc += p as f64;
            self.prefix.push(acc);
        }
        row.contrast.clear();
        row.contrast.resize(n, 0.0);
        let floor = o.floor_power;
        for f in o.lo_bin..=o.hi_bin {
            let a = f.saturating_sub(o.envelope_radius);
            let b = (f + o.envelope_radius + 1).min(n);
            let mean = ((self.prefix[b] - self.prefix[a]) / (b - a) as f64) as f32;
            let p = row.power[f];
            row.contrast[f] = if p > floor { p / (mean + floor) } else { 0.0 };
        }
        row.freq_max.clear();
        row.freq_max.resize(n, 0.0);
        for f in o.lo_bin..=o.hi_bin {
            let a = f.saturating_sub(o.freq_radius).max(o.lo_bin);
            let b = (f + o.freq_radius).min(o.hi_bin);
            row.freq_max[f] = row.contrast[a..=b].iter().fold(0.0f32, |m, &c| m.max(c));
        }
        row
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
        for f in o.lo_bin..=o.hi_bin {
            let c = row.contrast[f];
            if c < o.min_contrast || c < row.freq_max[f] {
                continue;
            }
            // Ties go to the earliest frame and the lowest bin.
            if f > o.lo_bin && row.contrast[f - 1] == c {
                continue;
            }
            let lo = index.saturating_sub(o.time_radius);
            let hi = (index + o.time_radius).min(self.rows.len() - 1);
            let dominated = (lo..=hi).any(|j| {
                j != index && {
                    let other = self.rows[j].freq_max[f];
                    if j < index { other >= c } else { other > c }
                }
            });
            if dominated {
                continue;
            }
            self.candidates.push(Peak {
                frame,
                bin: f as f32 + refine(&row.power, f),
                strength: c.ln(),
            });
        }
        if self.candidates.len() > o.max_per_frame {
            self.candidates
                .sort_unstable_by(|a, b| b.strength.total_cmp(&a.strength));
            self.candidates.truncate(o.max_per_frame);
            self.candidates
                .sort_unstable_by(|a, b| a.bin.total_cmp(&b.bin));
        }
        for &peak in &self.candidates {
            out(peak);
        }
    }
}

/// Offset of the true maximum from bin `f`, in bins, from a parabola through
/// the log power at `f - 1`, `f`, `f + 1`.
fn refine(power: &[f32], f: usize) -> f32 {
    let (Some(&a), Some(&b), Some(&c)) = (power.get(f - 1), power.get(f), power.get(f + 1)) else {
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

    fn frames_with_blip(n: usize, bins: usize, at: (usize, usize)) -> Vec<Vec<f32>> {
        (0..n)
            .map(|t| {
                (0..bins)
                    .map(|f| {
                        let base = 1e-3;
                        if (t, f) == at { 1.0 } else { base }
                    })
                    .collect()
            })
            .collect()
    }

    fn pick(frames: &[Vec<f32>]) -> Vec<Peak> {
        let mut picker = PeakPicker::new(PeakOptions::default(), frames[0].len());
        let mut peaks = Vec::new();
        for f in frames {
            picker.push(f, &mut |p| peaks.push(p));
        }
        picker.flush(&mut |p| peaks.push(p));
        peaks
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
    fn refine_finds_the_vertex() {
        // Log power is a parabola with its vertex at 10.25.
        let power: Vec<f32> = (0..20)
            .map(|i| (-(i as f32 - 10.25).powi(2)).exp())
            .collect();
        assert!((refine(&power, 10) - 0.25).abs() < 1e-3);
    }
}
