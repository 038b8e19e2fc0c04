//! Fingerprinting throughput: seconds of audio per second on one core, with
//! and without decoding. Criterion reports time per iteration; the throughput
//! line gives elements (audio samples) per second: divide by the sample rate
//! for "x real time".

// A failed expectation in a benchmark setup is a bug in the benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use earmark_engine::testutil::{song, write_wav};
use earmark_engine::{AudioFile, FingerprintOptions, fingerprint_file, fingerprint_samples};

const SECONDS: f32 = 60.0;

fn fingerprint(samples: &[f32], rate: u32, options: &FingerprintOptions) -> usize {
    let out = fingerprint_samples(samples, rate, options).expect("fingerprint");
    out.landmarks.len()
}

fn without_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("fingerprint");
    for rate in [8_000u32, 44_100] {
        let samples = song(rate, SECONDS, 7);
        group.throughput(Throughput::Elements(samples.len() as u64));
        for (name, options) in [
            ("reference", FingerprintOptions::reference()),
            ("query", FingerprintOptions::query()),
        ] {
            group.bench_function(format!("{name}/{rate}Hz/60s"), |b| {
                b.iter(|| fingerprint(&samples, rate, &options))
            });
        }
    }
    group.finish();
}

/// Encodes a generated song with sox, if sox can write `ext`.
fn encoded(dir: &Path, ext: &str) -> Option<PathBuf> {
    let wav = dir.join("song.wav");
    if !wav.exists() {
        let stereo: Vec<f32> = song(44_100, SECONDS, 8)
            .iter()
            .flat_map(|&s| [s, s])
            .collect();
        write_wav(&wav, 44_100, 2, &stereo).ok()?;
    }
    let out = dir.join(format!("song.{ext}"));
    let ok = Command::new("sox")
        .arg(&wav)
        .arg(&out)
        .status()
        .ok()?
        .success();
    ok.then_some(out)
}

fn with_decode(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("decode+fingerprint");
    for ext in ["ogg", "mp3"] {
        let Some(path) = encoded(dir.path(), ext) else {
            eprintln!("skipping {ext}: sox cannot write it (install libsox-fmt-all)");
            continue;
        };
        let file = AudioFile::open(&path).expect("open");
        let samples = (SECONDS * file.rate_hz() as f32) as u64;
        group.throughput(Throughput::Elements(samples));
        let options = FingerprintOptions::reference();
        group.bench_function(format!("{ext}/60s"), |b| {
            b.iter(|| fingerprint_file(&path, &options).expect("fingerprint"))
        });
        group.bench_function(format!("{ext}/60s/decode-only"), |b| {
            b.iter(|| {
                let mut f = AudioFile::open(&path).expect("open");
                let mut n = 0;
                while let Some(s) = f.next_mono().expect("decode") {
                    n += s.len();
                }
                n
            })
        });
    }
    group.finish();
}

criterion_group!(benches, without_decode, with_decode);
criterion_main!(benches);
