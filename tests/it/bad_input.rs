//! Bad input never crashes earmark: each gets a clear error or a clean
//! "no match", and odd but valid audio is still identified.

use std::path::{Path, PathBuf};

use earmark_engine::testutil::{song, write_wav};

use crate::util::{Fixture, path, run, stderr, stdout};

fn write_float_wav(path: &Path, rate: u32, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create");
    for &s in samples {
        w.write_sample(s).expect("sample");
    }
    w.finalize().expect("finalize");
}

/// Identifies `file` and checks the outcome is orderly; returns the exit code.
fn identify(db: &Path, file: &Path) -> i32 {
    let out = run(&["identify", "--db", path(db), path(file)]);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{}: {err}", file.display());
    let code = out.status.code().expect("exit code");
    match code {
        0 | 1 => assert!(stdout(&out).starts_with(path(file)), "{}", stdout(&out)),
        2 => {
            let name = file.file_name().and_then(|n| n.to_str()).expect("name");
            assert!(err.contains(name), "error must name the file: {err}");
            assert_eq!(err.trim().lines().count(), 2, "one line per problem: {err}");
        }
        other => panic!("{}: exit code {other}", file.display()),
    }
    code
}

struct Bad {
    fx: Fixture,
}

impl Bad {
    fn new() -> Self {
        let fx = Fixture::songs(2, 30.0);
        fx.index();
        Self { fx }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.fx.dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }
}

#[test]
fn broken_and_odd_files_are_handled() {
    let bad = Bad::new();
    let db = bad.fx.db();
    let good = std::fs::read(bad.fx.clip(0, 2.0, 6.0, None)).expect("read clip");

    // Errors (exit 2) naming the file.
    assert_eq!(identify(&db, &bad.file("empty.wav", b"")), 2);
    assert_eq!(
        identify(&db, &bad.file("notes.txt", b"this is not audio at all\n")),
        2
    );
    let garbage: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_eq!(identify(&db, &bad.file("garbage.ogg", &garbage)), 2);
    assert_eq!(identify(&db, &bad.file("header-only.wav", &good[..30])), 2);
    assert_eq!(
        identify(&db, &bad.fx.dir.path().join("does-not-exist.flac")),
        2
    );

    // A file cut short keeps what it has: still identified.
    assert_eq!(
        identify(&db, &bad.file("truncated.wav", &good[..good.len() / 2])),
        0
    );
    // So does a recording whose recorder died before writing its sizes.
    let mut unfinished = good.clone();
    let data = unfinished
        .windows(4)
        .position(|w| w == b"data")
        .expect("data");
    for at in [4, data + 4] {
        unfinished[at..at + 4].fill(0);
    }
    assert_eq!(identify(&db, &bad.file("unfinished.wav", &unfinished)), 0);

    // Valid audio without music: a clean "no match".
    let silent = bad.fx.dir.path().join("silent.wav");
    write_wav(&silent, 44_100, 1, &vec![0.0; 441_000]).expect("write");
    assert_eq!(identify(&db, &silent), 1);
    let one = bad.fx.dir.path().join("one-sample.wav");
    write_wav(&one, 44_100, 1, &[0.5]).expect("write");
    assert_eq!(identify(&db, &one), 1);
    let nan = bad.fx.dir.path().join("nan.wav");
    let mut samples = song(44_100, 8.0, 1)[44_100 * 2..].to_vec();
    for s in samples.iter_mut().step_by(7) {
        *s = f32::NAN;
    }
    samples[100] = f32::INFINITY;
    write_float_wav(&nan, 44_100, &samples);
    assert!(identify(&db, &nan) <= 1);
}

#[test]
fn odd_rates_and_channel_counts_are_identified() {
    let bad = Bad::new();
    let db = bad.fx.db();
    // The same music rendered at other rates: seed 1 is `song0`.
    for rate in [8_000, 192_000] {
        let p = bad.fx.dir.path().join(format!("rate-{rate}.wav"));
        let s = song(rate, 12.0, 1);
        write_wav(&p, rate, 1, &s[rate as usize * 3..]).expect("write");
        assert_eq!(identify(&db, &p), 0, "{rate} Hz");
    }
    let six = bad.fx.dir.path().join("six-channels.wav");
    let s = song(48_000, 10.0, 2);
    let frames: Vec<f32> = s[48_000..]
        .iter()
        .flat_map(|&x| [x, x * 0.5, x * 0.7, 0.0, x * 0.2, x])
        .collect();
    write_wav(&six, 48_000, 6, &frames).expect("write");
    assert_eq!(identify(&db, &six), 0);
}

#[test]
fn a_batch_with_bad_files_indexes_the_good_ones() {
    let fx = Fixture::songs(2, 20.0);
    let music = fx.music();
    std::fs::write(music.join("broken.mp3"), b"ID3 but nothing else").expect("write");
    std::fs::write(music.join("empty.flac"), b"").expect("write");
    let silent = music.join("silence.wav");
    write_wav(&silent, 22_050, 1, &vec![0.0; 22_050 * 5]).expect("write");
    let out = run(&["index", "add", "--db", path(&fx.db()), path(&music)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for name in ["broken.mp3", "empty.flac", "silence.wav"] {
        assert!(err.contains(name), "{name} not reported: {err}");
    }
    assert!(!err.contains("panicked"));
    assert!(stdout(&out).contains("added 2 tracks"), "{}", stdout(&out));
    let info = run(&["index", "info", "--json", "--db", path(&fx.db())]);
    let info: serde_json::Value = serde_json::from_str(stdout(&info).trim()).expect("json");
    assert_eq!(info["tracks"], 2);
}

#[test]
fn a_corrupted_index_file_is_detected() {
    let fx = Fixture::songs(1, 20.0);
    fx.index();
    let verified = run(&["index", "verify", "--db", path(&fx.db())]);
    assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));
    let segment = std::fs::read_dir(fx.db())
        .expect("read db")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "post"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&segment, bytes).expect("write");
    let out = run(&["index", "verify", "--db", path(&fx.db())]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("checksum") && err.contains(".post"), "{err}");
}
