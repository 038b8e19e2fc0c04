//! The event log: an append-only JSON Lines file, one event per line, each
//! written and synced to disk as it happens.
//!
//! A monitor started again on the same log reads it back ([`History`]) and
//! goes on: plays are numbered on, positions continue from the earlier runs,
//! and plays a crash left open are closed where they were last heard. A line
//! cut short by a crash is dropped when the log is reopened.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use earmark_engine::AudioFile;
use earmark_engine::chroma::{CHROMA, ChromaFrames, cross_similarity};
use earmark_index::coverage::decide;
use earmark_index::{Catalog, Decision, Heard, Licence, Track, TrackId};
use jiff::{SignedDuration, Timestamp};

use crate::Error;
use crate::tracker::Play;

/// A play as the log and cue sheets record it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayRecord {
    /// Number of the play in its session, from 1.
    pub play: u64,
    /// The catalog's id of the track.
    pub track_id: String,
    /// Title of the track.
    pub title: String,
    /// Artist of the track.
    pub artist: String,
    /// ISRC of the recording, if known.
    pub isrc: Option<String>,
    /// Start, in seconds from the start of the session.
    pub start_s: f64,
    /// End, in seconds from the start of the session.
    pub end_s: f64,
    /// Wall-clock start (live sources only).
    pub started_at: Option<String>,
    /// Wall-clock end (live sources only).
    pub ended_at: Option<String>,
    /// Where in the track the play starts, in seconds.
    pub track_start_s: f64,
    /// Track seconds per second heard (1.04: played 4% fast).
    pub tempo: f64,
    /// Heard frequency over the track's frequency.
    pub pitch: f64,
    /// Best verification score of the play.
    pub score: f64,
    /// Whether the event's licences cover the play; absent when no event
    /// was given (logs of earlier versions say "unknown").
    #[serde(default, deserialize_with = "decision_or_unknown")]
    pub coverage: Option<Decision>,
    /// Whether the play, once over, turned out to be chance and is not one
    /// (see `TrackerOptions::min_play`): reports leave it out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withdrawn: bool,
}

/// A decision, or none for anything else (the "unknown" of older logs).
fn decision_or_unknown<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Decision>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// Music that was heard but matched nothing in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnidentifiedRecord {
    /// Number of the segment in its session, from 1.
    pub segment: u64,
    /// Start, in seconds from the start of the session.
    pub start_s: f64,
    /// End, in seconds from the start of the session.
    pub end_s: f64,
    /// Wall-clock start (live sources only).
    pub started_at: Option<String>,
    /// The audio kept for review, relative to the log's folder (empty when
    /// none was kept).
    #[serde(default)]
    pub clip: String,
    /// Catalog works this music may be a cover or adaptation of, nearest
    /// first: for review, never a coverage decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub similar: Vec<SimilarWork>,
    /// Its similarity embedding, for finding the same music elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// Its beat-synchronous chroma while it is being judged (not logged):
    /// what the similar works are verified against.
    #[serde(skip)]
    pub beat_chroma: Vec<[f32; CHROMA]>,
}

/// A catalog work near a passage that matched no recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimilarWork {
    /// The catalog's id of the recording.
    pub track_id: String,
    /// Its title.
    pub title: String,
    /// Distance of the embeddings: 0 the same, 2 the farthest.
    pub distance: f32,
    /// How well the passage's harmonies line up with the work's at the best
    /// transposition and offset ([`cross_similarity`]): 0 unrelated, 1 the
    /// same notes; absent when the work's audio could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<f32>,
}

/// Works nearest a passage's embedding that are verified against it.
const VERIFIED_WORKS: usize = 10;
/// Works kept for review per unidentified passage, best verified first.
const SIMILAR_WORKS: usize = 3;
/// Verification score from which a work is likely the one a passage plays
/// (a cover, an adaptation, a remix). On the cover set (`earmark
/// eval-covers`) originals score a median 0.72 against 60 s excerpts of
/// their covers and other works rarely reach 0.3.
pub const LIKELY_SAME_WORK: f32 = 0.35;

impl SimilarWork {
    /// Whether its verification says the passage likely plays this work.
    pub fn likely(&self) -> bool {
        self.verification.is_some_and(|v| v >= LIKELY_SAME_WORK)
    }
}

