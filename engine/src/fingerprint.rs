//! The whole pipeline: samples at any rate in, landmarks out.
//!
//! One streaming API serves files and live audio alike: push samples in chunks
//! of any size and receive the same landmarks as if the whole signal had been
//! pushed at once.

use std::path::Path;

use crate::chroma::{CHROMA, ChromaFrames};
use crate::decode::AudioFile;
use crate::error::Result;
use crate::hash::{Landmark, PairHasher, PairOptions, TripletHasher, TripletOptions};
use crate::peaks::{Peak, PeakOptions, PeakPicker};
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
pub const SCHEME: &str = "pairs+triplets-3 8000Hz/1024/256";

/// Seconds per STFT frame.
pub const fn frame_seconds() -> f64 {
    HOP_SAMPLES as f64 / ANALYSIS_RATE_HZ as f64
}

/// How landmarks are made.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FingerprintOptions {
    /// Peak picking.
    pub peaks: PeakOptions,
    /// Pairing (the fast path).
    pub pairs: PairOptions,
    /// Triplets (the path that survives tempo, pitch and speed changes).
    pub triplets: TripletOptions,
    /// Also collect chroma and onsets for the similarity embedding
    /// ([`crate::chroma`]).
    pub chroma: bool,
}

impl FingerprintOptions {
    /// Landmarks for the catalog: peaks up to rank 60 (about the 60
    /// strongest of each second) are stored to verify matches; those up to
    /// rank 24 are paired, 3 targets each, and made into triplets with 3
    /// following peaks. Chroma is collected for the similarity embedding.
    pub fn reference() -> Self {
        Self {
            peaks: PeakOptions {
                max_rank: Some(60),
                ..PeakOptions::default()
            },
            chroma: true,
            ..Self::default()
        }
    }

    /// Dense peaks for queries: every peak the catalog could have kept (same
    /// neighbourhood, lower contrast) for verification; those up to rank 60
    /// are paired widely, so most catalog pairs are made again even when
    /// noise adds peaks between them. Triplets use the catalog's density with
    /// a wider choice of targets, and probe both sides of quantisation
    /// boundaries.
    pub fn query() -> Self {
        Self {
            peaks: PeakOptions {
                min_contrast: 2.0,
                max_per_frame: 6,
                ..PeakOptions::default()
            },
            pairs: PairOptions {
                fan_out: 10,
                max_rank: 60,
                ..PairOptions::default()
            },
            triplets: TripletOptions {
                fan_out: 4,
                probe_margin: 0.2,
                max_rank: 30,
                ..TripletOptions::default()
            },
            chroma: false,
        }
    }
}

/// What the fingerprinter makes: the peaks and the landmarks built on them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fingerprint {
    /// Peaks in frame order.
    pub peaks: Vec<Peak>,
    /// Landmarks in anchor order.
    pub landmarks: Vec<Landmark>,
    /// STFT frames analysed.
    pub frames: u32,
}

impl Fingerprint {
    /// Forgets everything, keeping the allocations.
    pub fn clear(&mut self) {
        self.peaks.clear();
        self.landmarks.clear();
        self.frames = 0;
    }

    /// The peaks and landmarks of stream frames `from..to`, rebased so that
    /// `from` is frame 0: a stretch of a stream to identify like a clip.
    pub fn between<'a>(
        peaks: impl IntoIterator<Item = &'a Peak>,
        landmarks: impl IntoIterator<Item = &'a Landmark>,
        from: u32,
        to: u32,
    ) -> Self {
        let inside = |frame: u32| (from..to).contains(&frame);
        Self {
            peaks: peaks
                .into_iter()
                .filter(|p| inside(p.frame))
                .map(|p| Peak {
                    frame: p.frame - from,
                    ..*p
                })
                .collect(),
            landmarks: landmarks
                .into_iter()
                .filter(|l| inside(l.frame))
                .map(|l| Landmark {
                    frame: l.frame - from,
                    ..*l
                })
                .collect(),
            frames: to.saturating_sub(from),
        }
    }
}

