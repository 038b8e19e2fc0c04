//! The path for music played faster, slower, higher or lower.
//!
//! Triplet hashes do not change with tempo or pitch, but their hits do not
//! line up on one offset either: under a tempo change the track frame of a
//! hit is `start + tempo * query frame`. For each track with enough triplet
//! hits, a Hough search over a grid of tempos finds the line that most hits
//! lie on, and a least-squares fit through those hits refines it. The pitch
//! factor is then read off the peaks themselves: the ratio between each track
//! peak and the query peaks near where the line maps it piles up at the true
//! factor. The resulting alignment is verified like any other.

use earmark_engine::Peak;

use crate::constellation::PeakList;
use crate::verify::Alignment;

/// Tempos searched, as track frames per query frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TempoRange {
    /// Slowest tempo tried.
    pub min: f64,
    /// Fastest tempo tried.
    pub max: f64,
    /// Grid step.
    pub step: f64,
}

/// Finds the line `track = start + tempo * query` through most `(track
/// frame, query frame)` hits; returns it, how many hits lie on it and the
/// mean query frame of those hits, or `None` when the line lies at an end of
/// the range.
pub fn fit_tempo(hits: &[(u32, u32)], range: TempoRange) -> Option<(Alignment, u32, f64)> {
    if hits.len() < 3 {
        return None;
    }
    let max_query = hits.iter().map(|h| h.1).max().unwrap_or(0) as f64;
    let max_track = hits.iter().map(|h| h.0).max().unwrap_or(0) as f64;
    // A neighbouring grid tempo drifts by step / 2 per frame at most.
    let width = 2.0 + range.step * max_query / 2.0;
    // Starts fall in [-max tempo * max query, max track]; count them in bins
    // of `width` and take the best two neighbouring bins (no sorting). Only
    // the bins the hits fell in are read and cleared: there are far more
    // bins than hits.
    let low = -range.max * max_query;
    let bins = ((max_track - low) / width) as usize + 2;
    let mut histogram = vec![0u32; bins];
    let mut touched = Vec::with_capacity(hits.len());
    // (tempo, first bin of the pair, hits in the pair)
    let mut best: Option<(f64, usize, u32)> = None;
    let steps = ((range.max - range.min) / range.step).round() as usize;
    for k in 0..=steps {
        let tempo = range.min + k as f64 * range.step;
        touched.clear();
        for &(r, q) in hits {
            let start = r as f64 - tempo * q as f64;
            // Bins are far fewer than 2^32: u32 converts in fewer steps.
            let bin = ((start - low) / width) as u32 as usize;
            histogram[bin] += 1;
            touched.push(bin);
        }
        // The fullest pair, the first of equals.
        let mut fullest = (0u32, usize::MAX);
        for &bin in &touched {
            for first in [bin.saturating_sub(1), bin] {
                let count = histogram[first] + histogram[first + 1];
                if count > fullest.0 || (count == fullest.0 && first < fullest.1) {
                    fullest = (count, first);
                }
            }
        }
        if best.is_none_or(|x| fullest.0 > x.2) {
            best = Some((tempo, fullest.1, fullest.0));
        }
        for &bin in &touched {
            histogram[bin] = 0;
        }
    }
    let (tempo, first, _) = best?;
    let start = low + (first as f64 + 1.0) * width;
    // Least squares through the hits near the line.
    let near: Vec<(f64, f64)> = hits
        .iter()
        .map(|&(r, q)| (q as f64, r as f64))
        .filter(|&(q, r)| (r - start - tempo * q).abs() <= width)
        .collect();
    let n = near.len() as f64;
    let (mq, mr) = near
        .iter()
        .fold((0.0, 0.0), |(a, b), &(q, r)| (a + q / n, b + r / n));
    let (sqq, sqr) = near.iter().fold((0.0, 0.0), |(a, b), &(q, r)| {
        (a + (q - mq) * (q - mq), b + (q - mq) * (r - mr))
    });
    let tempo = if sqq > 0.0 { sqr / sqq } else { tempo };
    // A line beyond the range, or within half a step of its ends, is the
    // search running out of range, not a measurement: chance alignments of
    // noise end up there.
    let inside = range.min + range.step / 2.0..=range.max - range.step / 2.0;
    if !inside.contains(&tempo) {
        return None;
    }
    let alignment = Alignment {
        start_frame: mr - tempo * mq,
        tempo,
        pitch: 1.0,
    };
    Some((alignment, near.len() as u32, mq))
}

