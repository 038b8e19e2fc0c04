//! The command line's main paths: index, identify, exit codes, JSON.

use crate::util::{Fixture, earmark, path, run, stderr, stdout};

#[test]
fn identify_finds_each_clip_at_its_offset() {
    let fx = Fixture::songs(4, 40.0);
    fx.index();
    for (i, start) in [(0, 5.0), (1, 12.5), (2, 20.0), (3, 30.0)] {
        let clip = fx.clip(i, start, 8.0, Some(10.0));
        let out = run(&["identify", "--json", "--db", path(&fx.db()), path(&clip)]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
        assert_eq!(line["match"]["track_id"], format!("song{i}"));
        let offset = line["match"]["offset_s"].as_f64().expect("offset");
        assert!(
            (offset - start as f64).abs() < 0.1,
            "song{i}: offset {offset}, expected {start}: {line}"
        );
        assert!(
            line["match"]["confidence"]
                .as_f64()
                .is_some_and(|c| c > 0.5)
        );
        assert!(line["elapsed_ms"].as_f64().is_some());
        assert!(
            line["match"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(&format!("song{i}.wav")))
        );
    }
}

#[test]
fn unknown_audio_is_no_match_with_exit_code_1() {
    let fx = Fixture::songs(3, 30.0);
    fx.index();
    let other = Fixture::songs(5, 30.0);
    // Song 4 of the second fixture was never indexed.
    let clip = other.clip(4, 3.0, 10.0, None);
    let out = run(&["identify", "--json", "--db", path(&fx.db()), path(&clip)]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert!(line["match"].is_null());
}

#[test]
fn adding_the_same_files_again_changes_nothing() {
    let fx = Fixture::songs(2, 20.0);
    fx.index();
    let out = fx.add(&fx.music());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("added 0 tracks"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("2 already indexed"),
        "{}",
        stdout(&out)
    );
    let info = run(&["index", "info", "--json", "--db", path(&fx.db())]);
    let info: serde_json::Value = serde_json::from_str(stdout(&info).trim()).expect("json");
    assert_eq!(info["tracks"], 2);
}

#[test]
fn a_second_recording_under_a_taken_id_is_renamed_and_said_so() {
    let fx = Fixture::songs(1, 20.0);
    fx.index();
    // Another song in a file of the same name, elsewhere.
    let other = Fixture::songs_from(9, 1, 20.0);
    let out = fx.add(&other.music());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("added 1 tracks"), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(
        said.contains("song0.wav: id song0 is another recording's; indexed as song0-"),
        "{said}"
    );
    let clip = other.clip(0, 4.0, 8.0, None);
    let out = run(&["identify", "--json", "--db", path(&fx.db()), path(&clip)]);
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    let id = line["match"]["track_id"].as_str().unwrap_or_default();
    assert!(id.starts_with("song0-"), "{line}");
}

#[test]
fn metadata_csv_names_the_tracks() {
    let fx = Fixture::songs(2, 20.0);
    let csv = fx.dir.path().join("meta.csv");
    let song0 = fx.songs[0].0.canonicalize().expect("canonical");
    std::fs::write(
        &csv,
        format!(
            "path,id,title,artist,isrc,extra\n{},W-001,\"Walk, Don't Run\",The Testers,CNA001234567,x\n",
            song0.display()
        ),
    )
    .expect("write csv");
    let out = run(&[
        "index",
        "add",
        "--db",
        path(&fx.db()),
        "--metadata",
        path(&csv),
        path(&fx.music()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let clip = fx.clip(0, 4.0, 6.0, None);
    let out = run(&["identify", "--json", "--db", path(&fx.db()), path(&clip)]);
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(line["match"]["track_id"], "W-001");
    assert_eq!(line["match"]["title"], "Walk, Don't Run");
    assert_eq!(line["match"]["artist"], "The Testers");
    assert_eq!(line["match"]["isrc"], "CNA001234567");
}

#[test]
fn a_bulk_load_ends_in_one_segment_and_a_small_addition_adds_one() {
    // Three commits of up to 64 files.
    let fx = Fixture::songs(130, 4.0);
    let segments = || {
        let out = run(&["index", "info", "--json", "--db", path(&fx.db())]);
        let info: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
        info["segments"].as_u64().expect("segments")
    };
    let out = fx.add(&fx.music());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("into one"), "{}", stdout(&out));
    assert_eq!(segments(), 1);
    let more = Fixture::songs_from(131, 1, 4.0);
    let out = fx.add(&more.music());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(segments(), 2, "{}", stdout(&out));
    let clip = fx.clip(7, 0.5, 3.0, None);
    let out = run(&["identify", "--json", "--db", path(&fx.db()), path(&clip)]);
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(line["match"]["track_id"], "song7");
}

#[test]
fn index_info_reports_the_catalog() {
    let fx = Fixture::songs(2, 20.0);
    fx.index();
    let out = run(&["index", "info", "--json", "--db", path(&fx.db())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(info["tracks"], 2);
    assert!((info["hours"].as_f64().expect("hours") - 40.0 / 3600.0).abs() < 1e-3);
    assert!(info["postings"].as_u64().is_some_and(|p| p > 100));
    assert!(info["bytes_on_disk"].as_u64().is_some_and(|b| b > 1_000));
}

#[test]
fn a_reader_that_stops_reading_ends_the_command_quietly() {
    let fx = Fixture::songs(1, 20.0);
    fx.index();
    let clip = fx.clip(0, 2.0, 15.0, None);
    let log = fx.dir.path().join("events.jsonl");
    let db = fx.db();
    let db = path(&db);
    for args in [
        &["index", "info", "--db", db][..],
        &["scan", "--db", db, path(&clip)],
        &[
            "monitor",
            "--db",
            db,
            "--plain",
            "--log",
            path(&log),
            "--input",
            path(&clip),
        ],
    ] {
        // The pipe's reading end is closed before the command prints a thing.
        let mut child = earmark()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // The monitor closed its log as on Ctrl-C.
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.lines().last().is_some_and(|l| l.contains("run_ended")),
        "{text}"
    );
}

#[test]
fn nonsense_numbers_are_refused_as_usage_errors() {
    for args in [
        &["identify", "--db", "db", "--max-seconds", "0", "x.wav"][..],
        &["identify", "--db", "db", "--max-seconds", "NaN", "x.wav"],
        &["index", "add", "--db", "db", "--jobs", "0", "x.wav"],
        &["index", "add", "--db", "db", "--jobs", "100000", "x.wav"],
        &[
            "monitor",
            "--db",
            "db",
            "--duration",
            "0",
            "--input",
            "x.wav",
        ],
        &[
            "eval-session",
            "--timeline",
            "t.csv",
            "--log",
            "l",
            "--tolerance-s",
            "inf",
        ],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("invalid value"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["index", "--help"],
        &["index", "add", "--help"],
        &["index", "info", "--help"],
        &["identify", "--help"],
        &["eval", "--help"],
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).contains("Usage"), "{args:?}");
    }
}

#[test]
fn missing_catalog_is_an_error_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["identify", "--db", path(&dir.path().join("nope")), "x.wav"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no catalog"), "{}", stderr(&out));
}
