//! Seeded synthetic signals for tests and benches: tones, noise and "songs".
//!
//! Everything is deterministic from its seed, so a failing test fails the same
//! way every time.

use std::path::Path;

/// A small xorshift generator; good enough for test signals, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform index below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// A sine tone.
pub fn tone(rate_hz: u32, freq_hz: f32, seconds: f32, amplitude: f32) -> Vec<f32> {
    let n = (rate_hz as f32 * seconds) as usize;
    let w = 2.0 * std::f32::consts::PI * freq_hz / rate_hz as f32;
    (0..n).map(|i| amplitude * (w * i as f32).sin()).collect()
}

/// White noise, uniform in `[-amplitude, amplitude)`.
pub fn noise(rate_hz: u32, seconds: f32, amplitude: f32, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let n = (rate_hz as f32 * seconds) as usize;
    (0..n).map(|_| amplitude * rng.range(-1.0, 1.0)).collect()
}

/// A tune on the equal-tempered scale: `notes` (semitones above middle C,
/// shifted by `transpose`), one per beat at `bpm`, each struck on the beat
/// with its octave, for `beats` beats.
pub fn tune(rate_hz: u32, notes: &[i32], bpm: f32, transpose: i32, beats: usize) -> Vec<f32> {
    let rate = rate_hz as f32;
    let beat_s = 60.0 / bpm;
    let n = (beats as f32 * beat_s * rate) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate;
            let k = (t / beat_s) as usize;
            let since = t - k as f32 * beat_s;
            let f = 261.626 * 2f32.powf((notes[k % notes.len()] + transpose) as f32 / 12.0);
            let w = 2.0 * std::f32::consts::PI * f * t;
            (-since * 6.0).exp() * (w.sin() + 0.5 * (2.0 * w).sin())
        })
        .collect()
}

/// A synthetic "song": random notes with harmonics and decaying envelopes,
/// chords of two or three voices and noise-burst percussion. Pitches are
/// drawn from a continuous range (no shared tuning grid), so different seeds
/// give unrelated songs; the same seed gives the same music at any rate.
pub fn song(rate_hz: u32, seconds: f32, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let n = (rate_hz as f32 * seconds) as usize;
    let mut out = vec![0.0f32; n];
    let rate = rate_hz as f32;
    let beat = rng.range(0.2, 0.4);
    let mut t = 0.0f32;
    while t < seconds {
        let len = beat * (1 + rng.below(3)) as f32;
        let voices = 2 + rng.below(2);
        for _ in 0..voices {
            // About 110 Hz to 1.8 kHz.
            let f0 = 110.0 * 2f32.powf(rng.range(0.0, 4.0));
            let amp = rng.range(0.05, 0.15);
            let start = (t * rate) as usize;
            let end = (((t + len) * rate) as usize).min(n);
            for (k, s) in out[start.min(n)..end].iter_mut().enumerate() {
                let x = k as f32 / rate;
                let env = (-x * 3.0 / len).exp();
                let w = 2.0 * std::f32::consts::PI * f0 * x;
                *s += amp * env * (w.sin() + 0.5 * (2.0 * w).sin() + 0.25 * (3.0 * w).sin());
            }
        }
        if rng.below(2) == 0 {
            // The burst has its own generator, so its length in samples (which
            // depends on the rate) does not change the notes that follow.
            let mut burst = Rng::new(rng.next_u64());
            let start = (t * rate) as usize;
            let end = ((t + 0.05) * rate) as usize;
            for s in out[start.min(n)..end.min(n)].iter_mut() {
                *s += 0.1 * burst.range(-1.0, 1.0);
            }
        }
        t += len;
    }
    out
}

/// `song` as another release or a re-encoding would hold it: quieter and a
/// little duller, the same recording in other bytes.
pub fn reissue(song: &[f32]) -> Vec<f32> {
    song.windows(2).map(|w| 0.6 * w[1] + 0.2 * w[0]).collect()
}

/// Adds `noise` scaled to the given signal-to-noise ratio in dB.
pub fn mix_at_snr(signal: &[f32], noise: &[f32], snr_db: f32) -> Vec<f32> {
    let power = |x: &[f32]| x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32;
    let gain = (power(signal) / (power(noise) * 10f32.powf(snr_db / 10.0))).sqrt();
    signal
        .iter()
        .zip(noise.iter().cycle())
        .map(|(s, n)| s + gain * n)
        .collect()
}

/// Writes interleaved samples as a 16-bit PCM WAV file.
///
/// # Errors
/// Any I/O error from writing the file.
pub fn write_wav(path: &Path, rate_hz: u32, channels: u16, samples: &[f32]) -> std::io::Result<()> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate_hz,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(std::io::Error::other)?;
    for &s in samples {
        let v = (s.clamp(-1.0, 1.0) * 32_767.0) as i16;
        writer.write_sample(v).map_err(std::io::Error::other)?;
    }
    writer.finalize().map_err(std::io::Error::other)
}
