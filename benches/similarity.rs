//! The similarity lane's costs: what collecting chroma adds to a catalog
//! track's fingerprint (with its embedding and beat chroma), the embedding of
//! a passage, and the verification score (cross-similarity of beat chroma) of
//! a passage against a work, for passages of 1 and 4 minutes.

// A failed expectation in a benchmark setup is a bug in the benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};

use earmark_engine::chroma::{ChromaFrames, cross_similarity};
use earmark_engine::testutil::song;
use earmark_engine::{Fingerprint, FingerprintOptions, Fingerprinter};

const RATE: u32 = 16_000;

fn similarity(c: &mut Criterion) {
    let mut group = c.benchmark_group("similarity");
    group.sample_size(10);
    let music = song(44_100, 60.0, 7);
    for chroma in [false, true] {
        let options = FingerprintOptions {
            chroma,
            ..FingerprintOptions::reference()
        };
        let name = if chroma { "with" } else { "without" };
        group.bench_function(format!("reference/{name}-similarity/44100Hz/60s"), |b| {
            b.iter(|| {
                let mut fp = Fingerprinter::try_new(&options, 44_100).unwrap();
                let mut out = Fingerprint::default();
                fp.push(&music, &mut out);
                fp.flush(&mut out);
                let kept = fp.take_chroma();
                let sketch = kept.map(|c| (c.embedding(0, c.len()), c.beat_chroma(0, c.len())));
                (out.landmarks.len(), sketch)
            })
        });
    }
    let minute = song(RATE, 60.0, 3);
    group.bench_function("embedding/60s", |b| {
        b.iter(|| {
            let frames = ChromaFrames::of_samples(&minute, RATE).unwrap();
            frames.embedding(0, frames.len())
        })
    });
    for minutes in [1.0f32, 4.0] {
        let beats = |seed| {
            let frames = ChromaFrames::of_samples(&song(RATE, 60.0 * minutes, seed), RATE).unwrap();
            frames.beat_chroma(0, frames.len())
        };
        let (passage, work) = (beats(5), beats(6));
        group.bench_function(
            format!(
                "verification/{minutes}min-{}x{}beats",
                passage.len(),
                work.len()
            ),
            |b| b.iter(|| cross_similarity(&passage, &work)),
        );
    }
    group.finish();
}

criterion_group!(benches, similarity);
criterion_main!(benches);
