//! Batch scans on a cluster. `earmark scan --cluster` queues one job per
//! recording in a JetStream work queue and waits for the results;
//! `earmark worker` processes pull the jobs one at a time, decode and
//! fingerprint the recording, let the shards follow it, publish the result
//! to a results stream under the recording's content hash and only then
//! acknowledge. A job whose worker dies is delivered again after the
//! acknowledgement deadline (a live worker keeps extending it). A result is
//! stored once: JetStream drops a second message with the same id (the
//! content hash), and a worker skips a job whose result is there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use earmark_index::{Track, TrackTable};
use earmark_monitor::{Play, PlayRecord, UnidentifiedRecord};

use super::ShardPlay;
use super::gateway::{ClusterError, Gateway};
use crate::Outcome;
use crate::cli::WorkerArgs;
use crate::scan::Stretch;

/// The JetStream work queue of scan jobs.
const JOBS_STREAM: &str = "EARMARK_SCAN_JOBS";
/// The subject of scan jobs.
const JOBS_SUBJECT: &str = "earmark.scan.jobs";
/// The JetStream stream of results, one subject per recording.
const RESULTS_STREAM: &str = "EARMARK_SCAN_RESULTS";
/// The durable consumer all workers share: each job goes to one of them.
const WORKERS: &str = "earmark-workers";

/// A recording to scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanJob {
    /// Where the recording is (a path every worker can read).
    pub path: String,
    /// BLAKE3 of its bytes.
    pub content_hash: String,
}

/// What a worker found in a recording.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanResult {
    /// The recording.
    pub path: String,
    /// Its content hash.
    pub content_hash: String,
    /// Decoded seconds.
    pub audio_s: f64,
    /// Plays in start order.
    pub plays: Vec<PlayRecord>,
    /// Music no play explains.
    pub unidentified: Vec<UnidentifiedRecord>,
    /// Why the recording could not be scanned, if it could not.
    pub error: Option<String>,
    /// The worker that scanned it.
    pub worker: String,
}

/// The work queue, created if it is not there yet. The same recording
/// queued twice within a day is one job.
async fn jobs_stream(js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    let config = stream::Config {
        name: JOBS_STREAM.into(),
        subjects: vec![JOBS_SUBJECT.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        duplicate_window: Duration::from_secs(24 * 3600),
        ..Default::default()
    };
    super::stream(js, config).await
}

/// The stream of results, created if it is not there yet.
async fn results_stream(js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    let config = stream::Config {
        name: RESULTS_STREAM.into(),
        subjects: vec![result_subject("*")],
        max_messages_per_subject: 1,
        duplicate_window: Duration::from_secs(24 * 3600),
        ..Default::default()
    };
    super::stream(js, config).await
}

/// The subject of a recording's result.
fn result_subject(content_hash: &str) -> String {
    format!("earmark.scan.results.{content_hash}")
}

/// The stored result of the recording with `content_hash`, if any.
async fn stored(
    results: &stream::Stream,
    content_hash: &str,
) -> anyhow::Result<Option<ScanResult>> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    match results
        .get_last_raw_message_by_subject(&result_subject(content_hash))
        .await
    {
        Ok(message) => Ok(Some(serde_json::from_slice(&message.payload)?)),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading the result of {content_hash}: {e}")),
    }
}

/// Publishes `payload` on `subject` with the message id `id` (JetStream
/// keeps the first message of an id) and waits for JetStream to store it.
async fn publish_once(
    js: &jetstream::Context,
    subject: String,
    id: &str,
    payload: Vec<u8>,
) -> anyhow::Result<()> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    js.publish_with_headers(subject, headers, payload.into())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// `earmark worker`.
pub fn run(args: &WorkerArgs) -> anyhow::Result<Outcome> {
    crate::cli::set_jobs(args.jobs)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(work(args))?;
    Ok(Outcome::Done)
}

