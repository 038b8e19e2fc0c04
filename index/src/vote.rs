//! Matching: hash votes find candidates, the peak constellation decides.
//!
//! 1. **Vote.** Every query landmark whose hash is in the catalog votes for
//!    `(track, reference frame - query frame)`. A true match piles its votes on
//!    one offset; chance hits scatter. Votes within `offset_tolerance` frames of
//!    each other count together. The best offset of each track is a candidate.
//! 2. **Verify.** Hash votes need two peaks to survive, so under heavy noise a
//!    true match may get only a few more votes than chance. Each candidate is
//!    therefore checked against the track's stored peaks: the share of
//!    reference peaks in the aligned span that reappear among the query's
//!    peaks (within a frame and a bin), against the share at deliberately wrong
//!    alignments of the same track. Those measure how much two unrelated
//!    stretches of this music overlap by chance (shared keys, sustained notes),
//!    which a uniform chance model underestimates. The excess, in standard
//!    errors, is the candidate's score. Small tempo differences are absorbed by
//!    trying a few time factors around the vote's anchor point.
//! 3. **Accept.** The best score must clear a threshold and the best other
//!    track by a margin; otherwise the answer is "no match", because a wrong
//!    identification is a wrong royalty claim.

use earmark_engine::fingerprint::frame_seconds;
use earmark_engine::{Fingerprint, Peak};

use crate::catalog::Catalog;
use crate::segment::PeakList;
use crate::tracks::TrackId;

/// Voting, verification and acceptance parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MatchOptions {
    /// Votes this many frames apart count as aligned.
    pub offset_tolerance: i32,
    /// Hashes with more postings than this are skipped as uninformative.
    pub max_postings_per_hash: usize,
    /// Candidates (best offset of a track) verified, most votes first.
    pub max_candidates: usize,
    /// Fewest aligned votes a candidate needs to be verified.
    pub min_votes: u32,
    /// A reference peak is found again within this many frames...
    pub frame_tolerance: i32,
    /// ...and this many bins of a query peak.
    pub bin_tolerance: i32,
    /// Time factors (query duration over reference duration) tried.
    pub time_factors: Vec<f32>,
    /// Smallest score (standard deviations above chance) accepted.
    pub min_score: f32,
    /// Fewest reference peaks that must be found again.
    pub min_matched: u32,
    /// The best track's score must exceed the best other track's by this.
    pub min_margin: f32,
}

impl Default for MatchOptions {
    fn default() -> Self {
        Self {
            offset_tolerance: 1,
            max_postings_per_hash: 200,
            max_candidates: 16,
            min_votes: 3,
            frame_tolerance: 1,
            bin_tolerance: 1,
            time_factors: vec![0.96, 0.98, 1.0, 1.02, 1.04],
            min_score: 6.0,
            min_matched: 8,
            min_margin: 4.0,
        }
    }
}

/// A track whose hash votes line up, with the verification of its alignment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The track.
    pub track: TrackId,
    /// Aligned hash votes.
    pub votes: u32,
    /// Frame in the track heard at the start of the query.
    pub start_frame: f64,
    /// Query duration over reference duration (above 1: played slower).
    pub time_factor: f32,
    /// Reference peaks in the aligned span.
    pub peaks: u32,
    /// Of those, found again in the query.
    pub matched: u32,
    /// Matched peaks above the count expected from wrong alignments, in
    /// standard errors.
    pub score: f32,
}

impl Candidate {
    /// Where in the track the query starts, in seconds.
    pub fn offset_s(&self) -> f64 {
        self.start_frame * frame_seconds()
    }
}

/// An accepted identification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// The winning candidate.
    pub candidate: Candidate,
    /// Score of the best other track (0 if none).
    pub runner_up_score: f32,
    /// How far the evidence clears the accept rule, in `[0.5, 1]`.
    pub confidence: f32,
}

/// The outcome of a query: the accepted match, if any, and the candidates.
#[derive(Debug, Clone, Default)]
pub struct Identification {
    /// The match, when the accept rule passed.
    pub best: Option<Match>,
    /// Verified candidates, best score first.
    pub candidates: Vec<Candidate>,
    /// Distinct landmarks in the query.
    pub query_landmarks: u32,
}

