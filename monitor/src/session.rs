//! A monitoring session: a source's audio through a [`Listener`] into the
//! event log.
//!
//! Positions are session seconds: from the start of the log's first run. A
//! run that resumes a log goes on from where the wall clock (live sources) or
//! the log's last position (files and pipes) says. When a device is lost,
//! plays under way end where they were last heard; the stream starts afresh
//! when it is back, after the gap.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use earmark_index::{Catalog, Licence};

use crate::Error;
use crate::listener::{Listener, ListenerOptions};
use crate::log::{Event, EventLog, PlayRecord, UnidentifiedRecord, round, timestamp};
use crate::tracker::{Play, PlayEvent};
use crate::unknown::UnknownMusic;

/// How a session began.
#[derive(Debug, Clone, PartialEq)]
pub struct Resumed {
    /// Number of this run in the log.
    pub run: u32,
    /// Plays the earlier runs recorded.
    pub earlier_plays: usize,
    /// Plays a crash had left open, now closed where last heard.
    pub closed: usize,
    /// Session seconds at this run's start.
    pub offset_s: f64,
}

/// A monitoring run writing to an event log.
#[derive(Debug)]
pub struct Session<'c> {
    catalog: &'c Catalog,
    log: EventLog,
    live: bool,
    listener: Option<Listener<'c>>,
    unknown: Option<UnknownMusic>,
    /// Where unidentified music's clips go.
    clips: PathBuf,
    /// Start and end of every play so far, by play number.
    spans: std::collections::BTreeMap<u64, (f64, f64)>,
    /// Session seconds at the current stream's start.
    stream_offset_s: f64,
    /// Wall clock at the current stream's start (live sources).
    stream_clock: Option<SystemTime>,
    run_started: (Instant, f64),
    next_play: u64,
    next_segment: u64,
    /// Overruns already logged.
    overruns: u64,
    lost: Option<Instant>,
    /// The licences of the event, when one was named.
    licences: Option<Vec<&'c Licence>>,
}

impl<'c> Session<'c> {
    /// Opens (or resumes) the log at `path` for a run listening to a source
    /// described as `source`, delivering audio at `rate_hz`; the licences of
    /// `event`, if given, judge every play.
    ///
    /// # Errors
    /// When the log cannot be read or written, or the rate is unusable.
    pub fn open(
        catalog: &'c Catalog,
        path: &Path,
        source: &str,
        rate_hz: u32,
        live: bool,
        event: Option<&str>,
    ) -> Result<(Self, Resumed), Error> {
        let (mut log, history) = EventLog::open(path)?;
        let now = SystemTime::now();
        let at = timestamp(now);
        let open = history.open_plays();
        for play in &open {
            log.append(&Event::PlayEnded {
                at: at.clone(),
                play: play.clone(),
                interrupted: true,
            })?;
        }
        let last = history.last_position_s();
        let offset_s = match (live, history.first_start()) {
            (true, Some(first)) => {
                let since = now.duration_since(first).map_or(0.0, |d| d.as_secs_f64());
                round(since.max(last))
            }
            _ => last,
        };
        let run = history.runs() + 1;
        log.append(&Event::RunStarted {
            at,
            run,
            source: source.to_owned(),
            offset_s,
            event_id: event.map(str::to_owned),
            log_id: (run == 1).then(new_log_id),
        })?;
        let next_play = history.next_play();
        let mut session = Self {
            catalog,
            log,
            live,
            listener: None,
            unknown: None,
            clips: clips_folder(path),
            spans: Default::default(),
            stream_offset_s: offset_s,
            stream_clock: live.then_some(now),
            run_started: (Instant::now(), offset_s),
            next_play,
            next_segment: history.next_segment(),
            overruns: 0,
            lost: None,
            licences: event.map(|e| catalog.licences_for(e)),
        };
        session.start_stream(rate_hz)?;
        let resumed = Resumed {
            run,
            earlier_plays: history.plays().len(),
            closed: open.len(),
            offset_s,
        };
        Ok((session, resumed))
    }

