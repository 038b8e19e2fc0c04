//! `earmark monitor`: the sound card through a PulseAudio null sink, and a
//! monitor killed and started again on the same log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use earmark_engine::testutil::{mix_at_snr, noise, song, write_wav};

use crate::scan::scan_plays;
use crate::util::{Fixture, RATE, earmark, path, run, stderr, stdout};

/// A private PulseAudio server from ../shared/live, stopped on drop.
struct Audio {
    dir: tempfile::TempDir,
    sink: String,
    env: Vec<(String, String)>,
    scripts: PathBuf,
}

impl Audio {
    fn start(sink: &str) -> Self {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/live");
        assert!(
            scripts.join("start_audio.sh").exists(),
            "the null-sink scripts are missing at {}",
            scripts.display()
        );
        let mut audio = Self {
            dir: tempfile::tempdir().expect("tempdir"),
            sink: sink.to_owned(),
            env: Vec::new(),
            scripts,
        };
        audio.start_again();
        audio
    }

    /// Starts the server (again, after [`Audio::stop`]).
    fn start_again(&mut self) {
        let out = self
            .script("start_audio.sh")
            .env("AUDIO_SINKS", &self.sink)
            .output()
            .expect("start_audio.sh");
        assert!(
            out.status.success(),
            "start_audio.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Lines of the form `export NAME="value"`.
        self.env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
    }

    /// Stops the server, as if the sound card went away.
    fn stop(&self) {
        let _ = self.script("stop_audio.sh").status();
    }

    fn script(&self, name: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(self.scripts.join(name))
            .env("AUDIO_DIR", self.dir.path());
        cmd
    }

    fn command(&self, mut cmd: Command) -> Command {
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Plays a file into the sink, to its end.
    fn play(&self, wav: &Path) {
        let mut paplay = Command::new("paplay");
        paplay.args([&format!("--device={}", self.sink), path(wav)]);
        let status = self.command(paplay).status().expect("paplay");
        assert!(status.success(), "paplay failed");
    }
}

impl Drop for Audio {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Song `i` of `fx` from `from_s` for `seconds`.
fn part(fx: &Fixture, i: usize, from_s: f32, seconds: f32) -> &[f32] {
    let a = (from_s * RATE as f32) as usize;
    &fx.songs[i].1[a..a + (seconds * RATE as f32) as usize]
}

/// Parts one after the other, each crossfaded into the next over `fade_s`.
fn mix(parts: &[&[f32]], fade_s: f32) -> Vec<f32> {
    let fade = (fade_s * RATE as f32) as usize;
    let mut out: Vec<f32> = Vec::new();
    for p in parts {
        let overlap = if out.is_empty() { 0 } else { fade };
        let at = out.len() - overlap;
        for (i, &s) in p.iter().enumerate() {
            let t = (i as f32 / fade.max(1) as f32).min(1.0);
            match out.get_mut(at + i) {
                Some(o) if i < overlap => *o = *o * (1.0 - t) + s * t,
                _ => out.push(s),
            }
        }
    }
    out
}

/// Writes `show` as a mono WAV, runs `earmark monitor` on it as fast as it
/// decodes and returns the log.
fn monitor_show(fx: &Fixture, show: &[f32]) -> PathBuf {
    let wav = fx.dir.path().join("show.wav");
    write_wav(&wav, RATE, 1, show).expect("write");
    let log = fx.dir.path().join("show.jsonl");
    fx.monitor(&log, &wav, &[]);
    log
}

/// The events of a monitor's log, one JSON object a line.
fn log_events(text: &str) -> Vec<serde_json::Value> {
    (text.lines())
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect()
}

fn report(log: &Path) -> serde_json::Value {
    let out = run(&["report", "--format", "json", "--log", path(log)]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("report json")
}

/// The track of each play of a JSON report, in order.
fn track_ids(report: &serde_json::Value) -> Vec<&str> {
    report["plays"]
        .as_array()
        .expect("plays")
        .iter()
        .map(|p| p["track_id"].as_str().unwrap_or(""))
        .collect()
}

fn seconds_between(from: SystemTime, at: &serde_json::Value) -> f64 {
    let t = humantime::parse_rfc3339(at.as_str().expect("wall clock")).expect("rfc3339");
    t.duration_since(from).map_or(0.0, |d| d.as_secs_f64())
}

fn wait_for(log: &Path, what: &str, child: &mut Child, limit: Duration) {
    let started = Instant::now();
    while !std::fs::read_to_string(log).is_ok_and(|t| t.contains(what)) {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "monitor exited early"
        );
        assert!(started.elapsed() < limit, "no {what} in the log");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_live_monitor_names_each_track_played_into_the_sound_card() {
    let fx = Fixture::songs(4, 60.0);
    fx.index();
    // Three tracks with 3 s crossfades, over venue noise: about 2.3 minutes.
    let quiet = vec![0.0; 3 * RATE as usize];
    let music = mix(
        &[
            part(&fx, 0, 5.0, 48.0),
            part(&fx, 2, 10.0, 48.0),
            part(&fx, 3, 0.0, 45.0),
        ],
        3.0,
    );
    let show = [&quiet[..], &music, &quiet].concat();
    let seconds = show.len() as f32 / RATE as f32;
    let show = mix_at_snr(&show, &noise(RATE, seconds, 1.0, 5), 15.0);
    let wav = fx.dir.path().join("show.wav");
    write_wav(&wav, RATE, 1, &show).expect("write");
    // Each track from the start to the end of its crossfades.
    let truth = [
        ("song0", 3.0, 51.0),
        ("song2", 48.0, 96.0),
        ("song3", 93.0, 138.0),
    ];

    let audio = Audio::start("venue_it");
    let log = fx.dir.path().join("events.jsonl");
    let mut monitor = audio
        .command(earmark())
        .args(["monitor", "--plain", "--db", path(&fx.db())])
        .args([
            "--log",
            path(&log),
            "--duration",
            &format!("{}", seconds + 15.0),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn monitor");
    wait_for(&log, "run_started", &mut monitor, Duration::from_secs(20));
    let played_at = SystemTime::now();
    audio.play(&wav);
    let status = monitor.wait().expect("monitor");
    assert!(status.success(), "monitor failed");

    let report = report(&log);
    let plays = report["plays"].as_array().expect("plays");
    assert_eq!(
        track_ids(&report),
        ["song0", "song2", "song3"],
        "{report:#}"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    // On a miss, every play against its truth and the log's troubles (an
    // overrun or a lost device would say the capture, not the tracker, slipped).
    let heard: Vec<String> = (plays.iter().zip(&truth))
        .map(|(p, (id, start, end))| {
            let got = |at| seconds_between(played_at, &p[at]);
            let (got_start, got_end) = (got("started_at"), got("ended_at"));
            format!("{id}: truth {start}-{end} s, played {got_start:.1}-{got_end:.1} s")
        })
        .chain(
            (text.lines())
                .filter(|l| l.contains("overrun") || l.contains("device_"))
                .map(String::from),
        )
        .collect();
    // Within 5 s: the capture starts at a random phase of the frame grid,
    // and boundaries move with it. This show given by file at eight
    // phases, at 44.1 and 48 kHz, put them up to 4.3 s off; live runs of
    // the same build were 3.3 and 4.1 s off at worst. The dev sessions
    // measure the 3 s the issue asks for (`scripts/sessions.sh`).
    for (p, (_, start, end)) in plays.iter().zip(&truth) {
        let got_start = seconds_between(played_at, &p["started_at"]);
        let got_end = seconds_between(played_at, &p["ended_at"]);
        assert!(
            (got_start - start).abs() <= 5.0 && (got_end - end).abs() <= 5.0,
            "{heard:#?}"
        );
    }
    // Each play is announced seconds after it starts, at a session position
    // the log keeps (for `eval-session` to measure the delay).
    let delays: Vec<f64> = (log_events(&text).iter())
        .filter(|e| e["event"] == "play_started")
        .map(|e| e["announced_s"].as_f64().unwrap_or(-1.0) - e["start_s"].as_f64().unwrap_or(0.0))
        .collect();
    assert_eq!(delays.len(), 3, "{text}");
    assert!(delays.iter().all(|d| (0.0..15.0).contains(d)), "{delays:?}");
}

#[test]
fn a_monitor_killed_mid_show_keeps_its_plays_when_started_again() {
    let fx = Fixture::songs(3, 40.0);
    fx.index();
    let first = fx.dir.path().join("first.wav");
    write_wav(
        &first,
        RATE,
        1,
        &mix(&[part(&fx, 0, 0.0, 20.0), part(&fx, 1, 0.0, 30.0)], 1.0),
    )
    .expect("write");
    let second = fx.dir.path().join("second.wav");
    write_wav(&second, RATE, 1, part(&fx, 2, 5.0, 20.0)).expect("write");
    let log = fx.dir.path().join("events.jsonl");

    // The first run replays in real time and is killed once the second
    // track has been recognised.
    let mut monitor = earmark()
        .args(["monitor", "--plain", "--realtime", "--db", path(&fx.db())])
        .args(["--log", path(&log), "--input", path(&first)])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for(
        &log,
        "\"track_id\":\"song1\"",
        &mut monitor,
        Duration::from_secs(60),
    );
    monitor.kill().expect("kill");
    let _ = monitor.wait();
    let before = report(&log);
    assert_eq!(
        before["plays"].as_array().map(Vec::len),
        Some(2),
        "{before:#}"
    );

    fx.monitor(&log, &second, &[]);
    let after = report(&log);
    assert_eq!(after["runs"], 2);
    let plays = after["plays"].as_array().expect("plays");
    assert_eq!(track_ids(&after), ["song0", "song1", "song2"], "{after:#}");
    // The first run's plays are as it left them; the interrupted one ends
    // where it was last heard, and the second run comes after both.
    assert_eq!(plays[0], before["plays"][0]);
    assert!((plays[0]["start_s"].as_f64().unwrap_or(-9.0)).abs() <= 2.0);
    let first_end = plays[1]["end_s"].as_f64().expect("end");
    assert!(first_end > 20.0, "{after:#}");
    let play_numbers: Vec<u64> = plays.iter().filter_map(|p| p["play"].as_u64()).collect();
    assert_eq!(play_numbers, [1, 2, 3]);
    assert!(plays[2]["start_s"].as_f64().expect("start") >= first_end);
}

#[test]
fn a_monitor_that_loses_its_sound_card_logs_the_gap_and_listens_again() {
    let fx = Fixture::songs(2, 30.0);
    fx.index();
    let songs: Vec<PathBuf> = (0..2)
        .map(|i| {
            let wav = fx.dir.path().join(format!("play{i}.wav"));
            write_wav(&wav, RATE, 1, part(&fx, i, 2.0, 20.0)).expect("write");
            wav
        })
        .collect();
    let mut audio = Audio::start("venue_lost");
    let log = fx.dir.path().join("events.jsonl");
    let mut monitor = audio
        .command(earmark())
        .args([
            "monitor",
            "--plain",
            "--db",
            path(&fx.db()),
            "--log",
            path(&log),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn monitor");
    wait_for(&log, "run_started", &mut monitor, Duration::from_secs(20));
    audio.play(&songs[0]);
    // The sound server goes away, and comes back.
    audio.stop();
    wait_for(&log, "device_lost", &mut monitor, Duration::from_secs(20));
    audio.start_again();
    wait_for(&log, "device_back", &mut monitor, Duration::from_secs(20));
    audio.play(&songs[1]);
    wait_for(
        &log,
        "\"track_id\":\"song1\"",
        &mut monitor,
        Duration::from_secs(20),
    );
    let interrupt = Command::new("kill")
        .args(["-INT", &monitor.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupt.success());
    assert!(monitor.wait().expect("monitor").success());

    let events = log_events(&std::fs::read_to_string(&log).expect("log"));
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let at = |kind: &str| kinds.iter().position(|k| *k == kind);
    let (lost, back) = (
        at("device_lost").expect("lost"),
        at("device_back").expect("back"),
    );
    assert!(lost < back, "{kinds:?}");
    assert!(events[back]["gap_s"].as_f64().expect("gap") > 0.0);
    assert_eq!(
        kinds.last(),
        Some(&"run_ended"),
        "Ctrl-C ends the run cleanly"
    );
    let report = report(&log);
    assert_eq!(track_ids(&report), ["song0", "song1"], "{report:#}");
}

#[test]
fn another_edition_of_the_track_playing_is_not_a_play_of_its_own() {
    // The catalog holds song 0 and an edition of it with song 1 layered
    // over, which matches song 0's recording almost as well as song 0: a
    // track that is not playing, but never leads where song 0 is heard.
    let fx = Fixture::songs(2, 40.0);
    let edition: Vec<f32> = (fx.songs[0].1.iter().zip(&fx.songs[1].1))
        .map(|(a, b)| a + 0.5 * b)
        .collect();
    write_wav(&fx.music().join("edition.wav"), RATE, 1, &edition).expect("write");
    fx.index();
    let recording = fx.clip(0, 0.0, 40.0, Some(20.0));
    let log = fx.dir.path().join("show.jsonl");
    fx.monitor(&log, &recording, &[]);
    let report = report(&log);
    assert_eq!(track_ids(&report), ["song0"], "{report}");
}

#[test]
fn a_track_mixed_in_is_named_within_seconds_of_its_start() {
    // Song 1 crossfades into song 0 at 30 s: the monitor names it from the
    // last seconds heard (5.4 s after it began when only whole windows
    // were identified, 4.4 s since).
    let fx = Fixture::songs(2, 60.0);
    fx.index();
    let show = mix(&[part(&fx, 0, 0.0, 32.0), part(&fx, 1, 10.0, 30.0)], 2.0);
    let log = monitor_show(&fx, &show);
    let text = std::fs::read_to_string(&log).expect("log");
    let started = (log_events(&text).into_iter())
        .find(|e| e["event"] == "play_started" && e["title"] == "song1")
        .expect("song 1 named");
    let delay = started["announced_s"].as_f64().expect("announced") - 30.0;
    assert!(delay <= 5.0, "song 1 named {delay:.1} s after it began");
}

/// Songs 2, 0 and 1 of a three-song fixture crossfaded over 3 s, song 0
/// from `song0_from_s` for 30 s, in noise at `snr_db`: plays at 0-35, 32-62
/// and 59-99 s.
fn three_song_show(fx: &Fixture, song0_from_s: f32, snr_db: f32) -> Vec<f32> {
    let parts = [
        part(fx, 2, 5.0, 35.0),
        part(fx, 0, song0_from_s, 30.0),
        part(fx, 1, 0.0, 40.0),
    ];
    mix_at_snr(&mix(&parts, 3.0), &noise(RATE, 120.0, 1.0, 11), snr_db)
}

#[test]
fn a_scan_and_a_monitor_of_the_same_show_report_the_same_plays() {
    // A scan's windows (10 s every 3 s, in parallel stretches) and a
    // monitor's (7 s every second, as it hears them) must put each play
    // within 1 s of the other and 2 s of the truth.
    let fx = Fixture::songs(3, 60.0);
    fx.index();
    let log = monitor_show(&fx, &three_song_show(&fx, 30.0, 20.0));
    let monitored = report(&log);
    let monitored = monitored["plays"].as_array().expect("plays");
    let scanned = scan_plays(&fx, &fx.dir.path().join("show.wav"));
    let summary = |plays: &[serde_json::Value]| -> Vec<(String, f64, f64)> {
        (plays.iter())
            .map(|p| {
                let s = |k: &str| p[k].as_f64().expect(k);
                (
                    p["track_id"].as_str().unwrap_or("").to_owned(),
                    s("start_s"),
                    s("end_s"),
                )
            })
            .collect()
    };
    let (scanned, monitored) = (summary(&scanned), summary(monitored));
    let truth = [
        ("song2", 0.0, 35.0),
        ("song0", 32.0, 62.0),
        ("song1", 59.0, 99.0),
    ];
    for plays in [&scanned, &monitored] {
        assert_eq!(plays.len(), truth.len(), "{scanned:?} {monitored:?}");
        for (p, t) in plays.iter().zip(truth) {
            let near = (p.1 - t.1).abs() <= 2.0 && (p.2 - t.2).abs() <= 2.0;
            assert!(
                p.0 == t.0 && near,
                "{p:?} for {t:?}: {scanned:?} {monitored:?}"
            );
        }
    }
    for (s, m) in scanned.iter().zip(&monitored) {
        assert!(
            (s.1 - m.1).abs() <= 1.0 && (s.2 - m.2).abs() <= 1.0,
            "scan {s:?}, monitor {m:?}"
        );
    }
}

#[test]
fn a_play_ends_with_its_music_though_windows_reach_past_its_tracks_end() {
    // Song 0 from 20 s to 50 s of its 60 s, then song 1. Scan windows that
    // reach past song 0's end hold only its last seconds: 7 of its 28 peaks
    // there were found among song 1's by chance (a score of 4.2, enough to
    // keep a play), and the play went on to 81 s. A window the track fills
    // less than half of at the play's alignment no longer keeps it.
    let fx = Fixture::songs(3, 60.0);
    fx.index();
    let wav = fx.dir.path().join("show.wav");
    write_wav(&wav, RATE, 1, &three_song_show(&fx, 20.0, 10.0)).expect("write");
    let plays = scan_plays(&fx, &wav);
    let song0 = (plays.iter())
        .find(|p| p["track_id"] == "song0")
        .expect("song 0 played");
    let end = song0["end_s"].as_f64().expect("end");
    assert!((end - 62.0).abs() <= 2.0, "{plays:?}");
}

#[test]
fn a_track_buried_under_noise_for_half_a_minute_goes_on_as_one_play() {
    // Song 0 for 100 s, with 30 s from 30 s where only noise is heard (the
    // song lost under an announcement and the crowd), then heard again
    // where it was: one play, not two.
    let fx = Fixture::songs(1, 100.0);
    fx.index();
    let mut show = part(&fx, 0, 0.0, 100.0).to_vec();
    let buried = noise(RATE, 30.0, 0.3, 5);
    show[30 * RATE as usize..][..buried.len()].copy_from_slice(&buried);
    let log = monitor_show(&fx, &show);
    let report = report(&log);
    assert_eq!(track_ids(&report), ["song0"], "{report:#}");
    let end = report["plays"][0]["end_s"].as_f64().expect("end");
    assert!(end > 97.0, "the play ends at {end:.1} s, not 100 s");
}

#[test]
fn a_looped_track_first_placed_at_the_wrong_turn_of_its_loop_starts_where_it_began() {
    // A track of a 10 s intro, a 7 s motif played four times, and a tail.
    // The show plays it from 5 s, the intro under noise (-22 dB: too much
    // for a window to name it, not for the start search at the right
    // place). Windows over the loop cannot tell its turns apart: the play
    // is placed a turn early, its start searched there (13.4 s), until
    // the tail puts it right; its start is then searched again.
    let fx = Fixture::songs(1, 10.0);
    let (intro, motif, tail) = (
        song(RATE, 10.0, 50),
        song(RATE, 7.0, 51),
        song(RATE, 30.0, 52),
    );
    let mut track = intro.clone();
    for _ in 0..4 {
        track.extend_from_slice(&motif);
    }
    track.extend_from_slice(&tail);
    write_wav(&fx.music().join("looped.wav"), RATE, 1, &track).expect("write");
    fx.index();
    let mut show = vec![0.0; 5 * RATE as usize];
    show.extend(mix_at_snr(&intro, &noise(RATE, 10.0, 1.0, 7), -22.0));
    show.extend_from_slice(&track[intro.len()..]);
    let log = monitor_show(&fx, &show);
    let report = report(&log);
    assert_eq!(track_ids(&report), ["looped"], "{report:#}");
    let start = report["plays"][0]["start_s"].as_f64().expect("start");
    assert!(
        (start - 5.0).abs() <= 2.0,
        "the play starts at {start:.1} s, not 5 s"
    );
}

#[test]
fn a_track_heard_for_seconds_only_is_withdrawn_once_over() {
    // Three seconds of song 0 between silences: named from a window's last
    // seconds, but no longer than chance finds are, so the play is
    // withdrawn when it ends and the report leaves it out.
    let fx = Fixture::songs(1, 60.0);
    fx.index();
    let silence = vec![0.0; 20 * RATE as usize];
    let show = [&silence, part(&fx, 0, 20.0, 3.0), &silence].concat();
    let log = monitor_show(&fx, &show);
    let text = std::fs::read_to_string(&log).expect("log");
    let events = log_events(&text);
    let kinds: Vec<(&str, bool)> = (events.iter())
        .filter(|e| e["title"] == "song0" && e["event"] != "play_heard")
        .map(|e| (e["event"].as_str().unwrap_or(""), e["withdrawn"] == true))
        .collect();
    assert_eq!(
        kinds,
        [("play_started", false), ("play_ended", true)],
        "{text}"
    );
    assert!(
        report(&log)["plays"].as_array().expect("plays").is_empty(),
        "{text}"
    );
}
