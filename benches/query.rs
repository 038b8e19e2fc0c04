//! Query latency of a 10 s clip against catalogs of 100, 1,000 and 10,000
//! tracks. The catalogs are spliced from the real fingerprints of generated
//! songs: 5 s pieces of random songs, each shifted by a random number of
//! bins, so hash and postings statistics look like music, not uniform noise.

// A failed expectation in a benchmark setup is a bug in the benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};

use earmark_engine::hash::PairFields;
use earmark_engine::testutil::{Rng, mix_at_snr, noise, song};
use earmark_engine::{Fingerprint, FingerprintOptions, Landmark, Peak, fingerprint_samples};
use earmark_index::{Catalog, CatalogWriter, MatchOptions, Matcher, NewTrack, TrackMeta};

const RATE: u32 = 8_000;
const BASE_SONGS: u64 = 20;
const PIECE_FRAMES: u32 = 155;

fn fingerprint(samples: &[f32], options: &FingerprintOptions) -> Fingerprint {
    fingerprint_samples(samples, RATE, options).expect("fingerprint")
}

fn track(name: String, fp: Fingerprint, seconds: f64) -> NewTrack {
    NewTrack {
        meta: TrackMeta {
            external_id: name.clone(),
            title: name.clone(),
            ..TrackMeta::default()
        },
        duration_s: seconds,
        path: name.clone(),
        content_hash: name,
        landmarks: fp.landmarks,
        peaks: fp.peaks,
        embedding: None,
        beat_chroma: Vec::new(),
    }
}

/// Six 5 s pieces of random base songs, each moved by 2 to 8 bins up or
/// down (never 0 or 1, which would copy a base song's audio).
fn spliced(bases: &[Fingerprint], rng: &mut Rng) -> Fingerprint {
    let mut out = Fingerprint::default();
    for piece in 0..6u32 {
        let base = &bases[rng.below(bases.len())];
        let from = rng.below(6) as u32 * PIECE_FRAMES;
        let shift = (2 + rng.below(7) as i32) * if rng.below(2) == 0 { 1 } else { -1 };
        let moved = |frame: u32| frame - from + piece * PIECE_FRAMES;
        let inside = |frame: u32| (from..from + PIECE_FRAMES).contains(&frame);
        out.landmarks.extend(
            base.landmarks
                .iter()
                .filter(|l| inside(l.frame))
                .filter_map(|l| {
                    let mut f = PairFields::unpack(l.hash);
                    f.bin = (f.bin as i32 + shift).max(0) as u32;
                    f.pack().map(|hash| Landmark {
                        hash,
                        frame: moved(l.frame),
                    })
                }),
        );
        out.peaks
            .extend(base.peaks.iter().filter(|p| inside(p.frame)).map(|p| Peak {
                frame: moved(p.frame),
                bin: (p.bin + shift as f32).max(0.0),
                ..*p
            }));
    }
    out
}

fn catalog(dir: &std::path::Path, tracks: usize, bases: &[Fingerprint]) -> Catalog {
    let mut writer = CatalogWriter::open(dir, "bench").expect("writer");
    let mut batch: Vec<NewTrack> = bases
        .iter()
        .enumerate()
        .map(|(i, fp)| track(format!("base{i}"), fp.clone(), 60.0))
        .collect();
    let mut rng = Rng::new(tracks as u64);
    for i in bases.len()..tracks {
        batch.push(track(format!("spliced{i}"), spliced(bases, &mut rng), 30.0));
        if batch.len() == 2_000 {
            writer.commit(std::mem::take(&mut batch)).expect("commit");
        }
    }
    writer.commit(batch).expect("commit");
    drop(writer);
    Catalog::open(dir).expect("open")
}

fn query(c: &mut Criterion) {
    let songs: Vec<Vec<f32>> = (0..BASE_SONGS).map(|s| song(RATE, 60.0, 100 + s)).collect();
    let bases: Vec<Fingerprint> = songs
        .iter()
        .map(|s| fingerprint(s, &FingerprintOptions::reference()))
        .collect();
    let clip = &songs[3][RATE as usize * 20..RATE as usize * 30];
    let clip = mix_at_snr(clip, &noise(RATE, 10.0, 1.0, 5), 5.0);
    let query_fp = fingerprint(&clip, &FingerprintOptions::query());
    let mut group = c.benchmark_group("query");
    for tracks in [100, 1_000, 10_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = catalog(dir.path(), tracks, &bases);
        let mut matcher = Matcher::new(&catalog, MatchOptions::default());
        let id = matcher.identify(&query_fp);
        assert_eq!(
            id.best.map(|m| m.candidate.track.0),
            Some(3),
            "the clip must be identified in the {tracks}-track catalog"
        );
        group.bench_function(format!("10s/{tracks}_tracks/match"), |b| {
            b.iter(|| matcher.identify(&query_fp))
        });
        group.bench_function(format!("10s/{tracks}_tracks/fingerprint+match"), |b| {
            b.iter(|| matcher.identify(&fingerprint(&clip, &FingerprintOptions::query())))
        });
    }
    group.finish();
}

criterion_group!(benches, query);
criterion_main!(benches);
