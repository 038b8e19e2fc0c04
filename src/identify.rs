//! `earmark identify`, and the query path that `eval` shares with it.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use earmark_engine::fingerprint::SCHEME;
use earmark_engine::{AudioFile, Fingerprint, FingerprintOptions, Fingerprinter};
use earmark_index::{Catalog, Identification, Match, MatchOptions, Matcher, Track};

use crate::Outcome;
use crate::cli::IdentifyArgs;

/// A decoded clip: mono samples at their own rate.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Mono samples.
    pub samples: Vec<f32>,
    /// Their rate.
    pub rate_hz: u32,
}

impl Clip {
    /// Its length in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / self.rate_hz as f64
    }
}

/// Decodes at most `max_seconds` of a file.
pub fn decode_clip(path: &Path, max_seconds: f64) -> earmark_engine::Result<Clip> {
    read_clip(&mut AudioFile::open(path)?, max_seconds)
}

/// Decodes at most `max_seconds` of an open stream.
pub fn read_clip(file: &mut AudioFile, max_seconds: f64) -> earmark_engine::Result<Clip> {
    let mut samples = Vec::new();
    decode_up_to(file, max_seconds, |chunk| samples.extend_from_slice(chunk))?;
    Ok(Clip {
        samples,
        rate_hz: file.rate_hz(),
    })
}

/// Decodes at most `max_seconds` of an open stream, handing the mono
/// samples to `each` a packet at a time; returns how many it handed over.
fn decode_up_to(
    file: &mut AudioFile,
    max_seconds: f64,
    mut each: impl FnMut(&[f32]),
) -> earmark_engine::Result<usize> {
    let max = (max_seconds.max(0.0) * file.rate_hz() as f64) as usize;
    let mut done = 0;
    while done < max {
        let Some(chunk) = file.next_mono()? else {
            break;
        };
        let chunk = &chunk[..chunk.len().min(max - done)];
        each(chunk);
        done += chunk.len();
    }
    Ok(done)
}

/// Fingerprints clips as queries, keeping the fingerprinter of the last
/// clip's rate for the next one: building one (the resampler's filter, the
/// FFT plan) costs a few percent of a 10 s clip's whole query.
#[derive(Debug, Default)]
pub struct QueryFingerprinter(Option<(u32, Fingerprinter)>);

impl QueryFingerprinter {
    /// The query fingerprint of `clip`.
    ///
    /// # Errors
    /// [`earmark_engine::Error::Limit`] for a rate that cannot be resampled.
    pub fn fingerprint(&mut self, clip: &Clip) -> earmark_engine::Result<Fingerprint> {
        let fingerprinter = self.at_rate(clip.rate_hz)?;
        // A flush leaves the fingerprinter as new.
        let mut fingerprint = Fingerprint::default();
        fingerprinter.push(&clip.samples, &mut fingerprint);
        fingerprinter.flush(&mut fingerprint);
        Ok(fingerprint)
    }

    /// The query fingerprint of at most `max_seconds` of an open stream,
    /// fingerprinted as each packet is decoded (the same fingerprint as of
    /// the decoded clip, without holding its samples), and the seconds it
    /// covers.
    ///
    /// # Errors
    /// What decoding meets, and [`earmark_engine::Error::Limit`] for a rate
    /// that cannot be resampled.
    pub fn fingerprint_stream(
        &mut self,
        file: &mut AudioFile,
        max_seconds: f64,
    ) -> earmark_engine::Result<(Fingerprint, f64)> {
        let rate_hz = file.rate_hz();
        let fingerprinter = self.at_rate(rate_hz)?;
        let mut fingerprint = Fingerprint::default();
        let decoded = decode_up_to(file, max_seconds, |chunk| {
            fingerprinter.push(chunk, &mut fingerprint)
        });
        // Also after an error: the next stream starts from a clean state.
        fingerprinter.flush(&mut fingerprint);
        decoded.map(|samples| (fingerprint, samples as f64 / rate_hz as f64))
    }

    /// The fingerprinter for a rate: the last one if the rate is the same.
    fn at_rate(&mut self, rate_hz: u32) -> earmark_engine::Result<&mut Fingerprinter> {
        let kept = match self.0.take() {
            Some((rate, fingerprinter)) if rate == rate_hz => fingerprinter,
            _ => Fingerprinter::try_new(&FingerprintOptions::query(), rate_hz)?,
        };
        Ok(&mut self.0.insert((rate_hz, kept)).1)
    }
}

/// Fingerprints a clip as a query and votes it against the catalog.
pub fn identify_clip(
    matcher: &mut Matcher<'_>,
    fingerprinter: &mut QueryFingerprinter,
    clip: &Clip,
) -> earmark_engine::Result<Identification> {
    Ok(matcher.identify(&fingerprinter.fingerprint(clip)?))
}

/// `value` rounded to `decimals` places, for JSON a person reads (what
/// rounds to zero is 0, never -0).
pub fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale + 0.0
}

/// The JSON form of an identification, as `identify --json` prints it.
pub fn match_json(catalog: &Catalog, id: &Identification) -> serde_json::Value {
    match id.best {
        Some(m) => matched_json(catalog.tracks().get(m.candidate.track), &m),
        None => serde_json::Value::Null,
    }
}

