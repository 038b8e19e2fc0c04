//! Shared helpers: running the binary and making audio fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use earmark_engine::testutil::{mix_at_snr, noise, song, tone, write_wav};

/// Sample rate of the generated songs.
pub const RATE: u32 = 44_100;

/// The binary under test.
pub fn earmark() -> Command {
    Command::new(env!("CARGO_BIN_EXE_earmark"))
}

/// Runs `earmark` with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    earmark().args(args).output().expect("run earmark")
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A directory of generated songs and a catalog built from them.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub songs: Vec<(PathBuf, Vec<f32>)>,
}

impl Fixture {
    /// `n` mono songs of `seconds` each, written as stereo WAV.
    pub fn songs(n: u64, seconds: f32) -> Self {
        Self::songs_from(1, n, seconds)
    }

    /// As [`Fixture::songs`], from generator seed `first` on: fixtures with
    /// disjoint seeds hold different music.
    pub fn songs_from(first: u64, n: u64, seconds: f32) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("music")).expect("mkdir");
        let songs = (0..n)
            .map(|seed| {
                let mono = song(RATE, seconds, first + seed);
                let stereo: Vec<f32> = mono.iter().flat_map(|&s| [s, s * 0.8]).collect();
                let path = dir.path().join("music").join(format!("song{seed}.wav"));
                write_wav(&path, RATE, 2, &stereo).expect("write song");
                (path, mono)
            })
            .collect();
        Self { dir, songs }
    }

    /// The catalog directory.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    /// The folder of songs.
    pub fn music(&self) -> PathBuf {
        self.dir.path().join("music")
    }

    /// Runs `index add` of `music` into this fixture's catalog.
    pub fn add(&self, music: &Path) -> Output {
        run(&["index", "add", "--db", path(&self.db()), path(music)])
    }

    /// Indexes every song and checks that it worked.
    pub fn index(&self) {
        let out = self.add(&self.music());
        assert!(out.status.success(), "index add failed: {}", stderr(&out));
    }

    /// Imports rights metadata (`rights_csv`, the file's text) and adds one
    /// licence (`licence_json`) to this fixture's catalog.
    pub fn license(&self, rights_csv: &str, licence_json: &str) {
        let rights = self.dir.path().join("rights.csv");
        std::fs::write(&rights, rights_csv).expect("write");
        let licence = self.dir.path().join("licence.json");
        std::fs::write(&licence, licence_json).expect("write");
        let db = self.db();
        for args in [
            vec!["catalog", "import", "--db", path(&db), path(&rights)],
            vec!["licence", "add", "--db", path(&db), path(&licence)],
        ] {
            let out = run(&args);
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }

    /// Runs `earmark monitor` on the recording `input` as fast as it
    /// decodes, with the `extra` arguments, logging to `log`, and checks
    /// that it worked.
    pub fn monitor(&self, log: &Path, input: &Path, extra: &[&str]) {
        let db = self.db();
        let mut args = vec!["monitor", "--plain", "--db", path(&db), "--log", path(log)];
        args.extend_from_slice(extra);
        args.extend(["--input", path(input)]);
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// Writes `seconds` of song `i` from `start_s`, with white noise at
    /// `snr_db` if given, as a mono WAV, and returns its path.
    pub fn clip(&self, i: usize, start_s: f32, seconds: f32, snr_db: Option<f32>) -> PathBuf {
        let samples = &self.songs[i].1;
        let a = (start_s * RATE as f32) as usize;
        let b = a + (seconds * RATE as f32) as usize;
        let mut clip = samples[a..b].to_vec();
        if let Some(snr) = snr_db {
            clip = mix_at_snr(&clip, &noise(RATE, seconds, 1.0, 99), snr);
        }
        let path = self
            .dir
            .path()
            .join(format!("clip-{i}-{start_s}-{seconds}.wav"));
        write_wav(&path, RATE, 1, &clip).expect("write clip");
        path
    }
}

/// `song` over a quiet held A-major chord: music that keeps sounding
/// between notes (so the loudness test of unidentified music takes it).
pub fn over_chord(song: &[f32]) -> Vec<f32> {
    let seconds = song.len() as f32 / RATE as f32;
    let pad = [220.0, 277.0, 330.0].map(|f| tone(RATE, f, seconds + 1.0, 0.05));
    (0..song.len())
        .map(|i| song[i] + pad.iter().map(|p| p[i]).sum::<f32>())
        .collect()
}

/// A path as `&str` for command lines (test paths are always UTF-8).
pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
