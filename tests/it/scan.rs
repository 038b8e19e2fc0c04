//! `earmark scan` turns a recording into plays.

use earmark_engine::testutil::{mix_at_snr, noise, write_wav};

use crate::util::{Fixture, RATE, path, run, stderr, stdout};

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

    let out = run(&["scan", "--json", "--db", path(&fx.db()), path(&recording)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plays: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(plays.len(), 2, "{}", stdout(&out));
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
