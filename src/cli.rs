//! Command-line arguments and dispatch; no logic of its own.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::Outcome;

/// Audio fingerprinting and monitoring for blanket music licences.
#[derive(Debug, Parser)]
#[command(name = "earmark", version, about, propagate_version = true)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

impl Args {
    /// Whether the command may talk over the network (serving, uploading,
    /// a cluster's queues), where a peer that hangs up must be an error
    /// the command handles rather than a signal that ends it.
    pub fn uses_network(&self) -> bool {
        matches!(
            self.command,
            Command::Serve(_)
                | Command::Worker(_)
                | Command::Upload(_)
                | Command::Monitor(_)
                | Command::Scan(_)
        )
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build and inspect the catalog index.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Import the catalog's rights metadata (works, ISRC, ISWC, repertoire).
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Store and inspect the licences sold for events.
    Licence {
        #[command(subcommand)]
        command: LicenceCommand,
    },
    /// Identify audio files against the catalog (exit 1 if any has no match).
    Identify(IdentifyArgs),
    /// Measure hit rates, false positives and speed on a ground-truth query set.
    Eval(EvalArgs),
    /// Turn recordings into plays: what was played when.
    Scan(ScanArgs),
    /// Scan a session recording and compare its plays with its timeline.
    EvalSession(EvalSessionArgs),
    /// Measure how well covers find their originals by similarity.
    EvalCovers(EvalCoversArgs),
    /// Group unidentified music that recurs across shows, most shows first.
    Unknowns(UnknownsArgs),
    /// Grow a catalog generated from real music to 100,000 tracks and print
    /// size, memory, open time, query latency and hit rates along the way.
    BenchScale(BenchScaleArgs),
    /// Listen to the sound card (or a file or a pipe) and log every play.
    Monitor(MonitorArgs),
    /// List audio input devices (the default marked with *).
    Devices(DevicesArgs),
    /// Print the cue sheet of a show (a monitor's log or a scan) with coverage.
    Report(ReportArgs),
    /// Answer the HTTP API: identify, tracks, coverage, plays, reports.
    Serve(ServeArgs),
    /// Scan recordings that `scan --cluster` queued, the shards of a
    /// cluster doing the matching.
    Worker(WorkerArgs),
    /// Manage the API keys of `earmark serve`.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Send a monitor log's plays to `earmark serve` (what `monitor
    /// --upload` does as it runs).
    Upload(UploadArgs),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a key and print it (only its hash is stored).
    Add(KeysAddArgs),
    /// List the keys (never their secrets).
    List(KeysListArgs),
    /// Delete a key; a running server refuses it within a second.
    Revoke(KeysRevokeArgs),
}

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Catalog directory (API keys and uploaded plays are kept in it too).
    #[arg(long)]
    pub db: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8750")]
    pub listen: String,
    /// Longest clip `/v1/identify` takes, in seconds.
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    pub max_clip_s: f64,
    /// Largest request body, in MiB (recordings added by `POST /v1/tracks`
    /// included).
    #[arg(long, default_value_t = 64)]
    pub max_body_mb: usize,
    /// Requests handled at once; more wait.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Seconds before a request is answered 408.
    #[arg(long, default_value_t = 30.0, value_parser = seconds)]
    pub timeout_s: f64,
    /// The cluster's NATS server, for `--shard` and `--gateway`.
    #[command(flatten)]
    pub cluster: NatsArgs,
    /// Serve shard k of K of a cluster over NATS (no HTTP): `--db` holds
    /// this shard's tracks (`index add --shard k/K`).
    #[arg(long, conflicts_with = "gateway")]
    pub shard: Option<crate::cluster::Shard>,
    /// This replica's name, unique within its shard: it keeps its place in
    /// the stream of recordings to add (default: the host and the catalog
    /// directory).
    #[arg(long, requires = "shard")]
    pub replica: Option<String>,
    /// Serve the HTTP API as a cluster's gateway: identify and track
    /// lookups go to the shards; keys, licences, rights and uploaded plays
    /// are kept in `--db`.
    #[arg(long, requires = "shards")]
    pub gateway: bool,
    /// How many shards the gateway's cluster has.
    #[arg(long, requires = "gateway")]
    pub shards: Option<u32>,
}

