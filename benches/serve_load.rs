//! Load on `earmark serve` from a separate process: identify requests sent
//! at a fixed rate (open loop: a late answer does not delay the next
//! request, and latency is counted from when the request was due), with the
//! 10 s clips of a query set as bodies.
//!
//! Run by `scripts/load.sh`, or by hand against a running server:
//!
//!     EARMARK_URL=http://127.0.0.1:8750 EARMARK_API_KEY=em_... \
//!     EARMARK_LOAD_CLIPS=queries_full_A/ground_truth.csv \
//!     cargo bench --bench serve_load
//!
//! `EARMARK_LOAD_RATE` (requests per second, default 200),
//! `EARMARK_LOAD_SECONDS` (default 30) and `EARMARK_LOAD_LENGTH_S` (clip
//! length picked from the ground truth, default 10) tune it.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests that may be under way at once.
const WORKERS: usize = 64;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The clips of the wanted length named by a ground-truth CSV.
fn clips(truth: &Path, length_s: f64) -> Result<Vec<Vec<u8>>, String> {
    let dir = truth.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(truth).map_err(|e| format!("{}: {e}", truth.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (Some(file), Some(length)) = (column("query_file"), column("length_s")) else {
        return Err(format!(
            "{}: needs query_file and length_s",
            truth.display()
        ));
    };
    let mut clips = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let wanted = fields
            .get(length)
            .and_then(|l| l.parse::<f64>().ok())
            .is_some_and(|l| (l - length_s).abs() < 1e-6);
        if let (true, Some(name)) = (wanted, fields.get(file)) {
            let path: PathBuf = dir.join(name);
            clips.push(std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        }
    }
    Ok(clips)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<(), String> {
    let (Ok(url), Ok(key), Ok(truth)) = (
        std::env::var("EARMARK_URL"),
        std::env::var("EARMARK_API_KEY"),
        std::env::var("EARMARK_LOAD_CLIPS"),
    ) else {
        eprintln!("serve_load: set EARMARK_URL, EARMARK_API_KEY and EARMARK_LOAD_CLIPS; skipped");
        return Ok(());
    };
    let rate: f64 = env_or("EARMARK_LOAD_RATE", 200.0);
    let seconds: f64 = env_or("EARMARK_LOAD_SECONDS", 30.0);
    let length_s: f64 = env_or("EARMARK_LOAD_LENGTH_S", 10.0);
    let clips = Arc::new(clips(Path::new(&truth), length_s)?);
    if clips.is_empty() {
        return Err(format!("no {length_s} s clips in {truth}"));
    }
    let endpoint = format!("{}/v1/identify", url.trim_end_matches('/'));
    let total = (rate * seconds).round() as usize;
    let (send, receive) = mpsc::channel::<(usize, Instant)>();
    let receive = Arc::new(Mutex::new(receive));
    let results = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (receive, results, clips, endpoint, key) = (
                Arc::clone(&receive),
                Arc::clone(&results),
                Arc::clone(&clips),
                endpoint.clone(),
                key.clone(),
            );
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(10)))
                    .http_status_as_error(false)
                    .build()
                    .into();
                loop {
                    let next = receive.lock().map(|r| r.recv());
                    let Ok(Ok((i, due))) = next else { break };
                    let body = &clips[i % clips.len()];
                    let answer = agent
                        .post(&endpoint)
                        .header("Authorization", &format!("Bearer {key}"))
                        .send(&body[..]);
                    let outcome = match answer {
                        Ok(mut r) if r.status().is_success() => {
                            let text = r.body_mut().read_to_string().unwrap_or_default();
                            Ok(!text.contains("\"match\":null"))
                        }
                        Ok(r) => Err(format!("status {}", r.status())),
                        Err(e) => Err(e.to_string()),
                    };
                    let latency = due.elapsed().as_secs_f64() * 1e3;
                    if let Ok(mut all) = results.lock() {
                        all.push((latency, outcome));
                    }
                }
            })
        })
        .collect();
    eprintln!(
        "serve_load: {total} requests at {rate}/s over {seconds} s, {} clips of {length_s} s, to {endpoint}",
        clips.len()
    );
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    for i in 0..total {
        let due = started + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if send.send((i, due)).is_err() {
            break;
        }
    }
    drop(send);
    for w in workers {
        let _ = w.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let results = results.lock().map_err(|_| "a worker panicked")?;
    let mut latencies: Vec<f64> = results.iter().map(|(l, _)| *l).collect();
    latencies.sort_by(f64::total_cmp);
    let errors: Vec<&String> = results
        .iter()
        .filter_map(|(_, o)| o.as_ref().err())
        .collect();
    let matched = results
        .iter()
        .filter(|(_, o)| matches!(o, Ok(true)))
        .count();
    println!(
        "requests {} in {elapsed:.1} s = {:.1}/s; errors {}; matched {:.1}%",
        results.len(),
        results.len() as f64 / elapsed,
        errors.len(),
        100.0 * matched as f64 / results.len().max(1) as f64
    );
    println!(
        "latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    if let Some(first) = errors.first() {
        println!("first error: {first}");
    }
    Ok(())
}
