//! Streaming conversion of mono PCM to the analysis rate.
//!
//! Wraps rubato's windowed-sinc resampler as an exact polyphase filter: the
//! sinc table has one phase per distinct output position (`rate_out /
//! gcd(rate_in, rate_out)`: 80 for 44.1 kHz to 8 kHz), so no interpolation
//! between phases is needed and each output sample costs one 128-tap dot
//! product. That is several times cheaper than rubato's FFT resampler at the
//! awkward 441:80 ratio, which matters because resampling is paid on every
//! hour of catalog and every second of monitoring. Input is buffered into
//! fixed chunks, so the output does not depend on how the caller slices its
//! input, and the start-up delay is trimmed so that output sample `n` sits at
//! input time `n / rate_out`.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Resampler as _, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use crate::error::{Error, Result};

/// Chunk size handed to rubato, in input frames.
const CHUNK_FRAMES: usize = 2048;
/// Taps of the anti-aliasing filter, at the input rate.
const SINC_LEN: usize = 32;
/// Beyond this many phases, interpolate linearly between 256 of them.
const MAX_EXACT_PHASES: usize = 1024;

/// Converts a stream from one fixed rate to another.
pub struct Resampler {
    inner: Option<Async<f32>>,
    rate_in_hz: u32,
    rate_out_hz: u32,
    pending: Vec<f32>,
    chunk_out: Vec<f32>,
    delay_left: usize,
    consumed: u64,
    produced: u64,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("rate_in_hz", &self.rate_in_hz)
            .field("rate_out_hz", &self.rate_out_hz)
            .finish_non_exhaustive()
    }
}

impl Resampler {
    /// A resampler from `rate_in_hz` to `rate_out_hz` (a pass-through when equal).
    ///
    /// # Errors
    /// [`Error::Limit`] when a rate is zero or the ratio is unusable.
    pub fn try_new(rate_in_hz: u32, rate_out_hz: u32) -> Result<Self> {
        let limit = || Error::Limit {
            what: format!("resampling {rate_in_hz} Hz to {rate_out_hz} Hz"),
            max: 768_000,
        };
        if rate_in_hz == 0 || rate_out_hz == 0 {
            return Err(limit());
        }
        let inner = if rate_in_hz == rate_out_hz {
            None
        } else {
            let phases = (rate_out_hz / gcd(rate_in_hz, rate_out_hz)) as usize;
            let params =
                SincInterpolationParameters::new(SINC_LEN, WindowFunction::BlackmanHarris2);
            let params = if phases <= MAX_EXACT_PHASES {
                params
                    .oversampling_factor(phases)
                    .interpolation(SincInterpolationType::Nearest)
            } else {
                params
                    .oversampling_factor(256)
                    .interpolation(SincInterpolationType::Linear)
            };
            Some(
                Async::<f32>::new_sinc(
                    rate_out_hz as f64 / rate_in_hz as f64,
                    1.0,
                    &params,
                    CHUNK_FRAMES,
                    1,
                    FixedAsync::Input,
                )
                .map_err(|_| limit())?,
            )
        };
        let (delay_left, chunk_out) = match &inner {
            Some(fft) => (fft.output_delay(), vec![0.0; fft.output_frames_max()]),
            None => (0, Vec::new()),
        };
        Ok(Self {
            inner,
            rate_in_hz,
            rate_out_hz,
            pending: Vec::new(),
            chunk_out,
            delay_left,
            consumed: 0,
            produced: 0,
        })
    }

