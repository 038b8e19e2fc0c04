//! The similarity lane on the command line: `earmark eval-covers` measures
//! how well a cover's embedding finds its original among all catalog tracks;
//! `earmark unknowns` groups unidentified music that recurs across shows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use serde_json::json;

use earmark_engine::chroma::{CHROMA, ChromaFrames, cross_similarity, distance};
use earmark_engine::fingerprint::SCHEME;
use earmark_engine::{AudioFile, FingerprintOptions, fingerprint_samples};
use earmark_index::{Catalog, CatalogWriter, MatchOptions, Matcher, NewTrack, TrackId, TrackMeta};
use earmark_monitor::{LIKELY_SAME_WORK, UnidentifiedRecord, work_beat_chroma};

use crate::Outcome;
use crate::cli::{EvalCoversArgs, UnknownsArgs};
use crate::identify::{QueryFingerprinter, read_clip, round};
use crate::report::Show;

/// A cover's embedding and beat chroma, of the whole file or of
/// `excerpt_s` seconds from a quarter of the way in.
fn analyse_file(path: &Path, excerpt_s: Option<f64>) -> anyhow::Result<Passage> {
    let mut file = AudioFile::open(path)?;
    let clip = read_clip(&mut file, f64::MAX)?;
    let rate = clip.rate_hz as f64;
    let samples = match excerpt_s {
        Some(length) => {
            let start = (clip.samples.len() / 4).min(clip.samples.len());
            let end = (start + (length * rate) as usize).min(clip.samples.len());
            &clip.samples[start..end]
        }
        None => &clip.samples[..],
    };
    let frames = ChromaFrames::of_samples(samples, clip.rate_hz)?;
    Ok(Passage {
        embedding: frames.embedding(0, frames.len()),
        beats: frames.beat_chroma(0, frames.len()),
    })
}

/// What the similarity lane knows of a passage.
struct Passage {
    embedding: Option<Vec<f32>>,
    beats: Vec<[f32; CHROMA]>,
}

/// A cover and its analysis.
struct Analysed {
    file: PathBuf,
    original: TrackId,
    passage: anyhow::Result<Passage>,
    seconds: f64,
}

/// Mean reciprocal rank, top-1 and top-5 of the originals' ranks (from 1;
/// `None` when not found).
#[derive(Default)]
struct Ranks {
    reciprocal: f64,
    top1: usize,
    top5: usize,
    counted: usize,
}

impl Ranks {
    fn add(&mut self, rank: Option<usize>) {
        self.counted += 1;
        if let Some(r) = rank {
            self.reciprocal += 1.0 / r as f64;
            self.top1 += usize::from(r == 1);
            self.top5 += usize::from(r <= 5);
        }
    }

    fn summary(&self) -> String {
        let share = |k: usize| 100.0 * k as f64 / self.counted.max(1) as f64;
        format!(
            "MRR {:.3}, top-1 {:.1}%, top-5 {:.1}%",
            self.reciprocal / self.counted.max(1) as f64,
            share(self.top1),
            share(self.top5)
        )
    }
}

/// The value a share `q` of `values` lies below (NaN when empty).
fn quantile(values: &[f32], q: f32) -> f32 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let at = ((sorted.len() as f32 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).copied().unwrap_or(f32::NAN)
}