/// Votes and verifies queries against a catalog, reusing buffers.
#[derive(Debug)]
pub struct Matcher<'c> {
    catalog: &'c Catalog,
    options: MatchOptions,
    votes: Vec<u64>,
    query: Vec<earmark_engine::Landmark>,
    mask: PeakMask,
}

/// A vote packs track, offset and query frame into one sortable word:
/// track in the top 20 bits, offset plus [`OFFSET_BIAS`] in the next 24, the
/// query frame in the low 20 (queries are limited to about 9 hours).
const OFFSET_BIAS: i64 = 1 << 23;
const QUERY_BITS: u32 = 20;
const OFFSET_BITS: u32 = 24;

fn pack_vote(track: TrackId, offset: i64, query_frame: u32) -> Option<u64> {
    let biased = offset + OFFSET_BIAS;
    let fits = track.0 < 1 << (64 - OFFSET_BITS - QUERY_BITS)
        && (0..1 << OFFSET_BITS).contains(&biased)
        && query_frame < 1 << QUERY_BITS;
    fits.then_some({
        ((track.0 as u64) << (OFFSET_BITS + QUERY_BITS))
            | ((biased as u64) << QUERY_BITS)
            | query_frame as u64
    })
}

fn unpack_vote(vote: u64) -> (u32, i64, u32) {
    (
        (vote >> (OFFSET_BITS + QUERY_BITS)) as u32,
        ((vote >> QUERY_BITS) & ((1 << OFFSET_BITS) - 1)) as i64 - OFFSET_BIAS,
        (vote & ((1 << QUERY_BITS) - 1)) as u32,
    )
}

impl<'c> Matcher<'c> {
    /// A matcher over `catalog`.
    pub fn new(catalog: &'c Catalog, options: MatchOptions) -> Self {
        Self {
            catalog,
            options,
            votes: Vec::new(),
            query: Vec::new(),
            mask: PeakMask::default(),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &MatchOptions {
        &self.options
    }

    /// Identifies a query fingerprint.
    pub fn identify(&mut self, query: &Fingerprint) -> Identification {
        let voted = self.vote(query);
        let query_landmarks = self.query.len() as u32;
        self.mask.build(
            &query.peaks,
            query.frames as usize,
            self.options.frame_tolerance,
            self.options.bin_tolerance,
        );
        let mut candidates: Vec<Candidate> = voted.iter().map(|v| self.verify(v)).collect();
        candidates.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.track.cmp(&b.track)));
        let best = candidates.first().copied().and_then(|top| {
            let runner_up_score = candidates.get(1).map_or(0.0, |c| c.score.max(0.0));
            self.accept(top, runner_up_score)
        });
        Identification {
            best,
            candidates,
            query_landmarks,
        }
    }

    fn accept(&self, top: Candidate, runner_up_score: f32) -> Option<Match> {
        let o = &self.options;
        let clears = top.score >= o.min_score
            && top.matched >= o.min_matched
            && top.score - runner_up_score >= o.min_margin;
        clears.then(|| Match {
            candidate: top,
            runner_up_score,
            // 0.5 at the threshold, approaching 1 at twice the threshold.
            confidence: 0.5 + 0.5 * ((top.score - o.min_score) / o.min_score).clamp(0.0, 1.0),
        })
    }

    /// The best-voted offset of each track, most votes first.
    fn vote(&mut self, query: &Fingerprint) -> Vec<Voted> {
        self.query.clear();
        self.query.extend_from_slice(&query.landmarks);
        self.query.sort_unstable();
        self.query.dedup();
        self.votes.clear();
        let limit = self.options.max_postings_per_hash;
        let mut hits = Vec::new();
        for l in &self.query {
            hits.clear();
            let n = self
                .catalog
                .lookup(l.hash, |track, frame| hits.push((track, frame)));
            if n > limit {
                continue;
            }
            for &(track, frame) in &hits {
                let offset = frame as i64 - l.frame as i64;
                self.votes.extend(pack_vote(track, offset, l.frame));
            }
        }
        self.votes.sort_unstable();
        let mut best = tally(&self.votes, self.options.offset_tolerance as i64);
        best.retain(|v| v.votes >= self.options.min_votes);
        best.sort_unstable_by(|a, b| b.votes.cmp(&a.votes).then(a.track.cmp(&b.track)));
        best.truncate(self.options.max_candidates);
        best
    }

