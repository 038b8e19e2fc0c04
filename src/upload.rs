//! Sending a monitor's plays to `earmark serve`.
//!
//! The event log is the queue: it is already on disk, synced event by event.
//! A cursor file beside it (`LOG.upload`) records how many of its bytes the
//! service has acknowledged; a batch is the complete lines after the cursor,
//! and the cursor moves only when the service said it stored them. A batch
//! sent twice (the answer was lost) is harmless: the service stores a play
//! once per log and play number.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use earmark_monitor::{Event, History};

use crate::Outcome;
use crate::cli::{UploadArgs, UploadTarget};

/// Most log bytes sent in one request.
const MAX_BATCH: usize = 1 << 20;
/// Pause between looks at the log while all is well.
const INTERVAL: Duration = Duration::from_secs(2);
/// Longest pause after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How far the service has the log, and the name it knows the log by.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cursor {
    source: String,
    offset: u64,
}

/// One log's uploads to one event of one service.
#[derive(Debug)]
pub struct Uploader {
    agent: ureq::Agent,
    endpoint: String,
    key: String,
    log: PathBuf,
    cursor_path: PathBuf,
    cursor: Cursor,
}

/// What one attempt did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    /// Log bytes acknowledged.
    pub bytes: u64,
    /// Plays and segments the service stored.
    pub stored: u64,
    /// Ones it already had.
    pub unchanged: u64,
}

impl Uploader {
    /// An uploader of `log`'s plays to `event` at the service `target`.
    pub fn new(target: &UploadTarget, event: &str, log: &Path) -> anyhow::Result<Self> {
        let (Some(url), Some(key)) = (&target.url, &target.api_key) else {
            bail!("uploading needs --upload URL and --api-key (or EARMARK_API_KEY)");
        };
        let cursor_path = PathBuf::from(format!("{}.upload", log.display()));
        let cursor = match std::fs::read(&cursor_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not an upload cursor", cursor_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Cursor::default(),
            Err(e) => return Err(e).with_context(|| format!("{}", cursor_path.display())),
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(20)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            agent,
            endpoint: format!("{}/v1/events/{event}/plays", url.trim_end_matches('/')),
            key: key.clone(),
            log: log.to_owned(),
            cursor_path,
            cursor,
        })
    }

    /// The name the service knows this log by: the log's own id, the same
    /// wherever the log is copied or sent from. A log of an earlier version
    /// has none: the host, its file name and its first run's start then,
    /// which a new log at the same path does not share.
    fn source(&self) -> anyhow::Result<Option<String>> {
        let history = History::read(&self.log)?;
        if let Some(id) = history.log_id() {
            return Ok(Some(format!("log:{id}")));
        }
        let Some(first) = history.events.iter().find_map(|e| match e {
            Event::RunStarted { at, .. } => Some(at.clone()),
            _ => None,
        }) else {
            return Ok(None);
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        let name = self
            .log
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Some(format!("{host}:{name}:{first}")))
    }

    /// Sends every complete line past the cursor, batch by batch, until the
    /// log is sent or a request fails.
    pub fn send(&mut self) -> anyhow::Result<Sent> {
        let mut sent = Sent::default();
        let Some(source) = self.source()? else {
            return Ok(sent);
        };
        if source != self.cursor.source {
            // A new log (or the first upload): from its start.
            self.cursor = Cursor { source, offset: 0 };
        }
        let bytes = std::fs::read(&self.log).with_context(|| format!("{}", self.log.display()))?;
        loop {
            let start = (self.cursor.offset as usize).min(bytes.len());
            let pending = &bytes[start..];
            let window = &pending[..pending.len().min(MAX_BATCH)];
            let Some(end) = window.iter().rposition(|&b| b == b'\n') else {
                return Ok(sent);
            };
            let batch = &window[..=end];
            let answer = self.post(batch)?;
            sent.bytes += batch.len() as u64;
            sent.stored += answer["stored"].as_u64().unwrap_or(0);
            sent.unchanged += answer["unchanged"].as_u64().unwrap_or(0);
            self.cursor.offset += batch.len() as u64;
            self.save()?;
        }
    }

    fn post(&self, batch: &[u8]) -> anyhow::Result<serde_json::Value> {
        let mut response = self
            .agent
            .post(&self.endpoint)
            .query("source", &self.cursor.source)
            .header("Authorization", &format!("Bearer {}", self.key))
            .header("Content-Type", "application/x-ndjson")
            .send(batch)
            .with_context(|| format!("cannot reach {}", self.endpoint))?;
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            bail!("{} answered {status}: {message}", self.endpoint);
        }
        serde_json::from_str(&text).with_context(|| format!("{} answered {text:?}", self.endpoint))
    }

    fn save(&self) -> anyhow::Result<()> {
        crate::scan::write_atomically(&self.cursor_path, &serde_json::to_vec(&self.cursor)?)
    }

    /// Keeps sending in a thread of its own until `stop` is set, backing
    /// off after failures; then tries once more and returns.
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> JoinHandle<()> {
        std::thread::spawn(move || {
            let mut wait = INTERVAL;
            let mut failing = false;
            let mut due = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                if Instant::now() < due {
                    continue;
                }
                match self.send() {
                    Ok(_) => {
                        if failing {
                            eprintln!("earmark: uploading again to {}", self.endpoint);
                        }
                        failing = false;
                        wait = INTERVAL;
                    }
                    Err(e) => {
                        if !failing {
                            eprintln!(
                                "earmark: upload waits (plays stay queued in the log): {e:#}"
                            );
                        }
                        failing = true;
                        wait = (wait * 2).min(MAX_BACKOFF);
                    }
                }
                due = Instant::now() + wait;
            }
            if let Err(e) = self.send() {
                eprintln!(
                    "earmark: plays not yet uploaded stay in the log for the next run: {e:#}"
                );
            }
        })
    }
}

/// `earmark upload`: sends what the service does not have yet.
pub fn run(args: &UploadArgs) -> anyhow::Result<Outcome> {
    let event = match &args.event {
        Some(e) => e.clone(),
        None => History::read(&args.log)?
            .event()
            .map(str::to_owned)
            .context("the log names no event: give --event")?,
    };
    let mut uploader = Uploader::new(&args.target, &event, &args.log)?;
    let sent = uploader.send()?;
    println!(
        "uploaded {} bytes of {}: {} stored, {} already there",
        sent.bytes,
        args.log.display(),
        sent.stored,
        sent.unchanged
    );
    Ok(Outcome::Done)
}
