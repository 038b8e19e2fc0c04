//! Short-time Fourier transform of a mono stream into power spectra.
//!
//! The plan, window and scratch buffers are set up once; `push` then produces
//! one frame per `hop_samples` without allocating. Frame `t` covers samples
//! `[t * hop, t * hop + frame_len)` of the stream.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// Turns samples into power spectra frame by frame.
pub struct Stft {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    hop_samples: usize,
    pending: Vec<f32>,
    input: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    power: Vec<f32>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("frame_len", &self.window.len())
            .field("hop_samples", &self.hop_samples)
            .finish_non_exhaustive()
    }
}

impl Stft {
    /// An STFT with a Hann window of `frame_len` samples, advancing by `hop_samples`.
    ///
    /// # Panics
    /// If `hop_samples` is zero or larger than `frame_len` (a contract on our
    /// own configuration, never on input data).
    pub fn new(frame_len: usize, hop_samples: usize) -> Self {
        assert!(hop_samples > 0 && hop_samples <= frame_len);
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(frame_len);
        // Periodic Hann window.
        let window = (0..frame_len)
            .map(|i| {
                let x = std::f32::consts::PI * i as f32 / frame_len as f32;
                x.sin() * x.sin()
            })
            .collect();
        Self {
            input: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            power: vec![0.0; frame_len / 2 + 1],
            pending: Vec::with_capacity(frame_len * 2),
            fft,
            window,
            hop_samples,
        }
    }

    /// The number of power bins per frame (`frame_len / 2 + 1`).
    pub fn bins(&self) -> usize {
        self.power.len()
    }

    /// Feeds samples; calls `frame` with each complete frame's power spectrum.
    pub fn push(&mut self, samples: &[f32], mut frame: impl FnMut(&[f32])) {
        let frame_len = self.window.len();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (frame_len - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == frame_len {
                self.transform();
                frame(&self.power);
                self.pending.drain(..self.hop_samples);
            }
        }
    }

    /// Pads the stream's end with silence so its last samples are analysed,
    /// then forgets it; the next `push` starts a new stream.
    pub fn flush(&mut self, frame: impl FnMut(&[f32])) {
        if !self.pending.is_empty() {
            let frame_len = self.window.len();
            let pad = frame_len - self.hop_samples;
            let tail = vec![0.0; pad];
            self.push(&tail, frame);
        }
        self.pending.clear();
    }

    fn transform(&mut self) {
        for ((dst, &s), &w) in self.input.iter_mut().zip(&self.pending).zip(&self.window) {
            *dst = s * w;
        }
        // The buffers come from the plan itself, so their lengths always fit.
        if self
            .fft
            .process_with_scratch(&mut self.input, &mut self.spectrum, &mut self.scratch)
            .is_err()
        {
            self.power.fill(0.0);
            return;
        }
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            *p = c.re * c.re + c.im * c.im;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_lands_in_its_bin() {
        let rate = 8_000.0;
        let hz = 1_000.0;
        let samples: Vec<f32> = (0..4_096)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate).sin())
            .collect();
        let mut stft = Stft::new(1_024, 256);
        let mut peaks = Vec::new();
        stft.push(&samples, |power| {
            let (bin, _) =
                power.iter().enumerate().fold(
                    (0, 0.0f32),
                    |best, (i, &p)| if p > best.1 { (i, p) } else { best },
                );
            peaks.push(bin);
        });
        assert_eq!(peaks.len(), (4_096 - 1_024) / 256 + 1);
        assert!(peaks.iter().all(|&b| b == 128), "{peaks:?}");
    }

    #[test]
    fn frames_do_not_depend_on_chunking() {
        let samples: Vec<f32> = (0..5_000)
            .map(|i| ((i * 7919) % 101) as f32 / 101.0)
            .collect();
        let collect = |chunk: usize| {
            let mut stft = Stft::new(512, 128);
            let mut frames = Vec::new();
            for part in samples.chunks(chunk) {
                stft.push(part, |p| frames.push(p.to_vec()));
            }
            stft.flush(|p| frames.push(p.to_vec()));
            frames
        };
        assert_eq!(collect(5_000), collect(97));
    }
}