    /// The log's path.
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// Current session position in seconds.
    pub fn position_s(&self) -> f64 {
        match (&self.listener, self.live) {
            (Some(l), _) => self.stream_offset_s + l.seconds(),
            (None, true) => self.run_started.1 + self.run_started.0.elapsed().as_secs_f64(),
            (None, false) => self.stream_offset_s,
        }
    }

    /// Plays under way.
    pub fn playing(&self) -> Vec<PlayRecord> {
        self.listener
            .as_ref()
            .map_or_else(Vec::new, |l| l.active().map(|p| self.record(p)).collect())
    }

    /// Feeds mono samples; returns the events they caused, already logged.
    ///
    /// # Errors
    /// When the log cannot be written.
    pub fn feed(&mut self, samples: &[f32]) -> Result<Vec<Event>, Error> {
        let Some(listener) = self.listener.as_mut() else {
            return Ok(Vec::new());
        };
        let events = listener.push(samples);
        let mut logged = self.log_plays(events)?;
        if let Some(unknown) = self.unknown.as_mut() {
            let spans = &self.spans;
            let found = unknown.push(samples, |t| covered(spans, t))?;
            logged.extend(self.log_unknown(found)?);
        }
        Ok(logged)
    }

    /// Notes the source's overrun count; logs it when it grew.
    ///
    /// # Errors
    /// When the log cannot be written.
    pub fn overruns(&mut self, total: u64) -> Result<Option<Event>, Error> {
        if total <= self.overruns {
            return Ok(None);
        }
        self.overruns = total;
        let event = Event::Overruns {
            at: timestamp(SystemTime::now()),
            position_s: round(self.position_s()),
            total,
        };
        self.log.append(&event)?;
        Ok(Some(event))
    }

    /// The device stopped: plays under way end where they were last heard.
    ///
    /// # Errors
    /// When the log cannot be written.
    pub fn lost(&mut self, reason: &str) -> Result<Vec<Event>, Error> {
        let mut events = self.end_stream()?;
        self.lost = Some(Instant::now());
        let event = Event::DeviceLost {
            at: timestamp(SystemTime::now()),
            position_s: round(self.position_s()),
            reason: reason.to_owned(),
        };
        self.log.append(&event)?;
        events.push(event);
        Ok(events)
    }

    /// The device is back at `rate_hz`: a new stream starts now.
    ///
    /// # Errors
    /// When the log cannot be written or the rate is unusable.
    pub fn back(&mut self, rate_hz: u32) -> Result<Event, Error> {
        self.stream_offset_s = self.position_s();
        self.stream_clock = self.live.then(SystemTime::now);
        self.start_stream(rate_hz)?;
        let event = Event::DeviceBack {
            at: timestamp(SystemTime::now()),
            position_s: round(self.stream_offset_s),
            gap_s: round(self.lost.take().map_or(0.0, |t| t.elapsed().as_secs_f64())),
        };
        self.log.append(&event)?;
        Ok(event)
    }

    /// Ends the run cleanly: plays under way end, and the run is closed.
    ///
    /// # Errors
    /// When the log cannot be written.
    pub fn finish(mut self) -> Result<Vec<Event>, Error> {
        let mut events = self.end_stream()?;
        let event = Event::RunEnded {
            at: timestamp(SystemTime::now()),
            position_s: round(self.position_s()),
        };
        self.log.append(&event)?;
        events.push(event);
        Ok(events)
    }

    /// Starts listening to a stream at `rate_hz` from the current position.
    fn start_stream(&mut self, rate_hz: u32) -> Result<(), Error> {
        self.listener = Some(Listener::try_new(
            self.catalog,
            rate_hz,
            ListenerOptions::live(),
            self.next_play,
        )?);
        self.unknown = Some(UnknownMusic::new(
            rate_hz,
            self.stream_offset_s,
            UNIDENTIFIED_AFTER_S,
            self.clips.clone(),
            self.next_segment,
        ));
        Ok(())
    }

