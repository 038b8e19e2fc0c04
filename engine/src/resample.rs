//! Streaming conversion of mono PCM to the analysis rate.
//!
//! An exact polyphase filter built on rubato's windowed-sinc interpolator:
//! the sinc table has one phase per distinct output position (`rate_out /
//! gcd(rate_in, rate_out)`: 80 for 44.1 kHz to 8 kHz), so each output sample
//! is one dot product of rubato's (SIMD) interpolator with no interpolation
//! between phases. That is several times cheaper than rubato's FFT
//! resampler at the awkward 441:80 ratio, which matters because resampling
//! is paid on every hour of catalog and every second of monitoring. Output
//! positions are stepped in integers here rather than by rubato's
//! floating-point resampler loop, whose per-sample rounding and buffer
//! adapters cost more than the dot products themselves; the samples are
//! the same as that loop's. Output sample `n` sits at input time
//! `n / rate_out` (the filter's delay is trimmed), and the output does not
//! depend on how the caller slices its input.

use rubato::WindowFunction;
use rubato::sinc_interpolator::{AnyInterpolator, SincInterpolator, make_interpolator};

use crate::error::{Error, Result};

/// Taps of the anti-aliasing filter, at the input rate.
const SINC_LEN: usize = 32;
/// Beyond this many phases, the nearest of this many is taken.
const MAX_EXACT_PHASES: u64 = 1024;

/// Converts a stream from one fixed rate to another.
pub struct Resampler {
    filter: Option<Polyphase>,
    rate_in_hz: u32,
    rate_out_hz: u32,
    consumed: u64,
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
    /// [`Error::Limit`] when a rate is zero.
    pub fn try_new(rate_in_hz: u32, rate_out_hz: u32) -> Result<Self> {
        if rate_in_hz == 0 || rate_out_hz == 0 {
            return Err(Error::Limit {
                what: format!("resampling {rate_in_hz} Hz to {rate_out_hz} Hz"),
                max: 768_000,
            });
        }
        Ok(Self {
            filter: (rate_in_hz != rate_out_hz).then(|| Polyphase::new(rate_in_hz, rate_out_hz)),
            rate_in_hz,
            rate_out_hz,
            consumed: 0,
        })
    }

    /// Feeds `input` and appends whatever output is ready to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.consumed += input.len() as u64;
        match self.filter.as_mut() {
            Some(filter) => filter.push(input, u64::MAX, out),
            None => out.extend_from_slice(input),
        }
    }

    /// Pushes out the tail: the output then covers exactly the input's duration.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        if let Some(filter) = self.filter.as_mut() {
            let expected =
                (self.consumed as u128 * self.rate_out_hz as u128 / self.rate_in_hz as u128) as u64;
            filter.drain(expected.saturating_sub(filter.written()), out);
            let extra = filter.written().saturating_sub(expected) as usize;
            out.truncate(out.len().saturating_sub(extra));
            filter.reset();
        }
        self.consumed = 0;
    }
}

/// The polyphase filter: output `n` (from 1) is the dot product of the
/// input from sample `n * step / phases - (SINC_LEN - 1)` with the sinc of
/// phase `n * step % phases`, as rubato's own sinc resampler places it.
struct Polyphase {
    interpolator: AnyInterpolator<f32>,
    /// Input samples per output, as the fraction `step / phases`.
    step: u64,
    phases: u64,
    /// Phases in the sinc table (`phases`, or at most [`MAX_EXACT_PHASES`]).
    table_phases: u64,
    /// Output samples the filter's delay shifts in, dropped at the start.
    delay: u64,
    /// The input later outputs read (at first, `SINC_LEN - 1` samples of
    /// silence that lead the stream).
    held: Vec<f32>,
    /// Stream index (counting the silence) of `held[0]`.
    held_from: u64,
    /// The next output, from 1.
    next: u64,
}

impl Polyphase {
    fn new(rate_in_hz: u32, rate_out_hz: u32) -> Self {
        let g = gcd(rate_in_hz, rate_out_hz);
        let (step, phases) = ((rate_in_hz / g) as u64, (rate_out_hz / g) as u64);
        let table_phases = phases.min(MAX_EXACT_PHASES);
        let ratio = rate_out_hz as f64 / rate_in_hz as f64;
        let mut filter = Self {
            interpolator: make_interpolator(
                SINC_LEN,
                ratio,
                None,
                table_phases as usize,
                WindowFunction::BlackmanHarris2,
            ),
            step,
            phases,
            table_phases,
            delay: (SINC_LEN as f64 * ratio / 2.0) as u64,
            held: Vec::new(),
            held_from: 0,
            next: 1,
        };
        filter.reset();
        filter
    }

    /// The stream index of the first input sample output `n` reads, and
    /// its phase in the sinc table.
    fn position(&self, n: u64) -> (u64, usize) {
        let (whole, phase) = (n * self.step / self.phases, n * self.step % self.phases);
        let sinc = (phase * self.table_phases * 2 + self.phases) / (2 * self.phases);
        if sinc == self.table_phases {
            (whole + 1, 0)
        } else {
            (whole, sinc as usize)
        }
    }

