//! `earmark eval`: hit rates per degradation and clip length, false positives
//! on out-of-catalog clips, and query time, from make_queries.py ground truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::json;

use earmark_engine::fingerprint::SCHEME;
use earmark_index::{Catalog, MatchOptions, Matcher};

use crate::Outcome;
use crate::cli::EvalArgs;
use crate::identify::{QueryFingerprinter, decode_clip, identify_clip};

/// A row of `ground_truth.csv` (the columns eval needs).
#[derive(Debug, Clone, Deserialize)]
struct Truth {
    query_file: String,
    track_id: String,
    start_s_in_track: f64,
    length_s: f64,
    degradation: String,
    #[serde(default)]
    params: String,
    #[serde(default)]
    rate_factor: Option<f64>,
    #[serde(default)]
    alt_starts: String,
}

impl Truth {
    fn in_catalog(&self) -> bool {
        self.track_id != "NONE"
    }

    /// The catalog track crossfaded into the clip's first seconds ("dj").
    fn crossfade_from(&self) -> Option<&str> {
        self.params
            .split(';')
            .find_map(|kv| kv.strip_prefix("xfade_from="))
    }

    /// The tempo (track seconds per clip second) and pitch factor the
    /// degradation applied.
    fn true_factors(&self) -> Option<(f64, f64)> {
        let value = |prefix: &str| {
            self.degradation
                .strip_prefix(prefix)
                .and_then(|v| v.parse::<f64>().ok())
        };
        if let Some(t) = value("tempo_") {
            Some((t, 1.0))
        } else if let Some(cents) = value("pitch_") {
            Some((1.0, 2f64.powf(cents / 1200.0)))
        } else if let Some(s) = value("speed_") {
            Some((s, s))
        } else if self.degradation == "dj" {
            Some((self.rate_factor.unwrap_or(1.04), 1.0))
        } else {
            None
        }
    }

    /// Whether `offset_s` is where this excerpt starts (or one of its repeats).
    fn offset_ok(&self, offset_s: f64) -> bool {
        std::iter::once(self.start_s_in_track)
            .chain(
                self.alt_starts
                    .split(';')
                    .filter_map(|s| s.trim().parse().ok()),
            )
            .any(|s| (s - offset_s).abs() <= 1.0)
    }
}

/// What happened to one query.
#[derive(Debug, Clone)]
struct Outcome1 {
    truth: Truth,
    answer: Option<String>,
    offset_s: Option<f64>,
    factors: Option<(f64, f64)>,
    top_score: f32,
    top_votes: u32,
    runner_up_score: f32,
    landmarks: u32,
    top_track: Option<String>,
    elapsed_ms: f64,
    error: Option<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    n: u32,
    hits: u32,
    offset_ok: u32,
    /// Hits on changed audio whose tempo and pitch estimates are within 1%.
    factor_ok: u32,
    changed: u32,
    wrong: u32,
    /// Answers naming the track crossfaded into the clip: right about what
    /// is audible, but not the clip's main track.
    partner: u32,
}

impl Tally {
    fn add(&mut self, o: &Outcome1) {
        self.n += 1;
        match &o.answer {
            Some(a) if *a == o.truth.track_id => {
                self.hits += 1;
                if o.offset_s.is_some_and(|s| o.truth.offset_ok(s)) {
                    self.offset_ok += 1;
                }
                if let (Some((t, p)), Some((et, ep))) = (o.truth.true_factors(), o.factors) {
                    self.changed += 1;
                    if (et / t - 1.0).abs() <= 0.01 && (ep / p - 1.0).abs() <= 0.01 {
                        self.factor_ok += 1;
                    }
                }
            }
            Some(a) if o.truth.crossfade_from() == Some(a.as_str()) => self.partner += 1,
            Some(_) => self.wrong += 1,
            None => {}
        }
    }

    fn rate(&self) -> f64 {
        self.hits as f64 / self.n.max(1) as f64
    }
}

fn read_truth(path: &Path) -> anyhow::Result<Vec<(PathBuf, Truth)>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("{}", path.display()))?;
    let mut rows = Vec::new();
    for (i, row) in reader.deserialize::<Truth>().enumerate() {
        let row = row.with_context(|| format!("{}: record {}", path.display(), i + 1))?;
        rows.push((dir.join(&row.query_file), row));
    }
    Ok(rows)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `earmark eval`.
