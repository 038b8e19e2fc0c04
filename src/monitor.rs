//! `earmark monitor` and `earmark devices`: live identification of a sound
//! card, a file or a pipe into an event log.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use earmark_engine::fingerprint::SCHEME;
use earmark_index::Catalog;
use earmark_monitor::{
    Capture, Delivery, Event, FileSource, PcmSource, PlayRecord, Resumed, Session, Source,
};

use crate::Outcome;
use crate::cli::{DevicesArgs, MonitorArgs};
use crate::upload::Uploader;

/// A play's coverage as the screen shows it.
fn coverage(play: &PlayRecord) -> String {
    play.coverage
        .as_ref()
        .map_or("not judged: no --event".into(), ToString::to_string)
}

/// `earmark devices`.
pub fn devices(_: &DevicesArgs) -> anyhow::Result<Outcome> {
    let devices = earmark_monitor::devices()?;
    if devices.is_empty() {
        anyhow::bail!("no audio input devices");
    }
    for d in devices {
        let mark = if d.default { "*" } else { " " };
        println!("{mark} {:<40} {:<30} {}", d.id, d.name, d.format);
    }
    Ok(Outcome::Done)
}

/// `earmark monitor`.
pub fn run(args: &MonitorArgs) -> anyhow::Result<Outcome> {
    let catalog = Catalog::open_for(&args.db, SCHEME)?;
    let mut source: Box<dyn Source> = match (&args.input, args.stdin) {
        (Some(path), _) => Box::new(FileSource::open(path, args.realtime)?),
        (None, true) => Box::new(PcmSource::new(
            std::io::stdin().lock(),
            args.format.into(),
            args.channels,
            args.rate,
        )?),
        (None, false) => Box::new(Capture::open(args.device.as_deref())?),
    };
    let (mut session, resumed) = Session::open(
        &catalog,
        &args.log,
        &source.describe(),
        source.rate_hz(),
        source.live(),
        args.event.as_deref(),
    )?;
    if let Some(event) = &args.event
        && catalog.licences_for(event).is_empty()
    {
        eprintln!(
            "earmark: no licence for event {event} in {}: every play will be not covered",
            args.db.display()
        );
    }
    let uploading = Arc::new(AtomicBool::new(false));
    let uploader = match (&args.upload.url, &args.event) {
        (None, _) => None,
        (Some(_), None) => anyhow::bail!("--upload needs --event: plays are uploaded to an event"),
        (Some(_), Some(event)) => {
            Some(Uploader::new(&args.upload, event, &args.log)?.spawn(Arc::clone(&uploading)))
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    ctrlc::set_handler(move || on_signal.store(true, Ordering::SeqCst))?;
    let mut view = View::new(args.plain || !std::io::stdout().is_terminal());
    view.begin(&source.describe(), &session, &resumed);
    let mut mono = Vec::new();
    let until = args.duration_s.map(|d| resumed.offset_s + d);
    let failure = loop {
        if stop.load(Ordering::SeqCst)
            || view.closed
            || until.is_some_and(|u| session.position_s() >= u)
        {
            break None;
        }
        let delivery = match source.read(&mut mono) {
            Ok(d) => d,
            Err(e) => break Some(e),
        };
        match delivery {
            Delivery::Audio => {
                let events = session.feed(&mono)?;
                view.show(&events);
                view.level(&mono);
            }
            Delivery::Idle => {}
            Delivery::Lost(reason) => view.show(&session.lost(&reason)?),
            Delivery::Back => view.show(&[session.back(source.rate_hz())?]),
            Delivery::End => break None,
        }
        if let Some(event) = session.overruns(source.overruns())? {
            view.show(&[event]);
        }
        view.status(&session, source.overruns());
    };
    let log = session.log_path().to_owned();
    view.show(&session.finish()?);
    uploading.store(true, Ordering::SeqCst);
    if let Some(thread) = uploader {
        let _ = thread.join();
    }
    view.end(&log);
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(Outcome::Done),
    }
}

/// What the operator sees: a line per event, and in a terminal a status
/// line under them with what is playing, the input level and overruns.
struct View {
    plain: bool,
    /// Standard output's reader has gone away (`earmark monitor | head`):
    /// the run ends as on Ctrl-C, its log closed properly.
    closed: bool,
    /// Mean square of the samples since the last status line.
    power: (f64, usize),
    last_status: std::time::Instant,
}

impl View {
    fn new(plain: bool) -> Self {
        Self {
            plain,
            closed: false,
            power: (0.0, 0),
            last_status: std::time::Instant::now(),
        }
    }

    fn begin(&mut self, source: &str, session: &Session<'_>, resumed: &Resumed) {
        self.line(&format!(
            "listening to {source}; run {} of {} (from {:.1} s; {} earlier plays, {} left open closed)",
            resumed.run,
            session.log_path().display(),
            resumed.offset_s,
            resumed.earlier_plays,
            resumed.closed
        ));
    }

    fn end(&mut self, log: &std::path::Path) {
        self.line(&format!(
            "stopped; `earmark report --log {}` prints the cue sheet",
            log.display()
        ));
    }

    fn level(&mut self, samples: &[f32]) {
        let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
        self.power.0 += sum;
        self.power.1 += samples.len();
    }

    fn show(&mut self, events: &[Event]) {
        for event in events {
            let text = match event {
                Event::PlayStarted { play, .. } => format!(
                    "{} play {}: {} (from {:.1} s in the track, tempo {:.3}, coverage {})",
                    clock(play.start_s),
                    play.play,
                    describe(play),
                    play.track_start_s,
                    play.tempo,
                    coverage(play)
                ),
                Event::PlayEnded {
                    play, interrupted, ..
                } => format!(
                    "{} play {} ended: {} ({}-{}{})",
                    clock(play.end_s),
                    play.play,
                    describe(play),
                    clock(play.start_s),
                    clock(play.end_s),
                    match (interrupted, play.withdrawn) {
                        (true, _) => ", interrupted",
                        (_, true) => ", withdrawn: too short to be more than chance",
                        _ => "",
                    }
                ),
                Event::Unidentified { segment, .. } => format!(
                    "{} unidentified music {}-{}, kept as {}",
                    clock(segment.end_s),
                    clock(segment.start_s),
                    clock(segment.end_s),
                    segment.clip
                ),
                Event::DeviceLost {
                    position_s, reason, ..
                } => format!("{} input lost: {reason}", clock(*position_s)),
                Event::DeviceBack {
                    position_s, gap_s, ..
                } => format!("{} input back after {gap_s:.1} s", clock(*position_s)),
                Event::Overruns {
                    position_s, total, ..
                } => format!("{} {total} overruns so far", clock(*position_s)),
                Event::PlayHeard { .. } | Event::RunStarted { .. } | Event::RunEnded { .. } => {
                    continue;
                }
            };
            self.line(&text);
        }
    }

    fn status(&mut self, session: &Session<'_>, overruns: u64) {
        if self.plain || self.last_status.elapsed().as_millis() < 250 {
            return;
        }
        self.last_status = std::time::Instant::now();
        let (sum, n) = std::mem::take(&mut self.power);
        let db = 10.0 * (sum / n.max(1) as f64).max(1e-10).log10();
        let bars = ((db + 60.0) / 3.0).clamp(0.0, 20.0) as usize;
        let playing = session.playing();
        let now = match playing.last() {
            Some(p) => format!(
                "now {} ({}, coverage {})",
                describe(p),
                clock(session.position_s() - p.start_s),
                coverage(p)
            ),
            None => "nothing identified".into(),
        };
        self.write(format_args!(
            "\r\x1b[2K{} {:<20} {db:>4.0} dB  overruns {overruns}  {now}",
            clock(session.position_s()),
            "#".repeat(bars),
        ));
    }

    fn line(&mut self, text: &str) {
        let clear = if self.plain { "" } else { "\r\x1b[2K" };
        self.write(format_args!("{clear}{text}\n"));
    }

    /// Writes to standard output unless it is closed; a write that fails
    /// (the reader gone, a full disk) closes it.
    fn write(&mut self, text: std::fmt::Arguments<'_>) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if !self.closed && out.write_fmt(text).and_then(|()| out.flush()).is_err() {
            self.closed = true;
        }
    }
}

fn describe(play: &PlayRecord) -> String {
    format!("{} {} - {}", play.track_id, play.title, play.artist)
}

/// Seconds as h:mm:ss.
fn clock(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
