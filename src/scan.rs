//! `earmark scan`: recordings to plays, and `earmark eval-session`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::json;

use earmark_engine::chroma::pulse;
use earmark_engine::fingerprint::SCHEME;
use earmark_engine::{AudioFile, Fingerprint, FingerprintOptions, Fingerprinter};
use earmark_index::Catalog;
use earmark_monitor::unknown::{
    MIN_PULSE, PULSE_S, frame_powers, is_audible, is_music, unidentified_runs,
};
use earmark_monitor::{Follower, ListenerOptions, Play, PlayEvent, PlayRecord, UnidentifiedRecord};

use crate::Outcome;
use crate::cli::{EvalSessionArgs, ScanArgs};
use crate::ingest::{AudioFiles, collect_audio_files, content_hash, failure_reason};
use crate::report::{CueSheet, Licensing, Show};

/// What scanning one recording found.
#[derive(Debug, Clone)]
pub struct Scanned {
    /// Plays in start order.
    pub plays: Vec<Play>,
    /// Decoded duration in seconds.
    pub audio_s: f64,
    /// Music no play covers for over 20 s, with the catalog works nearest
    /// it.
    pub unidentified: Vec<UnidentifiedRecord>,
}

/// Music matched by nothing for longer than this is reported, in seconds.
const UNIDENTIFIED_AFTER_S: f64 = 20.0;

/// Frames between a scan's windows (see `WindowOptions::default`).
const HOP_FRAMES: u32 = 93;
/// Stretch of a recording followed as one job, in frames (about 10
/// minutes). Jobs start on the grid of window starts (a multiple of the
/// hop), so they cut the same windows one pass would.
const CHUNK_FRAMES: u32 = 200 * HOP_FRAMES;
/// The first stretch is shorter (about 2.5 minutes), and each next one
/// twice as long up to [`CHUNK_FRAMES`]: following starts while the rest
/// is decoded, instead of one core waiting for 10 minutes of fingerprint.
const FIRST_CHUNK_FRAMES: u32 = 50 * HOP_FRAMES;
/// What is left when decoding ends is followed in two jobs when it is
/// longer than this, so that both cores finish it (jobs run oldest first,
/// these two last).
const HALVED_FRAMES: u32 = 100 * HOP_FRAMES;
/// Frames a job also takes from the stretch before its own (about 45 s),
/// so that a play crossing the border is found again, its start refined,
/// and the two halves joined.
const OVERLAP_FRAMES: u32 = 15 * HOP_FRAMES;
/// Jobs waiting or running at once, at most, while decoding goes on.
const MAX_QUEUED_JOBS: usize = 3;
/// Frames after a stretch's end before all its peaks and landmarks are out.
const SETTLE_FRAMES: u32 = 128;

/// Where a job's stretch of fingerprint lies in its recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stretch {
    /// Stream frame of its first frame.
    pub base: u32,
    /// Whether the recording ends with it.
    pub last: bool,
}

/// Decodes a recording and returns its plays in start order. Decoding and
/// fingerprinting stream on this thread; each stretch of fingerprint (up
/// to 10 minutes) is followed (windows, tracker) as a parallel job, and plays that cross
/// the borders are joined.
pub fn scan_file(catalog: &Catalog, path: &Path) -> anyhow::Result<Scanned> {
    let mut heard = listen(path, &|job, stretch| follow(catalog, job, stretch))?;
    let plays = join(std::mem::take(&mut heard.plays));
    let unidentified = heard.unidentified(&plays, Some(catalog));
    Ok(Scanned {
        plays,
        audio_s: heard.audio_s,
        unidentified,
    })
}

/// What [`listen`] heard in a recording.
pub struct Heard {
    /// The plays of every job, in no order, halves of plays that cross a
    /// job's border not yet joined.
    pub plays: Vec<Play>,
    /// Decoded duration in seconds.
    pub audio_s: f64,
    /// Frame powers of each second.
    powers: Vec<Vec<f32>>,
    /// The recording's chroma.
    chroma: earmark_engine::chroma::ChromaFrames,
}

