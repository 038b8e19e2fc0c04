//! `earmark index add` and `earmark index info`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use earmark_engine::fingerprint::SCHEME;
use earmark_engine::{AudioFile, FingerprintOptions, fingerprint_audio};
use earmark_index::{Catalog, CatalogWriter, NewTrack, TrackMeta};

use crate::Outcome;
use crate::cli::{AddArgs, InfoArgs, VerifyArgs};
use crate::cluster::Shard;
use crate::cpu::process_time;

/// Extensions picked up when walking folders (files named explicitly are
/// always tried).
const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "flac", "mp3", "ogg", "oga", "opus", "m4a", "mp4", "aac", "mka", "mkv", "webm",
    "aif", "aiff", "caf",
];

/// Tracks fingerprinted between two commits: a crash loses at most one batch.
const BATCH: usize = 64;

/// The files a command was given, folders walked.
#[derive(Debug, Default)]
pub struct AudioFiles {
    /// Files named, and audio files found in folders, sorted.
    pub files: Vec<PathBuf>,
    /// Folders and entries that could not be walked, with the reason; the
    /// walk goes on without them.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Lists the files named by `paths`, walking folders recursively: each
/// folder once, however symbolic links loop back to it, and only regular
/// files in it (a named pipe would block the batch).
pub fn collect_audio_files(paths: &[PathBuf]) -> AudioFiles {
    fn walk(dir: &Path, found: &mut AudioFiles, walked: &mut HashSet<PathBuf>) {
        let unreadable = |found: &mut AudioFiles, path: &Path, e: std::io::Error| {
            found.unreadable.push((path.to_owned(), e.to_string()));
        };
        match dir.canonicalize() {
            Ok(real) => {
                if !walked.insert(real) {
                    return;
                }
            }
            Err(e) => return unreadable(found, dir, e),
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => return unreadable(found, dir, e),
        };
        for entry in entries {
            let path = match entry {
                Ok(entry) => entry.path(),
                Err(e) => {
                    unreadable(found, dir, e);
                    continue;
                }
            };
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => walk(&path, found, walked),
                Ok(m) if m.is_file() && is_audio_name(&path) => found.files.push(path),
                Ok(_) => {}
                Err(e) => unreadable(found, &path, e),
            }
        }
    }
    let mut found = AudioFiles::default();
    let mut walked = HashSet::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut found, &mut walked);
        } else {
            found.files.push(path.clone());
        }
    }
    found.files.sort();
    found.files.dedup();
    found
}

fn is_audio_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Why `path` failed, for a line that names it already: the error's chain
/// without the path it begins with.
pub fn failure_reason(path: &Path, e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let named = format!("{}: ", path.display());
    text.strip_prefix(&named)
        .map_or_else(|| text.clone(), str::to_owned)
}

/// BLAKE3 of a file's bytes, in hex.
pub fn content_hash(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("{}", path.display()))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Reads the `--metadata` CSV into a map from canonical path to metadata.
fn read_metadata(path: &Path) -> anyhow::Result<HashMap<PathBuf, TrackMeta>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("{}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}", path.display()))?
        .clone();
    let column = |names: &[&str]| headers.iter().position(|h| names.contains(&h));
    let Some(path_col) = column(&["path", "abspath", "file"]) else {
        bail!("{}: needs a `path` column", path.display());
    };
    let (id, title, artist, isrc) = (
        column(&["id", "track_id"]),
        column(&["title"]),
        column(&["artist"]),
        column(&["isrc"]),
    );
    let mut map = HashMap::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: record {}", path.display(), line + 1))?;
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("").trim();
        let file = PathBuf::from(field(Some(path_col)));
        let key = file.canonicalize().unwrap_or(file);
        let isrc = field(isrc);
        map.insert(
            key,
            TrackMeta {
                external_id: field(id).to_owned(),
                title: field(title).to_owned(),
                artist: field(artist).to_owned(),
                isrc: (!isrc.is_empty()).then(|| isrc.to_owned()),
            },
        );
    }
    Ok(map)
}

fn meta_for(path: &Path, given: Option<&TrackMeta>) -> TrackMeta {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut meta = given.cloned().unwrap_or_default();
    if meta.external_id.is_empty() {
        meta.external_id = stem.clone();
    }
    if meta.title.is_empty() {
        meta.title = stem;
    }
    meta
}