/// How to reach a cluster (`serve --shard`, `serve --gateway`, `worker`).
#[derive(Debug, clap::Args)]
pub struct NatsArgs {
    /// NATS server of the cluster (with JetStream on).
    #[arg(long, env = "EARMARK_NATS", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Milliseconds to wait for one replica of a shard before asking
    /// another.
    #[arg(long, default_value_t = 1000)]
    pub shard_timeout_ms: u64,
}

impl NatsArgs {
    /// Connects to the shards of a cluster of `shards`.
    pub async fn gateway(&self, shards: u32) -> anyhow::Result<crate::cluster::gateway::Gateway> {
        let patience = std::time::Duration::from_millis(self.shard_timeout_ms.max(1));
        crate::cluster::gateway::Gateway::connect(&self.nats, shards, patience).await
    }
}

/// Arguments of `keys add`.
#[derive(Debug, clap::Args)]
pub struct KeysAddArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// What the key may do.
    #[arg(long, value_enum)]
    pub role: crate::keys::Role,
    /// Who holds it (a person, a laptop, a system).
    #[arg(long)]
    pub name: String,
    /// For monitor keys: an event it may upload to (repeat; default: all).
    #[arg(long = "event")]
    pub events: Vec<String>,
}

/// Arguments of `keys list`.
#[derive(Debug, clap::Args)]
pub struct KeysListArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// One JSON object per key.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `keys revoke`.
#[derive(Debug, clap::Args)]
pub struct KeysRevokeArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// The key's id (`keys list`).
    pub id: String,
}

/// Where a monitor sends its plays.
#[derive(Debug, Clone, clap::Args)]
pub struct UploadTarget {
    /// Base URL of `earmark serve`, e.g. http://10.0.0.5:8750.
    #[arg(long = "upload", value_name = "URL")]
    pub url: Option<String>,
    /// API key (a monitor key for the event).
    #[arg(long, env = "EARMARK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// Arguments of `upload`.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// The monitor's event log.
    #[arg(long)]
    pub log: PathBuf,
    /// The event the plays belong to (default: the one the log names).
    #[arg(long)]
    pub event: Option<String>,
    /// The service.
    #[command(flatten)]
    pub target: UploadTarget,
}

#[derive(Debug, Subcommand)]
enum IndexCommand {
    /// Add audio files or folders (recursively) to the catalog.
    Add(AddArgs),
    /// Print the catalog's size: tracks, hours, postings, bytes on disk.
    Info(InfoArgs),
    /// Read every file of the catalog: checksums and cross-references.
    Verify(VerifyArgs),
    /// Merge all segments into one, so that each lookup visits one segment
    /// (after a bulk load; readers keep answering meanwhile).
    Compact(VerifyArgs),
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Add or update rights metadata from a CSV or JSON file.
    Import(ImportArgs),
}

#[derive(Debug, Subcommand)]
enum LicenceCommand {
    /// Store licences from TOML or JSON files (all are checked first).
    Add(LicenceAddArgs),
    /// List the stored licences.
    List(LicenceListArgs),
    /// Print one licence.
    Show(LicenceShowArgs),
    /// Delete a stored licence.
    Remove(LicenceRemoveArgs),
}

/// Arguments of `catalog import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// CSV or JSON (`.json`): one row per recording, named by `id` or `path`,
    /// with `managed` (yes/no) and optionally `title`, `artists`, `isrc`,
    /// `iswc`, `writers`, `publisher`, `society`. A row replaces the earlier
    /// metadata of its recording.
    pub file: PathBuf,
}

/// Arguments of `licence add`.
#[derive(Debug, clap::Args)]
pub struct LicenceAddArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// Replace stored licences with the same id.
    #[arg(long)]
    pub replace: bool,
    /// Licence files (TOML, or JSON when named `.json`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Arguments of `licence list`.
#[derive(Debug, clap::Args)]
pub struct LicenceListArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `licence show`.
#[derive(Debug, clap::Args)]
pub struct LicenceShowArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The licence's id.
    pub id: String,
}

/// Arguments of `licence remove`.
#[derive(Debug, clap::Args)]
pub struct LicenceRemoveArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// The licence's id.
    pub id: String,
}

