//! The whole pipeline: samples at any rate in, landmarks out.
//!
//! One streaming API serves files and live audio alike: push samples in chunks
//! of any size and receive the same landmarks as if the whole signal had been
//! pushed at once.

use std::path::Path;

use crate::decode::AudioFile;
use crate::error::Result;
use crate::hash::{Landmark, PairHasher, PairOptions};
use crate::peaks::{PeakOptions, PeakPicker};
use crate::resample::Resampler;
use crate::stft::Stft;

/// Sample rate of the analysis, in Hz.
pub const ANALYSIS_RATE_HZ: u32 = 8_000;
/// STFT frame length at the analysis rate (128 ms).
pub const FRAME_LEN: usize = 1_024;
/// STFT hop at the analysis rate (32 ms).
pub const HOP_SAMPLES: usize = 256;

/// Names the landmark scheme; a catalog built with another scheme is refused.
/// Change it whenever a change here changes the hashes.
pub const SCHEME: &str = "pairs-1 8000Hz/1024/256";

/// Seconds per STFT frame.
pub const fn frame_seconds() -> f64 {
    HOP_SAMPLES as f64 / ANALYSIS_RATE_HZ as f64
}

/// How landmarks are made.
#[derive(Debug, Clone, PartialEq)]
pub struct FingerprintOptions {
    /// Peak picking.
    pub peaks: PeakOptions,
    /// Pairing.
    pub pairs: PairOptions,
}

impl FingerprintOptions {
    /// Sparse landmarks for the catalog: few, strong, cheap to store.
    pub fn reference() -> Self {
        Self {
            peaks: PeakOptions::default(),
            pairs: PairOptions::default(),
        }
    }

    /// Dense landmarks for queries: a superset of the peaks the catalog kept,
    /// paired more widely, so most catalog pairs are found again.
    pub fn query() -> Self {
        Self {
            peaks: PeakOptions {
                freq_radius: 6,
                time_radius: 3,
                min_contrast: 2.0,
                max_per_frame: 6,
                ..PeakOptions::default()
            },
            pairs: PairOptions {
                fan_out: 12,
                ..PairOptions::default()
            },
        }
    }
}

/// Streaming fingerprinter for one input rate.
#[derive(Debug)]
pub struct Fingerprinter {
    resampler: Resampler,
    stft: Stft,
    picker: PeakPicker,
    hasher: PairHasher,
    resampled: Vec<f32>,
    samples_in: u64,
    rate_in_hz: u32,
}

impl Fingerprinter {
    /// A fingerprinter for audio at `rate_in_hz`.
    ///
    /// # Errors
    /// [`crate::Error::Limit`] for a sample rate that cannot be resampled.
    pub fn try_new(options: &FingerprintOptions, rate_in_hz: u32) -> Result<Self> {
        let stft = Stft::new(FRAME_LEN, HOP_SAMPLES);
        let picker = PeakPicker::new(options.peaks.clone(), stft.bins());
        Ok(Self {
            resampler: Resampler::try_new(rate_in_hz, ANALYSIS_RATE_HZ)?,
            stft,
            picker,
            hasher: PairHasher::new(options.pairs.clone()),
            resampled: Vec::new(),
            samples_in: 0,
            rate_in_hz,
        })
    }

    /// Seconds of input pushed so far.
    pub fn seconds_in(&self) -> f64 {
        self.samples_in as f64 / self.rate_in_hz as f64
    }

    /// Feeds mono samples; appends the landmarks that are complete to `out`.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<Landmark>) {
        self.samples_in += samples.len() as u64;
        self.resampled.clear();
        self.resampler.push(samples, &mut self.resampled);
        self.analyse(out);
    }

    /// Ends the stream: appends the remaining landmarks and resets.
    pub fn flush(&mut self, out: &mut Vec<Landmark>) {
        self.resampled.clear();
        self.resampler.flush(&mut self.resampled);
        self.analyse(out);
        let Self {
            stft,
            picker,
            hasher,
            ..
        } = self;
        let mut emit = |l| out.push(l);
        stft.flush(|power| picker.push(power, &mut |p| hasher.push(p, &mut emit)));
        picker.flush(&mut |p| hasher.push(p, &mut emit));
        hasher.flush(&mut emit);
        self.samples_in = 0;
    }

    fn analyse(&mut self, out: &mut Vec<Landmark>) {
        let Self {
            stft,
            picker,
            hasher,
            resampled,
            ..
        } = self;
        let mut emit = |l| out.push(l);
        stft.push(resampled, |power| {
            picker.push(power, &mut |p| hasher.push(p, &mut emit))
        });
    }
}

/// The landmarks of a whole file.
#[derive(Debug, Clone)]
pub struct FileFingerprint {
    /// Landmarks in the order they were made.
    pub landmarks: Vec<Landmark>,
    /// Decoded duration in seconds.
    pub duration_s: f64,
}

/// Decodes and fingerprints a whole file, streaming.
///
/// # Errors
/// Any decoding error, naming the file.
pub fn fingerprint_file(path: &Path, options: &FingerprintOptions) -> Result<FileFingerprint> {
    let mut file = AudioFile::open(path)?;
    fingerprint_audio(&mut file, options)
}

/// Fingerprints an opened stream to its end.
///
/// # Errors
/// Any decoding error, naming the file.
pub fn fingerprint_audio(
    file: &mut AudioFile,
    options: &FingerprintOptions,
) -> Result<FileFingerprint> {
    let mut fp = Fingerprinter::try_new(options, file.rate_hz())?;
    let mut landmarks = Vec::new();
    while let Some(samples) = file.next_mono()? {
        fp.push(samples, &mut landmarks);
    }
    let duration_s = fp.seconds_in();
    fp.flush(&mut landmarks);
    Ok(FileFingerprint {
        landmarks,
        duration_s,
    })
}