/// A progress bar with an ETA on standard error (hidden when it is not a
/// terminal).
pub fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} [{elapsed_precise}<{eta}]")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// `earmark index add`.
pub fn add(args: &AddArgs) -> anyhow::Result<Outcome> {
    crate::cli::set_jobs(args.jobs)?;
    let AudioFiles { files, unreadable } = collect_audio_files(&args.paths);
    for (path, reason) in &unreadable {
        eprintln!("earmark: skipped {}: {reason}", path.display());
    }
    if files.is_empty() {
        bail!("no audio files found");
    }
    let metadata = match &args.metadata {
        Some(path) => read_metadata(path)?,
        None => HashMap::new(),
    };
    let mut writer = CatalogWriter::open(&args.db, SCHEME)?;
    let postings_before = writer.catalog().postings();
    let decode_cpu = if args.compare_decode {
        let bar = progress(files.len(), "decoding");
        let start = process_time();
        let samples: u64 = files
            .par_iter()
            .map(|f| {
                bar.inc(1);
                decode_only(f).unwrap_or(0)
            })
            .sum();
        bar.finish_and_clear();
        Some((process_time() - start, samples))
    } else {
        None
    };

    let options = FingerprintOptions::reference();
    let started = Instant::now();
    let cpu_start = process_time();
    let bar = progress(files.len(), "indexing");
    let mut failures = Vec::new();
    let (mut added, mut skipped, mut hours) = (0usize, 0usize, 0.0f64);
    let mut elsewhere = 0usize;
    let mut seen: HashSet<String> = HashSet::new();
    for batch in files.chunks(BATCH) {
        let results: Vec<(PathBuf, anyhow::Result<Prepared>)> = batch
            .par_iter()
            .map(|path| {
                let r = prepare(path, &options, writer.catalog(), &metadata, args.shard);
                bar.inc(1);
                (path.clone(), r)
            })
            .collect();
        let mut ready = Vec::new();
        for (path, result) in results {
            match result {
                Ok(Prepared::New(mut track)) => {
                    if !seen.insert(track.content_hash.clone()) {
                        skipped += 1;
                        continue;
                    }
                    let catalog = writer.catalog();
                    if catalog
                        .tracks()
                        .by_external_id(&track.meta.external_id)
                        .is_some()
                        || ready
                            .iter()
                            .any(|t: &NewTrack| t.meta.external_id == track.meta.external_id)
                    {
                        let taken = std::mem::take(&mut track.meta.external_id);
                        track.meta.external_id = format!("{taken}-{}", &track.content_hash[..8]);
                        bar.suspend(|| {
                            eprintln!(
                                "earmark: {}: id {taken} is another recording's; indexed as {}",
                                path.display(),
                                track.meta.external_id
                            )
                        });
                    }
                    hours += track.duration_s / 3600.0;
                    ready.push(*track);
                }
                Ok(Prepared::Indexed) => skipped += 1,
                Ok(Prepared::OtherShard) => elsewhere += 1,
                Err(e) => {
                    let reason = failure_reason(&path, &e);
                    bar.suspend(|| eprintln!("earmark: skipped {}: {reason}", path.display()));
                    failures.push(path);
                }
            }
        }
        added += ready.len();
        writer.commit(ready)?;
        writer.merge()?;
    }
    bar.finish_and_clear();
    // The merge tiers suit adding a few tracks at a time and leave up to
    // three segments a tier; a bulk load (at least as many postings added
    // as were there) ends in one, so that each lookup visits one segment.
    let segments = writer.catalog().info().segments;
    let bulk = writer.catalog().postings() >= 2 * postings_before;
    // A spinner (on a terminal): at 100,000 tracks this takes a minute.
    let spinner = (bulk && segments > 1).then(|| {
        let spinner =
            ProgressBar::new_spinner().with_message(format!("merging {segments} segments"));
        spinner.enable_steady_tick(std::time::Duration::from_millis(200));
        spinner
    });
    let compacted = bulk && writer.compact()?;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let cpu = process_time() - cpu_start;
    let info = writer.catalog().info();
    println!(
        "added {added} tracks ({hours:.2} h) in {:.1} s ({:.1} CPU-s); {skipped} already indexed; {} failed",
        started.elapsed().as_secs_f64(),
        cpu.as_secs_f64(),
        failures.len()
    );
    if let Some(shard) = args.shard {
        println!("{elsewhere} belong to other shards than {shard}");
    }
    println!(
        "catalog: {} tracks, {:.2} h, {} postings, {:.2} MB ({:.3} MB per hour)",
        info.tracks,
        info.hours,
        info.postings,
        info.bytes_on_disk as f64 / 1e6,
        info.bytes_on_disk as f64 / 1e6 / info.hours.max(1e-9)
    );
    if compacted {
        println!("merged the catalog's {segments} segments into one");
    }
    if let Some((decode, _)) = decode_cpu {
        println!(
            "CPU time: decoding alone {:.2} s, indexing {:.2} s, ratio {:.2}x; \
             indexing {:.1} CPU-s per audio hour",
            decode.as_secs_f64(),
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / decode.as_secs_f64().max(1e-9),
            cpu.as_secs_f64() / hours.max(1e-9)
        );
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} files could not be indexed",
            failures.len(),
            files.len()
        );
    }
    if !unreadable.is_empty() {
        bail!("{} folders or files could not be read", unreadable.len());
    }
    Ok(Outcome::Done)
}