/// Arguments of `index add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Catalog directory (created if missing).
    #[arg(long)]
    pub db: PathBuf,
    /// CSV mapping files to metadata: columns `path` (or `abspath`/`file`),
    /// `id`, `title`, `artist`, `isrc`; other columns are ignored.
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = jobs)]
    pub jobs: Option<usize>,
    /// Also decode every file once without fingerprinting and print how the
    /// CPU time of indexing compares with decoding alone.
    #[arg(long)]
    pub compare_decode: bool,
    /// Add only the files that belong to shard k of K of a cluster (by
    /// content hash); the others are counted and left out.
    #[arg(long)]
    pub shard: Option<crate::cluster::Shard>,
    /// Files or folders to add.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Arguments of `index info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `index verify` and `index compact`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
}

/// Arguments of `identify`.
#[derive(Debug, clap::Args)]
pub struct IdentifyArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only the first this many seconds of each file are used.
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    pub max_seconds: f64,
    /// Audio files to identify.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// `ground_truth.csv` written by make_queries.py; clips are found beside it.
    #[arg(long, required = true)]
    pub truth: Vec<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = jobs)]
    pub jobs: Option<usize>,
    /// Write one line per query (expected, answer, votes) to this CSV file.
    #[arg(long)]
    pub details: Option<PathBuf>,
}

/// Arguments of `unknowns`.
#[derive(Debug, clap::Args)]
pub struct UnknownsArgs {
    /// Catalog directory, for the works nearest each group.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Largest average embedding distance within a group.
    #[arg(long, default_value_t = 0.25)]
    pub max_distance: f32,
    /// One JSON object per group.
    #[arg(long)]
    pub json: bool,
    /// Monitor logs (`.jsonl`) and scan results (`.plays.json`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Arguments of `bench-scale`.
#[derive(Debug, clap::Args)]
pub struct BenchScaleArgs {
    /// The real catalog the large ones are made from (its tracks go in
    /// first, so the dev queries find them).
    #[arg(long)]
    pub from: PathBuf,
    /// Where to build the large catalog: a new or empty directory.
    #[arg(long)]
    pub db: PathBuf,
    /// Catalog sizes to measure at, in tracks.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    pub sizes: Vec<usize>,
    /// Ground truth of the dev queries (`ground_truth.csv`, several allowed).
    #[arg(long, required = true)]
    pub truth: Vec<PathBuf>,
    /// Seed of the generator: the same seed gives the same catalog.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Tracks per commit.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Also compact the catalog into one segment at each size (as after a
    /// bulk load) and measure it again.
    #[arg(long)]
    pub compact: bool,
    /// Worker threads for generating (default: all cores; queries use one).
    #[arg(long, value_parser = jobs)]
    pub jobs: Option<usize>,
}

/// Arguments of `eval-covers`.
#[derive(Debug, clap::Args)]
pub struct EvalCoversArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// CSV of `file,original`: a cover (path relative to the CSV) and the
    /// catalog id of the recording it covers.
    #[arg(long)]
    pub truth: PathBuf,
    /// Embed only this many seconds of each cover, from a quarter of the way
    /// in (default: the whole file).
    #[arg(long, value_parser = seconds)]
    pub excerpt_s: Option<f64>,
    /// Reorder this many nearest works by their verification score
    /// (cross-similarity of beat chroma; 0: embedding distance only).
    #[arg(long, default_value_t = 10)]
    pub verify: usize,
    /// One JSON object per cover.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Catalog directory (with `--cluster`: only for its licences).
    #[arg(long, required_unless_present = "cluster")]
    pub db: Option<PathBuf>,
    /// NATS server of a cluster: queue the recordings as jobs for `earmark
    /// worker`s (the shards do the matching) and wait for their results.
    #[arg(long)]
    pub cluster: Option<String>,
    /// JSON lines for machines: one per play, then one per recording.
    #[arg(long)]
    pub json: bool,
    /// Write per recording its plays (`.plays.json`) and cue sheet
    /// (`.cue.csv`, `.cue.html`), the run's summary (`batch.json`) and a
    /// manifest here; a second run skips recordings the manifest lists.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = jobs)]
    pub jobs: Option<usize>,
    /// Judge coverage by this event's licences.
    #[arg(long)]
    pub event: Option<String>,
    /// Judge coverage by this licence alone.
    #[arg(long, conflicts_with = "event")]
    pub licence: Option<String>,
    /// Recordings or folders of them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Arguments of `worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The cluster's NATS server.
    #[command(flatten)]
    pub cluster: NatsArgs,
    /// How many shards the cluster has.
    #[arg(long)]
    pub shards: u32,
    /// This worker's name in logs and results (default: host and process).
    #[arg(long)]
    pub name: Option<String>,
    /// Threads for decoding and fingerprinting (default: all cores).
    #[arg(long, value_parser = jobs)]
    pub jobs: Option<usize>,
    /// Seconds without word from a worker before its job goes to another
    /// (a live worker keeps extending it).
    #[arg(long, default_value_t = 30.0, value_parser = seconds)]
    pub ack_wait_s: f64,
}

