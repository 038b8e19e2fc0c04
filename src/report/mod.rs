//! Cue sheets: the plays of one show and the music nobody identified, each
//! with its coverage, as CSV, JSON or a single-file HTML page.

mod html;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use earmark_index::{Catalog, Coverage, Decision, Licence};
use earmark_monitor::log::seconds_after;
use earmark_monitor::{History, PlayRecord, UnidentifiedRecord};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::Outcome;
use crate::cli::{ReportArgs, ReportFormat};
use crate::identify::round;

/// What a show produced, from a monitor's log or a scan.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Show {
    /// The log or recording it came from.
    pub source: String,
    /// Monitor runs the log holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<u32>,
    /// Its plays, as logged.
    pub plays: Vec<PlayRecord>,
    /// Music that matched nothing.
    #[serde(default)]
    pub unidentified: Vec<UnidentifiedRecord>,
}

impl Show {
    /// The show a monitor's event log records, and the event it names.
    pub fn from_log(path: &Path) -> anyhow::Result<(Self, Option<String>)> {
        let history = History::read(path)?;
        if history.events.is_empty() {
            anyhow::bail!("{}: no events in this log", path.display());
        }
        if history.unreadable > 0 {
            eprintln!(
                "earmark: {}: {} unreadable lines skipped",
                path.display(),
                history.unreadable
            );
        }
        let show = Self {
            source: path.display().to_string(),
            runs: Some(history.runs()),
            plays: history.plays(),
            unidentified: history.unidentified(),
        };
        Ok((show, history.event().map(str::to_owned)))
    }

    /// A show `earmark scan --out` wrote (`*.plays.json`).
    pub fn from_scan(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a scan result (*.plays.json)", path.display()))
    }
}

/// The licences that judge a show: those of an event, or one licence.
#[derive(Debug, Clone)]
pub struct Licensing<'c> {
    catalog: &'c Catalog,
    event: String,
    licences: Vec<&'c Licence>,
    /// When the recording began, for plays without a wall clock.
    recorded_at: Option<Timestamp>,
}

impl<'c> Licensing<'c> {
    /// The licences of `event`, or `licence` alone; `None` when neither is
    /// named.
    pub fn select(
        catalog: &'c Catalog,
        event: Option<&str>,
        licence: Option<&str>,
        recorded_at: Option<Timestamp>,
    ) -> anyhow::Result<Option<Self>> {
        let (event, licences) = match (licence, event) {
            (Some(id), _) => {
                let licence = (catalog.licences().iter())
                    .find(|l| l.id == id)
                    .with_context(|| format!("no licence {id} in {}", catalog.dir().display()))?;
                (licence.event.clone(), vec![licence])
            }
            (None, Some(event)) => (event.to_owned(), catalog.licences_for(event)),
            (None, None) => return Ok(None),
        };
        if licences.is_empty() {
            eprintln!("earmark: no licence for event {event}: every play is not covered");
        }
        Ok(Some(Self {
            catalog,
            event,
            licences,
            recorded_at,
        }))
    }

    /// The event whose licences judge.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// Decides a play's coverage.
    pub fn judge(&self, play: &PlayRecord) -> Decision {
        play.judge(self.catalog, &self.licences, self.recorded_at)
    }

    /// The time zone times are shown in: the first licence's.
    fn time_zone(&self) -> TimeZone {
        (self.licences.first())
            .and_then(|l| TimeZone::get(&l.period.time_zone).ok())
            .unwrap_or(TimeZone::UTC)
    }
}

/// One row of a cue sheet: a play or an unidentified segment.
#[derive(Debug, Clone, Serialize)]
pub struct Cue {
    /// `play` or `unidentified`.
    pub kind: &'static str,
    /// Number of the play or segment.
    pub number: u64,
    /// Local start time, when the show's clock is known.
    pub start: String,
    /// Local end time.
    pub end: String,
    /// Seconds heard.
    pub duration_s: f64,
    /// Start, seconds into the recording.
    pub start_s: f64,
    /// End, seconds into the recording.
    pub end_s: f64,
    /// The catalog's id of the recording.
    pub track_id: String,
    /// Title.
    pub title: String,
    /// Artists, separated by `; `.
    pub artists: String,
    /// ISRC of the recording.
    pub isrc: String,
    /// ISWC of the work.
    pub iswc: String,
    /// `covered`, `not_covered`, `needs_review`, or `unknown` (no event).
    pub coverage: &'static str,
    /// Why not covered or in need of review.
    pub reason: &'static str,
    /// The licence that decided.
    pub licence: String,
    /// Seconds inside the licence's period, when the play straddles its edge.
    pub inside_s: Option<f64>,
    /// The match's verification score.
    pub confidence: Option<f64>,
    /// Speed factor: track seconds per second heard.
    pub speed: Option<f64>,
    /// Where in the track the play starts, in seconds.
    pub track_start_s: Option<f64>,
    /// Audio kept for review (unidentified music).
    pub clip: String,
    /// Catalog works the unidentified music may be a cover or adaptation
    /// of, nearest first, with embedding distances: for review only.
    pub similar: String,
}