/// Decodes a file to its end, doing nothing with the samples.
fn decode_only(path: &Path) -> anyhow::Result<u64> {
    let mut file = AudioFile::open(path)?;
    let mut n = 0u64;
    while let Some(samples) = file.next_mono()? {
        n += samples.len() as u64;
    }
    Ok(n)
}

/// A file made ready for the catalog, or why it is not added.
enum Prepared {
    /// Fingerprinted.
    New(Box<NewTrack>),
    /// Already in the catalog.
    Indexed,
    /// Another shard's.
    OtherShard,
}

/// Fingerprints a file for the catalog (or for `shard` of it).
fn prepare(
    path: &Path,
    options: &FingerprintOptions,
    catalog: &Catalog,
    metadata: &HashMap<PathBuf, TrackMeta>,
    shard: Option<Shard>,
) -> anyhow::Result<Prepared> {
    let hash = content_hash(path)?;
    if shard.is_some_and(|s| !s.owns(&hash)) {
        return Ok(Prepared::OtherShard);
    }
    if catalog.tracks().by_content_hash(&hash).is_some() {
        return Ok(Prepared::Indexed);
    }
    let mut audio = AudioFile::open(path)?;
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let meta = meta_for(path, metadata.get(&canonical));
    prepare_audio(&mut audio, options, meta, &canonical, hash).map(|t| Prepared::New(Box::new(t)))
}

/// Fingerprints an open recording for the catalog, to be stored as `path`.
pub fn prepare_audio(
    audio: &mut AudioFile,
    options: &FingerprintOptions,
    meta: TrackMeta,
    path: &Path,
    content_hash: String,
) -> anyhow::Result<NewTrack> {
    let file = fingerprint_audio(audio, options)?;
    if file.fingerprint.landmarks.is_empty() {
        bail!("no landmarks: the file is silent or too short");
    }
    Ok(NewTrack {
        meta,
        duration_s: file.duration_s,
        path: path.to_string_lossy().into_owned(),
        content_hash,
        landmarks: file.fingerprint.landmarks,
        peaks: file.fingerprint.peaks,
        embedding: file.embedding,
        beat_chroma: file.beat_chroma,
    })
}

/// `earmark index verify`.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let catalog = Catalog::open(&args.db)?;
    let files = catalog.verify()?;
    let info = catalog.info();
    println!(
        "ok: {files} files, {} tracks, {} postings checked in {:.1} s",
        info.tracks,
        info.postings,
        started.elapsed().as_secs_f64()
    );
    Ok(Outcome::Done)
}

/// `earmark index compact`.
pub fn compact(args: &VerifyArgs) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let before = Catalog::open(&args.db)?.info().segments;
    let mut writer = CatalogWriter::open(&args.db, SCHEME)?;
    if writer.compact()? {
        println!(
            "compacted {before} segments into 1 in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("nothing to compact: {before} segment(s)");
    }
    Ok(Outcome::Done)
}

/// `earmark index info`.
pub fn info(args: &InfoArgs) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let catalog = Catalog::open(&args.db)?;
    let opened = started.elapsed();
    let info = catalog.info();
    if args.json {
        let mut value = serde_json::to_value(&info)?;
        value["open_ms"] = serde_json::json!(opened.as_secs_f64() * 1e3);
        println!("{value}");
    } else {
        println!("tracks        {}", info.tracks);
        println!("hours         {:.2}", info.hours);
        println!("postings      {}", info.postings);
        println!("segments      {}", info.segments);
        println!(
            "bytes on disk {} ({:.3} MB per hour)",
            info.bytes_on_disk,
            info.bytes_on_disk as f64 / 1e6 / info.hours.max(1e-9)
        );
        println!("fingerprint   {}", info.fingerprint);
        println!("opened in     {:.1} ms", opened.as_secs_f64() * 1e3);
    }
    Ok(Outcome::Done)
}