/// Streaming fingerprinter for one input rate.
#[derive(Debug)]
pub struct Fingerprinter {
    resampler: Resampler,
    stft: Stft,
    chroma: Option<ChromaFrames>,
    picker: PeakPicker,
    hashers: Landmarker,
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
            chroma: options.chroma.then(|| ChromaFrames::new(stft.bins())),
            stft,
            picker,
            hashers: Landmarker::new(options),
            resampled: Vec::new(),
            samples_in: 0,
            rate_in_hz,
        })
    }

    /// Seconds of input pushed so far.
    pub fn seconds_in(&self) -> f64 {
        self.samples_in as f64 / self.rate_in_hz as f64
    }

    /// Feeds mono samples; appends the peaks and landmarks that are complete.
    pub fn push(&mut self, samples: &[f32], out: &mut Fingerprint) {
        self.samples_in += samples.len() as u64;
        self.resampled.clear();
        self.resampler.push(samples, &mut self.resampled);
        self.analyse(out);
    }

    /// Ends the stream: appends the remaining peaks and landmarks and resets.
    pub fn flush(&mut self, out: &mut Fingerprint) {
        self.resampled.clear();
        self.resampler.flush(&mut self.resampled);
        self.analyse(out);
        let Self {
            stft,
            chroma,
            picker,
            hashers,
            ..
        } = self;
        stft.flush(|power| {
            if let Some(c) = chroma {
                c.push(power);
            }
            hashers.frame(picker, power, out)
        });
        picker.flush(&mut |p| hashers.peak(p, out));
        hashers.flush(&mut out.landmarks);
        self.samples_in = 0;
    }

    fn analyse(&mut self, out: &mut Fingerprint) {
        let Self {
            stft,
            chroma,
            picker,
            hashers,
            resampled,
            ..
        } = self;
        stft.push(resampled, |power| {
            if let Some(c) = chroma {
                c.push(power);
            }
            hashers.frame(picker, power, out)
        });
    }

    /// The chroma and onsets collected so far (when the options ask for
    /// them), leaving an empty collector.
    pub fn take_chroma(&mut self) -> Option<ChromaFrames> {
        let bins = self.stft.bins();
        self.chroma
            .as_mut()
            .map(|c| std::mem::replace(c, ChromaFrames::new(bins)))
    }
}

/// The last stage of a [`Fingerprinter`]: the pair and triplet hashers, fed
/// the same peaks. On its own it makes landmarks of peaks from elsewhere
/// (the catalog generator of the scale benchmark reshapes real ones).
#[derive(Debug)]
pub struct Landmarker {
    pairs: PairHasher,
    triplets: TripletHasher,
}

impl Landmarker {
    /// Hashers with the pairing and triplet options of `options`.
    pub fn new(options: &FingerprintOptions) -> Self {
        Self {
            pairs: PairHasher::new(options.pairs.clone()),
            triplets: TripletHasher::new(options.triplets.clone()),
        }
    }

    /// Feeds a peak (in frame order); appends the landmarks completed.
    pub fn push(&mut self, peak: Peak, landmarks: &mut Vec<Landmark>) {
        self.pairs.push(peak, &mut |l| landmarks.push(l));
        self.triplets.push(peak, &mut |l| landmarks.push(l));
    }

    /// Picks the peaks of a power spectrum and hashes those that are final.
    fn frame(&mut self, picker: &mut PeakPicker, power: &[f32], out: &mut Fingerprint) {
        picker.push(power, &mut |p| self.peak(p, out));
        out.frames += 1;
    }

    fn peak(&mut self, peak: Peak, out: &mut Fingerprint) {
        out.peaks.push(peak);
        self.push(peak, &mut out.landmarks);
    }

    /// Ends the stream: appends the remaining landmarks and resets.
    pub fn flush(&mut self, landmarks: &mut Vec<Landmark>) {
        self.pairs.flush(&mut |l| landmarks.push(l));
        self.triplets.flush(&mut |l| landmarks.push(l));
    }
}

