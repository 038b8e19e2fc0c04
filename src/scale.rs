//! `earmark bench-scale`: how the catalog behaves as it grows to 100,000
//! tracks.
//!
//! Large catalogs are generated from real music rather than from random
//! hashes, so that hash skew and postings lengths look like a real catalog's:
//! each synthetic track is rearranged and revoiced from the peak
//! constellation of a dev catalog track (see [`synthesize`]), and the
//! engine's own [`Landmarker`] hashes the result. The real tracks go in first, so the dev
//! queries find their answers inside the big catalog.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rayon::prelude::*;

use earmark_engine::fingerprint::{SCHEME, frame_seconds};
use earmark_engine::peaks::PeakOptions;
use earmark_engine::{
    Fingerprint, FingerprintOptions, Landmark, Landmarker, Peak, fingerprint_file,
};
use earmark_index::{Catalog, CatalogWriter, MatchOptions, Matcher, NewTrack, TrackMeta};

use crate::Outcome;
use crate::cli::BenchScaleArgs;

/// Synthetic tracks last this fraction of the real track they take their
/// length from: the dev corpus averages 4.6 min, a national catalog about 3
/// (100,000 tracks, 5,000 hours).
const LENGTH_SCALE: f64 = 0.65;
/// Hertz per FFT bin at the analysis rate.
const HZ_PER_BIN: f32 = 8_000.0 / 1_024.0;
/// Share of passages that repeat an earlier passage of the same track.
const REPEATS: f64 = 0.35;
/// Tracks added by the last step, timed from commit to the next query.
const LATE_ADDITION: usize = 100;

/// A real track's peaks, the material synthetic tracks are cut from.
struct Source {
    meta: TrackMeta,
    path: String,
    content_hash: String,
    duration_s: f64,
    fingerprint: Fingerprint,
}

/// `earmark bench-scale`.
pub fn run(args: &BenchScaleArgs) -> anyhow::Result<Outcome> {
    crate::cli::set_jobs(args.jobs)?;
    if Catalog::manifest_path(&args.db).exists() {
        bail!(
            "{}: already holds a catalog; give an empty or new directory",
            args.db.display()
        );
    }
    let started = Instant::now();
    let sources = fingerprint_sources(&args.from)?;
    println!(
        "fingerprinted {} source tracks ({:.1} h) in {:.1} s",
        sources.len(),
        sources.iter().map(|s| s.duration_s).sum::<f64>() / 3600.0,
        started.elapsed().as_secs_f64()
    );
    print_histograms(&sources, args.seed);

    println!(
        "\n{:>8} {:>8} {:>9} {:>6} {:>5} {:>8} {:>8} {:>15} {:>15} {:>7} {:>9}",
        "tracks",
        "hours",
        "build s",
        "MB/h",
        "segs",
        "RSS MB",
        "open ms",
        "10 s p50/p99",
        "top-1",
        "wrong",
        "FP"
    );
    measure(&args.from, Duration::ZERO, &args.truth)?;
    let mut writer = CatalogWriter::open(&args.db, SCHEME)?;
    let mut build = Duration::ZERO;
    let begun = Instant::now();
    writer.commit(sources.iter().map(real_track).collect())?;
    writer.merge()?;
    build += begun.elapsed();
    let mut next = 0u64;
    for &size in &args.sizes {
        while writer.catalog().tracks().len() < size {
            let n = args.batch.min(size - writer.catalog().tracks().len());
            let batch = synthesize_batch(&sources, args.seed, next, n);
            next += n as u64;
            let begun = Instant::now();
            writer.commit(batch)?;
            writer.merge()?;
            build += begun.elapsed();
        }
        measure(&args.db, build, &args.truth)?;
        if args.compact {
            let begun = Instant::now();
            let segments = writer.catalog().info().segments;
            if writer.compact()? {
                println!(
                    "{:>8} compacted {segments} segments into 1 in {:.1} s:",
                    "",
                    begun.elapsed().as_secs_f64()
                );
                measure(&args.db, build, &args.truth)?;
            }
        }
    }
    add_late(&mut writer, &sources, args.seed, next)?;
    Ok(Outcome::Done)
}

