//! `earmark scan` turns a recording into plays.

use earmark_engine::testutil::{mix_at_snr, noise, reissue, write_wav};

use crate::util::{Fixture, RATE, over_chord, path, run, stderr, stdout};

/// The plays `scan --json` prints for one recording.
pub(crate) fn scan_plays(fx: &Fixture, recording: &std::path::Path) -> Vec<serde_json::Value> {
    let out = run(&["scan", "--json", "--db", path(&fx.db()), path(recording)]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|v: &serde_json::Value| v.get("play").is_some())
        .collect()
}

#[test]
fn a_mix_of_two_songs_gives_two_plays_with_their_boundaries() {
    let fx = Fixture::songs(3, 40.0);
    fx.index();
    // 5 s of noise, song 0 from 10 s for 25 s, a 2 s crossfade into song 2
    // from 5 s for 25 s, then 5 s of noise.
    let sr = RATE as usize;
    let a = &fx.songs[0].1[10 * sr..35 * sr];
    let b = &fx.songs[2].1[5 * sr..30 * sr];
    let fade = 2 * sr;
    let mut mix = vec![0.0f32; 5 * sr];
    mix.extend_from_slice(&a[..a.len() - fade]);
    for i in 0..fade {
        let t = i as f32 / fade as f32;
        mix.push(a[a.len() - fade + i] * (1.0 - t) + b[i] * t);
    }
    mix.extend_from_slice(&b[fade..]);
    mix.extend(std::iter::repeat_n(0.0, 5 * sr));
    let mix = mix_at_snr(&mix, &noise(RATE, 60.0, 1.0, 7), 20.0);
    let recording = fx.dir.path().join("show.wav");
    write_wav(&recording, RATE, 1, &mix).expect("write");

    let plays = scan_plays(&fx, &recording);
    assert_eq!(plays.len(), 2, "{plays:?}");
    let check = |p: &serde_json::Value, id: &str, start: f64, end: f64, from: f64| {
        assert_eq!(p["track_id"], id);
        let got = |k: &str| p[k].as_f64().expect(k);
        assert!((got("start_s") - start).abs() <= 2.0, "{p}");
        assert!((got("end_s") - end).abs() <= 2.0, "{p}");
        // The track position follows the start: off by as much, at tempo 1.
        let start_error = (got("start_s") - start).abs();
        assert!(
            (got("track_start_s") - from).abs() <= start_error + 0.1,
            "{p}"
        );
        assert!((got("tempo") - 1.0).abs() < 0.01, "{p}");
    };
    check(&plays[0], "song0", 5.0, 30.0, 10.0);
    check(&plays[1], "song2", 28.0, 53.0, 5.0);
}

#[test]
fn a_song_the_catalog_holds_twice_is_one_play_of_one_of_them() {
    let fx = Fixture::songs(2, 40.0);
    // Song 1 again, as another release would hold it.
    let copy = reissue(&fx.songs[1].1);
    write_wav(&fx.music().join("song1-reissue.wav"), RATE, 1, &copy).expect("write");
    fx.index();
    let sr = RATE as usize;
    let mut show = vec![0.0f32; 5 * sr];
    show.extend_from_slice(&fx.songs[1].1[5 * sr..35 * sr]);
    show.extend(std::iter::repeat_n(0.0, 5 * sr));
    let show = mix_at_snr(&show, &noise(RATE, 40.0, 1.0, 5), 10.0);
    let recording = fx.dir.path().join("show.wav");
    write_wav(&recording, RATE, 1, &show).expect("write");

    let plays = scan_plays(&fx, &recording);
    assert_eq!(plays.len(), 1, "{plays:?}");
    let id = plays[0]["track_id"].as_str().expect("track id");
    assert!(id == "song1" || id == "song1-reissue", "{plays:?}");
    let got = |k: &str| plays[0][k].as_f64().expect(k);
    assert!((got("start_s") - 5.0).abs() <= 2.0, "{plays:?}");
    assert!((got("end_s") - 35.0).abs() <= 2.0, "{plays:?}");
}

