//! `earmark scan`: recordings to plays, and `earmark eval-session`.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde::Deserialize;
use serde_json::json;

use earmark_engine::{AudioFile, Fingerprint, FingerprintOptions, Fingerprinter};
use earmark_index::{Catalog, MatchOptions, Matcher};
use earmark_monitor::{Play, PlayEvent, Tracker, TrackerOptions, WindowOptions, Windows};

use crate::Outcome;
use crate::cli::{EvalSessionArgs, ScanArgs};
use crate::ingest::collect_audio_files;

/// Decodes a recording and returns its plays in start order.
pub fn scan_file(catalog: &Catalog, path: &Path) -> anyhow::Result<Vec<Play>> {
    let mut file = AudioFile::open(path)?;
    let mut fingerprinter = Fingerprinter::try_new(&FingerprintOptions::query(), file.rate_hz())?;
    let mut windows = Windows::new(WindowOptions::default());
    let mut tracker = Tracker::new(TrackerOptions::default());
    let mut matcher = Matcher::new(catalog, MatchOptions::default());
    let mut chunk = Fingerprint::default();
    let mut plays = Vec::new();
    let mut keep = |events: Vec<PlayEvent>| {
        plays.extend(events.into_iter().filter_map(|e| match e {
            PlayEvent::Ended(p) => Some(p),
            PlayEvent::Started(_) => None,
        }))
    };
    loop {
        let more = match file.next_mono()? {
            Some(samples) => {
                fingerprinter.push(samples, &mut chunk);
                true
            }
            None => {
                fingerprinter.flush(&mut chunk);
                false
            }
        };
        windows.push(&chunk);
        chunk.clear();
        while let Some(w) = windows.next_window() {
            keep(tracker.window(&mut matcher, &windows, &w));
        }
        if !more {
            if let Some(w) = windows.last_window() {
                keep(tracker.window(&mut matcher, &windows, &w));
            }
            keep(tracker.finish(catalog, &windows));
            break;
        }
    }
    plays.sort_by(|a, b| a.start_frame.total_cmp(&b.start_frame));
    Ok(plays)
}

fn play_json(catalog: &Catalog, file: &Path, p: &Play) -> serde_json::Value {
    let track = catalog.tracks().get(p.track);
    json!({
        "file": file.display().to_string(),
        "play": p.id,
        "track_id": track.map(|t| t.meta.external_id.as_str()),
        "title": track.map(|t| t.meta.title.as_str()),
        "artist": track.map(|t| t.meta.artist.as_str()),
        "isrc": track.and_then(|t| t.meta.isrc.as_deref()),
        "start_s": (p.start_s() * 100.0).round() / 100.0,
        "end_s": (p.end_s() * 100.0).round() / 100.0,
        "track_start_s": (p.track_start_s() * 100.0).round() / 100.0,
        "tempo": (p.tempo * 1000.0).round() / 1000.0,
        "pitch": (p.pitch * 1000.0).round() / 1000.0,
        "score": (p.score * 10.0).round() / 10.0,
    })
}