    /// Scores a voted alignment against the track's peaks at the best of the
    /// configured time factors.
    fn verify(&self, voted: &Voted) -> Candidate {
        let mut best = Candidate {
            track: voted.track,
            votes: voted.votes,
            start_frame: voted.ref_anchor - voted.query_anchor,
            time_factor: 1.0,
            peaks: 0,
            matched: 0,
            score: 0.0,
        };
        let Some(peaks) = self.catalog.peaks(voted.track) else {
            return best;
        };
        let mut best_rate = 1.0;
        // Factors nearest 1 first; another wins only by a clear excess, so
        // noise does not tilt an unchanged clip and shift its offset.
        let mut factors = self.options.time_factors.clone();
        factors.sort_by(|a, b| a.ln().abs().total_cmp(&b.ln().abs()));
        for factor in factors {
            // Reference frames advance 1 / factor per query frame.
            let rate = 1.0 / factor.max(0.01) as f64;
            let start = voted.ref_anchor - rate * voted.query_anchor;
            let (n, matched) = self.mask.overlap(&peaks, start, rate);
            let clearly_more = matched as f64 > best.matched as f64 * 1.05 + 2.0;
            if best.peaks == 0 || clearly_more {
                best_rate = rate;
                best = Candidate {
                    start_frame: start,
                    time_factor: factor,
                    peaks: n,
                    matched,
                    ..best
                };
            }
        }
        let (mut n, mut matched) = (0u64, 0u64);
        for &shift in &BACKGROUND_SHIFTS {
            let start = best.start_frame + shift as f64 * best_rate;
            let (k, m) = self.mask.overlap(&peaks, start, best_rate);
            n += k as u64;
            matched += m as u64;
        }
        if n == 0 || best.peaks == 0 {
            return best;
        }
        let share = matched as f64 / n as f64;
        let expected = best.peaks as f64 * share;
        let variance = (expected * (1.0 - share)).max(1.0);
        best.score = ((best.matched as f64 - expected) / variance.sqrt()) as f32;
        best
    }
}

/// Offsets, in frames, of the wrong alignments that measure chance overlap:
/// 1.2 to 8.2 seconds either way, irregular so that a looped track does not
/// line up with itself at all of them.
const BACKGROUND_SHIFTS: [i32; 8] = [-257, -173, -97, -37, 37, 97, 173, 257];

/// The best vote window of one track.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Voted {
    track: TrackId,
    votes: u32,
    /// Mean query frame of the window's votes...
    query_anchor: f64,
    /// ...and mean reference frame: a point on the alignment line.
    ref_anchor: f64,
}

/// From sorted packed votes, the best window of each track: the offsets
/// within `2 * tolerance` of each other that hold the most votes.
fn tally(votes: &[u64], tolerance: i64) -> Vec<Voted> {
    let mut best: Vec<Voted> = Vec::new();
    let mut start = 0;
    while start < votes.len() {
        let track = unpack_vote(votes[start]).0;
        let end = start + votes[start..].partition_point(|&v| unpack_vote(v).0 == track);
        let group = &votes[start..end];
        let (mut lo, mut count) = (0usize, 0u32);
        let (mut sum_offset, mut sum_query) = (0i64, 0i64);
        let mut top = Voted {
            track: TrackId(track),
            votes: 0,
            query_anchor: 0.0,
            ref_anchor: 0.0,
        };
        for &vote in group {
            let (_, offset, q) = unpack_vote(vote);
            count += 1;
            sum_offset += offset;
            sum_query += q as i64;
            loop {
                let (_, first, first_q) = unpack_vote(group[lo]);
                if first >= offset - 2 * tolerance {
                    break;
                }
                count -= 1;
                sum_offset -= first;
                sum_query -= first_q as i64;
                lo += 1;
            }
            if count > top.votes {
                let query_anchor = sum_query as f64 / count as f64;
                top = Voted {
                    votes: count,
                    query_anchor,
                    ref_anchor: query_anchor + sum_offset as f64 / count as f64,
                    ..top
                };
            }
        }
        best.push(top);
        start = end;
    }
    best
}

/// The query's peaks dilated by the tolerances, as a bitmap over
/// `(frame, bin)`.
#[derive(Debug, Default)]
struct PeakMask {
    frames: usize,
    bits: Vec<u64>,
}

const WORDS_PER_FRAME: usize = 8;
const BINS: usize = WORDS_PER_FRAME * 64;