    /// Outputs written since the stream began: those past the delay.
    fn written(&self) -> u64 {
        (self.next - 1).saturating_sub(self.delay)
    }

    /// Appends the outputs that `input`, following what is held, makes
    /// ready (the delay's dropped), at most `limit`. The input is read
    /// where it lies: only the outputs that begin in what is held read a
    /// copy of the input's first samples joined to it, and only the input
    /// later outputs need is kept.
    fn push(&mut self, input: &[f32], limit: u64, out: &mut Vec<f32>) {
        let input_from = self.held_from + self.held.len() as u64;
        let mut held = std::mem::take(&mut self.held);
        let joined = input.len().min(self.interpolator.nbr_points() + 1);
        held.extend_from_slice(&input[..joined]);
        let written = self.run(&held, self.held_from, input_from, limit, out);
        held.truncate(held.len() - joined);
        self.run(input, input_from, u64::MAX, limit - written, out);
        let keep_from = self.position(self.next).0;
        if keep_from >= input_from {
            let skip = ((keep_from - input_from) as usize).min(input.len());
            held.clear();
            held.extend_from_slice(&input[skip..]);
            self.held_from = input_from + skip as u64;
        } else {
            held.drain(..(keep_from - self.held_from) as usize);
            held.extend_from_slice(input);
            self.held_from = keep_from;
        }
        self.held = held;
    }

    /// Appends the outputs from the next one on that begin before stream
    /// index `begins_before` and whose taps all lie in `input` (which
    /// begins at stream index `from`), at most `limit`; how many.
    fn run(
        &mut self,
        input: &[f32],
        from: u64,
        begins_before: u64,
        limit: u64,
        out: &mut Vec<f32>,
    ) -> u64 {
        let taps = self.interpolator.nbr_points() as u64;
        let end = from + input.len() as u64;
        let mut written = 0;
        while written < limit {
            let (first, sinc) = self.position(self.next);
            // The interpolator reads one sample past the taps.
            if first >= begins_before || first + taps >= end {
                break;
            }
            if self.next > self.delay {
                let at = (first - from) as usize;
                out.push(self.interpolator.get_sinc_interpolated(input, at, sinc));
                written += 1;
            }
            self.next += 1;
        }
        written
    }

    /// Appends `count` more outputs, reading silence past the input.
    fn drain(&mut self, count: u64, out: &mut Vec<f32>) {
        let taps = self.interpolator.nbr_points() as u64;
        let last = self.position(self.next + self.delay + count).0 + taps + 1;
        let end = self.held_from + self.held.len() as u64;
        let silence = vec![0.0; last.saturating_sub(end) as usize];
        self.push(&silence, count, out);
    }

    /// Forgets the stream.
    fn reset(&mut self) {
        self.held.clear();
        self.held.resize(self.interpolator.nbr_points() - 1, 0.0);
        self.held_from = 0;
        self.next = 1;
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
    fn samples_are_those_of_rubatos_own_resampler() {
        use rubato::audioadapter_buffers::direct::InterleavedSlice;
        use rubato::{Async, FixedAsync, Resampler as _, SincInterpolationParameters};
        use rubato::{SincInterpolationType::Nearest, WindowFunction::BlackmanHarris2};
        let input = crate::testutil::noise(96_000, 1.1, 0.5, 3);
        for rate in [6_000, 11_025, 22_050, 44_100, 48_000, 96_000] {
            let input = &input[..rate as usize + 77];
            let mut ours = Vec::new();
            let mut r = Resampler::try_new(rate, 8_000).expect("resampler");
            r.push(input, &mut ours);
            r.flush(&mut ours);
            let phases = 8_000 / gcd(rate, 8_000);
            let params = SincInterpolationParameters::new(SINC_LEN, BlackmanHarris2)
                .oversampling_factor(phases as usize)
                .interpolation(Nearest);
            let ratio = 8_000.0 / rate as f64;
            let mut theirs =
                Async::<f32>::new_sinc(ratio, 1.0, &params, 2048, 1, FixedAsync::Input)
                    .expect("rubato");
            let whole = InterleavedSlice::new(input, 1, input.len()).expect("buffer");
            let theirs = theirs
                .process_all(&whole, input.len(), None)
                .expect("rubato")
                .take_data();
            assert_eq!(ours[..], theirs[..ours.len()], "rate {rate}");
        }
    }

    #[test]
    fn chunking_does_not_change_output() {
        let input = tone(44_100, 1000.0, 2.0);
        let mut whole = Vec::new();
        let mut r = Resampler::try_new(44_100, 8_000).expect("resampler");
        r.push(&input, &mut whole);
        r.flush(&mut whole);
        // Pieces shorter than the filter, as long, and longer.
        for size in [1, 7, 32, 33, 34, 777] {
            let mut pieces = Vec::new();
            let mut r = Resampler::try_new(44_100, 8_000).expect("resampler");
            for chunk in input.chunks(size) {
                r.push(chunk, &mut pieces);
            }
            r.flush(&mut pieces);
            assert_eq!(whole, pieces, "pieces of {size}");
        }
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