    fn end_stream(&mut self) -> Result<Vec<Event>, Error> {
        let Some(listener) = self.listener.take() else {
            return Ok(Vec::new());
        };
        let heard = listener.seconds();
        let mut logged = self.log_plays(listener.finish())?;
        if let Some(unknown) = self.unknown.take() {
            let spans = &self.spans;
            let found = unknown.finish(|t| covered(spans, t))?;
            logged.extend(self.log_unknown(found)?);
        }
        self.stream_offset_s += heard;
        Ok(logged)
    }

    fn log_unknown(&mut self, found: Vec<UnidentifiedRecord>) -> Result<Vec<Event>, Error> {
        let mut logged = Vec::with_capacity(found.len());
        for mut segment in found {
            self.next_segment = self.next_segment.max(segment.segment + 1);
            segment.find_similar(self.catalog);
            segment.started_at = self.stream_clock.map(|c| {
                let since = (segment.start_s - self.stream_offset_s).max(0.0);
                timestamp(c + std::time::Duration::from_secs_f64(since))
            });
            let event = Event::Unidentified {
                at: timestamp(SystemTime::now()),
                segment,
            };
            self.log.append(&event)?;
            logged.push(event);
        }
        Ok(logged)
    }

    fn record(&self, play: &Play) -> PlayRecord {
        let mut record =
            PlayRecord::new(self.catalog, play, self.stream_offset_s, self.stream_clock);
        if let Some(licences) = &self.licences {
            record.coverage = Some(record.judge(self.catalog, licences, None));
        }
        record
    }

    fn log_plays(&mut self, events: Vec<PlayEvent>) -> Result<Vec<Event>, Error> {
        let at = timestamp(SystemTime::now());
        let position_s = self.position_s();
        let mut logged = Vec::with_capacity(events.len());
        for event in events {
            let event = match event {
                PlayEvent::Started(p) => {
                    self.next_play = self.next_play.max(p.id + 1);
                    Event::PlayStarted {
                        at: at.clone(),
                        announced_s: Some(position_s),
                        play: self.record(&p),
                    }
                }
                PlayEvent::Heard(p) => Event::PlayHeard {
                    at: at.clone(),
                    play: self.record(&p),
                },
                PlayEvent::Ended(p) => Event::PlayEnded {
                    at: at.clone(),
                    play: self.record(&p),
                    interrupted: false,
                },
                PlayEvent::Withdrawn(p) => Event::PlayEnded {
                    at: at.clone(),
                    play: PlayRecord {
                        withdrawn: true,
                        ..self.record(&p)
                    },
                    interrupted: false,
                },
            };
            if let Event::PlayStarted { play, .. }
            | Event::PlayHeard { play, .. }
            | Event::PlayEnded { play, .. } = &event
            {
                // Music of a withdrawn play is music nothing matched.
                match play.withdrawn {
                    true => self.spans.remove(&play.play),
                    false => self.spans.insert(play.play, (play.start_s, play.end_s)),
                };
            }
            self.log.append(&event)?;
            logged.push(event);
        }
        Ok(logged)
    }
}

/// Music matched by nothing for longer than this is reported.
const UNIDENTIFIED_AFTER_S: f64 = 20.0;

/// Whether a play covers session second `t` (give or take a second).
fn covered(spans: &std::collections::BTreeMap<u64, (f64, f64)>, t: f64) -> bool {
    spans.values().any(|&(s, e)| s - 1.0 <= t && t <= e + 1.0)
}

/// The folder of a log's unidentified clips: beside it, named after it.
fn clips_folder(log: &Path) -> PathBuf {
    let stem = log
        .file_stem()
        .map_or_else(|| "earmark".into(), |s| s.to_string_lossy().into_owned());
    log.with_file_name(format!("{stem}-unidentified"))
}

/// A random 64-bit name for a new log, from the keys std draws for each
/// `RandomState` from the operating system.
fn new_log_id() -> String {
    use std::hash::BuildHasher;
    let id = std::collections::hash_map::RandomState::new().hash_one(SystemTime::now());
    format!("{id:016x}")
}