impl UnidentifiedRecord {
    /// Fills in the catalog works nearest its embedding: the nearest
    /// [`VERIFIED_WORKS`] are verified against the passage's beat chroma
    /// (when it is known), and the best verified kept.
    pub fn find_similar(&mut self, catalog: &Catalog) {
        let Some(embedding) = &self.embedding else {
            return;
        };
        let beats = &self.beat_chroma;
        let nearest = catalog.similar_to(embedding, VERIFIED_WORKS);
        let mut similar: Vec<SimilarWork> = (nearest.par_iter())
            .filter_map(|&(track, distance)| {
                let t = catalog.tracks().get(track)?;
                let verification = (!beats.is_empty())
                    .then(|| work_beat_chroma(catalog, track))
                    .flatten()
                    .map(|work| (cross_similarity(beats, &work) * 1000.0).round() / 1000.0);
                Some(SimilarWork {
                    track_id: t.meta.external_id.clone(),
                    title: t.meta.title.clone(),
                    distance: (distance * 1000.0).round() / 1000.0,
                    verification,
                })
            })
            .collect();
        // Stable: unverified works stay in order of distance.
        similar.sort_by(|a, b| {
            let score = |w: &SimilarWork| w.verification.unwrap_or(f32::MIN);
            score(b).total_cmp(&score(a))
        });
        similar.truncate(SIMILAR_WORKS);
        self.similar = similar;
    }
}

/// The beat chroma of a catalog work: as the catalog keeps it, or read
/// again from its recording (catalogs made before it was kept); `None`
/// when neither can be had.
pub fn work_beat_chroma(catalog: &Catalog, track: TrackId) -> Option<Vec<[f32; CHROMA]>> {
    catalog.beat_chroma(track).or_else(|| {
        let path = &catalog.tracks().get(track)?.path;
        let frames = ChromaFrames::of_audio(&mut AudioFile::open(Path::new(path)).ok()?).ok()?;
        Some(frames.beat_chroma(0, frames.len()))
    })
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A monitor run began.
    RunStarted {
        /// Wall clock.
        at: String,
        /// Number of the run in this log, from 1.
        run: u32,
        /// What it listens to.
        source: String,
        /// Session seconds at the run's start.
        offset_s: f64,
        /// The event whose licences judge the plays.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// Names the log wherever it is copied or sent from (a random
        /// number, on the first run's line only; older logs have none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
    },
    /// A play was recognised.
    PlayStarted {
        /// Wall clock.
        at: String,
        /// Session seconds heard when it was announced: with `start_s`, how
        /// long the play took to be named (absent in logs of earlier
        /// versions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        announced_s: Option<f64>,
        /// The play so far.
        #[serde(flatten)]
        play: PlayRecord,
    },
    /// A play under way was heard again.
    PlayHeard {
        /// Wall clock.
        at: String,
        /// The play so far.
        #[serde(flatten)]
        play: PlayRecord,
    },
    /// A play is over.
    PlayEnded {
        /// Wall clock.
        at: String,
        /// The whole play.
        #[serde(flatten)]
        play: PlayRecord,
        /// Closed on restart after a run stopped without ending it.
        #[serde(default)]
        interrupted: bool,
    },
    /// Music that matched nothing.
    Unidentified {
        /// Wall clock.
        at: String,
        /// The segment.
        #[serde(flatten)]
        segment: UnidentifiedRecord,
    },
    /// The input device stopped delivering audio.
    DeviceLost {
        /// Wall clock.
        at: String,
        /// Session seconds.
        position_s: f64,
        /// Why.
        reason: String,
    },
    /// The input device delivers audio again.
    DeviceBack {
        /// Wall clock.
        at: String,
        /// Session seconds.
        position_s: f64,
        /// Seconds without audio.
        gap_s: f64,
    },
    /// Audio was dropped because the worker fell behind the sound card.
    Overruns {
        /// Wall clock.
        at: String,
        /// Session seconds.
        position_s: f64,
        /// Overruns in this run so far.
        total: u64,
    },
    /// A run ended cleanly.
    RunEnded {
        /// Wall clock.
        at: String,
        /// Session seconds.
        position_s: f64,
    },
}

impl PlayRecord {
    /// A tracker's play as the log records it: `offset_s` is the session
    /// position of the play's stream start, `clock` that start's wall-clock
    /// time when the stream is live.
    pub fn new(catalog: &Catalog, play: &Play, offset_s: f64, clock: Option<SystemTime>) -> Self {
        Self::of(catalog.tracks().get(play.track), play, offset_s, clock)
    }

