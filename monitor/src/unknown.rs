//! Music that matches nothing.
//!
//! Each second of the stream is judged music or not from its loudness and
//! how it breathes: speech pauses between syllables, so many of its 32 ms
//! frames are far quieter than the average around them, while music keeps
//! sounding. A second of music that no play covers is unidentified; a run of
//! them longer than `min_s` (gaps of up to two seconds allowed) becomes an
//! [`UnidentifiedRecord`], and its first half minute is kept as a WAV clip
//! for a person to listen to. Seconds are judged `DECIDE_AFTER_S` late, once
//! the tracker has had time to start or end the plays around them.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use earmark_engine::chroma::{ChromaFrames, pulse_of_samples};

use crate::Error;
use crate::log::{UnidentifiedRecord, round};

/// Seconds a second waits before it is judged.
const DECIDE_AFTER_S: usize = 25;
/// Longest clip kept, in seconds.
const CLIP_S: usize = 30;
/// Seconds of context for the loudness statistics.
const CONTEXT_S: usize = 5;
/// Quieter than this (dBFS) is silence.
const SILENCE_DB: f32 = -50.0;
/// Share of frames below half the mean power above which sound is speech.
const SPEECH_LOW_SHARE: f32 = 0.3;
/// Seconds of onsets around a second that tell whether it keeps a beat.
pub const PULSE_S: f64 = 10.0;
/// Onset periodicity ([`earmark_engine::chroma::pulse`]) at which sound
/// keeps a beat.
pub const MIN_PULSE: f32 = 0.35;
/// Seconds without unidentified music that a run may cross.
const MAX_GAP_S: u32 = 2;

/// One second of the stream.
#[derive(Debug, Clone)]
struct Second {
    /// Session position of its start.
    at_s: f64,
    /// Power of each 32 ms frame.
    frames: Vec<f32>,
    samples: Vec<f32>,
}

/// A run of unidentified music being followed.
#[derive(Debug)]
struct Run {
    start_s: f64,
    end_s: f64,
    gap: u32,
    clip: Vec<f32>,
}

/// Watches a stream for music no play explains.
#[derive(Debug)]
pub struct UnknownMusic {
    rate_hz: u32,
    min_s: f64,
    clips: PathBuf,
    next_segment: u64,
    /// The second being filled.
    current: Second,
    /// Complete seconds not judged yet, oldest first, and the context behind.
    pending: VecDeque<Second>,
    run: Option<Run>,
}

impl UnknownMusic {
    /// Watches a stream at `rate_hz` starting at session position `at_s` for
    /// runs of at least `min_s` seconds, numbered from `next`; clips go to
    /// the folder `clips` (created when needed).
    pub fn new(rate_hz: u32, at_s: f64, min_s: f64, clips: PathBuf, next: u64) -> Self {
        Self {
            rate_hz,
            min_s,
            clips,
            next_segment: next,
            current: Second {
                at_s,
                frames: Vec::new(),
                samples: Vec::new(),
            },
            pending: VecDeque::new(),
            run: None,
        }
    }