/// `earmark eval-covers`.
pub fn eval_covers(args: &EvalCoversArgs) -> anyhow::Result<Outcome> {
    let catalog = Catalog::open_for(&args.db, SCHEME)?;
    let mut reader =
        csv::Reader::from_path(&args.truth).with_context(|| format!("{}", args.truth.display()))?;
    let dir = args.truth.parent().unwrap_or(Path::new("."));
    let rows: Vec<(PathBuf, TrackId)> = reader
        .records()
        .map(|r| {
            let r = r.with_context(|| format!("{}", args.truth.display()))?;
            let original = r.get(1).unwrap_or("");
            let Some(want) = catalog.tracks().by_external_id(original) else {
                anyhow::bail!(
                    "{}: no track {original} in the catalog",
                    args.truth.display()
                );
            };
            Ok((dir.join(r.get(0).unwrap_or("")), want.id))
        })
        .collect::<anyhow::Result<_>>()?;
    let n = catalog.tracks().len();
    let started = Instant::now();
    let results: Vec<Analysed> = rows
        .into_par_iter()
        .map(|(file, original)| {
            let t = Instant::now();
            let passage = analyse_file(&file, args.excerpt_s);
            Analysed {
                file,
                original,
                passage,
                seconds: t.elapsed().as_secs_f64(),
            }
        })
        .collect();
    // Every cover's nearest works by embedding, and the beat chroma of
    // those the verification looks at.
    let nearest: Vec<Vec<(TrackId, f32)>> = (results.iter())
        .map(|a| match &a.passage {
            Ok(Passage {
                embedding: Some(e), ..
            }) => catalog.similar_to(e, n),
            _ => Vec::new(),
        })
        .collect();
    let mut works: Vec<TrackId> = (nearest.iter())
        .flat_map(|near| near.iter().take(args.verify).map(|w| w.0))
        .collect();
    works.sort_unstable();
    works.dedup();
    let work_beats: HashMap<TrackId, Vec<[f32; CHROMA]>> = works
        .into_par_iter()
        .filter_map(|id| Some((id, work_beat_chroma(&catalog, id)?)))
        .collect();
    let (mut embedded, mut verified) = (Ranks::default(), Ranks::default());
    let (mut original_scores, mut other_scores): (Vec<f32>, Vec<f32>) = (Vec::new(), Vec::new());
    // The first `verify` works of each cover, by verification score.
    let checked: Vec<Vec<(TrackId, f32)>> = (results.par_iter())
        .zip(nearest.par_iter())
        .map(|(a, near)| {
            let Ok(passage) = &a.passage else {
                return Vec::new();
            };
            let mut checked: Vec<(TrackId, f32)> = (near.iter().take(args.verify))
                .map(|w| {
                    let score =
                        (work_beats.get(&w.0)).map_or(0.0, |b| cross_similarity(&passage.beats, b));
                    (w.0, score)
                })
                .collect();
            checked.sort_by(|x, y| y.1.total_cmp(&x.1));
            checked
        })
        .collect();
    for ((a, near), checked) in results.iter().zip(&nearest).zip(&checked) {
        let name = a.file.display().to_string();
        let external = |t: TrackId| {
            catalog
                .tracks()
                .get(t)
                .map_or("-", |t| t.meta.external_id.as_str())
        };
        let passage = match &a.passage {
            Ok(p) => p,
            Err(e) => {
                println!("{name}: {e:#}");
                continue;
            }
        };
        if passage.embedding.is_none() {
            println!("{name}: too few beats for an embedding");
            embedded.add(None);
            verified.add(None);
            continue;
        }
        let rank = near.iter().position(|w| w.0 == a.original).map(|r| r + 1);
        embedded.add(rank);
        let verified_rank = match checked.iter().position(|w| w.0 == a.original) {
            Some(r) => Some(r + 1),
            None => rank,
        };
        verified.add(verified_rank);
        for &(t, score) in checked {
            if t == a.original {
                original_scores.push(score);
            } else {
                other_scores.push(score);
            }
        }
        let first = near
            .first()
            .map_or(("-", f32::NAN), |w| (external(w.0), w.1));
        let best = checked
            .first()
            .map_or(("-", f32::NAN), |w| (external(w.0), w.1));
        if args.json {
            println!(
                "{}",
                json!({"file": name, "original": external(a.original), "rank": rank,
                       "verified_rank": verified_rank, "nearest": first.0,
                       "best_verified": best.0, "verification": round(best.1 as f64, 3),
                       "embed_s": round(a.seconds, 3)})
            );
        } else {
            println!(
                "{name}: original {} at rank {}, {} verified; nearest {} ({:.3}), best verified {} ({:.3})",
                external(a.original),
                rank.map_or("-".into(), |r| r.to_string()),
                verified_rank.map_or("-".into(), |r| r.to_string()),
                first.0,
                first.1,
                best.0,
                best.1
            );
        }
    }
    let what = args
        .excerpt_s
        .map_or("whole files".to_owned(), |s| format!("{s} s excerpts"));
    println!(
        "covers {}: {} among {n} tracks ({what}); analysed in {:.1} s",
        embedded.counted,
        embedded.summary(),
        started.elapsed().as_secs_f64()
    );
    if args.verify > 0 {
        let likely = |scores: &[f32]| scores.iter().filter(|&&s| s >= LIKELY_SAME_WORK).count();
        println!(
            "verified (the nearest {} reordered by cross-similarity): {}; score of the original \
             median {:.3}, of the other works median {:.3}, 95th percentile {:.3}; at or above \
             {LIKELY_SAME_WORK} (likely the same work): originals {}/{}, other works {}/{}",
            args.verify,
            verified.summary(),
            quantile(&original_scores, 0.5),
            quantile(&other_scores, 0.5),
            quantile(&other_scores, 0.95),
            likely(&original_scores),
            original_scores.len(),
            likely(&other_scores),
            other_scores.len(),
        );
    }
    Ok(Outcome::Done)
}