    /// As [`PlayRecord::new`], with the play's track given.
    pub fn of(
        track: Option<&Track>,
        play: &Play,
        offset_s: f64,
        clock: Option<SystemTime>,
    ) -> Self {
        let text = |f: fn(&earmark_index::Track) -> &str| track.map(f).unwrap_or("").to_owned();
        let wall = |s: f64| clock.map(|c| timestamp(c + std::time::Duration::from_secs_f64(s)));
        Self {
            play: play.id,
            track_id: text(|t| &t.meta.external_id),
            title: text(|t| &t.meta.title),
            artist: text(|t| &t.meta.artist),
            isrc: track.and_then(|t| t.meta.isrc.clone()),
            start_s: round(offset_s + play.start_s()),
            end_s: round(offset_s + play.end_s()),
            started_at: wall(play.start_s()),
            ended_at: wall(play.end_s()),
            track_start_s: round(play.track_start_s()),
            tempo: (play.tempo as f64 * 1000.0).round() / 1000.0,
            pitch: (play.pitch as f64 * 1000.0).round() / 1000.0,
            score: (play.score as f64 * 10.0).round() / 10.0,
            coverage: None,
            withdrawn: false,
        }
    }

    /// When the play was heard: its own wall clock, or its position from
    /// `recorded_at`, when the recording's start is known.
    pub fn heard(&self, recorded_at: Option<Timestamp>) -> Option<Heard> {
        let clock = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<Timestamp>().ok());
        if let (Some(start), Some(end)) = (clock(&self.started_at), clock(&self.ended_at)) {
            return Some(Heard { start, end });
        }
        let recorded_at = recorded_at?;
        Some(Heard {
            start: seconds_after(recorded_at, self.start_s)?,
            end: seconds_after(recorded_at, self.end_s)?,
        })
    }

    /// Decides the play's coverage by `licences`, from the catalog's rights
    /// metadata.
    pub fn judge(
        &self,
        catalog: &Catalog,
        licences: &[&Licence],
        recorded_at: Option<Timestamp>,
    ) -> Decision {
        let rights = catalog.rights().get(&self.track_id);
        decide(rights, self.heard(recorded_at), licences)
    }
}

/// The instant `s` seconds after `t`, unless out of range.
pub fn seconds_after(t: Timestamp, s: f64) -> Option<Timestamp> {
    t.checked_add(SignedDuration::from_secs_f64(s)).ok()
}

/// Hundredths of a second are as precise as positions get.
pub(crate) fn round(s: f64) -> f64 {
    (s * 100.0).round() / 100.0
}

/// Wall-clock time as the log writes it (RFC 3339, UTC, milliseconds).
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// What an event log already holds.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Lines that could not be read (cut short or not earmark's).
    pub unreadable: usize,
}