    /// Adds samples; `covered` tells whether a play covers a session
    /// position. Returns the segments that ended.
    pub fn push(
        &mut self,
        samples: &[f32],
        covered: impl Fn(f64) -> bool,
    ) -> Result<Vec<UnidentifiedRecord>, Error> {
        let per_second = self.rate_hz as usize;
        let mut ended = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (per_second - self.current.samples.len()).min(rest.len());
            self.current.samples.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.current.samples.len() == per_second {
                let next = Second {
                    at_s: self.current.at_s + 1.0,
                    frames: Vec::new(),
                    samples: Vec::with_capacity(per_second),
                };
                let mut done = std::mem::replace(&mut self.current, next);
                done.frames = frame_powers(&done.samples, self.rate_hz);
                self.pending.push_back(done);
                if self.pending.len() > DECIDE_AFTER_S + CONTEXT_S {
                    self.pending.pop_front();
                }
                if self.pending.len() > DECIDE_AFTER_S {
                    let i = self.pending.len() - 1 - DECIDE_AFTER_S;
                    ended.extend(self.judge(i, &covered)?);
                }
            }
        }
        Ok(ended)
    }

    /// Ends the stream: judges what is left and closes a run under way.
    pub fn finish(
        mut self,
        covered: impl Fn(f64) -> bool,
    ) -> Result<Vec<UnidentifiedRecord>, Error> {
        let mut ended = Vec::new();
        let first = self.pending.len().saturating_sub(DECIDE_AFTER_S);
        for i in first..self.pending.len() {
            ended.extend(self.judge(i, &covered)?);
        }
        ended.extend(self.close()?);
        Ok(ended)
    }

    /// Whether second `i` of `pending` is music.
    /// Whether second `i` is music: its loudness does not breathe like
    /// speech, or (for dynamic, percussive music) the onsets of the seconds
    /// around it keep a beat.
    fn is_music(&self, i: usize) -> bool {
        let from = i.saturating_sub(CONTEXT_S / 2);
        let to = (i + CONTEXT_S / 2 + 1).min(self.pending.len());
        let own = &self.pending[i].frames;
        if is_music(self.pending.range(from..to).map(|s| &s.frames[..]), own) {
            return true;
        }
        let half = (PULSE_S / 2.0) as usize;
        let around: Vec<f32> = (self
            .pending
            .range(i.saturating_sub(half)..(i + half).min(self.pending.len())))
        .flat_map(|s| s.samples.iter().copied())
        .collect();
        is_audible(own) && pulse_of_samples(&around, self.rate_hz).unwrap_or(0.0) >= MIN_PULSE
    }

    fn judge(
        &mut self,
        i: usize,
        covered: &impl Fn(f64) -> bool,
    ) -> Result<Option<UnidentifiedRecord>, Error> {
        let second = &self.pending[i];
        let middle = second.at_s + 0.5;
        if self.is_music(i) && !covered(middle) {
            let second = &self.pending[i];
            let run = self.run.get_or_insert_with(|| Run {
                start_s: second.at_s,
                end_s: second.at_s,
                gap: 0,
                clip: Vec::new(),
            });
            if run.clip.len() < CLIP_S * second.samples.len() {
                run.clip.extend_from_slice(&second.samples);
            }
            run.end_s = second.at_s + 1.0;
            run.gap = 0;
            return Ok(None);
        }
        match self.run.as_mut() {
            Some(run) if run.gap < MAX_GAP_S => {
                run.gap += 1;
                Ok(None)
            }
            Some(_) => self.close(),
            None => Ok(None),
        }
    }

    fn close(&mut self) -> Result<Option<UnidentifiedRecord>, Error> {
        let Some(run) = self.run.take() else {
            return Ok(None);
        };
        if run.end_s - run.start_s < self.min_s {
            return Ok(None);
        }
        let segment = self.next_segment;
        self.next_segment += 1;
        let clip = write_clip(&self.clips, segment, self.rate_hz, &run.clip)?;
        let frames = ChromaFrames::of_samples(&run.clip, self.rate_hz).ok();
        let embedding = frames.as_ref().and_then(|f| f.embedding(0, f.len()));
        let beat_chroma = frames.map_or_else(Vec::new, |f| f.beat_chroma(0, f.len()));
        Ok(Some(UnidentifiedRecord {
            segment,
            start_s: round(run.start_s),
            end_s: round(run.end_s),
            started_at: None,
            clip,
            similar: Vec::new(),
            embedding,
            beat_chroma,
        }))
    }
}

/// Mean power of each 32 ms frame of `samples` at `rate_hz`.
pub fn frame_powers(samples: &[f32], rate_hz: u32) -> Vec<f32> {
    let frame = (rate_hz as usize * 32 / 1000).max(1);
    samples
        .chunks(frame)
        .map(|c| c.iter().map(|s| s * s).sum::<f32>() / c.len() as f32)
        .collect()
}

/// Whether a second is music, from its frame powers (`own`) and those of
/// the seconds around it, itself included (`around`, about five seconds).
pub fn is_music<'a>(around: impl Iterator<Item = &'a [f32]>, own: &[f32]) -> bool {
    let frames: Vec<f32> = around.flatten().copied().collect();
    let mean = frames.iter().sum::<f32>() / frames.len().max(1) as f32;
    let low = frames.iter().filter(|&&p| p < 0.5 * mean).count() as f32;
    is_audible(own) && low / (frames.len().max(1) as f32) < SPEECH_LOW_SHARE
}

/// Whether a second, from its frame powers, is louder than silence.
pub fn is_audible(own: &[f32]) -> bool {
    let level = 10.0
        * (own.iter().sum::<f32>() / own.len().max(1) as f32)
            .max(1e-12)
            .log10();
    level > SILENCE_DB
}

