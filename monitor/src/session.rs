//! A monitoring session: a source's audio through a [`Listener`] into the
//! event log.
//!
//! Positions are session seconds: from the start of the log's first run. A
//! run that resumes a log goes on from where the wall clock (live sources) or
//! the log's last position (files and pipes) says. When a device is lost,
//! plays under way end where they were last heard; the stream starts afresh
//! when it is back, after the gap.

use std::path::Path;
use std::time::{Instant, SystemTime};

use earmark_index::Catalog;

use crate::Error;
use crate::listener::Listener;
use crate::log::{Event, EventLog, History, PlayRecord, round, timestamp};
use crate::tracker::{Play, PlayEvent};
use crate::window::WindowOptions;

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
    /// Session seconds at the current stream's start.
    stream_offset_s: f64,
    /// Wall clock at the current stream's start (live sources).
    stream_clock: Option<SystemTime>,
    run_started: (Instant, f64),
    next_play: u64,
    /// Overruns already logged.
    overruns: u64,
    lost: Option<Instant>,
}

impl<'c> Session<'c> {
    /// Opens (or resumes) the log at `path` for a run listening to a source
    /// described as `source`, delivering audio at `rate_hz`.
    ///
    /// # Errors
    /// When the log cannot be read or written, or the rate is unusable.
    pub fn open(
        catalog: &'c Catalog,
        path: &Path,
        source: &str,
        rate_hz: u32,
        live: bool,
    ) -> Result<(Self, Resumed), Error> {
        let mut log = EventLog::open(path)?;
        let history = History::read(path)?;
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
        })?;
        let next_play = history.next_play();
        let session = Self {
            catalog,
            log,
            live,
            listener: Some(Listener::try_new(
                catalog,
                rate_hz,
                WindowOptions::live(),
                next_play,
            )?),
            stream_offset_s: offset_s,
            stream_clock: live.then_some(now),
            run_started: (Instant::now(), offset_s),
            next_play,
            overruns: 0,
            lost: None,
        };
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
        self.log_plays(events)
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
        self.listener = Some(Listener::try_new(
            self.catalog,
            rate_hz,
            WindowOptions::live(),
            self.next_play,
        )?);
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

    fn end_stream(&mut self) -> Result<Vec<Event>, Error> {
        let Some(listener) = self.listener.take() else {
            return Ok(Vec::new());
        };
        let heard = listener.seconds();
        let logged = self.log_plays(listener.finish())?;
        self.stream_offset_s += heard;
        Ok(logged)
    }

    fn record(&self, play: &Play) -> PlayRecord {
        PlayRecord::new(self.catalog, play, self.stream_offset_s, self.stream_clock)
    }

    fn log_plays(&mut self, events: Vec<PlayEvent>) -> Result<Vec<Event>, Error> {
        let at = timestamp(SystemTime::now());
        let mut logged = Vec::with_capacity(events.len());
        for event in events {
            let event = match event {
                PlayEvent::Started(p) => {
                    self.next_play = self.next_play.max(p.id + 1);
                    Event::PlayStarted {
                        at: at.clone(),
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
            };
            self.log.append(&event)?;
            logged.push(event);
        }
        Ok(logged)
    }
}