/// `earmark scan`.
pub fn run(args: &ScanArgs) -> anyhow::Result<Outcome> {
    let catalog = Catalog::open(&args.db)?;
    let files = collect_audio_files(&args.paths)?;
    let mut failures = 0;
    for file in &files {
        let started = Instant::now();
        match scan_file(&catalog, file) {
            Ok(plays) => {
                for p in &plays {
                    let line = play_json(&catalog, file, p);
                    if args.json {
                        println!("{line}");
                    } else {
                        println!(
                            "{:>8.1} {:>8.1}  {:<12} {} (from {:.1} s, tempo {:.3})",
                            p.start_s(),
                            p.end_s(),
                            line["track_id"].as_str().unwrap_or("?"),
                            line["title"].as_str().unwrap_or(""),
                            p.track_start_s(),
                            p.tempo
                        );
                    }
                }
                eprintln!(
                    "{}: {} plays in {:.1} s",
                    file.display(),
                    plays.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                failures += 1;
                eprintln!("earmark: {e:#}");
            }
        }
    }
    if failures > 0 {
        anyhow::bail!(
            "{failures} of {} recordings could not be scanned",
            files.len()
        );
    }
    Ok(Outcome::Done)
}

/// A row of a session timeline written by make_queries.py.
#[derive(Debug, Deserialize)]
struct Section {
    kind: String,
    track_id: String,
    start_s: f64,
    end_s: f64,
}

/// `earmark eval-session`: scans a session recording and compares its plays
/// with the session's timeline.
pub fn eval_session(args: &EvalSessionArgs) -> anyhow::Result<Outcome> {
    let catalog = Catalog::open(&args.db)?;
    let mut reader = csv::Reader::from_path(&args.timeline)
        .with_context(|| format!("{}", args.timeline.display()))?;
    let truth: Vec<Section> = reader
        .deserialize()
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}", args.timeline.display()))?;
    let started = Instant::now();
    let plays = scan_file(&catalog, &args.recording)?;
    let elapsed = started.elapsed().as_secs_f64();
    let name = |p: &Play| {
        catalog
            .tracks()
            .get(p.track)
            .map(|t| t.meta.external_id.clone())
            .unwrap_or_default()
    };
    let overlaps = |p: &Play, s: &Section| p.start_s() < s.end_s && s.start_s < p.end_s();
    let catalog_sections: Vec<&Section> = truth.iter().filter(|s| s.kind == "catalog").collect();
    let (mut found, mut within, mut errors) = (0, 0, Vec::new());
    for s in &catalog_sections {
        let hit = plays
            .iter()
            .filter(|p| name(p) == s.track_id && overlaps(p, s))
            .min_by(|a, b| {
                (a.start_s() - s.start_s)
                    .abs()
                    .total_cmp(&(b.start_s() - s.start_s).abs())
            });
        match hit {
            Some(p) => {
                found += 1;
                let (start, end) = (p.start_s() - s.start_s, p.end_s() - s.end_s);
                if start.abs() <= args.tolerance_s && end.abs() <= args.tolerance_s {
                    within += 1;
                }
                errors.push((s.track_id.clone(), start, end));
                println!(
                    "{:<8} truth {:>7.1}-{:>7.1}  play {:>7.1}-{:>7.1}  start {:+.1} s, end {:+.1} s",
                    s.track_id,
                    s.start_s,
                    s.end_s,
                    p.start_s(),
                    p.end_s(),
                    start,
                    end
                );
            }
            None => println!(
                "{:<8} truth {:>7.1}-{:>7.1}  MISSED",
                s.track_id, s.start_s, s.end_s
            ),
        }
    }
    let wrong: Vec<&Play> = plays
        .iter()
        .filter(|p| {
            !truth
                .iter()
                .any(|s| s.kind == "catalog" && s.track_id == name(p) && overlaps(p, s))
        })
        .collect();
    for p in &wrong {
        println!(
            "WRONG    play {:>7.1}-{:>7.1}  {}",
            p.start_s(),
            p.end_s(),
            name(p)
        );
    }
    let mut abs: Vec<f64> = errors.iter().flat_map(|e| [e.1.abs(), e.2.abs()]).collect();
    abs.sort_by(f64::total_cmp);
    let duration = truth.iter().map(|s| s.end_s).fold(0.0, f64::max);
    println!(
        "{} of {} catalog tracks found, {within} with both boundaries within {} s; {} wrong plays; \
         boundary error median {:.1} s, max {:.1} s; scanned {:.0} s of audio in {:.1} s ({:.0}x real time)",
        found,
        catalog_sections.len(),
        args.tolerance_s,
        wrong.len(),
        abs.get(abs.len() / 2).copied().unwrap_or(0.0),
        abs.last().copied().unwrap_or(0.0),
        duration,
        elapsed,
        duration / elapsed.max(1e-9)
    );
    Ok(Outcome::Done)
}