/// Arguments of `eval-session`.
#[derive(Debug, clap::Args)]
pub struct EvalSessionArgs {
    /// Catalog directory (to scan the recording).
    #[arg(long, required_unless_present = "log")]
    pub db: Option<PathBuf>,
    /// The session's timeline CSV (make_queries.py session).
    #[arg(long)]
    pub timeline: PathBuf,
    /// A boundary counts as right within this many seconds.
    #[arg(long, default_value_t = 2.0, value_parser = seconds)]
    pub tolerance_s: f64,
    /// Judge the plays of a monitor's event log instead of scanning; the
    /// time from each track's start to its play event is measured too (by
    /// the session position heard when the play was announced).
    #[arg(long, conflicts_with = "recording")]
    pub log: Option<PathBuf>,
    /// With `--log` of a live run: when the recording began to play (RFC
    /// 3339); positions and the time to each play event are then taken from
    /// the wall clock.
    #[arg(long, requires = "log")]
    pub played_at: Option<String>,
    /// With a scan: a monitor's event log of the same recording (`monitor
    /// --input`), whose plays are compared with the scan's: how many agree
    /// within 1 s at both ends.
    #[arg(long, conflicts_with = "log")]
    pub against: Option<PathBuf>,
    /// The session recording.
    #[arg(required_unless_present = "log")]
    pub recording: Option<PathBuf>,
}

/// Arguments of `monitor`.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Catalog directory.
    #[arg(long)]
    pub db: PathBuf,
    /// Event log (JSON Lines); an existing log is resumed.
    #[arg(long, default_value = "earmark-events.jsonl")]
    pub log: PathBuf,
    /// Input device: a cpal id or part of a name from `earmark devices`
    /// (default: the system's default input).
    #[arg(long, conflicts_with_all = ["input", "stdin"])]
    pub device: Option<String>,
    /// Listen to an audio file instead of the sound card.
    #[arg(long, conflicts_with = "stdin")]
    pub input: Option<PathBuf>,
    /// Replay `--input` in real time instead of as fast as it decodes.
    #[arg(long, requires = "input")]
    pub realtime: bool,
    /// Read raw interleaved PCM from standard input.
    #[arg(long)]
    pub stdin: bool,
    /// Sample encoding of `--stdin`.
    #[arg(long, value_enum, default_value = "s16le")]
    pub format: PcmArg,
    /// Sample rate of `--stdin`, in Hz.
    #[arg(long, default_value_t = 44_100)]
    pub rate: u32,
    /// Channels of `--stdin`.
    #[arg(long, default_value_t = 2)]
    pub channels: usize,
    /// The event being monitored: its licences (`earmark licence add`)
    /// decide each play's coverage as it is logged.
    #[arg(long)]
    pub event: Option<String>,
    /// Stop after this many seconds of audio.
    #[arg(long = "duration", value_parser = seconds)]
    pub duration_s: Option<f64>,
    /// A line per event and no status line, even in a terminal.
    #[arg(long)]
    pub plain: bool,
    /// Send plays to `earmark serve` as they are logged (needs `--event`);
    /// what cannot be sent waits in the log and goes when the network is back.
    #[command(flatten)]
    pub upload: UploadTarget,
}