    /// Feeds `input` and appends whatever output is ready to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.consumed += input.len() as u64;
        let Some(fft) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            self.produced += input.len() as u64;
            return;
        };
        let need = fft.input_frames_next();
        let mut input = input;
        // A chunk begun by earlier input is completed first; whole chunks
        // are then read from the input where it lies, and the rest waits.
        if !self.pending.is_empty() {
            let take = need.saturating_sub(self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() < need {
                return;
            }
            Self::run(
                fft,
                &self.pending,
                &mut self.chunk_out,
                &mut self.delay_left,
                &mut self.produced,
                out,
            );
            self.pending.clear();
        }
        let mut chunks = input.chunks_exact(need.max(1));
        for chunk in &mut chunks {
            Self::run(
                fft,
                chunk,
                &mut self.chunk_out,
                &mut self.delay_left,
                &mut self.produced,
                out,
            );
        }
        self.pending.extend_from_slice(chunks.remainder());
    }

    /// Pushes out the tail: the output then covers exactly the input's duration.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        let expected =
            (self.consumed as u128 * self.rate_out_hz as u128 / self.rate_in_hz as u128) as u64;
        if let Some(fft) = self.inner.as_mut() {
            let need = fft.input_frames_next();
            let mut zeros = std::mem::take(&mut self.pending);
            // Enough silence to drain the filter's delay as well as the tail.
            let total = zeros.len() + need + self.delay_left * 2 + need;
            zeros.resize(total.div_ceil(need) * need, 0.0);
            for chunk in zeros.chunks_exact(need) {
                if self.produced >= expected {
                    break;
                }
                Self::run(
                    fft,
                    chunk,
                    &mut self.chunk_out,
                    &mut self.delay_left,
                    &mut self.produced,
                    out,
                );
            }
            if self.produced > expected {
                let extra = (self.produced - expected) as usize;
                out.truncate(out.len().saturating_sub(extra));
                self.produced = expected;
            }
            fft.reset();
            self.delay_left = fft.output_delay();
        }
        self.consumed = 0;
        self.produced = 0;
    }

    fn run(
        fft: &mut Async<f32>,
        chunk: &[f32],
        chunk_out: &mut [f32],
        delay_left: &mut usize,
        produced: &mut u64,
        out: &mut Vec<f32>,
    ) {
        let frames_out = chunk_out.len();
        let (Ok(input), Ok(mut output)) = (
            InterleavedSlice::new(chunk, 1, chunk.len()),
            InterleavedSlice::new_mut(chunk_out, 1, frames_out),
        ) else {
            return;
        };
        // Both buffers are sized from the resampler's own figures, so this
        // cannot fail; if it ever did, the chunk would be dropped, not panic.
        let Ok((_, written)) = fft.process_into_buffer(&input, &mut output, None) else {
            return;
        };
        let ready = &chunk_out[..written];
        let skip = (*delay_left).min(ready.len());
        *delay_left -= skip;
        out.extend_from_slice(&ready[skip..]);
        *produced += (ready.len() - skip) as u64;
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f32, seconds: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn output_length_matches_duration() {
        for rate in [8_000, 22_050, 44_100, 48_000, 96_000] {
            let input = tone(rate, 440.0, 1.3);
            let mut r = Resampler::try_new(rate, 8_000).expect("resampler");
            let mut out = Vec::new();
            r.push(&input, &mut out);
            r.flush(&mut out);
            let expected = input.len() as u64 * 8_000 / rate as u64;
            assert_eq!(out.len() as u64, expected, "rate {rate}");
        }
    }

    #[test]
    fn chunking_does_not_change_output() {
        let input = tone(44_100, 1000.0, 2.0);
        let mut whole = Vec::new();
        let mut r = Resampler::try_new(44_100, 8_000).expect("resampler");
        r.push(&input, &mut whole);
        r.flush(&mut whole);
        let mut pieces = Vec::new();
        let mut r = Resampler::try_new(44_100, 8_000).expect("resampler");
        for chunk in input.chunks(777) {
            r.push(chunk, &mut pieces);
        }
        r.flush(&mut pieces);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn delay_is_trimmed() {
        // A click at 0.5 s must come out at 0.5 s.
        let mut input = vec![0.0f32; 44_100];
        input[22_050] = 1.0;
        let mut out = Vec::new();
        let mut r = Resampler::try_new(44_100, 8_000).expect("resampler");
        r.push(&input, &mut out);
        r.flush(&mut out);
        let peak = out
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .map(|(i, _)| i);
        assert!(
            peak.is_some_and(|i| (3_998..=4_002).contains(&i)),
            "{peak:?}"
        );
    }
}