impl PeakMask {
    fn build(&mut self, peaks: &[Peak], frames: usize, frame_tol: i32, bin_tol: i32) {
        self.frames = frames;
        self.bits.clear();
        self.bits.resize(frames * WORDS_PER_FRAME, 0);
        for p in peaks {
            let bin = p.bin.round() as i64;
            for df in -frame_tol..=frame_tol {
                let f = p.frame as i64 + df as i64;
                if f < 0 || f >= frames as i64 {
                    continue;
                }
                for db in -bin_tol..=bin_tol {
                    let b = bin + db as i64;
                    if (0..BINS as i64).contains(&b) {
                        let b = b as usize;
                        self.bits[f as usize * WORDS_PER_FRAME + b / 64] |= 1 << (b % 64);
                    }
                }
            }
        }
    }

    fn contains(&self, frame: usize, bin: usize) -> bool {
        bin < BINS
            && frame < self.frames
            && self.bits[frame * WORDS_PER_FRAME + bin / 64] & (1 << (bin % 64)) != 0
    }

    /// How many of the reference peaks mapped by `query = (ref - start) /
    /// rate` fall inside the query, and how many of those hit the mask.
    fn overlap(&self, peaks: &PeakList<'_>, start: f64, rate: f64) -> (u32, u32) {
        let end = start + rate * self.frames as f64;
        let (mut n, mut matched) = (0u32, 0u32);
        let per_ref_frame = 1.0 / rate;
        for p in peaks.range(start.max(0.0).floor() as u32, end.max(0.0).ceil() as u32) {
            // Adding 0.5 and truncating rounds; negatives are rejected first.
            let q = (p.frame as f64 - start) * per_ref_frame + 0.5;
            if q < 0.0 || q >= self.frames as f64 {
                continue;
            }
            n += 1;
            if self.contains(q as usize, (p.bin + 0.5) as usize) {
                matched += 1;
            }
        }
        (n, matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(track: u32, offset: i64, query_frame: u32) -> u64 {
        pack_vote(TrackId(track), offset, query_frame).expect("fits")
    }

    #[test]
    fn votes_round_trip_and_refuse_what_does_not_fit() {
        let v = pack_vote(TrackId(77), -1234, 999).expect("fits");
        assert_eq!(unpack_vote(v), (77, -1234, 999));
        assert!(pack_vote(TrackId(1 << 20), 0, 0).is_none());
        assert!(pack_vote(TrackId(0), 1 << 23, 0).is_none());
        assert!(pack_vote(TrackId(0), 0, 1 << 20).is_none());
    }

    #[test]
    fn aligned_votes_win_over_scattered_ones() {
        let mut votes = vec![
            vote(1, 100, 10),
            vote(1, 100, 20),
            vote(1, 101, 30),
            vote(1, 99, 40),
            vote(1, 500, 5),
            vote(2, 3, 1),
            vote(2, 40, 2),
            vote(2, 41, 3),
        ];
        votes.sort_unstable();
        let mut best = tally(&votes, 1);
        best.sort_by_key(|v| std::cmp::Reverse(v.votes));
        assert_eq!(best[0].track, TrackId(1));
        assert_eq!(best[0].votes, 4);
        assert!((best[0].query_anchor - 25.0).abs() < 1e-9);
        assert!((best[0].ref_anchor - best[0].query_anchor - 100.0).abs() < 0.5);
        assert_eq!(best[1].track, TrackId(2));
        assert_eq!(best[1].votes, 2);
    }

    #[test]
    fn negative_offsets_are_kept() {
        let votes = vec![vote(0, -7, 9), vote(0, -7, 10), vote(0, -6, 11)];
        let best = tally(&votes, 1);
        assert_eq!(best[0].votes, 3);
        assert!(best[0].ref_anchor - best[0].query_anchor < -6.0);
    }

    #[test]
    fn mask_dilates_peaks() {
        let peaks = [Peak {
            frame: 5,
            bin: 100.4,
            strength: 0.0,
            landmark: true,
        }];
        let mut mask = PeakMask::default();
        mask.build(&peaks, 10, 1, 1);
        assert!(mask.contains(4, 99) && mask.contains(6, 101) && mask.contains(5, 100));
        assert!(!mask.contains(3, 100) && !mask.contains(5, 102) && !mask.contains(10, 100));
    }
}