/// Decodes and fingerprints a recording, handing each stretch of its
/// fingerprint (and where it lies) to `follow` as a parallel job.
pub fn listen(
    path: &Path,
    follow: &(dyn Fn(&Fingerprint, Stretch) -> Vec<Play> + Sync),
) -> anyhow::Result<Heard> {
    let mut file = AudioFile::open(path)?;
    // Chroma too, for the works nearest any music no play explains.
    let options = FingerprintOptions {
        chroma: true,
        ..FingerprintOptions::query()
    };
    let mut fingerprinter = Fingerprinter::try_new(&options, file.rate_hz())?;
    let found_plays = Mutex::new(Vec::new());
    let found = &found_plays;
    let in_flight = &AtomicUsize::new(0);
    // Frame powers of each second, for finding unidentified music.
    let rate = file.rate_hz();
    let (mut second, mut powers) = (Vec::with_capacity(rate as usize), Vec::new());
    let audio_s = rayon::scope_fifo(|scope| -> anyhow::Result<f64> {
        let keep = move |plays: Vec<Play>| {
            if let Ok(mut f) = found.lock() {
                f.extend(plays);
            }
        };
        // Jobs wait in memory while decoding runs ahead of following: past
        // a few, this thread follows the stretch itself.
        let spawn = |job: Fingerprint, stretch: Stretch| {
            in_flight.fetch_add(1, Ordering::SeqCst);
            scope.spawn_fifo(move |_| {
                keep(follow(&job, stretch));
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        };
        let follow = |job: Fingerprint, stretch: Stretch| {
            if in_flight.load(Ordering::SeqCst) >= MAX_QUEUED_JOBS {
                keep(follow(&job, stretch));
            } else {
                spawn(job, stretch);
            }
        };
        // `pending` holds the fingerprint from stream frame `base` on.
        let (mut pending, mut emitted, mut base, mut frames) =
            (Fingerprint::default(), Fingerprint::default(), 0, 0);
        let (mut chunk, mut end) = (FIRST_CHUNK_FRAMES, FIRST_CHUNK_FRAMES);
        loop {
            let more = match file.next_mono()? {
                Some(samples) => {
                    fingerprinter.push(samples, &mut emitted);
                    for chunk in samples.chunks(rate as usize) {
                        let take = (rate as usize - second.len()).min(chunk.len());
                        second.extend_from_slice(&chunk[..take]);
                        if second.len() == rate as usize {
                            powers.push(frame_powers(&second, rate));
                            second.clear();
                            second.extend_from_slice(&chunk[take..]);
                        }
                    }
                    true
                }
                None => false,
            };
            let audio_s = fingerprinter.seconds_in();
            if !more {
                fingerprinter.flush(&mut emitted);
            }
            frames += emitted.frames;
            pending.peaks.append(&mut emitted.peaks);
            pending.landmarks.append(&mut emitted.landmarks);
            emitted.clear();
            if !more {
                // Decoding is over: nothing runs ahead any more, every job
                // left is queued for both cores.
                let cut =
                    |from, to| Fingerprint::between(&pending.peaks, &pending.landmarks, from, to);
                let mut last = base;
                if frames - base > HALVED_FRAMES {
                    let middle = base + (frames - base) / 2 / HOP_FRAMES * HOP_FRAMES;
                    spawn(cut(base, middle), Stretch { base, last: false });
                    last = middle - OVERLAP_FRAMES;
                }
                spawn(
                    cut(last, frames),
                    Stretch {
                        base: last,
                        last: true,
                    },
                );
                return Ok(audio_s);
            }
            if frames >= end + SETTLE_FRAMES {
                follow(
                    Fingerprint::between(&pending.peaks, &pending.landmarks, base, end),
                    Stretch { base, last: false },
                );
                let next = end - OVERLAP_FRAMES;
                pending.peaks.retain(|p| p.frame >= next);
                pending.landmarks.retain(|l| l.frame >= next);
                chunk = (2 * chunk).min(CHUNK_FRAMES);
                (base, end) = (next, end + chunk);
            }
        }
    })?;
    let plays = found_plays
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a scan job panicked"))?;
    Ok(Heard {
        plays,
        audio_s,
        powers,
        chroma: fingerprinter.take_chroma().unwrap_or_default(),
    })
}

impl Heard {
    /// Music that none of `plays` explains, with the works of `catalog`
    /// nearest it when there is a catalog to ask.
    pub fn unidentified(
        &self,
        plays: &[Play],
        catalog: Option<&Catalog>,
    ) -> Vec<UnidentifiedRecord> {
        let frame_s = earmark_engine::fingerprint::frame_seconds();
        let chroma = &self.chroma;
        (unidentified(plays, &self.powers, &chroma.onset)
            .into_iter()
            .enumerate())
        .map(|(i, (start_s, end_s))| {
            let frame = |s: f64| (s / frame_s).round() as usize;
            let mut record = UnidentifiedRecord {
                segment: i as u64 + 1,
                start_s,
                end_s,
                started_at: None,
                clip: String::new(),
                similar: Vec::new(),
                embedding: chroma.embedding(frame(start_s), frame(end_s)),
                beat_chroma: chroma.beat_chroma(frame(start_s), frame(end_s)),
            };
            if let Some(catalog) = catalog {
                record.find_similar(catalog);
            }
            record
        })
        .collect()
    }
}

/// Runs of seconds that sound like music and that no play covers (give or
/// take a second), longer than `UNIDENTIFIED_AFTER_S`. A second is music
/// when its loudness does not breathe like speech, or when the onsets
/// around it keep a beat (`onset`: the stream's onset strength per frame).
fn unidentified(plays: &[Play], powers: &[Vec<f32>], onset: &[f32]) -> Vec<(f64, f64)> {
    let per_second = 1.0 / earmark_engine::fingerprint::frame_seconds();
    let flags: Vec<bool> = (0..powers.len())
        .map(|i| {
            let around = &powers[i.saturating_sub(2)..(i + 3).min(powers.len())];
            let t = i as f64 + 0.5;
            let frames = |s: f64| ((s.max(0.0) * per_second) as usize).min(onset.len());
            let beat = pulse(&onset[frames(t - PULSE_S / 2.0)..frames(t + PULSE_S / 2.0)]);
            let keeps_beat = beat >= MIN_PULSE && is_audible(&powers[i]);
            (is_music(around.iter().map(|p| &p[..]), &powers[i]) || keeps_beat)
                && !plays
                    .iter()
                    .any(|p| p.start_s() - 1.0 <= t && t <= p.end_s() + 1.0)
        })
        .collect();
    unidentified_runs(&flags, UNIDENTIFIED_AFTER_S)
}

/// The plays of one job, in stream frames.
pub fn follow(catalog: &Catalog, job: &Fingerprint, stretch: Stretch) -> Vec<Play> {
    let mut follower = Follower::new(catalog, ListenerOptions::default(), 1);
    let mut events = follower.push(job);
    events.extend(follower.finish(stretch.last));
    let base = stretch.base as f64;
    events
        .into_iter()
        .filter_map(|e| match e {
            PlayEvent::Ended(p) => Some(Play {
                start_frame: p.start_frame + base,
                end_frame: p.end_frame + base,
                track_at_zero: p.track_at_zero - p.tempo as f64 * base,
                ..p
            }),
            PlayEvent::Started(_) | PlayEvent::Heard(_) | PlayEvent::Withdrawn(_) => None,
        })
        .collect()
}

/// Plays of all jobs in start order, numbered from 1, with the two halves
/// of a play that crossed a border joined: same track, and either heard at
/// once (looped music: the next job may find the track at another of the
/// places it repeats) or with the same alignment (within 2 s) at most 15 s
/// apart (a job's end of a play is where its own evidence stopped, which a
/// wrong early tempo can put seconds early).
pub fn join(mut plays: Vec<Play>) -> Vec<Play> {
    plays.sort_by(|a, b| a.start_frame.total_cmp(&b.start_frame));
    let mut joined: Vec<Play> = Vec::with_capacity(plays.len());
    let second = 1.0 / earmark_engine::fingerprint::frame_seconds();
    for p in plays {
        let track_frame = |q: &Play| q.track_at_zero + q.tempo as f64 * p.start_frame;
        let same = joined.iter_mut().rev().take(4).find(|q| {
            q.track == p.track
                && (p.start_frame < q.end_frame
                    || p.start_frame <= q.end_frame + 15.0 * second
                        && (track_frame(q) - track_frame(&p)).abs() < 2.0 * second)
        });
        match same {
            Some(q) => {
                q.end_frame = q.end_frame.max(p.end_frame);
                q.score = q.score.max(p.score);
            }
            None => joined.push(p),
        }
    }
    for (i, p) in joined.iter_mut().enumerate() {
        p.id = i as u64 + 1;
    }
    joined
}

impl Scanned {
    /// What the recording `file` holds as a show: plays (judged by
    /// `licensing` when given) and unidentified segments.
    pub fn show(&self, catalog: &Catalog, file: &Path, licensing: Option<&Licensing>) -> Show {
        let plays = (self.plays.iter())
            .map(|p| {
                let mut record = PlayRecord::new(catalog, p, 0.0, None);
                record.coverage = licensing.map(|l| l.judge(&record));
                record
            })
            .collect();
        let unidentified = self.unidentified.clone();
        Show {
            // In full, so that the audio can be found again (`earmark unknowns`).
            source: (file.canonicalize().unwrap_or_else(|_| file.to_owned()))
                .display()
                .to_string(),
            runs: None,
            plays,
            unidentified,
        }
    }
}

/// A JSON object with the recording's file name first, then `value`'s fields.
fn with_file(file: &Path, value: impl serde::Serialize) -> serde_json::Value {
    let mut object = json!({"file": file.display().to_string()});
    if let (Some(o), Ok(serde_json::Value::Object(fields))) =
        (object.as_object_mut(), serde_json::to_value(value))
    {
        o.extend(fields);
    }
    object
}

/// How one recording of a batch fared.
enum Fate {
    Scanned { show: Show, audio_s: f64 },
    Skipped,
    Failed(String),
}

/// `earmark scan`.
pub fn run(args: &ScanArgs) -> anyhow::Result<Outcome> {
    crate::cli::set_jobs(args.jobs)?;
    let catalog = args
        .db
        .as_deref()
        .map(|db| Catalog::open_for(db, SCHEME))
        .transpose()?;
    let licensing = match &catalog {
        Some(c) => Licensing::select(c, args.event.as_deref(), args.licence.as_deref(), None)?,
        None if args.event.is_some() || args.licence.is_some() => {
            anyhow::bail!("--event and --licence need --db, the catalog that holds the licences")
        }
        None => None,
    };
    let AudioFiles { files, unreadable } = collect_audio_files(&args.paths);
    if files.is_empty() {
        match unreadable.first() {
            Some((path, reason)) => anyhow::bail!("{}: {reason}", path.display()),
            None => anyhow::bail!("no audio files found"),
        }
    }
    let manifest = match &args.out {
        Some(dir) => Some(Manifest::open(dir)?),
        None => None,
    };
    let started = Instant::now();
    let mut fates: Vec<(PathBuf, Fate)> = match (&args.cluster, &catalog) {
        (Some(url), _) => {
            let fates = scan_on_cluster(
                url,
                &files,
                manifest.as_ref(),
                catalog.as_ref(),
                licensing.as_ref(),
            )?;
            for (file, fate) in &fates {
                if let (Fate::Scanned { show, .. }, false) = (fate, args.json) {
                    print_table(file, show);
                }
            }
            fates
        }
        (None, Some(catalog)) => {
            let bar = crate::ingest::progress(files.len(), "scanning");
            let fates = files
                .par_iter()
                .map(|file| {
                    let fate = scan_one(catalog, manifest.as_ref(), licensing.as_ref(), file);
                    bar.inc(1);
                    if let (Fate::Scanned { show, .. }, false) = (&fate, args.json) {
                        bar.suspend(|| print_table(file, show));
                    }
                    (file.clone(), fate)
                })
                .collect();
            bar.finish_and_clear();
            fates
        }
        (None, None) => anyhow::bail!("give --db (or --cluster)"),
    };
    fates.extend((unreadable.into_iter()).map(|(path, reason)| (path, Fate::Failed(reason))));
    let (mut done, mut skipped, mut plays, mut audio_s) = (0, 0, 0, 0.0);
    let mut failed = Vec::new();
    let mut statuses = Vec::with_capacity(fates.len());
    for (file, fate) in &fates {
        let status = match fate {
            Fate::Scanned {
                show,
                audio_s: seconds,
            } => {
                done += 1;
                plays += show.plays.len();
                audio_s += seconds;
                if args.json {
                    for p in &show.plays {
                        crate::say(with_file(file, p));
                    }
                    for u in &show.unidentified {
                        crate::say(with_file(file, json!({"unidentified": u})));
                    }
                }
                let summary = CueSheet::new(show, catalog.as_ref(), licensing.as_ref()).summary;
                json!({"file": file.display().to_string(), "status": "scanned",
                       "plays": show.plays.len(), "audio_s": seconds, "summary": summary})
            }
            Fate::Skipped => {
                skipped += 1;
                json!({"file": file.display().to_string(), "status": "skipped",
                       "reason": "already scanned (same content)"})
            }
            Fate::Failed(reason) => {
                failed.push((file, reason));
                json!({"file": file.display().to_string(), "status": "failed", "reason": reason})
            }
        };
        if args.json {
            crate::say(&status);
        }
        statuses.push(status);
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(dir) = &args.out {
        let batch = json!({
            "event": licensing.as_ref().map(Licensing::event),
            "recordings": statuses,
            "scanned": done, "skipped": skipped, "failed": failed.len(),
            "plays": plays, "audio_s": audio_s, "elapsed_s": elapsed,
        });
        write_atomically(&dir.join(BATCH), &serde_json::to_vec_pretty(&batch)?)?;
    }
    eprintln!(
        "scanned {done} recordings ({:.2} h) in {elapsed:.1} s ({:.0}x real time): {plays} plays; \
         {skipped} already scanned; {} failed",
        audio_s / 3600.0,
        audio_s / elapsed.max(1e-9),
        failed.len()
    );
    for (file, reason) in &failed {
        eprintln!("earmark: {}: {reason}", file.display());
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} recordings could not be scanned",
            failed.len(),
            fates.len()
        );
    }
    Ok(Outcome::Done)
}

fn scan_one(
    catalog: &Catalog,
    manifest: Option<&Manifest>,
    licensing: Option<&Licensing>,
    file: &Path,
) -> Fate {
    let hash = match content_hash(file) {
        Ok(hash) => hash,
        Err(e) => return Fate::Failed(failure_reason(file, &e)),
    };
    if manifest.is_some_and(|m| m.contains(&hash)) {
        return Fate::Skipped;
    }
    let scanned = match scan_file(catalog, file) {
        Ok(scanned) => scanned,
        Err(e) => return Fate::Failed(failure_reason(file, &e)),
    };
    let show = scanned.show(catalog, file, licensing);
    finish(
        manifest,
        Some(catalog),
        licensing,
        &hash,
        show,
        scanned.audio_s,
    )
}

/// Records a scanned recording in the manifest, if there is one.
fn finish(
    manifest: Option<&Manifest>,
    catalog: Option<&Catalog>,
    licensing: Option<&Licensing>,
    hash: &str,
    show: Show,
    audio_s: f64,
) -> Fate {
    match manifest.map(|m| m.record(catalog, licensing, hash, &show, audio_s)) {
        Some(Err(e)) => Fate::Failed(format!("{e:#}")),
        _ => Fate::Scanned { show, audio_s },
    }
}

/// Scans recordings on a cluster: queues those not done yet as jobs for
/// `earmark worker`s and waits for their results.
fn scan_on_cluster(
    url: &str,
    files: &[PathBuf],
    manifest: Option<&Manifest>,
    catalog: Option<&Catalog>,
    licensing: Option<&Licensing>,
) -> anyhow::Result<Vec<(PathBuf, Fate)>> {
    let mut fates = Vec::with_capacity(files.len());
    let mut jobs = Vec::new();
    for file in files {
        match content_hash(file) {
            Ok(hash) if manifest.is_some_and(|m| m.contains(&hash)) => {
                fates.push((file.clone(), Fate::Skipped));
            }
            Ok(hash) => jobs.push((file.clone(), hash)),
            Err(e) => fates.push((file.clone(), Fate::Failed(format!("{e:#}")))),
        }
    }
    let results = crate::cluster::worker::submit(url, &jobs)?;
    for ((file, hash), result) in jobs.into_iter().zip(results) {
        let fate = match result.error {
            Some(reason) => Fate::Failed(reason),
            None => {
                let plays = (result.plays.into_iter())
                    .map(|mut record| {
                        record.coverage = licensing.map(|l| l.judge(&record));
                        record
                    })
                    .collect();
                let show = Show {
                    source: result.path,
                    runs: None,
                    plays,
                    unidentified: result.unidentified,
                };
                finish(manifest, catalog, licensing, &hash, show, result.audio_s)
            }
        };
        fates.push((file, fate));
    }
    Ok(fates)
}

fn print_table(file: &Path, show: &Show) {
    crate::say(file.display());
    let plays = show.plays.iter().map(|p| {
        let what = format!(
            "{:<12} {} (from {:.1} s, tempo {:.3})",
            p.track_id, p.title, p.track_start_s, p.tempo
        );
        (p.start_s, p.end_s, what)
    });
    let unknown = (show.unidentified.iter()).map(|u| {
        let near = (u.similar.first()).map_or(String::new(), |w| {
            format!("; nearest work {} ({:.3})", w.track_id, w.distance)
        });
        (u.start_s, u.end_s, format!("unidentified music{near}"))
    });
    let mut rows: Vec<(f64, f64, String)> = plays.chain(unknown).collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (start, end, what) in rows {
        crate::say(format_args!("{start:>8.1} {end:>8.1}  {what}"));
    }
}

/// The output folder of a batch: one cue sheet per recording (CSV and JSON)
/// and `manifest.jsonl`, which lists the recordings finished by content
/// hash. Each cue sheet is written whole under a temporary name and renamed;
/// the manifest line is appended and synced after it, so a run killed half
/// way loses nothing already written and the next run skips what is done.
struct Manifest {
    dir: PathBuf,
    done: std::collections::HashSet<String>,
    log: Mutex<std::fs::File>,
}

const MANIFEST: &str = "manifest.jsonl";
/// The summary of the latest run: every recording's status, with its
/// cue sheet's figures or why it failed.
const BATCH: &str = "batch.json";

impl Manifest {
    fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        let path = dir.join(MANIFEST);
        // A line cut short by a crash is ignored (its recording is redone)
        // and ended, so that the next record starts a line of its own.
        let bytes = std::fs::read(&path).unwrap_or_default();
        let done = (String::from_utf8_lossy(&bytes).lines())
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|v| v["content_hash"].as_str().map(str::to_owned))
            .collect();
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}", path.display()))?;
        if bytes.last().is_some_and(|&b| b != b'\n') {
            writeln!(log).with_context(|| format!("{}", path.display()))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            done,
            log: Mutex::new(log),
        })
    }

    fn contains(&self, hash: &str) -> bool {
        self.done.contains(hash)
    }

    fn record(
        &self,
        catalog: Option<&Catalog>,
        licensing: Option<&Licensing>,
        hash: &str,
        show: &Show,
        audio_s: f64,
    ) -> anyhow::Result<()> {
        let file = Path::new(&show.source);
        let stem = file
            .file_stem()
            .map_or("recording".into(), |s| s.to_string_lossy().into_owned());
        let name = format!("{stem}-{}", &hash[..8]);
        let result = with_file(
            file,
            json!({"content_hash": hash, "audio_s": audio_s, "source": show.source,
                   "plays": show.plays, "unidentified": show.unidentified}),
        );
        write_atomically(
            &self.dir.join(format!("{name}.plays.json")),
            &serde_json::to_vec_pretty(&result)?,
        )?;
        let sheet = CueSheet::new(show, catalog, licensing);
        write_atomically(&self.dir.join(format!("{name}.cue.csv")), &sheet.csv()?)?;
        write_atomically(&self.dir.join(format!("{name}.cue.html")), &sheet.html())?;
        let line = json!({"file": file.display().to_string(), "content_hash": hash,
                          "plays": show.plays.len(), "cue_sheet": format!("{name}.cue.csv")});
        let mut log = self
            .log
            .lock()
            .map_err(|_| anyhow::anyhow!("manifest lock poisoned"))?;
        writeln!(log, "{line}")?;
        log.sync_all()?;
        Ok(())
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("{}", path.display()))
}