/// Figures of a whole show.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Plays of catalog tracks.
    pub plays: usize,
    /// Unidentified music segments.
    pub unidentified: usize,
    /// Minutes with music (overlapping plays counted once).
    pub music_min: f64,
    /// Minutes of covered plays.
    pub covered_min: f64,
    /// Share of the cues' minutes that are covered.
    pub covered_share: f64,
    /// Plays not covered.
    pub not_covered: usize,
    /// Plays and segments that need review.
    pub needs_review: usize,
    /// Plays that straddle a licence period's edge.
    pub partly_outside: usize,
}

/// A cue sheet: rows in start order and the show's figures.
#[derive(Debug, Clone, Serialize)]
pub struct CueSheet {
    /// What the show's log or scan recorded.
    #[serde(flatten)]
    pub show: Show,
    /// The event whose licences judged it.
    pub event: Option<String>,
    /// Those licences' ids.
    pub licences: Vec<String>,
    /// Figures.
    pub summary: Summary,
    /// Rows.
    pub cues: Vec<Cue>,
    /// Folder the clips' paths are relative to.
    #[serde(skip)]
    pub clips_dir: Option<PathBuf>,
}

impl CueSheet {
    /// The cue sheet of `show`; rights metadata from `catalog` when given,
    /// coverage decided by `licensing` when given (else as logged).
    pub fn new(show: &Show, catalog: Option<&Catalog>, licensing: Option<&Licensing>) -> Self {
        let tz = licensing.map_or(TimeZone::UTC, Licensing::time_zone);
        let local = |t: Option<Timestamp>| {
            t.map_or(String::new(), |t| {
                tz.to_datetime(t).strftime("%Y-%m-%d %H:%M:%S").to_string()
            })
        };
        let recorded_at = licensing.and_then(|l| l.recorded_at);
        let mut cues: Vec<Cue> = show
            .plays
            .iter()
            .map(|p| {
                let rights = catalog.and_then(|c| c.rights().get(&p.track_id));
                let decision = match licensing {
                    Some(l) => Some(l.judge(p)),
                    None => p.coverage.clone(),
                };
                let heard = p.heard(recorded_at);
                Cue {
                    kind: "play",
                    number: p.play,
                    start: local(heard.map(|h| h.start)),
                    end: local(heard.map(|h| h.end)),
                    duration_s: round(p.end_s - p.start_s, 2),
                    start_s: p.start_s,
                    end_s: p.end_s,
                    track_id: p.track_id.clone(),
                    title: rights
                        .map(|r| r.title.clone())
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| p.title.clone()),
                    artists: rights
                        .map(|r| r.artists.join("; "))
                        .filter(|a| !a.is_empty())
                        .unwrap_or_else(|| p.artist.clone()),
                    isrc: (rights.and_then(|r| r.isrc.clone()))
                        .or_else(|| p.isrc.clone())
                        .unwrap_or_default(),
                    iswc: rights.and_then(|r| r.iswc.clone()).unwrap_or_default(),
                    coverage: decision.as_ref().map_or("unknown", |d| d.coverage.as_str()),
                    reason: (decision.as_ref())
                        .and_then(|d| d.reason)
                        .map_or("", |r| r.as_str()),
                    licence: (decision.as_ref())
                        .and_then(|d| d.licence.clone())
                        .unwrap_or_default(),
                    inside_s: decision.as_ref().and_then(|d| d.inside_s),
                    confidence: Some(p.score),
                    speed: Some(p.tempo),
                    track_start_s: Some(p.track_start_s),
                    clip: String::new(),
                    similar: String::new(),
                }
            })
            .collect();
        let review = Decision::unidentified();
        cues.extend(show.unidentified.iter().map(|u| {
            let started = match &u.started_at {
                Some(clock) => clock.parse::<Timestamp>().ok(),
                None => recorded_at.and_then(|r| seconds_after(r, u.start_s)),
            };
            let ended = started.and_then(|t| seconds_after(t, u.end_s - u.start_s));
            Cue {
                kind: "unidentified",
                number: u.segment,
                start: local(started),
                end: local(ended),
                duration_s: round(u.end_s - u.start_s, 2),
                start_s: u.start_s,
                end_s: u.end_s,
                track_id: String::new(),
                title: "(unidentified music)".into(),
                artists: String::new(),
                isrc: String::new(),
                iswc: String::new(),
                coverage: review.coverage.as_str(),
                reason: review.reason.map_or("", |r| r.as_str()),
                licence: String::new(),
                inside_s: None,
                confidence: None,
                speed: None,
                track_start_s: None,
                clip: u.clip.clone(),
                similar: (u.similar.iter())
                    .map(|w| {
                        let likely = if w.likely() {
                            ", likely the same work"
                        } else {
                            ""
                        };
                        let verified = (w.verification)
                            .map_or(String::new(), |v| format!(", verified {v:.2}{likely}"));
                        format!(
                            "{} {} (distance {:.3}{verified})",
                            w.track_id, w.title, w.distance
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        }));
        cues.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        Self {
            show: show.clone(),
            event: licensing.map(|l| l.event.clone()),
            licences: licensing.map_or(Vec::new(), |l| {
                l.licences.iter().map(|l| l.id.clone()).collect()
            }),
            summary: summarise(&cues),
            cues,
            clips_dir: None,
        }
    }

    /// One row per cue, with a header even when there are none.
    pub fn csv(&self) -> anyhow::Result<Vec<u8>> {
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        writer.write_record(CSV_HEADER)?;
        for cue in &self.cues {
            writer.serialize(cue)?;
        }
        writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The whole sheet as pretty JSON.
    pub fn json(&self) -> anyhow::Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// A single-file HTML page: summary, timeline, rows and clips.
    pub fn html(&self) -> Vec<u8> {
        html::page(self).into_bytes()
    }

    /// The sheet in `format`.
    pub fn render(&self, format: ReportFormat) -> anyhow::Result<Vec<u8>> {
        match format {
            ReportFormat::Csv => self.csv(),
            ReportFormat::Json => self.json(),
            ReportFormat::Html => Ok(self.html()),
        }
    }
}

/// The CSV columns, in [`Cue`]'s field order.
const CSV_HEADER: [&str; 21] = [
    "kind",
    "number",
    "start",
    "end",
    "duration_s",
    "start_s",
    "end_s",
    "track_id",
    "title",
    "artists",
    "isrc",
    "iswc",
    "coverage",
    "reason",
    "licence",
    "inside_s",
    "confidence",
    "speed",
    "track_start_s",
    "clip",
    "similar",
];

fn summarise(cues: &[Cue]) -> Summary {
    let minutes = |f: &dyn Fn(&Cue) -> bool| {
        cues.iter()
            .filter(|c| f(c))
            .map(|c| c.duration_s)
            .sum::<f64>()
            / 60.0
    };
    let mut spans: Vec<(f64, f64)> = cues.iter().map(|c| (c.start_s, c.end_s)).collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut music_s = 0.0;
    let mut reach = f64::NEG_INFINITY;
    for (start, end) in spans {
        let from = start.max(reach);
        if end > from {
            music_s += end - from;
        }
        reach = reach.max(end);
    }
    let total = minutes(&|_| true);
    let covered = minutes(&|c| c.coverage == Coverage::Covered.as_str());
    let count = |coverage: Coverage| {
        cues.iter()
            .filter(|c| c.coverage == coverage.as_str())
            .count()
    };
    Summary {
        plays: cues.iter().filter(|c| c.kind == "play").count(),
        unidentified: cues.iter().filter(|c| c.kind == "unidentified").count(),
        music_min: round(music_s / 60.0, 2),
        covered_min: round(covered, 2),
        covered_share: if total > 0.0 {
            round(covered / total, 2)
        } else {
            0.0
        },
        not_covered: count(Coverage::NotCovered),
        needs_review: count(Coverage::NeedsReview),
        partly_outside: cues.iter().filter(|c| c.inside_s.is_some()).count(),
    }
}

/// `earmark report`.
pub fn run(args: &ReportArgs) -> anyhow::Result<Outcome> {
    let (show, logged_event, clips_dir) = match (&args.log, &args.scan) {
        (Some(log), _) => {
            let (show, event) = Show::from_log(log)?;
            (show, event, log.parent().map(Path::to_owned))
        }
        (None, Some(scan)) => (Show::from_scan(scan)?, None, None),
        (None, None) => anyhow::bail!("give --log or --scan"),
    };
    let catalog = args.db.as_deref().map(Catalog::open).transpose()?;
    let recorded_at = args.recorded_at.as_deref().map(parse_time).transpose()?;
    let event = args.event.as_deref().or(logged_event.as_deref());
    let licensing = match &catalog {
        Some(c) => Licensing::select(c, event, args.licence.as_deref(), recorded_at)?,
        None if args.licence.is_some() || args.event.is_some() => {
            anyhow::bail!("--event and --licence need --db (the catalog holds the licences)")
        }
        None => None,
    };
    let mut sheet = CueSheet::new(&show, catalog.as_ref(), licensing.as_ref());
    sheet.clips_dir = clips_dir;
    let bytes = sheet.render(args.format)?;
    match &args.out {
        Some(path) => crate::scan::write_atomically(path, &bytes)?,
        None => std::io::stdout()
            .write_all(&bytes)
            .context("writing the report")?,
    }
    Ok(Outcome::Done)
}

/// A time given on the command line: RFC 3339 with an offset.
pub fn parse_time(text: &str) -> anyhow::Result<Timestamp> {
    text.parse::<Timestamp>().with_context(|| {
        format!("{text:?} is not a time with an offset (e.g. 2026-11-28T19:00:00+08:00)")
    })
}