/// The fingerprint of a whole file.
#[derive(Debug, Clone)]
pub struct FileFingerprint {
    /// Peaks and landmarks.
    pub fingerprint: Fingerprint,
    /// Decoded duration in seconds.
    pub duration_s: f64,
    /// The similarity embedding of the whole file, when the options collect
    /// chroma and the music has enough beats.
    pub embedding: Option<Vec<f32>>,
    /// Its beat-synchronous chroma, for verifying passages against it
    /// (empty unless the options collect chroma).
    pub beat_chroma: Vec<[f32; CHROMA]>,
}

/// Fingerprints mono `samples` at `rate_hz`, all in one call.
///
/// # Errors
/// [`crate::Error::Limit`] for a sample rate that cannot be resampled.
pub fn fingerprint_samples(
    samples: &[f32],
    rate_hz: u32,
    options: &FingerprintOptions,
) -> Result<Fingerprint> {
    let mut fp = Fingerprinter::try_new(options, rate_hz)?;
    let mut fingerprint = Fingerprint::default();
    fp.push(samples, &mut fingerprint);
    fp.flush(&mut fingerprint);
    Ok(fingerprint)
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
    let mut fingerprint = Fingerprint::default();
    while let Some(samples) = file.next_mono()? {
        fp.push(samples, &mut fingerprint);
    }
    let duration_s = fp.seconds_in();
    fp.flush(&mut fingerprint);
    let chroma = fp.take_chroma().unwrap_or_default();
    Ok(FileFingerprint {
        fingerprint,
        duration_s,
        embedding: chroma.embedding(0, chroma.len()),
        beat_chroma: chroma.beat_chroma(0, chroma.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic "song": chords of decaying harmonic tones.
    fn song(rate: u32, seconds: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                let note = (t * 4.0) as u32;
                let f0 = 110.0 * 2f32.powf(((note * 7) % 24) as f32 / 12.0);
                let env = (-(t * 4.0).fract() * 3.0).exp();
                let w = 2.0 * std::f32::consts::PI * f0 * t;
                0.3 * env * (w.sin() + 0.5 * (2.0 * w).sin() + 0.3 * (3.1 * w).sin())
            })
            .collect()
    }

    fn run(
        samples: &[f32],
        rate: u32,
        chunks: &[usize],
        options: &FingerprintOptions,
    ) -> Fingerprint {
        let mut fp = Fingerprinter::try_new(options, rate).expect("fingerprinter");
        let mut out = Fingerprint::default();
        let mut rest = samples;
        for &c in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at(c.min(rest.len()));
            fp.push(now, &mut out);
            rest = later;
        }
        fp.flush(&mut out);
        out
    }

    #[test]
    fn chunking_does_not_change_the_fingerprint() {
        for rate in [8_000, 44_100, 48_000] {
            let samples = song(rate, 12.0);
            for options in [FingerprintOptions::reference(), FingerprintOptions::query()] {
                let whole = run(&samples, rate, &[samples.len()], &options);
                assert!(
                    whole.landmarks.len() > 100,
                    "{rate}: {}",
                    whole.landmarks.len()
                );
                for chunks in [&[1usize][..], &[441], &[4_096, 17, 999]] {
                    let parts = run(&samples, rate, chunks, &options);
                    assert_eq!(whole, parts, "rate {rate}, chunks {chunks:?}");
                }
            }
        }
    }

    #[test]
    fn silence_makes_no_landmarks() {
        let out = run(
            &vec![0.0; 80_000],
            8_000,
            &[1_000],
            &FingerprintOptions::query(),
        );
        assert!(out.landmarks.is_empty() && out.peaks.is_empty());
        assert!(out.frames > 300);
    }

    #[test]
    fn a_fingerprinter_can_be_reused_after_flush() {
        let samples = song(8_000, 5.0);
        let options = FingerprintOptions::reference();
        let mut fp = Fingerprinter::try_new(&options, 8_000).expect("fingerprinter");
        let (mut first, mut second) = (Fingerprint::default(), Fingerprint::default());
        fp.push(&samples, &mut first);
        fp.flush(&mut first);
        fp.push(&samples, &mut second);
        fp.flush(&mut second);
        assert_eq!(first, second);
    }
}