pub fn run(args: &EvalArgs) -> anyhow::Result<Outcome> {
    crate::cli::set_jobs(args.jobs)?;
    let catalog = Catalog::open_for(&args.db, SCHEME)?;
    let mut rows = Vec::new();
    for path in &args.truth {
        rows.extend(read_truth(path)?);
    }
    if rows.is_empty() {
        anyhow::bail!("the truth files list no queries");
    }
    let options = MatchOptions::default();
    let outcomes: Vec<Outcome1> = rows
        .par_iter()
        .map_init(
            || {
                (
                    Matcher::new(&catalog, options.clone()),
                    QueryFingerprinter::default(),
                )
            },
            |(matcher, fingerprinter), (path, truth)| {
                run_one(&catalog, matcher, fingerprinter, path, truth)
            },
        )
        .collect();
    if let Some(path) = &args.details {
        write_details(path, &outcomes)?;
    }
    report(&outcomes, args.json);
    // The figures count an unreadable clip as missed: say which and why.
    let unreadable: Vec<&str> = outcomes.iter().filter_map(|o| o.error.as_deref()).collect();
    for error in &unreadable {
        eprintln!("earmark: {error}");
    }
    if !unreadable.is_empty() {
        anyhow::bail!(
            "{} of {} queries could not be read (counted as missed)",
            unreadable.len(),
            outcomes.len()
        );
    }
    Ok(Outcome::Done)
}

