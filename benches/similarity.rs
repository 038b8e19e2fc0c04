//! The similarity lane's costs: the embedding of a passage, and the
//! verification score (cross-similarity of beat chroma) of a passage against
//! a work, for passages of 1 and 4 minutes.

// A failed expectation in a benchmark setup is a bug in the benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};

use earmark_engine::chroma::{ChromaFrames, cross_similarity, embed_samples};
use earmark_engine::testutil::song;

const RATE: u32 = 16_000;

fn similarity(c: &mut Criterion) {
    let mut group = c.benchmark_group("similarity");
    group.sample_size(10);
    let minute = song(RATE, 60.0, 3);
    group.bench_function("embedding/60s", |b| {
        b.iter(|| embed_samples(&minute, RATE).unwrap())
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