async fn work(args: &WorkerArgs) -> anyhow::Result<()> {
    let gateway = args.cluster.gateway(args.shards).await?;
    let js = jetstream::new(gateway.client());
    let stream = jobs_stream(&js).await?;
    let results = results_stream(&js).await?;
    let ack_wait = Duration::from_secs_f64(args.ack_wait_s.max(1.0));
    let consumer = stream
        .get_or_create_consumer(
            WORKERS,
            pull::Config {
                durable_name: Some(WORKERS.into()),
                ack_wait,
                ..Default::default()
            },
        )
        .await
        .context("the workers' consumer")?;
    let name = (args.name.clone())
        .unwrap_or_else(|| format!("{}-{}", super::host_name(), std::process::id()));
    eprintln!(
        "earmark worker: {name} waiting for jobs on {}",
        args.cluster.nats
    );
    loop {
        let next = tokio::select! {
            batch = consumer.fetch().max_messages(1).expires(Duration::from_secs(5)).messages() => batch,
            _ = crate::serve::shutdown() => break,
        };
        let mut batch = next.context("fetching a job")?;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
            let job: ScanJob = match serde_json::from_slice(&message.payload) {
                Ok(job) => job,
                Err(e) => {
                    eprintln!("earmark worker: a job that is not one dropped: {e}");
                    message.ack().await.ok();
                    continue;
                }
            };
            if stored(&results, &job.content_hash).await?.is_some() {
                message.ack().await.ok();
                continue;
            }
            eprintln!("earmark worker: scanning {}", job.path);
            // Tells JetStream the job is alive while it runs.
            let keepalive = async {
                loop {
                    tokio::time::sleep(ack_wait / 3).await;
                    message.ack_with(AckKind::Progress).await.ok();
                }
            };
            let (gateway, queued, worker) = (gateway.clone(), job.clone(), name.clone());
            let handle = tokio::runtime::Handle::current();
            let scan =
                tokio::task::spawn_blocking(move || scan(&gateway, &handle, &queued, worker));
            let scanned = tokio::select! {
                r = scan => r.context("scan job")?,
                _ = keepalive => unreachable!("the keepalive never ends"),
            };
            let result = match scanned {
                Ok(result) => result,
                Err(ScanError::Cluster(e)) => {
                    // The shards will be back: the job is offered again.
                    eprintln!("earmark worker: {}: {e}; offered again", job.path);
                    message.ack_with(AckKind::Nak(Some(ack_wait))).await.ok();
                    continue;
                }
                Err(ScanError::Recording(why)) => ScanResult {
                    path: job.path.clone(),
                    content_hash: job.content_hash.clone(),
                    audio_s: 0.0,
                    plays: Vec::new(),
                    unidentified: Vec::new(),
                    error: Some(why),
                    worker: name.clone(),
                },
            };
            let subject = result_subject(&job.content_hash);
            publish_once(
                &js,
                subject,
                &job.content_hash,
                serde_json::to_vec(&result)?,
            )
            .await
            .with_context(|| format!("storing the result of {}", job.path))?;
            eprintln!(
                "earmark worker: stored {}: {} plays",
                job.path,
                result.plays.len()
            );
            message
                .double_ack()
                .await
                .map_err(|e| anyhow::anyhow!("acknowledging {}: {e}", job.path))?;
        }
    }
    eprintln!("earmark worker: {name} stopped");
    Ok(())
}

/// Why a job failed.
enum ScanError {
    /// The cluster could not follow the recording: try again later.
    Cluster(ClusterError),
    /// The recording itself is bad: that is its result.
    Recording(String),
}

/// Scans a recording, the shards following each stretch of it.
fn scan(
    gateway: &Gateway,
    handle: &tokio::runtime::Handle,
    job: &ScanJob,
    worker: String,
) -> Result<ScanResult, ScanError> {
    let tracks = Mutex::new(TrackTable::default());
    let failure = Mutex::new(None);
    let follow = |job: &earmark_engine::Fingerprint, stretch: Stretch| -> Vec<Play> {
        match handle.block_on(gateway.follow(job, stretch)) {
            Ok(plays) => match tracks.lock() {
                Ok(mut t) => plays.into_iter().filter_map(|p| adopt(&mut t, p)).collect(),
                Err(_) => Vec::new(),
            },
            Err(e) => {
                if let Ok(mut f) = failure.lock() {
                    *f = Some(e);
                }
                Vec::new()
            }
        }
    };
    let mut heard = crate::scan::listen(Path::new(&job.path), &follow)
        .map_err(|e| ScanError::Recording(format!("{e:#}")))?;
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(ScanError::Cluster(e));
    }
    let plays = crate::scan::join(settle(std::mem::take(&mut heard.plays)));
    let unidentified = heard.unidentified(&plays, None);
    let tracks = tracks.into_inner().unwrap_or_default();
    Ok(ScanResult {
        path: job.path.clone(),
        content_hash: job.content_hash.clone(),
        audio_s: heard.audio_s,
        plays: (plays.iter())
            .map(|p| PlayRecord::of(tracks.get(p.track), p, 0.0, None))
            .collect(),
        unidentified,
        error: None,
        worker,
    })
}