/// How strongly `(track frame, query frame)` hits line up: the most hits
/// whose offsets fall within two neighbouring bands of `width` frames (wide
/// enough for the drift of any searched tempo over the query), above the
/// number that a band holds by chance when `chance` hits spread over `span`
/// frames of offset, in standard deviations. `scratch` is working space (a
/// caller ranking many tracks reuses it). Hits spread over far more bands
/// than there are hits (a large catalog's tracks: a few hits over hundreds
/// of bands) have their bands sorted; denser ones are counted band by band.
pub fn band_excess(
    hits: &[(u32, u32)],
    chance: f64,
    width: f64,
    span: f64,
    scratch: &mut Vec<u32>,
) -> f64 {
    let Some((low, high)) = offset_range(hits) else {
        return 0.0;
    };
    let most = match band(high, low, width) as usize > SPARSE_BANDS_PER_HIT * hits.len() {
        true => fullest_pair_sorted(hits, low, width, scratch),
        false => {
            let bands = Bands::count(hits, (low, high), width, scratch);
            bands.pairs().max().unwrap_or(0)
        }
    };
    excess(most, chance, width, span)
}

/// The most [`band_excess`] can give `hits` hits: all of them in one pair
/// of bands. A caller ranking many tracks skips those whose bound falls
/// short of the ones it keeps.
pub fn band_excess_bound(hits: usize, chance: f64, width: f64, span: f64) -> f64 {
    excess(hits as u32, chance, width, span)
}

/// `most` hits in two neighbouring bands above what chance puts there of
/// `chance` hits, in standard deviations.
fn excess(most: u32, chance: f64, width: f64, span: f64) -> f64 {
    let expected = chance * (2.0 * width / span.max(2.0 * width)).min(1.0);
    (most as f64 - expected) / (expected + 1.0).sqrt()
}

/// The most hits in two neighbouring bands, found by sorting the hits'
/// bands (counted from `low`).
fn fullest_pair_sorted(hits: &[(u32, u32)], low: i64, width: f64, scratch: &mut Vec<u32>) -> u32 {
    scratch.clear();
    scratch.extend(offsets(hits).map(|o| band(o, low, width)));
    scratch.sort_unstable();
    // The hits of each band and the next, from every band with hits.
    let (mut most, mut end) = (0, 0);
    for (first, &b) in scratch.iter().enumerate() {
        while scratch.get(end).is_some_and(|&e| e <= b + 1) {
            end += 1;
        }
        most = most.max(end - first);
    }
    most as u32
}

/// Bands per hit beyond which [`band_excess`] sorts the hits' bands rather
/// than counting every band.
const SPARSE_BANDS_PER_HIT: usize = 8;

/// The offsets (track frame minus query frame) where the `n` densest pairs
/// of neighbouring bands of `width` frames meet, each more than `apart`
/// frames from the others: where the lines with most hits must pass (music
/// repeats, so the densest band is not always the right one).
pub fn dense_offsets(hits: &[(u32, u32)], width: f64, n: usize, apart: f64) -> Vec<f64> {
    let mut counts = Vec::new();
    let Some(range) = offset_range(hits) else {
        return Vec::new();
    };
    let bands = Bands::count(hits, range, width, &mut counts);
    let at = |first: usize| bands.low + (first as f64 + 1.0) * width;
    let mut offsets: Vec<f64> = Vec::with_capacity(n);
    // Each in turn the fullest pair (the first of equals) apart from those
    // chosen: a few passes over the pairs rather than a sort of them.
    while offsets.len() < n {
        let fullest = (bands.pairs().enumerate())
            .filter(|&(first, hits)| {
                hits > 0 && offsets.iter().all(|o| (o - at(first)).abs() > apart)
            })
            .fold(
                None,
                |best: Option<(usize, u32)>, (first, hits)| match best {
                    Some((_, most)) if most >= hits => best,
                    _ => Some((first, hits)),
                },
            );
        let Some((first, _)) = fullest else {
            break;
        };
        offsets.push(at(first));
    }
    offsets
}