/// A row of a session timeline written by make_queries.py.
#[derive(Debug, Deserialize)]
struct Section {
    kind: String,
    track_id: String,
    start_s: f64,
    end_s: f64,
}

/// A play as `eval-session` judges it.
struct Judged {
    track_id: String,
    start_s: f64,
    end_s: f64,
    /// When the play was announced, in session seconds (logs only).
    reported_s: Option<f64>,
}

/// How far apart a scan's and a monitor's boundaries of one play may be
/// for them to agree, in seconds.
const AGREE_S: f64 = 1.0;

/// The plays of a monitor's event log, placed by wall clock when the
/// playback start `played_at` (RFC 3339) is known.
fn log_plays(log: &Path, played_at: Option<&str>) -> anyhow::Result<Vec<Judged>> {
    let played_at = played_at
        .map(humantime::parse_rfc3339)
        .transpose()
        .context("--played-at")?;
    let history = earmark_monitor::History::read(log)?;
    let since = |at: &str| {
        let t = humantime::parse_rfc3339(at).ok()?;
        Some(t.duration_since(played_at?).ok()?.as_secs_f64())
    };
    let mut reported = std::collections::HashMap::new();
    for e in &history.events {
        if let earmark_monitor::Event::PlayStarted {
            at,
            announced_s,
            play,
        } = e
        {
            let when = match played_at {
                Some(_) => since(at),
                None => *announced_s,
            };
            reported.insert(play.play, when);
        }
    }
    let plays = history
        .plays()
        .into_iter()
        .map(|p| {
            let wall = |at: &Option<String>, s: f64| match played_at {
                Some(_) => at.as_deref().and_then(since).unwrap_or(s),
                None => s,
            };
            Judged {
                start_s: wall(&p.started_at, p.start_s),
                end_s: wall(&p.ended_at, p.end_s),
                reported_s: reported.get(&p.play).copied().flatten(),
                track_id: p.track_id,
            }
        })
        .collect();
    Ok(plays)
}

