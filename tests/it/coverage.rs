//! Rights metadata, licences and cue sheets: the coverage of the dev venue
//! session's plays, bad files, and coverage decided while scanning and
//! monitoring.

use std::path::{Path, PathBuf};
use std::process::Command;

use earmark_engine::testutil::write_wav;

use crate::util::{Fixture, RATE, path, run, stderr, stdout};

/// Rights metadata, licences and earmark's plays of the dev venue session
/// (`session_A` of the dev corpus, scanned with `earmark scan --out`).
const SHOW: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures/show");

/// The tracks of the session, in play order.
const SESSION_TRACKS: [&str; 12] = [
    "A0064", "A0144", "A0036", "A0098", "A0125", "A0018", "A0004", "A0124", "A0070", "A0063",
    "A0052", "A0143",
];

fn show_file(name: &str) -> String {
    format!("{SHOW}/{name}")
}

/// A catalog whose recordings carry the ids of the session's tracks, with
/// the session's rights metadata and licences. Short generated songs stand
/// in for the music: a report judges plays, it does not listen.
fn show_catalog() -> Fixture {
    let fx = Fixture::songs(SESSION_TRACKS.len() as u64, 8.0);
    let mut csv = String::from("path,id,title,artist\n");
    for ((song, _), id) in fx.songs.iter().zip(SESSION_TRACKS) {
        csv.push_str(&format!("{},{id},{id} title,someone\n", song.display()));
    }
    let metadata = fx.dir.path().join("files.csv");
    std::fs::write(&metadata, csv).expect("write");
    let out = run(&[
        "index",
        "add",
        "--db",
        path(&fx.db()),
        "--metadata",
        path(&metadata),
        path(&fx.music()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&[
        "catalog",
        "import",
        "--db",
        path(&fx.db()),
        &show_file("rights.csv"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("11 added"), "{}", stdout(&out));
    let out = run(&[
        "licence",
        "add",
        "--db",
        path(&fx.db()),
        &show_file("blanket.toml"),
        &show_file("tracks.toml"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx
}

/// `earmark report` of the session's plays, judged by event `show-a`
/// recorded from 19:00 Shanghai time.
fn session_report(fx: &Fixture, format: &str, out: Option<&Path>) -> String {
    let scan = show_file("session_A.plays.json");
    let db = fx.db();
    let mut args = vec![
        "report",
        "--scan",
        &scan,
        "--db",
        path(&db),
        "--event",
        "show-a",
        "--recorded-at",
        "2026-11-28T19:00:00+08:00",
        "--format",
        format,
    ];
    if let Some(out) = out {
        args.extend(["--out", path(out)]);
    }
    let result = run(&args);
    assert!(result.status.success(), "{}", stderr(&result));
    stdout(&result)
}

#[test]
fn the_dev_venue_sessions_plays_get_the_expected_coverage() {
    let fx = show_catalog();
    let report: serde_json::Value =
        serde_json::from_str(&session_report(&fx, "json", None)).expect("json");
    let cues = report["cues"].as_array().expect("cues");
    let got: Vec<(String, String, String, String, bool)> = cues
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or("").to_owned();
            (
                match text("kind").as_str() {
                    "play" => text("track_id"),
                    kind => kind.to_owned(),
                },
                text("coverage"),
                text("reason"),
                text("licence"),
                c["inside_s"].is_number(),
            )
        })
        .collect();
    let expect = |id: &str, coverage: &str, reason: &str, licence: &str, partly: bool| {
        (
            id.into(),
            coverage.into(),
            reason.into(),
            licence.into(),
            partly,
        )
    };
    let covered = |id: &str| expect(id, "covered", "", "SHOW-A-BL", false);
    let review = expect("unidentified", "needs_review", "unidentified", "", false);
    let want = vec![
        covered("A0064"),
        covered("A0144"),
        expect("A0036", "not_covered", "work_excluded", "SHOW-A-BL", false),
        expect("A0098", "needs_review", "no_rights_metadata", "", false),
        expect("A0125", "covered", "", "SHOW-A-PT", false),
        covered("A0018"),
        covered("A0004"),
        review.clone(),
        covered("A0124"),
        expect(
            "A0070",
            "not_covered",
            "not_in_repertoire",
            "SHOW-A-BL",
            false,
        ),
        covered("A0063"),
        review,
        expect("A0052", "covered", "", "SHOW-A-BL", true),
        expect("A0143", "not_covered", "outside_period", "SHOW-A-BL", false),
    ];
    assert_eq!(got, want, "{report:#}");
    // Rights metadata fills the rows; the clock comes from --recorded-at
    // and shows in the licence's time zone.
    assert_eq!(cues[0]["iswc"], "T-300.000.064-2");
    assert_eq!(cues[0]["artists"], "Ensemble 64; Guest");
    assert_eq!(cues[0]["start"], "2026-11-28 19:00:08");
    let summary = &report["summary"];
    assert_eq!(summary["plays"], 12);
    assert_eq!(summary["not_covered"], 3);
    assert_eq!(summary["needs_review"], 3);
    assert_eq!(summary["partly_outside"], 1);

    let csv = session_report(&fx, "csv", None);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "kind,number,start,end,duration_s,start_s,end_s,track_id,title,artists,isrc,iswc,\
             coverage,reason,licence,inside_s,confidence,speed,track_start_s,clip,similar"
        )
    );
    assert_eq!(lines.count(), 14);
}

/// Pixels of `png` within a small distance of `rgb`.
fn pixels_like(png: &Path, rgb: [u8; 3]) -> (usize, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png).expect("open screenshot"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()].chunks_exact(channels);
    let total = pixels.len();
    let near = pixels
        .filter(|p| (0..3).all(|i| p[i].abs_diff(rgb[i]) <= 16))
        .count();
    (near, total)
}

#[test]
fn the_html_cue_sheet_shows_the_plays_in_chromium() {
    let fx = show_catalog();
    let page = fx.dir.path().join("show-a.html");
    session_report(&fx, "html", Some(&page));
    let html = std::fs::read_to_string(&page).expect("page");
    for id in ["Work A0036", "not covered", "SHOW-A-PT", "<svg"] {
        assert!(html.contains(id), "{id} missing from the page");
    }
    let shot = fx.dir.path().join("show-a.png");
    let status = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1100,900",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("chromium (scripts/setup.sh installs it)");
    assert!(status.success(), "chromium failed");
    let (white, total) = pixels_like(&shot, [255, 255, 255]);
    assert!(
        white < total * 95 / 100,
        "blank page: {white} of {total} white"
    );
    // The timeline and badges in each coverage's colour: 8 plays covered,
    // 3 not, 3 to review.
    for (what, rgb, at_least) in [
        ("covered", [0x2f, 0x9e, 0x44], 8 * 500),
        ("not covered", [0xe0, 0x31, 0x31], 3 * 500),
        ("needs review", [0xf5, 0x9f, 0x00], 3 * 300),
    ] {
        let (n, _) = pixels_like(&shot, rgb);
        assert!(n >= at_least, "{what}: {n} pixels of its colour");
    }
}

#[test]
fn bad_metadata_and_licence_files_are_named_and_change_nothing() {
    let fx = show_catalog();
    let db = fx.db();
    let before = session_report(&fx, "csv", None);
    let bad = |name: &str, text: &[u8]| -> PathBuf {
        let p = fx.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let cases: [(PathBuf, &[&str], &str); 6] = [
        (
            bad("dup.csv", b"id,managed\nA0064,no\nA0036,yes\nA0064,no\n"),
            &["catalog", "import"],
            "line 4, field id",
        ),
        (
            bad("cols.csv", b"id,title\nA0064,x\n"),
            &["catalog", "import"],
            "line 1, field managed",
        ),
        (
            bad("latin1.csv", b"id,managed,title\nA0064,no,Caf\xe9\n"),
            &["catalog", "import"],
            "line 2, field title",
        ),
        (
            bad(
                "date.toml",
                b"id = \"X\"\nkind = \"blanket\"\nlicensee = \"L\"\nevent = \"show-a\"\n\
                  time_zone = \"Asia/Shanghai\"\nfrom = \"2026-02-30T19:00\"\nto = \"2026-03-01\"\n",
            ),
            &["licence", "add"],
            "line 6, field from",
        ),
        (
            bad("dup-licence.toml", &std::fs::read(show_file("blanket.toml")).expect("read")),
            &["licence", "add"],
            "SHOW-A-BL is already stored",
        ),
        (
            bad("zone.json", b"{\"id\": \"X\", \"kind\": \"blanket\", \"licensee\": \"L\",\n\"event\": \"e\", \"time_zone\": \"Asia/Atlantis\",\n\"from\": \"2026-11-28\", \"to\": \"2026-11-29\"}"),
            &["licence", "add"],
            "line 2, field time_zone",
        ),
    ];
    for (file, command, message) in cases {
        let mut args: Vec<&str> = command.to_vec();
        args.extend(["--db", path(&db), path(&file)]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{message}: {}", stdout(&out));
        assert!(
            stderr(&out).contains(message) && stderr(&out).contains(path(&file)),
            "want {message:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        session_report(&fx, "csv", None),
        before,
        "a refused file changed the catalog"
    );
    // Rows naming no indexed recording are listed; the others update.
    let rows = bad("update.csv", b"id,managed\nA0036,yes\nZ9999,yes\n");
    let out = run(&["catalog", "import", "--db", path(&db), path(&rows)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("line 3: id Z9999"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("1 updated"), "{}", stdout(&out));
}

#[test]
fn scans_and_monitors_judge_plays_by_the_events_licences() {
    let fx = Fixture::songs(2, 30.0);
    fx.index();
    fx.license(
        "id,managed\nsong0,yes\nsong1,no\n",
        r#"{"id": "L1", "kind": "blanket", "licensee": "L", "event": "e",
            "from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}"#,
    );
    let show: Vec<f32> = [&fx.songs[0].1, &fx.songs[1].1]
        .into_iter()
        .flat_map(|s| s.iter().copied())
        .collect();
    let recording = fx.dir.path().join("show.wav");
    write_wav(&recording, RATE, 1, &show).expect("write");
    let want = [
        ("song0", "covered", ""),
        ("song1", "not_covered", "not_in_repertoire"),
    ];
    let judged = |plays: Vec<serde_json::Value>| -> Vec<(String, String, String)> {
        plays
            .iter()
            .map(|p| {
                let d = &p["coverage"];
                let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
                (
                    text(&p["track_id"]),
                    text(&d["coverage"]),
                    text(&d["reason"]),
                )
            })
            .collect()
    };
    let as_tuples = |w: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        w.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
    };

    let out = run(&[
        "scan",
        "--json",
        "--event",
        "e",
        "--db",
        path(&fx.db()),
        path(&recording),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plays = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("play").is_some())
        .collect();
    assert_eq!(judged(plays), as_tuples(&want));

    let log = fx.dir.path().join("events.jsonl");
    fx.monitor(&log, &recording, &["--event", "e"]);
    let text = std::fs::read_to_string(&log).expect("log");
    let ended = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "play_ended")
        .collect();
    assert_eq!(judged(ended), as_tuples(&want), "{text}");
}