/// The offsets (track frame minus query frame) of `hits`: whole frames,
/// found and told apart in integers.
fn offsets(hits: &[(u32, u32)]) -> impl Iterator<Item = i64> + '_ {
    hits.iter().map(|&(r, q)| i64::from(r) - i64::from(q))
}

/// The lowest and highest offset of `hits`.
fn offset_range(hits: &[(u32, u32)]) -> Option<(i64, i64)> {
    offsets(hits).fold(None, |range, o| match range {
        None => Some((o, o)),
        Some((low, high)) => Some((o.min(low), o.max(high))),
    })
}

/// The band of `width` frames, counted from `low`, that `offset` falls in.
fn band(offset: i64, low: i64, width: f64) -> u32 {
    // Bands are far fewer than 2^32: u32 converts in fewer steps.
    ((offset - low) as f64 / width) as u32
}

/// Hits counted by offset in bands of one width.
struct Bands<'a> {
    low: f64,
    counts: &'a [u32],
}

impl<'a> Bands<'a> {
    /// Counts `hits`, whose offsets span `(low, high)`, into `counts`.
    fn count(
        hits: &[(u32, u32)],
        (low, high): (i64, i64),
        width: f64,
        counts: &'a mut Vec<u32>,
    ) -> Self {
        let band = |offset: i64| band(offset, low, width) as usize;
        counts.clear();
        counts.resize(band(high) + 2, 0);
        for offset in offsets(hits) {
            counts[band(offset)] += 1;
        }
        Self {
            low: low as f64,
            counts,
        }
    }

    /// Hits in each pair of neighbouring bands.
    fn pairs(&self) -> impl Iterator<Item = u32> + '_ {
        self.counts.windows(2).map(|w| w[0] + w[1])
    }
}

/// A query's peaks with an index by frame: for each frame, the pitches (in
/// semitones above bin 1) of the peaks in it and in its two neighbours,
/// ascending, which is what a track peak mapped to that frame is compared
/// with.
#[derive(Debug, Default)]
pub struct QueryPeaks {
    /// Each frame's pitches in turn.
    own: Vec<f64>,
    /// Index in `own` of the first pitch of each frame, then the total.
    own_starts: Vec<u32>,
    /// For each frame from -1 to one past the last, the pitches of it and
    /// its neighbours, ascending.
    near: Vec<f64>,
    /// Index in `near` of the first pitch of each of those, then the total.
    near_starts: Vec<u32>,
}

impl QueryPeaks {
    /// Indexes peaks sorted by frame.
    pub fn build(&mut self, peaks: &[Peak], frames: usize) {
        self.own.clear();
        self.own_starts.clear();
        let mut i = 0;
        for frame in 0..=frames {
            self.own_starts.push(i as u32);
            while i < peaks.len() && peaks[i].frame as usize <= frame {
                self.own.push(semitones(peaks[i].bin));
                i += 1;
            }
        }
        self.own_starts.push(i as u32);
        // Neighbouring frames lie side by side in `own`.
        self.near.clear();
        self.near_starts.clear();
        for centre in 0..=frames + 2 {
            self.near_starts.push(self.near.len() as u32);
            let (first, last) = (centre.saturating_sub(2), (centre + 1).min(frames + 1));
            if first < last {
                let span = self.own_starts[first] as usize..self.own_starts[last] as usize;
                let from = self.near.len();
                self.near.extend_from_slice(&self.own[span]);
                self.near[from..].sort_unstable_by(f64::total_cmp);
            }
        }
        self.near_starts.push(self.near.len() as u32);
    }

    /// The pitches within `[low, high]` of the peaks in `frame` and its
    /// neighbours.
    fn near(&self, frame: i64, low: f64, high: f64) -> &[f64] {
        let at = usize::try_from(frame + 1).ok();
        let (Some(&a), Some(&b)) = (
            at.and_then(|i| self.near_starts.get(i)),
            at.and_then(|i| self.near_starts.get(i + 1)),
        ) else {
            return &[];
        };
        let all = &self.near[a as usize..b as usize];
        let from = all.partition_point(|&s| s < low);
        let to = all.partition_point(|&s| s <= high);
        &all[from..to.max(from)]
    }