/// The plays of a session: scanned from the recording, or read from a
/// monitor's log (placed by wall clock when the playback start is known).
fn session_plays(args: &EvalSessionArgs) -> anyhow::Result<(Vec<Judged>, Option<f64>)> {
    if let Some(log) = &args.log {
        return Ok((log_plays(log, args.played_at.as_deref())?, None));
    }
    let (Some(db), Some(recording)) = (&args.db, &args.recording) else {
        anyhow::bail!("give --log, or --db and a recording");
    };
    let catalog = Catalog::open_for(db, SCHEME)?;
    let started = Instant::now();
    let plays = scan_file(&catalog, recording)?
        .plays
        .iter()
        .map(|p| {
            let r = PlayRecord::new(&catalog, p, 0.0, None);
            Judged {
                track_id: r.track_id,
                start_s: r.start_s,
                end_s: r.end_s,
                reported_s: None,
            }
        })
        .collect();
    Ok((plays, Some(started.elapsed().as_secs_f64())))
}

/// `earmark eval-session`: compares a session's plays (scanned, or from a
/// monitor's log) with the session's timeline.
pub fn eval_session(args: &EvalSessionArgs) -> anyhow::Result<Outcome> {
    let mut reader = csv::Reader::from_path(&args.timeline)
        .with_context(|| format!("{}", args.timeline.display()))?;
    let truth: Vec<Section> = reader
        .deserialize()
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}", args.timeline.display()))?;
    let (plays, elapsed) = session_plays(args)?;
    let monitored = (args.against.as_deref())
        .map(|log| log_plays(log, None))
        .transpose()?;
    let catalog_sections: Vec<&Section> = truth.iter().filter(|s| s.kind == "catalog").collect();
    let (mut found, mut within, mut errors, mut delays) = (0, 0, Vec::new(), Vec::new());
    let mut agree = 0;
    for s in &catalog_sections {
        match hit(&plays, s) {
            Some(p) => {
                found += 1;
                let near = |m: &Judged| {
                    (m.start_s - p.start_s).abs() <= AGREE_S && (m.end_s - p.end_s).abs() <= AGREE_S
                };
                agree += usize::from(
                    (monitored.as_deref())
                        .and_then(|m| hit(m, s))
                        .is_some_and(near),
                );
                let (start, end) = (p.start_s - s.start_s, p.end_s - s.end_s);
                if start.abs() <= args.tolerance_s && end.abs() <= args.tolerance_s {
                    within += 1;
                }
                errors.push((s.track_id.clone(), start, end));
                let delay = p.reported_s.map(|r| r - s.start_s);
                delays.extend(delay);
                println!(
                    "{:<8} truth {:>7.1}-{:>7.1}  play {:>7.1}-{:>7.1}  start {:+.1} s, end {:+.1} s{}",
                    s.track_id,
                    s.start_s,
                    s.end_s,
                    p.start_s,
                    p.end_s,
                    start,
                    end,
                    delay.map_or(String::new(), |d| format!(", reported after {d:.1} s"))
                );
            }
            None => println!(
                "{:<8} truth {:>7.1}-{:>7.1}  MISSED",
                s.track_id, s.start_s, s.end_s
            ),
        }
    }
    let wrong: Vec<&Judged> = plays
        .iter()
        .filter(|p| {
            !truth
                .iter()
                .any(|s| s.kind == "catalog" && s.track_id == p.track_id && overlaps(p, s))
        })
        .collect();
    for p in &wrong {
        println!(
            "WRONG    play {:>7.1}-{:>7.1}  {}",
            p.start_s, p.end_s, p.track_id
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let mut abs: Vec<f64> = errors.iter().flat_map(|e| [e.1.abs(), e.2.abs()]).collect();
    let duration = truth.iter().map(|s| s.end_s).fold(0.0, f64::max);
    print!(
        "{} of {} catalog tracks found, {within} with both boundaries within {} s; {} wrong plays; \
         boundary error median {:.1} s, max {:.1} s",
        found,
        catalog_sections.len(),
        args.tolerance_s,
        wrong.len(),
        median(&mut abs),
        abs.last().copied().unwrap_or(0.0),
    );
    if !delays.is_empty() {
        print!(
            "; reported after median {:.1} s, max {:.1} s",
            median(&mut delays),
            delays.last().copied().unwrap_or(0.0)
        );
    }
    if let Some(elapsed) = elapsed {
        print!(
            "; scanned {duration:.0} s of audio in {elapsed:.1} s ({:.0}x real time)",
            duration / elapsed.max(1e-9)
        );
    }
    if monitored.is_some() {
        print!("; scan and monitor agree within {AGREE_S} s on {agree} of {found} plays");
    }
    println!();
    Ok(Outcome::Done)
}

/// Whether a play overlaps a section of the timeline.
fn overlaps(p: &Judged, s: &Section) -> bool {
    p.start_s < s.end_s && s.start_s < p.end_s
}

/// The play of a section's track that overlaps it, starting nearest it.
fn hit<'p>(plays: &'p [Judged], s: &Section) -> Option<&'p Judged> {
    (plays.iter())
        .filter(|p| p.track_id == s.track_id && overlaps(p, s))
        .min_by(|a, b| {
            (a.start_s - s.start_s)
                .abs()
                .total_cmp(&(b.start_s - s.start_s).abs())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use earmark_index::TrackId;

    fn play(track: u32, start_s: f64, end_s: f64, track_start_s: f64) -> Play {
        let frame = |s: f64| s / earmark_engine::fingerprint::frame_seconds();
        Play {
            id: 0,
            track: TrackId(track),
            start_frame: frame(start_s),
            end_frame: frame(end_s),
            track_at_zero: frame(track_start_s - start_s),
            tempo: 1.0,
            pitch: 1.0,
            score: 10.0,
        }
    }

    #[test]
    fn halves_of_a_play_across_a_border_are_joined() {
        // The next job found the track where it was heard: same alignment.
        let plays = join(vec![
            play(3, 100.0, 595.0, 0.0),
            play(3, 560.0, 700.0, 460.0),
        ]);
        assert_eq!(plays.len(), 1);
        assert_eq!(
            (plays[0].start_s().round(), plays[0].end_s().round()),
            (100.0, 700.0)
        );
        // Looped music: the next job found it at another place it repeats,
        // 36 s away, while the first half was still heard.
        let plays = join(vec![
            play(3, 100.0, 595.0, 0.0),
            play(3, 560.0, 700.0, 424.0),
        ]);
        assert_eq!(plays.len(), 1);
        assert_eq!(plays[0].end_s().round(), 700.0);
    }

    #[test]
    fn another_play_of_the_same_track_stays_apart() {
        // Played again later from another place; and another track between.
        let plays = join(vec![
            play(3, 100.0, 300.0, 0.0),
            play(4, 300.0, 400.0, 0.0),
            play(3, 400.0, 500.0, 50.0),
        ]);
        assert_eq!(plays.len(), 3);
        assert_eq!(plays.iter().map(|p| p.id).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