/// The play, its track numbered in `tracks`, the worker's table of the
/// tracks of every shard (the shards' own numbers overlap).
fn adopt(tracks: &mut TrackTable, shard_play: ShardPlay) -> Option<Play> {
    let ShardPlay { play, track } = shard_play;
    let id = match tracks.by_external_id(&track.meta.external_id) {
        Some(t) => t.id,
        None => {
            let id = tracks.next_id();
            tracks.insert(Track { id, ..track }).ok()?;
            id
        }
    };
    Some(Play { track: id, ..play })
}

/// Plays of different shards that cover the same stretch: one node would
/// have kept only the better, since each was the other's runner-up. A play
/// overlapped for more than half its length by a better-scoring play of
/// another track is dropped (a crossfade overlaps far less).
fn settle(mut plays: Vec<Play>) -> Vec<Play> {
    plays.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Play> = Vec::with_capacity(plays.len());
    for p in plays {
        let covered = kept.iter().any(|k| {
            let overlap = p.end_frame.min(k.end_frame) - p.start_frame.max(k.start_frame);
            k.track != p.track && overlap > 0.5 * (p.end_frame - p.start_frame)
        });
        if !covered {
            kept.push(p);
        }
    }
    kept
}

/// Queues `files` (with their content hashes) as jobs and waits for every
/// result; the results in the order of `files`.
pub fn submit(url: &str, files: &[(PathBuf, String)]) -> anyhow::Result<Vec<ScanResult>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("cannot reach NATS at {url}"))?;
        let js = jetstream::new(client);
        jobs_stream(&js).await?;
        let results = results_stream(&js).await?;
        for (path, hash) in files {
            let job = ScanJob {
                path: (path.canonicalize().unwrap_or_else(|_| path.clone()))
                    .display()
                    .to_string(),
                content_hash: hash.clone(),
            };
            publish_once(&js, JOBS_SUBJECT.into(), hash, serde_json::to_vec(&job)?)
                .await
                .with_context(|| format!("queueing {}", path.display()))?;
        }
        if !files.is_empty() {
            eprintln!(
                "earmark scan: {} recordings queued on {url}; waiting for `earmark worker`s",
                files.len()
            );
        }
        let bar = crate::ingest::progress(files.len(), "scanning on the cluster");
        let mut found: HashMap<&str, ScanResult> = HashMap::new();
        while found.len() < files.len() {
            for (_, hash) in files {
                if found.contains_key(hash.as_str()) {
                    continue;
                }
                if let Some(result) = stored(&results, hash).await? {
                    found.insert(hash, result);
                    bar.inc(1);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bar.finish_and_clear();
        Ok(files
            .iter()
            .filter_map(|(_, hash)| found.remove(hash.as_str()))
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use earmark_index::TrackId;

    fn play(track: u32, start: f64, end: f64, score: f32) -> Play {
        Play {
            id: 0,
            track: TrackId(track),
            start_frame: start,
            end_frame: end,
            track_at_zero: 0.0,
            tempo: 1.0,
            pitch: 1.0,
            score,
        }
    }

    #[test]
    fn settling_keeps_crossfades_and_drops_the_weaker_of_two_tracks_at_once() {
        let plays = vec![
            play(0, 0.0, 1000.0, 30.0),
            play(1, 900.0, 2000.0, 25.0),
            play(2, 100.0, 700.0, 9.0),
        ];
        let kept = settle(plays);
        let tracks: Vec<u32> = kept.iter().map(|p| p.track.0).collect();
        assert_eq!(tracks, vec![0, 1]);
    }
}