/// The JSON form of an accepted match of `track`.
pub fn matched_json(track: Option<&Track>, m: &Match) -> serde_json::Value {
    json!({
        "track_id": track.map(|t| t.meta.external_id.as_str()),
        "title": track.map(|t| t.meta.title.as_str()),
        "artist": track.map(|t| t.meta.artist.as_str()),
        "isrc": track.and_then(|t| t.meta.isrc.as_deref()),
        "path": track.map(|t| t.path.as_str()),
        "offset_s": round(m.candidate.offset_s(), 3),
        "score": round(m.candidate.score as f64, 2),
        "tempo": round(m.candidate.tempo as f64, 4),
        "pitch": round(m.candidate.pitch as f64, 4),
        "confidence": round(m.confidence as f64, 3),
    })
}

/// `earmark identify`.
pub fn run(args: &IdentifyArgs) -> anyhow::Result<Outcome> {
    let catalog = Catalog::open_for(&args.db, SCHEME)?;
    let mut matcher = Matcher::new(&catalog, MatchOptions::default());
    let mut fingerprinter = QueryFingerprinter::default();
    let mut outcome = Outcome::Done;
    let mut errors = 0usize;
    for file in &args.files {
        let started = Instant::now();
        let result = AudioFile::open(file)
            .and_then(|mut file| fingerprinter.fingerprint_stream(&mut file, args.max_seconds))
            .map(|(fingerprint, _)| matcher.identify(&fingerprint));
        let elapsed = started.elapsed();
        match result {
            Ok(id) => {
                if id.best.is_none() {
                    outcome = Outcome::NoMatch;
                }
                print_result(&catalog, file, &id, elapsed, args.json);
            }
            Err(e) => {
                errors += 1;
                if args.json {
                    println!(
                        "{}",
                        json!({"file": file.display().to_string(), "error": e.to_string()})
                    );
                } else {
                    eprintln!("earmark: {e}");
                }
            }
        }
    }
    if errors > 0 {
        anyhow::bail!("{errors} of {} files could not be read", args.files.len());
    }
    Ok(outcome)
}

fn print_result(
    catalog: &Catalog,
    file: &Path,
    id: &Identification,
    elapsed: Duration,
    json: bool,
) {
    let ms = elapsed.as_secs_f64() * 1e3;
    if json {
        println!(
            "{}",
            json!({
                "file": file.display().to_string(),
                "match": match_json(catalog, id),
                "elapsed_ms": round(ms, 2),
            })
        );
        return;
    }
    match id
        .best
        .and_then(|m| catalog.tracks().get(m.candidate.track).map(|t| (m, t)))
    {
        Some((m, t)) => {
            let by = if t.meta.artist.is_empty() {
                String::new()
            } else {
                format!(" by {}", t.meta.artist)
            };
            println!(
                "{}: {} \"{}\"{by} at {:.2} s{} (score {:.1}, confidence {:.2}) [{ms:.1} ms]",
                file.display(),
                t.meta.external_id,
                t.meta.title,
                round(m.candidate.offset_s(), 2),
                describe_change(m.candidate.tempo, m.candidate.pitch),
                m.candidate.score,
                m.confidence,
            )
        }
        None => println!("{}: no match [{ms:.1} ms]", file.display()),
    }
}

/// "played 4% fast, 1.0 semitone higher" when the match was stretched.
pub fn describe_change(tempo: f32, pitch: f32) -> String {
    let mut parts = Vec::new();
    let percent = (tempo - 1.0) * 100.0;
    if percent.abs() >= 0.5 {
        let how = if percent > 0.0 { "fast" } else { "slow" };
        parts.push(format!("played {:.0}% {how}", percent.abs()));
    }
    let semitones = 12.0 * pitch.log2();
    if semitones.abs() >= 0.1 {
        let how = if semitones > 0.0 { "higher" } else { "lower" };
        parts.push(format!("{:.1} semitones {how}", semitones.abs()));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(", {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use earmark_engine::testutil::{song, write_wav};

    #[test]
    fn a_stream_is_fingerprinted_as_its_decoded_clip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clip.wav");
        write_wav(&path, 22_050, 2, &song(22_050, 2.0 * 12.0, 3)).expect("write");
        let mut fingerprinter = QueryFingerprinter::default();
        let clip = decode_clip(&path, 10.0).expect("decode");
        let whole = fingerprinter.fingerprint(&clip).expect("fingerprint");
        assert!(!whole.landmarks.is_empty());
        for _ in 0..2 {
            let mut file = AudioFile::open(&path).expect("open");
            let (streamed, seconds) = fingerprinter
                .fingerprint_stream(&mut file, 10.0)
                .expect("fingerprint");
            assert!(streamed == whole, "not the fingerprint of the decoded clip");
            assert!((seconds - 10.0).abs() < 1e-3, "{seconds}");
        }
        let mut file = AudioFile::open(&path).expect("open");
        let (_, seconds) = fingerprinter
            .fingerprint_stream(&mut file, 60.0)
            .expect("all");
        assert!((seconds - 12.0).abs() < 1e-3, "the whole 12 s: {seconds}");
    }

    #[test]
    fn what_rounds_to_zero_prints_as_zero() {
        assert_eq!(format!("{:.2}", round(-0.004, 2)), "0.00");
        assert_eq!(json!(round(-0.0004, 3)).to_string(), "0.0");
        assert_eq!(round(-1.236, 2), -1.24);
    }
}