impl History {
    /// Reads a log.
    ///
    /// # Errors
    /// When the file cannot be read or is not an event log.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::check(path, &bytes)?;
        Ok(Self::parse(&bytes))
    }

    /// Whether a file's bytes are a log: empty, or beginning with an event
    /// (every run's first line is one, of whatever version; only a log's last
    /// line can be torn). Any other file is refused rather than read as an
    /// empty log or cut.
    fn check(path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let torn_first = !bytes.contains(&b'\n') && first.starts_with(b"{\"event\":");
        let event = serde_json::from_slice::<serde_json::Value>(first)
            .is_ok_and(|line| line.get("event").is_some_and(serde_json::Value::is_string));
        if bytes.is_empty() || torn_first || event {
            Ok(())
        } else {
            Err(Error::NotALog(path.to_owned()))
        }
    }

    /// The events of a log's bytes.
    fn parse(bytes: &[u8]) -> Self {
        let mut history = Self::default();
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice(line) {
                Ok(event) => history.events.push(event),
                Err(_) => history.unreadable += 1,
            }
        }
        history
    }

    /// Every play, in its latest state, in start order; withdrawn plays are
    /// left out.
    pub fn plays(&self) -> Vec<PlayRecord> {
        let mut plays = self.latest();
        plays.retain(|p| !p.withdrawn);
        plays
    }

    /// Every play in its latest state, withdrawn ones too, in start order.
    fn latest(&self) -> Vec<PlayRecord> {
        let mut plays: Vec<PlayRecord> = Vec::new();
        for event in &self.events {
            let play = match event {
                Event::PlayStarted { play, .. }
                | Event::PlayHeard { play, .. }
                | Event::PlayEnded { play, .. } => play,
                _ => continue,
            };
            match plays.iter_mut().find(|p| p.play == play.play) {
                Some(p) => *p = play.clone(),
                None => plays.push(play.clone()),
            }
        }
        plays.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        plays
    }

    /// Plays that were started but never ended, in their latest state.
    pub fn open_plays(&self) -> Vec<PlayRecord> {
        let ended: std::collections::HashSet<u64> = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::PlayEnded { play, .. } => Some(play.play),
                _ => None,
            })
            .collect();
        self.plays()
            .into_iter()
            .filter(|p| !ended.contains(&p.play))
            .collect()
    }

    /// Unidentified segments in start order.
    pub fn unidentified(&self) -> Vec<UnidentifiedRecord> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Unidentified { segment, .. } => Some(segment.clone()),
                _ => None,
            })
            .collect()
    }

    /// Runs so far.
    pub fn runs(&self) -> u32 {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::RunStarted { run, .. } => Some(*run),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The event of the latest run that named one.
    pub fn event(&self) -> Option<&str> {
        self.events.iter().rev().find_map(|e| match e {
            Event::RunStarted { event_id, .. } => event_id.as_deref(),
            _ => None,
        })
    }

    /// The log's own name, given by its first run.
    pub fn log_id(&self) -> Option<&str> {
        self.events.iter().find_map(|e| match e {
            Event::RunStarted { log_id, .. } => log_id.as_deref(),
            _ => None,
        })
    }

    /// Wall clock of the first run's start.
    pub fn first_start(&self) -> Option<SystemTime> {
        self.events.iter().find_map(|e| match e {
            Event::RunStarted { at, .. } => humantime::parse_rfc3339(at).ok(),
            _ => None,
        })
    }

    /// The latest session position any event mentions.
    pub fn last_position_s(&self) -> f64 {
        self.events
            .iter()
            .map(|e| match e {
                Event::RunStarted { offset_s, .. } => *offset_s,
                Event::PlayStarted { play, .. }
                | Event::PlayHeard { play, .. }
                | Event::PlayEnded { play, .. } => play.end_s,
                Event::Unidentified { segment, .. } => segment.end_s,
                Event::DeviceLost { position_s, .. }
                | Event::DeviceBack { position_s, .. }
                | Event::Overruns { position_s, .. }
                | Event::RunEnded { position_s, .. } => *position_s,
            })
            .fold(0.0, f64::max)
    }

    /// The number the next play gets.
    pub fn next_play(&self) -> u64 {
        self.latest().iter().map(|p| p.play).max().unwrap_or(0) + 1
    }

    /// The number the next unidentified segment gets.
    pub fn next_segment(&self) -> u64 {
        self.unidentified()
            .iter()
            .map(|s| s.segment)
            .max()
            .unwrap_or(0)
            + 1
    }
}

/// An event log open for appending.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    file: File,
}