    fn frames(&self) -> usize {
        self.own_starts.len().saturating_sub(2)
    }
}

/// The pitch of a bin in semitones above bin 1 (bins below 1 count as 1).
fn semitones(bin: f32) -> f64 {
    12.0 * f64::from(bin.max(1.0)).log2()
}

/// Steps of the pitch histogram, in semitones.
const PITCH_STEP: f64 = 0.1;

/// Estimates the pitch factor of an alignment from how the track's peaks and
/// the query's peaks near them are spaced in frequency; `None` when no
/// factor within `max_semitones` stands out.
pub fn estimate_pitch(
    peaks: &PeakList<'_>,
    query: &QueryPeaks,
    a: Alignment,
    max_semitones: f64,
) -> Option<f64> {
    let frames = query.frames();
    let half = (max_semitones / PITCH_STEP).ceil() as i64;
    let mut histogram = vec![0u32; (2 * half + 1) as usize];
    let mut steps = Vec::new();
    let end = a.start_frame + a.tempo * frames as f64;
    for p in peaks.range(a.start_frame.max(0.0) as u32, end.max(0.0).ceil() as u32) {
        let q = ((p.frame as f64 - a.start_frame) / a.tempo).round() as i64;
        let track = semitones(p.bin);
        for &s in query.near(q, track - max_semitones, track + max_semitones) {
            let step = s - track;
            histogram[((step / PITCH_STEP).round() as i64 + half) as usize] += 1;
            steps.push(step);
        }
    }
    // The densest window of three steps.
    let (mode, count) = (1..histogram.len().saturating_sub(1))
        .map(|k| (k, histogram[k - 1] + histogram[k] + histogram[k + 1]))
        .max_by_key(|&(_, c)| c)?;
    if count < 4 {
        return None;
    }
    let centre = (mode as i64 - half) as f64 * PITCH_STEP;
    let near: Vec<f64> = steps
        .into_iter()
        .filter(|s| (s - centre).abs() <= 1.5 * PITCH_STEP)
        .collect();
    let mean = near.iter().sum::<f64>() / near.len().max(1) as f64;
    Some(2f64.powf(mean / 12.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constellation::{StoredPeak, encode};

    const RANGE: TempoRange = TempoRange {
        min: 0.86,
        max: 1.16,
        step: 0.01,
    };

    #[test]
    fn tempo_line_is_found_among_noise() {
        // 40 hits on track = 500 + 1.07 * query, 200 scattered ones.
        let mut hits: Vec<(u32, u32)> = (0..40)
            .map(|i| {
                let q = i * 7;
                ((500.0 + 1.07 * q as f64).round() as u32, q)
            })
            .collect();
        hits.extend((0..200u32).map(|i| ((i * 7919) % 3000, (i * 104_729) % 300)));
        let (a, inliers, _) = fit_tempo(&hits, RANGE).expect("a line");
        assert!(inliers >= 40, "{inliers}");
        assert!((a.tempo - 1.07).abs() < 0.003, "{}", a.tempo);
        assert!((a.start_frame - 500.0).abs() < 2.0, "{}", a.start_frame);
    }

    #[test]
    fn a_line_at_the_end_of_the_range_is_no_measurement() {
        let line = |tempo: f64| -> Vec<(u32, u32)> {
            (0..40)
                .map(|i| ((500.0 + tempo * (i * 7) as f64).round() as u32, i * 7))
                .collect()
        };
        assert!(fit_tempo(&line(0.86), RANGE).is_none());
        assert!(fit_tempo(&line(1.16), RANGE).is_none());
        let (a, _, _) = fit_tempo(&line(0.87), RANGE).expect("inside the range");
        assert!((a.tempo - 0.87).abs() < 0.003, "{}", a.tempo);
    }

    #[test]
    fn aligned_hits_stand_out_of_scattered_ones() {
        let scattered: Vec<(u32, u32)> =
            (0..300u32).map(|i| ((i * 7919) % 5000, i % 300)).collect();
        let mut aligned = scattered.clone();
        aligned.extend((0..30).map(|i| (2000 + (1.08 * (i * 10) as f64) as u32, i * 10)));
        let scratch = &mut Vec::new();
        let plain = band_excess(&scattered, 300.0, 30.0, 5300.0, scratch);
        let lined = band_excess(&aligned, 330.0, 30.0, 5300.0, scratch);
        assert!(lined > plain + 5.0, "{lined} vs {plain}");
        let at = dense_offsets(&aligned, 30.0, 3, 100.0);
        assert_eq!(at.len(), 3);
        assert!(
            (2000.0..=2030.0).contains(&at[0]),
            "the line's offsets start at 2000: {at:?}"
        );
        assert!(at[1..].iter().all(|o| (o - at[0]).abs() > 100.0), "{at:?}");
    }

    proptest::proptest! {
        #[test]
        fn no_track_excess_exceeds_its_bound(
            hits in proptest::collection::vec((400u32..20_000, 0u32..400), 1..300),
            width in 8.0f64..40.0,
            span in 100.0f64..30_000.0,
            share in 0.1f64..=1.0,
        ) {
            let chance = hits.len() as f64 * share;
            let excess = band_excess(&hits, chance, width, span, &mut Vec::new());
            proptest::prop_assert!(excess <= band_excess_bound(hits.len(), chance, width, span));
        }

        #[test]
        fn sorted_and_counted_bands_find_the_same_fullest_pair(
            hits in proptest::collection::vec((400u32..20_000, 0u32..400), 1..300),
            width in 8.0f64..40.0,
        ) {
            let range = offset_range(&hits).expect("hits");
            let counted = Bands::count(&hits, range, width, &mut Vec::new()).pairs().max();
            let sorted = fullest_pair_sorted(&hits, range.0, width, &mut Vec::new());
            proptest::prop_assert_eq!(counted, Some(sorted));
        }
    }

    #[test]
    fn pitch_is_read_off_the_peaks() {
        let track: Vec<StoredPeak> = (0..200)
            .map(|i| StoredPeak {
                frame: 2 * i,
                bin: 40.0 + ((i * 37) % 300) as f32,
            })
            .collect();
        let (entries, bases) = encode(&track);
        let e: Vec<u8> = entries.iter().flat_map(|x| x.to_le_bytes()).collect();
        let b: Vec<u8> = bases.iter().flat_map(|x| x.to_le_bytes()).collect();
        let list = PeakList::new(&e, &b);
        let factor = 2f64.powf(-1.5 / 12.0);
        let query: Vec<Peak> = track
            .iter()
            .map(|p| Peak {
                frame: p.frame,
                bin: p.bin * factor as f32,
                strength: 0.0,
                rank: 0,
            })
            .collect();
        let mut q = QueryPeaks::default();
        q.build(&query, 400);
        let a = Alignment::plain(0.0);
        let pitch = estimate_pitch(&list, &q, a, 2.5).expect("a pitch");
        assert!((pitch / factor - 1.0).abs() < 0.003, "{pitch} vs {factor}");
    }

    #[test]
    fn a_frame_is_compared_with_its_neighbours_peaks() {
        let peak = |frame, bin| Peak {
            frame,
            bin,
            strength: 0.0,
            rank: 0,
        };
        // Frames 0 to 4; frame 2 has no peak.
        let peaks = [
            peak(0, 64.0),
            peak(1, 32.0),
            peak(1, 128.0),
            peak(3, 16.0),
            peak(4, 8.0),
        ];
        let mut q = QueryPeaks::default();
        q.build(&peaks, 4);
        let near = |frame| q.near(frame, f64::MIN, f64::MAX).to_vec();
        // Bin 2^k is 12k semitones above bin 1.
        assert_eq!(near(-2), Vec::<f64>::new());
        assert_eq!(near(-1), [72.0]);
        assert_eq!(near(0), [60.0, 72.0, 84.0]);
        assert_eq!(near(2), [48.0, 60.0, 84.0]);
        assert_eq!(near(5), [36.0]);
        assert_eq!(near(6), Vec::<f64>::new());
        assert_eq!(q.near(0, 70.0, 85.0), [72.0, 84.0]);
    }
}
