//! Killing `index add` half-way leaves the previous catalog intact.

use std::time::{Duration, Instant};

use crate::util::{Fixture, earmark, path, run, stderr, stdout};

#[test]
fn kill_during_ingest_keeps_the_previous_catalog() {
    let fx = Fixture::songs(2, 20.0);
    fx.index();
    // A second batch of 12 songs, added as one transaction: after a SIGKILL
    // at any moment the catalog holds 2 tracks or 14, never anything between
    // and never an unreadable state.
    let more = Fixture::songs_from(100, 12, 30.0);
    for delay_ms in [150, 600, 1_500] {
        let mut child = earmark()
            .args(["index", "add", "--jobs", "1", "--db", path(&fx.db())])
            .arg(more.music())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(delay_ms) {
            if child.try_wait().expect("poll").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().ok();
        child.wait().expect("wait");
        let out = run(&["index", "info", "--json", "--db", path(&fx.db())]);
        assert!(
            out.status.success(),
            "catalog unreadable after kill: {}",
            stderr(&out)
        );
        let info: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
        let tracks = info["tracks"].as_u64().expect("tracks");
        assert!(
            tracks == 2 || tracks == 14,
            "half a batch after a kill: {tracks}"
        );
        if tracks == 14 {
            break;
        }
    }
    // The earlier songs are still found.
    let clip = fx.clip(1, 3.0, 6.0, None);
    let out = run(&["identify", "--json", "--db", path(&fx.db()), path(&clip)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // And a new writer finishes the job.
    let out = fx.add(&more.music());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["index", "info", "--json", "--db", path(&fx.db())]);
    let info: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(info["tracks"], 14);
}
