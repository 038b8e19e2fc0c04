//! The similarity lane on the command line: `earmark eval-covers` measures
//! how well a cover's embedding finds its original among all catalog tracks.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use serde_json::json;

use earmark_engine::AudioFile;
use earmark_engine::chroma::embed_samples;
use earmark_index::Catalog;

use crate::Outcome;
use crate::cli::EvalCoversArgs;
use crate::identify::{read_clip, round};

/// The embedding of a file, or of `excerpt_s` seconds from a quarter of the
/// way in.
fn embed_file(path: &Path, excerpt_s: Option<f64>) -> anyhow::Result<Option<Vec<f32>>> {
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
    Ok(embed_samples(samples, clip.rate_hz)?)
}

/// A cover and its embedding.
struct Embedded {
    file: PathBuf,
    original: String,
    embedding: anyhow::Result<Option<Vec<f32>>>,
    seconds: f64,
}

/// `earmark eval-covers`.
pub fn eval_covers(args: &EvalCoversArgs) -> anyhow::Result<Outcome> {
    let catalog = Catalog::open(&args.db)?;
    let mut reader =
        csv::Reader::from_path(&args.truth).with_context(|| format!("{}", args.truth.display()))?;
    let dir = args.truth.parent().unwrap_or(Path::new("."));
    let rows: Vec<(PathBuf, String)> = reader
        .records()
        .map(|r| {
            let r = r.with_context(|| format!("{}", args.truth.display()))?;
            Ok((
                dir.join(r.get(0).unwrap_or("")),
                r.get(1).unwrap_or("").to_owned(),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let n = catalog.tracks().len();
    let started = Instant::now();
    let results: Vec<Embedded> = rows
        .into_par_iter()
        .map(|(file, original)| {
            let t = Instant::now();
            let embedding = embed_file(&file, args.excerpt_s);
            Embedded {
                file,
                original,
                embedding,
                seconds: t.elapsed().as_secs_f64(),
            }
        })
        .collect();
    let (mut reciprocal, mut top1, mut top5, mut counted) = (0.0, 0, 0, 0);
    for Embedded {
        file,
        original,
        embedding,
        seconds,
    } in &results
    {
        let name = file.display().to_string();
        let Some(want) = catalog.tracks().by_external_id(original) else {
            anyhow::bail!(
                "{}: no track {original} in the catalog",
                args.truth.display()
            );
        };
        let embedding = match embedding {
            Ok(Some(e)) => e,
            Ok(None) => {
                println!("{name}: too few beats for an embedding");
                counted += 1;
                continue;
            }
            Err(e) => {
                println!("{name}: {e:#}");
                continue;
            }
        };
        counted += 1;
        let nearest = catalog.similar_to(embedding, n);
        let rank = nearest
            .iter()
            .position(|(t, _)| *t == want.id)
            .map(|r| r + 1);
        if let Some(r) = rank {
            reciprocal += 1.0 / r as f64;
            top1 += usize::from(r == 1);
            top5 += usize::from(r <= 5);
        }
        let first = nearest
            .first()
            .and_then(|(t, d)| catalog.tracks().get(*t).map(|t| (t, d)));
        if args.json {
            println!(
                "{}",
                json!({"file": name, "original": original, "rank": rank,
                       "nearest": first.map(|(t, _)| t.meta.external_id.as_str()),
                       "embed_s": round(*seconds, 3)})
            );
        } else {
            println!(
                "{name}: original {original} at rank {}; nearest {} ({:.3})",
                rank.map_or("-".into(), |r| r.to_string()),
                first.map_or("-", |(t, _)| t.meta.external_id.as_str()),
                first.map_or(f32::NAN, |(_, d)| *d)
            );
        }
    }
    let share = |k: usize| 100.0 * k as f64 / counted.max(1) as f64;
    println!(
        "covers {counted}: MRR {:.3}, top-1 {:.1}%, top-5 {:.1}% among {n} tracks ({} s {}); \
         embedded in {:.1} s",
        reciprocal / counted.max(1) as f64,
        share(top1),
        share(top5),
        args.excerpt_s
            .map_or("whole".to_owned(), |s| format!("{s}")),
        if args.excerpt_s.is_some() {
            "excerpts"
        } else {
            "files"
        },
        started.elapsed().as_secs_f64()
    );
    Ok(Outcome::Done)
}