/// An unidentified passage of some show, with its embedding.
struct Unknown {
    source: String,
    segment: UnidentifiedRecord,
    embedding: Vec<f32>,
    /// Where its audio is: a monitor's clip (whole), or a scanned recording
    /// (from `start_s` to `end_s`).
    audio: (PathBuf, Option<(f64, f64)>),
}

/// The unidentified passages of monitor logs (`.jsonl`) and scan results
/// (`.plays.json`).
fn read_unknowns(files: &[PathBuf]) -> anyhow::Result<Vec<Unknown>> {
    let mut found = Vec::new();
    for file in files {
        let log = file.extension().is_some_and(|e| e == "jsonl");
        let show = if log {
            Show::from_log(file)?.0
        } else {
            Show::from_scan(file)?
        };
        for segment in show.unidentified {
            let audio = if log {
                let dir = file.parent().unwrap_or(Path::new("."));
                (dir.join(&segment.clip), None)
            } else {
                let range = (segment.start_s, segment.end_s);
                (PathBuf::from(&show.source), Some(range))
            };
            if let Some(embedding) = segment.embedding.clone() {
                found.push(Unknown {
                    source: file.display().to_string(),
                    segment,
                    embedding,
                    audio,
                });
            }
        }
    }
    Ok(found)
}

/// The audio of a passage, mono at its own rate.
fn passage_audio(u: &Unknown) -> anyhow::Result<crate::identify::Clip> {
    let (path, range) = &u.audio;
    let mut file = AudioFile::open(path)?;
    let Some((start_s, end_s)) = *range else {
        return Ok(read_clip(&mut file, f64::MAX)?);
    };
    let mut clip = read_clip(&mut file, end_s)?;
    let start = ((start_s * clip.rate_hz as f64) as usize).min(clip.samples.len());
    clip.samples.drain(..start);
    Ok(clip)
}