fn run_one(
    catalog: &Catalog,
    matcher: &mut Matcher<'_>,
    fingerprinter: &mut QueryFingerprinter,
    path: &Path,
    truth: &Truth,
) -> Outcome1 {
    let mut out = Outcome1 {
        truth: truth.clone(),
        answer: None,
        offset_s: None,
        factors: None,
        top_score: 0.0,
        top_votes: 0,
        runner_up_score: 0.0,
        landmarks: 0,
        top_track: None,
        elapsed_ms: 0.0,
        error: None,
    };
    let clip = match decode_clip(path, 600.0) {
        Ok(clip) => clip,
        Err(e) => {
            out.error = Some(format!("{e:#}"));
            return out;
        }
    };
    let started = Instant::now();
    let result = identify_clip(matcher, fingerprinter, &clip);
    out.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let external = |t| catalog.tracks().get(t).map(|t| t.meta.external_id.clone());
    match result {
        Ok(id) => {
            out.landmarks = id.query_landmarks;
            if let Some(top) = id.candidates.first() {
                out.top_score = top.score;
                out.top_votes = top.votes;
                out.top_track = external(top.track);
            }
            out.runner_up_score = id.candidates.get(1).map_or(0.0, |c| c.score);
            if let Some(m) = id.best {
                out.answer = external(m.candidate.track);
                out.offset_s = Some(m.candidate.offset_s());
                out.factors = Some((m.candidate.tempo as f64, m.candidate.pitch as f64));
            }
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

fn write_details(path: &Path, outcomes: &[Outcome1]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("{}", path.display()))?;
    w.write_record([
        "query_file",
        "degradation",
        "length_s",
        "expected",
        "answer",
        "top_track",
        "top_score",
        "top_votes",
        "runner_up_score",
        "landmarks",
        "offset_s",
        "start_s",
        "rate_factor",
        "tempo",
        "pitch",
        "elapsed_ms",
        "error",
    ])?;
    for o in outcomes {
        w.write_record([
            o.truth.query_file.clone(),
            o.truth.degradation.clone(),
            o.truth.length_s.to_string(),
            o.truth.track_id.clone(),
            o.answer.clone().unwrap_or_default(),
            o.top_track.clone().unwrap_or_default(),
            format!("{:.2}", o.top_score),
            o.top_votes.to_string(),
            format!("{:.2}", o.runner_up_score),
            o.landmarks.to_string(),
            o.offset_s.map(|s| format!("{s:.3}")).unwrap_or_default(),
            o.truth.start_s_in_track.to_string(),
            o.truth
                .rate_factor
                .map(|r| r.to_string())
                .unwrap_or_default(),
            o.factors.map(|f| format!("{:.4}", f.0)).unwrap_or_default(),
            o.factors.map(|f| format!("{:.4}", f.1)).unwrap_or_default(),
            format!("{:.3}", o.elapsed_ms),
            o.error.clone().unwrap_or_default(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

fn report(outcomes: &[Outcome1], as_json: bool) {
    let mut table: BTreeMap<(String, u32), Tally> = BTreeMap::new();
    let mut per_degradation: BTreeMap<String, Tally> = BTreeMap::new();
    let mut lengths: Vec<u32> = Vec::new();
    let (mut ooc, mut false_positives, mut partners, mut errors) = (0u32, 0u32, 0u32, 0u32);
    for o in outcomes {
        if o.error.is_some() {
            errors += 1;
        }
        if !o.truth.in_catalog() {
            ooc += 1;
            match &o.answer {
                Some(a) if o.truth.crossfade_from() == Some(a.as_str()) => partners += 1,
                Some(_) => false_positives += 1,
                None => {}
            }
            continue;
        }
        let len = o.truth.length_s.round() as u32;
        if !lengths.contains(&len) {
            lengths.push(len);
        }
        table
            .entry((o.truth.degradation.clone(), len))
            .or_default()
            .add(o);
        per_degradation
            .entry(o.truth.degradation.clone())
            .or_default()
            .add(o);
    }
    lengths.sort_unstable();
    let mut times: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.error.is_none())
        .map(|o| o.elapsed_ms)
        .collect();
    times.sort_by(f64::total_cmp);
    let (median, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    let times_by_length: BTreeMap<u32, (f64, f64)> = lengths
        .iter()
        .map(|&len| {
            let mut times: Vec<f64> = outcomes
                .iter()
                .filter(|o| o.error.is_none() && o.truth.length_s.round() as u32 == len)
                .map(|o| o.elapsed_ms)
                .collect();
            times.sort_by(f64::total_cmp);
            (len, (percentile(&times, 0.5), percentile(&times, 0.99)))
        })
        .collect();
    let peak_mb = crate::cpu::peak_resident_bytes() as f64 / 1e6;
    let overall =
        outcomes
            .iter()
            .filter(|o| o.truth.in_catalog())
            .fold(Tally::default(), |mut t, o| {
                t.add(o);
                t
            });
    if as_json {
        let rows: Vec<_> = table
            .iter()
            .map(|((deg, len), t)| {
                json!({"degradation": deg, "length_s": len, "n": t.n, "hits": t.hits,
                       "wrong": t.wrong, "offset_ok": t.offset_ok, "rate": t.rate()})
            })
            .collect();
        let by_deg: Vec<_> = per_degradation
            .iter()
            .map(|(deg, t)| json!({"degradation": deg, "n": t.n, "hits": t.hits, "wrong": t.wrong, "rate": t.rate()}))
            .collect();
        println!(
            "{}",
            json!({
                "rows": rows,
                "degradations": by_deg,
                "in_catalog": {"n": overall.n, "hits": overall.hits, "wrong": overall.wrong,
                                "offset_ok": overall.offset_ok, "rate": overall.rate(),
                                "changed_hits": overall.changed, "factor_within_1pc": overall.factor_ok},
                "out_of_catalog": {"n": ooc, "false_positives": false_positives,
                                   "crossfade_partner": partners},
                "errors": errors,
                "query_ms": {"median": median, "p99": p99},
                "query_ms_by_length": times_by_length
                    .iter()
                    .map(|(len, (median, p99))| (len.to_string(), json!({"median": median, "p99": p99})))
                    .collect::<serde_json::Map<_, _>>(),
                "peak_resident_mb": peak_mb,
            })
        );
        return;
    }
    print!("{:<16}", "degradation");
    for len in &lengths {
        print!("{:>14}", format!("{len} s"));
    }
    println!("{:>14}{:>7}", "all", "wrong");
    for (deg, total) in &per_degradation {
        print!("{deg:<16}");
        for len in &lengths {
            match table.get(&(deg.clone(), *len)) {
                Some(t) => print!("{:>14}", format!("{:.1}% ({})", 100.0 * t.rate(), t.n)),
                None => print!("{:>14}", "-"),
            }
        }
        println!(
            "{:>14}{:>7}",
            format!("{:.1}% ({})", 100.0 * total.rate(), total.n),
            total.wrong
        );
    }
    println!(
        "in catalog: {}/{} top-1 ({:.1}%), {} wrong track, offset within 1 s for {:.1}% of hits",
        overall.hits,
        overall.n,
        100.0 * overall.rate(),
        overall.wrong,
        100.0 * overall.offset_ok as f64 / overall.hits.max(1) as f64
    );
    if overall.changed > 0 {
        let by_length: Vec<String> = lengths
            .iter()
            .map(|len| {
                let (ok, n) = table
                    .iter()
                    .filter(|((_, l), _)| l == len)
                    .fold((0, 0), |(ok, n), (_, t)| (ok + t.factor_ok, n + t.changed));
                format!(
                    "{len} s {:.1}% ({ok}/{n})",
                    100.0 * ok as f64 / n.max(1) as f64
                )
            })
            .collect();
        println!(
            "tempo/pitch/speed/dj hits with both factors within 1% of the truth: {}/{} ({:.1}%); {}",
            overall.factor_ok,
            overall.changed,
            100.0 * overall.factor_ok as f64 / overall.changed as f64,
            by_length.join(", ")
        );
    }
    println!(
        "out of catalog: {false_positives}/{ooc} accepted as a match ({:.2}%); \
         {partners} named the catalog track crossfaded into their first 2 s",
        100.0 * false_positives as f64 / ooc.max(1) as f64
    );
    println!(
        "query time (fingerprint + match, decode excluded): median {median:.2} ms, p99 {p99:.2} ms"
    );
    let by_length: Vec<String> = times_by_length
        .iter()
        .map(|(len, (median, p99))| format!("{len} s {median:.2}/{p99:.2}"))
        .collect();
    println!(
        "by clip length (median/p99 ms): {}; peak resident memory {peak_mb:.0} MB",
        by_length.join(", ")
    );
    if errors > 0 {
        println!("{errors} queries could not be read");
    }
}