#[test]
fn a_batch_goes_on_past_bad_files_and_resumes() {
    let fx = Fixture::songs(2, 20.0);
    fx.index();
    let batch = fx.dir.path().join("batch");
    std::fs::create_dir_all(&batch).expect("mkdir");
    let show = batch.join("show.wav");
    write_wav(&show, RATE, 1, &fx.songs[1].1[..15 * RATE as usize]).expect("write");
    std::fs::write(batch.join("empty.flac"), b"").expect("write");
    std::fs::write(batch.join("broken.ogg"), b"OggS but then nothing sensible").expect("write");
    // One black 16x16 VP8 frame in WebM, no audio track (made by ffmpeg).
    std::fs::write(
        batch.join("camera.webm"),
        include_bytes!("fixtures/video-only.webm"),
    )
    .expect("write");
    let notes = fx.dir.path().join("notes.txt");
    std::fs::write(&notes, b"not audio").expect("write");
    // Neither a named pipe nor a link back up the tree holds up the walk.
    std::os::unix::fs::symlink(&batch, batch.join("again")).expect("symlink");
    let fifo = batch.join("live.wav");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.expect("mkfifo").success());
    let out_dir = fx.dir.path().join("cues");
    let scan = || {
        run(&[
            "scan",
            "--json",
            "--db",
            path(&fx.db()),
            "--out",
            path(&out_dir),
            path(&batch),
            path(&notes),
        ])
    };
    let first = scan();
    assert_eq!(first.status.code(), Some(2), "{}", stderr(&first));
    let err = stderr(&first);
    for name in ["empty.flac", "broken.ogg", "notes.txt"] {
        assert!(err.contains(name), "{name} not reported: {err}");
    }
    assert!(
        err.contains("camera.webm: no audio track"),
        "video without audio: {err}"
    );
    assert!(!err.contains("panicked"));
    let statuses: Vec<serde_json::Value> = stdout(&first)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|v: &serde_json::Value| v.get("status").is_some())
        .collect();
    assert_eq!(statuses.len(), 5);
    assert!(
        statuses
            .iter()
            .any(|s| s["status"] == "scanned" && s["plays"] == 1)
    );
    // The batch's summary lists every recording with its figures or reason.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("batch.json")).expect("batch.json"))
            .expect("batch json");
    assert_eq!(
        (summary["scanned"].as_u64(), summary["failed"].as_u64()),
        (Some(1), Some(4))
    );
    let recordings = summary["recordings"].as_array().expect("recordings");
    assert!(recordings.iter().any(|r| {
        r["status"] == "failed"
            && r["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("camera.webm"))
            && r["reason"]
                .as_str()
                .is_some_and(|why| why.contains("no audio track"))
    }));
    assert!(recordings.iter().any(|r| r["summary"]["plays"] == 1));
    let cue = std::fs::read_dir(&out_dir)
        .expect("out dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".cue.csv"))
        .expect("a cue sheet");
    let text = std::fs::read_to_string(cue).expect("read");
    assert!(
        text.lines().nth(1).is_some_and(|l| l.contains("song1")),
        "{text}"
    );
    // A second run skips the recording the manifest lists.
    let second = scan();
    assert!(
        stdout(&second).contains("\"status\":\"skipped\""),
        "{}",
        stdout(&second)
    );
    assert!(!stdout(&second).contains("\"status\":\"scanned\""));
    // A record torn by a crash: its recording is scanned again, and the
    // record written after the torn one is read back whole.
    let manifest = out_dir.join("manifest.jsonl");
    let bytes = std::fs::read(&manifest).expect("manifest");
    std::fs::write(&manifest, &bytes[..bytes.len() - 10]).expect("tear");
    assert!(stdout(&scan()).contains("\"status\":\"scanned\""));
    assert!(!stdout(&scan()).contains("\"status\":\"scanned\""));
}

#[test]
fn a_play_across_the_border_of_two_parallel_stretches_is_one_play() {
    let fx = Fixture::songs(2, 60.0);
    fx.index();
    // Stretches are about 595 s long: song 0 plays from 585 s to 645 s.
    let rate = 8_000;
    let quiet = |seconds: f32| noise(rate, seconds, 0.001, 3);
    let recording = [
        quiet(585.0),
        earmark_engine::testutil::song(rate, 60.0, 1),
        quiet(10.0),
    ]
    .concat();
    let show = fx.dir.path().join("long-show.wav");
    write_wav(&show, rate, 1, &recording).expect("write");
    let plays = scan_plays(&fx, &show);
    assert_eq!(plays.len(), 1, "{plays:?}");
    let p = &plays[0];
    assert_eq!(p["track_id"], "song0");
    let got = |k: &str| p[k].as_f64().expect(k);
    assert!((got("start_s") - 585.0).abs() <= 2.0, "{p}");
    assert!((got("end_s") - 645.0).abs() <= 2.0, "{p}");
}

#[test]
fn music_the_catalog_does_not_hold_is_listed_as_unidentified() {
    let fx = Fixture::songs(2, 30.0);
    fx.index();
    // 25 s of song 0, then 30 s of music not in the catalog (a song over a
    // held chord), then 5 s of near silence.
    let unknown = over_chord(&earmark_engine::testutil::song(RATE, 30.0, 77));
    let sr = RATE as usize;
    let recording = [
        &fx.songs[0].1[..25 * sr],
        &unknown[..],
        &noise(RATE, 5.0, 0.001, 3),
    ]
    .concat();
    let show = fx.dir.path().join("show.wav");
    write_wav(&show, RATE, 1, &recording).expect("write");
    let out = run(&["scan", "--json", "--db", path(&fx.db()), path(&show)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let unidentified: Vec<&serde_json::Value> =
        lines.iter().filter_map(|v| v.get("unidentified")).collect();
    assert_eq!(unidentified.len(), 1, "{lines:?}");
    let got = |k: &str| unidentified[0][k].as_f64().expect(k);
    assert!((got("start_s") - 25.0).abs() <= 2.0, "{lines:?}");
    assert!((got("end_s") - 55.0).abs() <= 2.0, "{lines:?}");
    assert_eq!(scan_plays(&fx, &show).len(), 1, "{lines:?}");
}

#[test]
fn unidentified_music_lists_the_catalog_works_nearest_it() {
    let fx = Fixture::songs(4, 40.0);
    fx.index();
    // Song 2 over a held chord, played 26% faster and so 4 semitones
    // higher: beyond what the fingerprints follow, so nothing is
    // identified; the similarity lane lists the works nearest it for review,
    // best verified first, and the verification finds song 2's harmonies.
    let cover = over_chord(&fx.songs[2].1);
    let show = fx.dir.path().join("cover.wav");
    let faster = (RATE as f32 * 2f32.powf(4.0 / 12.0)) as u32;
    write_wav(&show, faster, 1, &cover).expect("write");
    let cues = fx.dir.path().join("cues");
    let out = run(&[
        "scan",
        "--json",
        "--db",
        path(&fx.db()),
        "--out",
        path(&cues),
        path(&show),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert!(
        lines.iter().all(|v| v.get("play").is_none()),
        "the cover is not the recording: {lines:?}"
    );
    let unidentified: Vec<&serde_json::Value> =
        lines.iter().filter_map(|v| v.get("unidentified")).collect();
    assert_eq!(unidentified.len(), 1, "{lines:?}");
    let similar = unidentified[0]["similar"]
        .as_array()
        .expect("similar works");
    assert_eq!(similar.len(), 3, "{similar:?}");
    let scores: Vec<f64> = similar
        .iter()
        .map(|w| w["verification"].as_f64().expect("verification"))
        .collect();
    assert!(scores.windows(2).all(|s| s[0] >= s[1]), "{similar:?}");
    assert_eq!(similar[0]["track_id"], "song2", "{similar:?}");
    assert!(
        scores[0] >= f64::from(earmark_monitor::LIKELY_SAME_WORK) && scores[1] < 0.2,
        "{similar:?}"
    );
    // The cue sheet's review column says so, for song 2 only.
    let sheet = std::fs::read_dir(&cues)
        .expect("cues")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".cue.csv"))
        .map(|e| std::fs::read_to_string(e.path()).expect("cue sheet"))
        .expect("a cue sheet");
    assert_eq!(sheet.matches("likely the same work").count(), 1, "{sheet}");
    assert!(sheet.contains("song2 "), "{sheet}");
    for w in similar {
        let id = w["track_id"].as_str().expect("id");
        assert!(["song0", "song1", "song2", "song3"].contains(&id), "{w}");
    }
    assert!(
        unidentified[0]["embedding"]
            .as_array()
            .is_some_and(|e| e.len() > 100)
    );
}

#[test]
fn unknown_music_that_recurs_across_shows_is_grouped() {
    let fx = Fixture::songs(2, 30.0);
    fx.index();
    let sr = RATE as usize;
    // Two songs the catalog does not hold, over a held chord (music by the
    // loudness test too).
    let unknown = |seed: u64| over_chord(&earmark_engine::testutil::song(RATE, 30.0, seed));
    let (a, b) = (unknown(77), unknown(78));
    let shows = [
        ("show0", RATE, [&fx.songs[0].1[..20 * sr], &a[..]].concat()),
        // The same unknown song 5% faster in another show.
        (
            "show1",
            RATE * 21 / 20,
            [&fx.songs[1].1[..20 * sr], &a[..]].concat(),
        ),
        ("show2", RATE, [&fx.songs[0].1[..20 * sr], &b[..]].concat()),
    ];
    let mut files = Vec::new();
    for (name, rate, samples) in &shows {
        let file = fx.dir.path().join(format!("{name}.wav"));
        write_wav(&file, *rate, 1, samples).expect("write");
        files.push(file);
    }
    let out_dir = fx.dir.path().join("scans");
    let db = fx.db();
    let mut args = vec!["scan", "--db", path(&db), "--out", path(&out_dir)];
    args.extend(files.iter().map(|f| path(f)));
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut scans: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("scans")
        .filter_map(|e| e.ok().map(|e| e.path().display().to_string()))
        .filter(|p| p.ends_with(".plays.json"))
        .collect();
    scans.sort();
    let mut args = vec!["unknowns", "--json", "--db", path(&db)];
    args.extend(scans.iter().map(String::as_str));
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let groups: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let members = |g: &serde_json::Value| -> Vec<String> {
        let mut m: Vec<String> = g["passages"]
            .as_array()
            .expect("passages")
            .iter()
            .map(|p| {
                let source = p["source"].as_str().unwrap_or("");
                source.rsplit('/').next().unwrap_or("")[..5].to_owned()
            })
            .collect();
        m.sort();
        m
    };
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0]["shows"], 2, "{groups:?}");
    assert_eq!(members(&groups[0]), ["show0", "show1"]);
    assert_eq!(members(&groups[1]), ["show2"]);
}