/// Passages whose fingerprints match each other (the same recording, even
/// at another tempo), as groups: every passage is indexed in a scratch
/// catalog and identified against it.
fn fingerprint_groups(unknowns: &[Unknown]) -> anyhow::Result<Vec<Vec<usize>>> {
    let clips: Vec<anyhow::Result<crate::identify::Clip>> =
        unknowns.par_iter().map(passage_audio).collect();
    let scratch = std::env::temp_dir().join(format!("earmark-unknowns-{}", std::process::id()));
    let result = (|| -> anyhow::Result<Vec<Vec<usize>>> {
        let mut writer = CatalogWriter::open(&scratch, SCHEME)?;
        let mut batch = Vec::new();
        for (i, clip) in clips.iter().enumerate() {
            let clip = clip
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", unknowns[i].source))?;
            let fingerprint = fingerprint_samples(
                &clip.samples,
                clip.rate_hz,
                &FingerprintOptions::reference(),
            )?;
            batch.push(NewTrack {
                meta: TrackMeta {
                    external_id: format!("passage-{i}"),
                    ..TrackMeta::default()
                },
                duration_s: clip.duration_s(),
                path: unknowns[i].source.clone(),
                content_hash: format!("passage-{i}"),
                landmarks: fingerprint.landmarks,
                peaks: fingerprint.peaks,
                embedding: None,
                beat_chroma: Vec::new(),
            });
        }
        writer.commit(batch)?;
        let catalog = writer.catalog();
        let options = MatchOptions::default();
        let mut root: Vec<usize> = (0..unknowns.len()).collect();
        fn find(root: &mut [usize], i: usize) -> usize {
            let mut r = i;
            while root[r] != r {
                r = root[r];
            }
            root[i] = r;
            r
        }
        let mut matcher = Matcher::new(catalog, options.clone());
        let mut fingerprinter = QueryFingerprinter::default();
        for (i, clip) in clips.iter().enumerate() {
            let Ok(clip) = clip else { continue };
            let candidates = matcher.all_candidates(&fingerprinter.fingerprint(clip)?);
            // No runner-up margin applies here (a passage's best match is
            // itself), so a link needs twice a catalog match's score.
            let linked = candidates
                .iter()
                .filter(|c| c.score >= 2.0 * options.min_score);
            for c in linked {
                let j = c.track.0 as usize;
                if j != i && j < unknowns.len() {
                    let (a, b) = (find(&mut root, i), find(&mut root, j));
                    root[a] = b;
                }
            }
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for i in 0..unknowns.len() {
            let r = find(&mut root, i);
            let g = *index.entry(r).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        Ok(groups)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Groups passages: those whose fingerprints match, then groups whose
/// embeddings lie within `max_distance` of each other on average
/// (average-linkage clustering).
fn group(unknowns: &[Unknown], max_distance: f32) -> anyhow::Result<Vec<Vec<usize>>> {
    let mut groups = fingerprint_groups(unknowns)?;
    let linkage = |a: &[usize], b: &[usize]| {
        let total: f32 = (a.iter())
            .flat_map(|&i| b.iter().map(move |&j| (i, j)))
            .map(|(i, j)| distance(&unknowns[i].embedding, &unknowns[j].embedding))
            .sum();
        total / (a.len() * b.len()) as f32
    };
    loop {
        let mut best: Option<(f32, usize, usize)> = None;
        for i in 0..groups.len() {
            for j in i + 1..groups.len() {
                let d = linkage(&groups[i], &groups[j]);
                if d <= max_distance && best.is_none_or(|b| d < b.0) {
                    best = Some((d, i, j));
                }
            }
        }
        let Some((_, i, j)) = best else {
            return Ok(groups);
        };
        let merged = groups.swap_remove(j);
        groups[i].extend(merged);
    }
}

/// `earmark unknowns`: unidentified music that comes back, show after show.
pub fn unknowns(args: &UnknownsArgs) -> anyhow::Result<Outcome> {
    let catalog = args
        .db
        .as_deref()
        .map(|db| Catalog::open_for(db, SCHEME))
        .transpose()?;
    let unknowns = read_unknowns(&args.files)?;
    let mut groups = group(&unknowns, args.max_distance)?;
    let shows = |g: &[usize]| {
        let mut sources: Vec<&str> = g.iter().map(|&i| unknowns[i].source.as_str()).collect();
        sources.sort_unstable();
        sources.dedup();
        sources.len()
    };
    groups.sort_by_key(|g| (std::cmp::Reverse(shows(g)), std::cmp::Reverse(g.len())));
    for (n, g) in groups.iter().enumerate() {
        // The group's centre, for the works nearest it.
        let dims = unknowns[g[0]].embedding.len();
        let centre: Vec<f32> = (0..dims)
            .map(|d| g.iter().map(|&i| unknowns[i].embedding[d]).sum::<f32>() / g.len() as f32)
            .collect();
        let near = catalog.as_ref().map_or_else(Vec::new, |c| {
            c.similar_to(&centre, 3)
                .into_iter()
                .filter_map(|(t, d)| c.tracks().get(t).map(|t| (t.meta.external_id.clone(), d)))
                .collect()
        });
        let members: Vec<serde_json::Value> = g
            .iter()
            .map(|&i| {
                let u = &unknowns[i];
                json!({"source": u.source, "segment": u.segment.segment,
                       "start_s": u.segment.start_s, "end_s": u.segment.end_s,
                       "clip": u.segment.clip})
            })
            .collect();
        if args.json {
            println!(
                "{}",
                json!({"group": n + 1, "shows": shows(g), "passages": members,
                       "nearest_works": near.iter().map(|(id, d)| json!({"track_id": id, "distance": round(*d as f64, 3)})).collect::<Vec<_>>()})
            );
            continue;
        }
        println!("group {}: {} shows, {} passages", n + 1, shows(g), g.len());
        for &i in g {
            let u = &unknowns[i];
            let clip = if u.segment.clip.is_empty() {
                String::new()
            } else {
                format!("  clip {}", u.segment.clip)
            };
            println!(
                "  {} {:.1}-{:.1} s{clip}",
                u.source, u.segment.start_s, u.segment.end_s
            );
        }
        if !near.is_empty() {
            let near: Vec<String> = near
                .iter()
                .map(|(id, d)| format!("{id} ({d:.3})"))
                .collect();
            println!("  nearest works: {}", near.join(", "));
        }
    }
    Ok(Outcome::Done)
}