/// Stretches of a recording, one flag a second (`true`: music no play
/// covers), that make unidentified segments: runs longer than `min_s`
/// seconds, crossing gaps of up to two seconds. Start and end in seconds.
pub fn unidentified_runs(flags: &[bool], min_s: f64) -> Vec<(f64, f64)> {
    let mut runs = Vec::new();
    let mut run: Option<(usize, usize)> = None;
    for (t, &flag) in flags.iter().enumerate() {
        match (run, flag) {
            (None, true) => run = Some((t, t + 1)),
            (Some((start, _)), true) => run = Some((start, t + 1)),
            (Some((start, end)), false) if t - end >= MAX_GAP_S as usize => {
                runs.push((start, end));
                run = None;
            }
            _ => {}
        }
    }
    runs.extend(run);
    runs.into_iter()
        .map(|(a, b)| (a as f64, b as f64))
        .filter(|(a, b)| b - a >= min_s)
        .collect()
}

/// Writes a clip as 16-bit WAV; returns its path relative to `dir`'s parent.
fn write_clip(dir: &Path, segment: u64, rate_hz: u32, samples: &[f32]) -> Result<String, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = format!("unidentified-{segment:04}.wav");
    let path = dir.join(&name);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate_hz,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let io = |e: hound::Error| Error::Log(format!("{}: {e}", path.display()));
    let mut writer = hound::WavWriter::create(&path, spec).map_err(io)?;
    for &s in samples {
        writer
            .write_sample((s.clamp(-1.0, 1.0) * 32_767.0) as i16)
            .map_err(io)?;
    }
    writer.finalize().map_err(io)?;
    let folder = dir
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    Ok(format!("{folder}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use earmark_engine::testutil::{Rng, noise, song, tone};

    const RATE: u32 = 8_000;

    /// Bursts of noise 80-250 ms long with pauses of 50-300 ms between:
    /// speech's rhythm, syllables coming irregularly.
    fn talk(seconds: f32) -> Vec<f32> {
        let mut rng = Rng::new(5);
        let ms = |ms: f32| (ms * RATE as f32 / 1000.0) as usize;
        let mut gain = Vec::new();
        while gain.len() < (seconds * RATE as f32) as usize {
            gain.extend(std::iter::repeat_n(1.0, ms(rng.range(80.0, 250.0))));
            gain.extend(std::iter::repeat_n(0.01, ms(rng.range(50.0, 300.0))));
        }
        noise(RATE, seconds, 0.3, 3)
            .into_iter()
            .zip(gain)
            .map(|(s, g)| s * g)
            .collect()
    }

    /// A song over a held chord: music that keeps sounding between notes.
    fn music(seconds: f32) -> Vec<f32> {
        let pad = [220.0, 277.0, 330.0].map(|f| tone(RATE, f, seconds, 0.05));
        song(RATE, seconds, 4)
            .iter()
            .enumerate()
            .map(|(i, s)| s + pad.iter().map(|p| p[i]).sum::<f32>())
            .collect()
    }

    #[test]
    fn music_nobody_matched_is_reported_with_a_clip_but_talk_and_silence_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clips = dir.path().join("clips");
        let mut watch = UnknownMusic::new(RATE, 100.0, 20.0, clips, 1);
        // 10 s of silence, 40 s of talk, 35 s of music, of which the last
        // 10 s a play covers, then 30 s of silence.
        let audio = [
            vec![0.0; 10 * RATE as usize],
            talk(40.0),
            music(35.0),
            vec![0.0; 30 * RATE as usize],
        ]
        .concat();
        let covered = |s: f64| (175.0..185.0).contains(&s);
        let mut found = Vec::new();
        for chunk in audio.chunks(1_000) {
            found.extend(watch.push(chunk, covered).expect("push"));
        }
        found.extend(watch.finish(covered).expect("finish"));
        assert_eq!(found.len(), 1, "{found:?}");
        let s = &found[0];
        assert!((s.start_s - 150.0).abs() <= 1.0, "{s:?}");
        assert!((s.end_s - 175.0).abs() <= 1.0, "{s:?}");
        let clip = hound::WavReader::open(dir.path().join(&s.clip)).expect("clip written");
        assert_eq!(clip.duration() as f64 / RATE as f64, s.end_s - s.start_s);
    }
}