/// Fingerprints every track of the catalog in `dir` from its source file.
fn fingerprint_sources(dir: &Path) -> anyhow::Result<Vec<Source>> {
    let catalog = Catalog::open(dir)?;
    let options = FingerprintOptions {
        chroma: false,
        ..FingerprintOptions::reference()
    };
    let tracks: Vec<_> = catalog.tracks().iter().cloned().collect();
    let sources: Vec<Source> = tracks
        .par_iter()
        .map(|t| {
            let file = fingerprint_file(Path::new(&t.path), &options)
                .with_context(|| format!("source track {}", t.meta.external_id))?;
            Ok(Source {
                meta: t.meta.clone(),
                path: t.path.clone(),
                content_hash: t.content_hash.clone(),
                duration_s: file.duration_s,
                fingerprint: file.fingerprint,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    if sources.iter().all(|s| s.fingerprint.peaks.is_empty()) {
        bail!("{}: no source track has peaks", dir.display());
    }
    Ok(sources)
}

fn real_track(s: &Source) -> NewTrack {
    NewTrack {
        meta: s.meta.clone(),
        duration_s: s.duration_s,
        path: s.path.clone(),
        content_hash: s.content_hash.clone(),
        landmarks: s.fingerprint.landmarks.clone(),
        peaks: s.fingerprint.peaks.clone(),
        embedding: None,
        beat_chroma: Vec::new(),
    }
}

/// A section of a synthetic track's source: its first frame and length.
#[derive(Debug, Clone, Copy)]
struct Passage {
    start: u32,
    span: u32,
}

/// Synthetic tracks `first..first + n` of the catalog seeded by `seed`.
fn synthesize_batch(sources: &[Source], seed: u64, first: u64, n: usize) -> Vec<NewTrack> {
    (first..first + n as u64)
        .into_par_iter()
        .map(|i| synthesize(sources, seed, i))
        .collect()
}

/// Synthetic track `index`: 10-60 s passages of one real track's
/// constellation, in a new order, some repeated as songs repeat a chorus,
/// spliced to a real track's length (times [`LENGTH_SCALE`]). The whole is
/// played backwards, stretched in time (0.85-1.18) and revoiced (see
/// [`Voicing`]): each pitch
/// class moves to another, within its octave. That keeps the equal-tempered
/// grid that makes some hashes common to much music, repeated notes and
/// octaves, but changes the other intervals at random, so that neither the
/// pairs nor the tempo- and pitch-proof triplets are the source's. (Scaling
/// intervals instead leaves, for any transposition, a band of notes moved by
/// exactly that much: a pitch-shifted query then found a synthetic track.)
fn synthesize(sources: &[Source], seed: u64, index: u64) -> NewTrack {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index);
    let usable: Vec<&Source> = sources
        .iter()
        .filter(|s| !s.fingerprint.peaks.is_empty())
        .collect();
    let fps = 1.0 / frame_seconds();
    let duration_s = (usable[rng.usize(..usable.len())].duration_s * LENGTH_SCALE).max(20.0);
    let frames = (duration_s * fps) as u32;
    let bins = PeakOptions::default();
    let (lo, hi) = (bins.lo_bin as f32, bins.hi_bin as f32);
    let source = &usable[rng.usize(..usable.len())].fingerprint;
    let stretch = 0.85 + 0.33 * rng.f64();
    let voicing = Voicing::random(&mut rng);
    let mut passages: Vec<Passage> = Vec::new();
    let mut peaks = Vec::new();
    let mut at = 0u32;
    while at < frames {
        let passage = match passages.len() {
            n if n > 0 && rng.f64() < REPEATS => passages[rng.usize(..n)],
            _ => {
                let len = ((10.0 + 50.0 * rng.f64()) * fps) as u32;
                let span = (len as f64 / stretch) as u32;
                Passage {
                    start: rng.u32(0..source.frames.saturating_sub(span).max(1)),
                    span,
                }
            }
        };
        passages.push(passage);
        // Played backwards: no rhythm of the source survives to line up
        // with a query of it.
        let end = passage.start + passage.span;
        let first = source.peaks.partition_point(|p| p.frame < passage.start);
        let last = source.peaks.partition_point(|p| p.frame < end);
        for p in source.peaks[first..last].iter().rev() {
            let frame = at + ((end - 1 - p.frame) as f64 * stretch) as u32;
            let bin = voicing.revoice(p.bin);
            if frame < frames && (lo..=hi).contains(&bin) {
                peaks.push(Peak { frame, bin, ..*p });
            }
        }
        at += ((passage.span as f64 * stretch) as u32).max(1);
    }
    let landmarks = landmarks_of(&peaks);
    NewTrack {
        meta: TrackMeta {
            external_id: format!("S{index:07}"),
            title: format!("Synthetic {index}"),
            artist: "earmark bench-scale".into(),
            isrc: None,
        },
        duration_s,
        path: format!("synthetic:{seed}:{index}"),
        content_hash: format!("synthetic-{seed}-{index}"),
        landmarks,
        peaks,
        embedding: None,
        beat_chroma: Vec::new(),
    }
}

/// How a synthetic track moves its source's notes: each of the 12 pitch
/// classes (counted from A) to another, within its octave.
#[derive(Debug, Clone, Copy)]
struct Voicing {
    classes: [u8; 12],
}

impl Voicing {
    /// A random permutation of the pitch classes that leaves none in place.
    fn random(rng: &mut fastrand::Rng) -> Self {
        let mut classes: [u8; 12] = std::array::from_fn(|c| c as u8);
        while classes.iter().enumerate().any(|(c, &to)| c as u8 == to) {
            rng.shuffle(&mut classes);
        }
        Self { classes }
    }

    /// Moves a peak's frequency to the note its pitch class maps to, in the
    /// same octave, keeping its detuning: repeated notes and octaves stay,
    /// other intervals change at random (and with them the pairs and
    /// triplets), the equal-tempered grid that real music shares stays.
    fn revoice(&self, bin: f32) -> f32 {
        let semitones = 12.0 * (bin.max(1.0) * HZ_PER_BIN / 440.0).log2();
        let note = semitones.round();
        let class = note.rem_euclid(12.0);
        let moved = note - class + self.classes[class as usize] as f32 + (semitones - note);
        440.0 * (moved / 12.0).exp2() / HZ_PER_BIN
    }
}

fn landmarks_of(peaks: &[Peak]) -> Vec<Landmark> {
    let mut landmarker = Landmarker::new(&FingerprintOptions::reference());
    let mut landmarks = Vec::new();
    for &p in peaks {
        landmarker.push(p, &mut landmarks);
    }
    landmarker.flush(&mut landmarks);
    landmarks
}

/// Prints how many hashes have 1, 2-3, 4-7... postings among the real
/// tracks and among as many synthetic ones, pairs and triplets apart.
fn print_histograms(sources: &[Source], seed: u64) {
    let real: Vec<Vec<Landmark>> = sources
        .iter()
        .map(|s| s.fingerprint.landmarks.clone())
        .collect();
    let synthetic: Vec<Vec<Landmark>> = synthesize_batch(sources, seed ^ 1, 0, sources.len())
        .into_iter()
        .map(|t| t.landmarks)
        .collect();
    let (real, synthetic) = (histogram(&real), histogram(&synthetic));
    println!(
        "\nshare of postings by the length of their hash's postings list, {} real tracks \
         vs {} synthetic ones (pairs | triplets):",
        sources.len(),
        sources.len()
    );
    println!(
        "{:>12} {:>9} {:>9} | {:>9} {:>9}",
        "postings", "real", "synthetic", "real", "synthetic"
    );
    let rows = real
        .keys()
        .chain(synthetic.keys())
        .map(|k| k.1)
        .max()
        .unwrap_or(0);
    for row in 0..=rows {
        let share = |h: &BTreeMap<(bool, u32), f64>, triplet| {
            format!(
                "{:.2}%",
                100.0 * h.get(&(triplet, row)).copied().unwrap_or(0.0)
            )
        };
        println!(
            "{:>12} {:>9} {:>9} | {:>9} {:>9}",
            format!("{}-{}", 1u64 << row, (2u64 << row) - 1),
            share(&real, false),
            share(&synthetic, false),
            share(&real, true),
            share(&synthetic, true)
        );
    }
}

/// Share of postings, by kind (triplet or not) and log2 of the length of
/// their hash's postings list.
fn histogram(tracks: &[Vec<Landmark>]) -> BTreeMap<(bool, u32), f64> {
    let mut counts = vec![0u32; 1 << earmark_index::catalog::HASH_BITS];
    let mut total = 0u64;
    for landmarks in tracks {
        let mut distinct = landmarks.clone();
        distinct.sort_unstable();
        distinct.dedup();
        for l in distinct {
            if let Some(c) = counts.get_mut(l.hash as usize) {
                *c += 1;
                total += 1;
            }
        }
    }
    let mut shares = BTreeMap::new();
    for (hash, &c) in counts.iter().enumerate() {
        if c > 0 {
            let triplet = hash as u32 & earmark_engine::hash::TRIPLET != 0;
            *shares.entry((triplet, c.ilog2())).or_insert(0.0) += c as f64 / total as f64;
        }
    }
    shares
}

/// Prints one row of figures for the catalog in `db`.
fn measure(db: &Path, build: Duration, truth: &[PathBuf]) -> anyhow::Result<()> {
    let mut opens: Vec<f64> = (0..5)
        .map(|_| {
            let begun = Instant::now();
            Catalog::open(db).map(|_| begun.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    opens.sort_by(f64::total_cmp);
    let info = Catalog::open(db)?.info();
    let eval = eval(db, truth)?;
    let hits = &eval["in_catalog"];
    let ooc = &eval["out_of_catalog"];
    let ten = &eval["query_ms_by_length"]["10"];
    println!(
        "{:>8} {:>8.0} {:>9.1} {:>6.3} {:>5} {:>8.0} {:>8.1} {:>15} {:>15} {:>7} {:>9}",
        info.tracks,
        info.hours,
        build.as_secs_f64(),
        info.bytes_on_disk as f64 / 1e6 / info.hours.max(1e-9),
        info.segments,
        eval["peak_resident_mb"].as_f64().unwrap_or(0.0),
        opens[opens.len() / 2],
        format!(
            "{:.1}/{:.1}",
            ten["median"].as_f64().unwrap_or(f64::NAN),
            ten["p99"].as_f64().unwrap_or(f64::NAN)
        ),
        format!(
            "{}/{} {:.1}%",
            hits["hits"],
            hits["n"],
            100.0 * hits["rate"].as_f64().unwrap_or(0.0)
        ),
        hits["wrong"],
        format!("{}/{}", ooc["false_positives"], ooc["n"]),
    );
    Ok(())
}

/// Runs `earmark eval` on one thread in a process of its own, so that its
/// memory figure is the matcher's alone.
fn eval(db: &Path, truth: &[PathBuf]) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe().context("finding the earmark binary")?;
    let mut command = Command::new(exe);
    command
        .args(["eval", "--jobs", "1", "--json", "--db"])
        .arg(db);
    for t in truth {
        command.arg("--truth").arg(t);
    }
    let out = command.output().context("running earmark eval")?;
    if !out.status.success() {
        bail!(
            "earmark eval failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("reading earmark eval's JSON")
}

/// Adds [`LATE_ADDITION`] tracks to the finished catalog, timing the commit
/// and the merges apart, and checks that a fresh reader finds the last one.
fn add_late(
    writer: &mut CatalogWriter,
    sources: &[Source],
    seed: u64,
    first: u64,
) -> anyhow::Result<()> {
    let batch = synthesize_batch(sources, seed, first, LATE_ADDITION);
    let probe = batch.last().map(|t| Fingerprint {
        peaks: t.peaks.clone(),
        landmarks: t.landmarks.clone(),
        frames: t.peaks.last().map_or(0, |p| p.frame + 1),
    });
    let begun = Instant::now();
    writer.commit(batch)?;
    let committed = begun.elapsed();
    let catalog = Catalog::open(writer.catalog().dir())?;
    let found = probe
        .and_then(|q| {
            Matcher::new(&catalog, MatchOptions::default())
                .identify(&q)
                .best
        })
        .and_then(|m| catalog.tracks().get(m.candidate.track))
        .map(|t| t.meta.external_id.clone());
    let visible = begun.elapsed();
    let merging = Instant::now();
    let merges = writer.merge()?;
    println!(
        "\nadded {LATE_ADDITION} tracks to {} in {:.2} s (commit), identified the last of them \
         from a fresh reader {:.2} s after the start ({}); then {merges} merges in {:.1} s",
        writer.catalog().tracks().len() - LATE_ADDITION,
        committed.as_secs_f64(),
        visible.as_secs_f64(),
        found.as_deref().unwrap_or("not found"),
        merging.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin_of(hz: f32) -> f32 {
        hz / HZ_PER_BIN
    }

    #[test]
    fn revoicing_moves_pitch_classes_within_the_octave() {
        // A to C, A# to A, the rest in place (as a test, not a derangement).
        let mut classes: [u8; 12] = std::array::from_fn(|c| c as u8);
        classes[0] = 3;
        classes[1] = 0;
        let v = Voicing { classes };
        let hz = |semitones: f32| 440.0 * (semitones / 12.0).exp2();
        let at = |semitones: f32| v.revoice(bin_of(hz(semitones))) * HZ_PER_BIN;
        // A440 becomes C, the A an octave up the C an octave up, an A# a
        // quarter of a semitone sharp an A as sharp; B stays.
        assert!((at(0.0) - hz(3.0)).abs() < 0.5);
        assert!((at(12.0) - hz(15.0)).abs() < 0.5);
        assert!((at(1.25) - hz(0.25)).abs() < 0.5);
        assert!((at(-10.0) - hz(-10.0)).abs() < 0.5);
        let random = Voicing::random(&mut fastrand::Rng::with_seed(1));
        assert!(
            random
                .classes
                .iter()
                .enumerate()
                .all(|(c, &to)| c as u8 != to)
        );
        let mut sorted = random.classes;
        sorted.sort_unstable();
        assert_eq!(sorted, std::array::from_fn(|c| c as u8));
    }

    #[test]
    fn synthetic_tracks_are_reproducible_and_differ_from_their_source() {
        let rate = 22_050;
        let samples = earmark_engine::testutil::song(rate, 60.0, 5);
        let options = FingerprintOptions {
            chroma: false,
            ..FingerprintOptions::reference()
        };
        let fingerprint =
            earmark_engine::fingerprint_samples(&samples, rate, &options).expect("fingerprint");
        let source = Source {
            meta: TrackMeta {
                external_id: "x".into(),
                title: "x".into(),
                artist: "x".into(),
                isrc: None,
            },
            path: "x".into(),
            content_hash: "x".into(),
            duration_s: fingerprint.frames as f64 * frame_seconds(),
            fingerprint,
        };
        let sources = [source];
        let a = synthesize(&sources, 7, 3);
        assert_eq!(a.landmarks, synthesize(&sources, 7, 3).landmarks);
        assert_ne!(a.landmarks, synthesize(&sources, 7, 4).landmarks);
        assert!(!a.landmarks.is_empty());
        let own: std::collections::HashSet<u32> = sources[0]
            .fingerprint
            .landmarks
            .iter()
            .map(|l| l.hash)
            .collect();
        let shared = a.landmarks.iter().filter(|l| own.contains(&l.hash)).count();
        assert!(
            shared * 5 < a.landmarks.len(),
            "{shared} of {}",
            a.landmarks.len()
        );
    }
}