impl EventLog {
    /// Opens (or creates) a log for appending, first dropping a last line
    /// that a crash cut short; returns it with what it already holds.
    ///
    /// # Errors
    /// When the file cannot be opened, repaired or synced, or is not an
    /// event log (it is then left as it was).
    pub fn open(path: &Path) -> Result<(Self, History), Error> {
        let io = |e| Error::io(path, e);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        History::check(path, &bytes)?;
        if bytes.last().is_some_and(|&b| b != b'\n') {
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            file.set_len(keep as u64).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
            file.sync_all().map_err(io)?;
            bytes.truncate(keep);
        }
        let log = Self {
            path: path.to_owned(),
            file,
        };
        Ok((log, History::parse(&bytes)))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and syncs it to disk.
    ///
    /// # Errors
    /// When writing or syncing fails.
    pub fn append(&mut self, event: &Event) -> Result<(), Error> {
        let mut line = serde_json::to_vec(event).map_err(|e| Error::Log(e.to_string()))?;
        line.push(b'\n');
        let io = |e| Error::io(&self.path, e);
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(play: u64, start_s: f64, end_s: f64) -> PlayRecord {
        PlayRecord {
            play,
            track_id: format!("T{play}"),
            title: "Title".into(),
            artist: "Artist".into(),
            isrc: None,
            start_s,
            end_s,
            started_at: None,
            ended_at: None,
            track_start_s: 0.0,
            tempo: 1.0,
            pitch: 1.0,
            score: 9.0,
            coverage: None,
            withdrawn: false,
        }
    }

    #[test]
    fn a_withdrawn_play_is_left_out_and_keeps_its_number() {
        let at = timestamp(SystemTime::now());
        let withdrawn = PlayRecord {
            withdrawn: true,
            ..record(1, 5.0, 8.0)
        };
        let history = History {
            events: vec![
                Event::PlayStarted {
                    at: at.clone(),
                    announced_s: Some(9.0),
                    play: record(1, 5.0, 9.0),
                },
                Event::PlayEnded {
                    at: at.clone(),
                    play: withdrawn.clone(),
                    interrupted: false,
                },
                Event::PlayStarted {
                    at,
                    announced_s: Some(30.0),
                    play: record(2, 20.0, 30.0),
                },
            ],
            unreadable: 0,
        };
        assert_eq!(history.plays(), vec![record(2, 20.0, 30.0)]);
        assert_eq!(history.open_plays(), vec![record(2, 20.0, 30.0)]);
        assert_eq!(
            history.next_play(),
            3,
            "a withdrawn play's number is not reused"
        );
        let line = serde_json::to_value(&withdrawn).expect("json");
        assert_eq!(line["withdrawn"], true);
        let kept = serde_json::to_value(record(2, 20.0, 30.0)).expect("json");
        assert!(kept.get("withdrawn").is_none(), "written only when true");
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_plays_keep_their_latest_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let at = timestamp(SystemTime::now());
        let (mut log, _) = EventLog::open(&path).expect("open");
        for event in [
            Event::RunStarted {
                at: at.clone(),
                run: 1,
                source: "test".into(),
                offset_s: 0.0,
                event_id: Some("show".into()),
                log_id: Some("1a2b".into()),
            },
            Event::PlayStarted {
                at: at.clone(),
                announced_s: Some(16.0),
                play: record(1, 5.0, 15.0),
            },
            Event::PlayHeard {
                at: at.clone(),
                play: record(1, 5.0, 30.0),
            },
            Event::PlayStarted {
                at: at.clone(),
                announced_s: None,
                play: record(2, 28.0, 38.0),
            },
            Event::PlayEnded {
                at: at.clone(),
                play: record(1, 5.0, 31.0),
                interrupted: false,
            },
        ] {
            log.append(&event).expect("append");
        }
        drop(log);
        // A crash in the middle of a line.
        let mut file = OpenOptions::new().append(true).open(&path).expect("reopen");
        file.write_all(b"{\"event\":\"play_heard\",\"at\":\"20")
            .expect("torn");
        drop(file);

        let (mut log, reopened) = EventLog::open(&path).expect("open again");
        assert_eq!(reopened.events.len(), 5, "the torn line is not an event");
        assert_eq!(reopened.unreadable, 0);
        log.append(&Event::RunEnded {
            at,
            position_s: 40.0,
        })
        .expect("append after repair");
        let history = History::read(&path).expect("read");
        assert_eq!(history.unreadable, 0, "the torn line is gone");
        assert_eq!(history.events.len(), 6);
        // When a play was announced is read back, and a line without it
        // (an earlier version's) still reads.
        let announced: Vec<Option<f64>> = (history.events.iter())
            .filter_map(|e| match e {
                Event::PlayStarted { announced_s, .. } => Some(*announced_s),
                _ => None,
            })
            .collect();
        assert_eq!(announced, vec![Some(16.0), None]);
        let plays = history.plays();
        assert_eq!(plays.len(), 2);
        assert_eq!(plays[0].end_s, 31.0);
        assert_eq!(history.open_plays(), vec![record(2, 28.0, 38.0)]);
        assert_eq!(history.next_play(), 3);
        assert_eq!(history.runs(), 1);
        assert_eq!(history.last_position_s(), 40.0);
        assert_eq!(history.event(), Some("show"));
        assert_eq!(history.log_id(), Some("1a2b"));
    }

    #[test]
    fn a_file_that_is_not_a_log_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("song.wav");
        let bytes = b"RIFF\x24\0\0\0WAVEfmt \nno newline at the end".to_vec();
        std::fs::write(&path, &bytes).expect("write");
        let refused = EventLog::open(&path).expect_err("not a log");
        assert!(
            refused.to_string().contains("not an earmark event log"),
            "{refused}"
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            bytes,
            "nothing cut or added"
        );
        assert!(matches!(History::read(&path), Err(Error::NotALog(_))));
        let missing = History::read(&dir.path().join("nope.jsonl")).expect_err("missing");
        assert!(missing.to_string().contains("nope.jsonl"), "{missing}");
    }

    #[test]
    fn plays_of_older_logs_read_with_unknown_coverage() {
        let mut json = serde_json::to_value(record(1, 5.0, 15.0)).expect("json");
        json["coverage"] = "unknown".into();
        let play: PlayRecord = serde_json::from_value(json.clone()).expect("old play");
        assert_eq!(play.coverage, None);
        json["coverage"] =
            serde_json::json!({"coverage": "covered", "licence": "L", "period_checked": true});
        let play: PlayRecord = serde_json::from_value(json).expect("judged play");
        assert_eq!(
            play.coverage.map(|d| d.coverage),
            Some(earmark_index::Coverage::Covered)
        );
    }
}