/// Raw PCM encodings for `monitor --stdin`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PcmArg {
    /// Signed 16-bit little-endian.
    S16le,
    /// 32-bit float little-endian.
    F32le,
}

impl From<PcmArg> for earmark_monitor::PcmFormat {
    fn from(f: PcmArg) -> Self {
        match f {
            PcmArg::S16le => Self::S16Le,
            PcmArg::F32le => Self::F32Le,
        }
    }
}

/// Arguments of `devices`.
#[derive(Debug, clap::Args)]
pub struct DevicesArgs {}

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A monitor's event log.
    #[arg(long, required_unless_present = "scan", conflicts_with = "scan")]
    pub log: Option<PathBuf>,
    /// A recording's result from `earmark scan --out` (`*.plays.json`).
    #[arg(long)]
    pub scan: Option<PathBuf>,
    /// Catalog directory: rights metadata (ISWC, artists) and licences.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Judge coverage by this event's licences (default: the event the
    /// monitor was started with).
    #[arg(long)]
    pub event: Option<String>,
    /// Judge coverage by this licence alone.
    #[arg(long, conflicts_with = "event")]
    pub licence: Option<String>,
    /// When the recording began (RFC 3339 with an offset), for plays that
    /// have no wall clock of their own (scans, `monitor --input`); without
    /// it their licence period is not checked.
    #[arg(long)]
    pub recorded_at: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ReportFormat,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Cue sheet formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    /// One row per play or unidentified segment.
    Csv,
    /// Summary and rows.
    Json,
    /// A single-file page: summary, timeline, rows, clips.
    Html,
}

/// Runs the parsed command.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        Command::Index { command } => match command {
            IndexCommand::Add(a) => crate::ingest::add(&a),
            IndexCommand::Info(a) => crate::ingest::info(&a),
            IndexCommand::Verify(a) => crate::ingest::verify(&a),
            IndexCommand::Compact(a) => crate::ingest::compact(&a),
        },
        Command::Catalog { command } => match command {
            CatalogCommand::Import(a) => crate::rights::import(&a),
        },
        Command::Licence { command } => match command {
            LicenceCommand::Add(a) => crate::rights::add(&a),
            LicenceCommand::List(a) => crate::rights::list(&a),
            LicenceCommand::Show(a) => crate::rights::show(&a),
            LicenceCommand::Remove(a) => crate::rights::remove(&a),
        },
        Command::Identify(a) => crate::identify::run(&a),
        Command::Eval(a) => crate::eval::run(&a),
        Command::Scan(a) => crate::scan::run(&a),
        Command::EvalSession(a) => crate::scan::eval_session(&a),
        Command::EvalCovers(a) => crate::similar::eval_covers(&a),
        Command::BenchScale(a) => crate::scale::run(&a),
        Command::Unknowns(a) => crate::similar::unknowns(&a),
        Command::Monitor(a) => crate::monitor::run(&a),
        Command::Devices(a) => crate::monitor::devices(&a),
        Command::Report(a) => crate::report::run(&a),
        Command::Serve(a) => crate::serve::run(&a),
        Command::Worker(a) => crate::cluster::worker::run(&a),
        Command::Keys { command } => match command {
            KeysCommand::Add(a) => crate::keys::add(&a),
            KeysCommand::List(a) => crate::keys::list(&a),
            KeysCommand::Revoke(a) => crate::keys::revoke(&a),
        },
        Command::Upload(a) => crate::upload::run(&a),
    }
}

/// Sets the size of rayon's global pool when `--jobs` is given.
pub fn set_jobs(jobs: Option<usize>) -> anyhow::Result<()> {
    if let Some(n) = jobs {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()?;
    }
    Ok(())
}

/// Most worker threads `--jobs` takes: far more than cores only thrashes.
const MAX_JOBS: usize = 256;

/// A `--jobs` value: 1 to [`MAX_JOBS`].
fn jobs(text: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(n) if (1..=MAX_JOBS).contains(&n) => Ok(n),
        _ => Err(format!("expected a number of threads from 1 to {MAX_JOBS}")),
    }
}

/// A length of time in seconds: a finite number above 0.
fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(s),
        _ => Err("expected a number of seconds above 0".into()),
    }
}
