//! Time-offset voting: which track, at which offset, explains the query.
//!
//! Every query landmark whose hash is in the catalog votes for
//! `(track, reference frame - query frame)`. A true match piles its votes on
//! one offset; chance hits scatter. Votes within `offset_tolerance` frames of
//! each other are counted together, which absorbs the half-frame jitter between
//! a clip's frame grid and the catalog's.
//!
//! The accept rule rejects weak evidence: enough aligned hits, a clear margin
//! over the best other track, and a minimal share of the query's landmarks.
//! "No match" is the answer whenever one of them fails, because a wrong
//! identification is a wrong royalty claim.

use earmark_engine::Landmark;
use earmark_engine::fingerprint::frame_seconds;

use crate::catalog::Catalog;
use crate::tracks::TrackId;

/// Voting and acceptance parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchOptions {
    /// Votes this many frames apart count as aligned.
    pub offset_tolerance: i32,
    /// Hashes with more postings than this are skipped as uninformative.
    pub max_postings_per_hash: usize,
    /// Fewest aligned hits a match needs.
    pub min_hits: u32,
    /// The best track needs this many times the runner-up's hits...
    pub min_margin_ratio: f32,
    /// ...plus this many.
    pub min_margin_hits: u32,
    /// Smallest share of the query's landmarks that must be aligned hits.
    pub min_share: f32,
    /// Candidates kept for callers that look beyond the best one.
    pub max_candidates: usize,
}

impl Default for MatchOptions {
    fn default() -> Self {
        Self {
            offset_tolerance: 1,
            max_postings_per_hash: 2_000,
            min_hits: 10,
            min_margin_ratio: 2.0,
            min_margin_hits: 4,
            min_share: 0.002,
            max_candidates: 8,
        }
    }
}

/// A track and offset with its aligned votes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The track.
    pub track: TrackId,
    /// Reference frame minus query frame at the vote peak, refined to a
    /// fraction of a frame by averaging the aligned votes.
    pub offset_frames: f64,
    /// Aligned votes.
    pub hits: u32,
}

impl Candidate {
    /// Where in the track the query starts, in seconds.
    pub fn offset_s(&self) -> f64 {
        self.offset_frames * frame_seconds()
    }
}

/// An accepted identification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// The winning candidate.
    pub candidate: Candidate,
    /// Aligned votes of the best other track.
    pub runner_up_hits: u32,
    /// Distinct landmarks in the query.
    pub query_landmarks: u32,
    /// How far the evidence clears the accept rule, in `[0, 1]`.
    pub confidence: f32,
}

/// The outcome of a query: the accepted match, if any, and the candidates.
#[derive(Debug, Clone, Default)]
pub struct Identification {
    /// The match, when the accept rule passed.
    pub best: Option<Match>,
    /// Best candidate per track, most votes first.
    pub candidates: Vec<Candidate>,
    /// Distinct landmarks in the query.
    pub query_landmarks: u32,
}

/// Votes queries against a catalog, reusing its buffers between queries.
#[derive(Debug)]
pub struct Matcher<'c> {
    catalog: &'c Catalog,
    options: MatchOptions,
    votes: Vec<u64>,
    query: Vec<Landmark>,
}

const OFFSET_BIAS: i64 = 1 << 31;

impl<'c> Matcher<'c> {
    /// A matcher over `catalog`.
    pub fn new(catalog: &'c Catalog, options: MatchOptions) -> Self {
        Self {
            catalog,
            options,
            votes: Vec::new(),
            query: Vec::new(),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &MatchOptions {
        &self.options
    }

    /// Votes `landmarks` and applies the accept rule.
    pub fn identify(&mut self, landmarks: &[Landmark]) -> Identification {
        let candidates = self.candidates(landmarks);
        let query_landmarks = self.query.len() as u32;
        let best = candidates
            .first()
            .copied()
            .and_then(|top| self.accept(top, &candidates, query_landmarks));
        Identification {
            best,
            candidates,
            query_landmarks,
        }
    }

    /// The best offset of each voted track, most aligned votes first.
    pub fn candidates(&mut self, landmarks: &[Landmark]) -> Vec<Candidate> {
        self.query.clear();
        self.query.extend_from_slice(landmarks);
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
                let offset = frame as i64 - l.frame as i64 + OFFSET_BIAS;
                self.votes.push(((track.0 as u64) << 32) | offset as u64);
            }
        }
        self.votes.sort_unstable();
        let mut best = tally(&self.votes, self.options.offset_tolerance as i64);
        best.sort_unstable_by(|a, b| b.hits.cmp(&a.hits).then(a.track.cmp(&b.track)));
        best.truncate(self.options.max_candidates);
        best
    }

    fn accept(&self, top: Candidate, all: &[Candidate], query_landmarks: u32) -> Option<Match> {
        let o = &self.options;
        let runner_up_hits = all.get(1).map_or(0, |c| c.hits);
        let needed = (o.min_hits as f32)
            .max(runner_up_hits as f32 * o.min_margin_ratio + o.min_margin_hits as f32)
            .max(query_landmarks as f32 * o.min_share);
        if (top.hits as f32) < needed {
            return None;
        }
        // 0 at the threshold, approaching 1 as the hits reach three times it.
        let confidence = ((top.hits as f32 - needed) / (2.0 * needed)).clamp(0.0, 1.0);
        Some(Match {
            candidate: top,
            runner_up_hits,
            query_landmarks,
            confidence: 0.5 + 0.5 * confidence,
        })
    }
}

/// From sorted `(track << 32 | biased offset)` votes, the best window of each
/// track: the offset whose `+-tolerance` neighbourhood holds the most votes.
fn tally(votes: &[u64], tolerance: i64) -> Vec<Candidate> {
    // Run-length encode into (track, offset, count).
    let mut runs: Vec<(u32, i64, u32)> = Vec::new();
    for &v in votes {
        let track = (v >> 32) as u32;
        let offset = (v & 0xffff_ffff) as i64 - OFFSET_BIAS;
        match runs.last_mut() {
            Some(last) if last.0 == track && last.1 == offset => last.2 += 1,
            _ => runs.push((track, offset, 1)),
        }
    }
    let mut best: Vec<Candidate> = Vec::new();
    let mut start = 0;
    while start < runs.len() {
        let track = runs[start].0;
        let end = start + runs[start..].partition_point(|r| r.0 == track);
        let group = &runs[start..end];
        // Sliding window over offsets within the tolerance.
        let (mut lo, mut sum, mut weighted) = (0usize, 0u32, 0i64);
        let mut top = Candidate {
            track: TrackId(track),
            offset_frames: 0.0,
            hits: 0,
        };
        for &(_, offset, count) in group {
            sum += count;
            weighted += offset * count as i64;
            while group[lo].1 < offset - 2 * tolerance {
                sum -= group[lo].2;
                weighted -= group[lo].1 * group[lo].2 as i64;
                lo += 1;
            }
            if sum > top.hits {
                top.hits = sum;
                top.offset_frames = weighted as f64 / sum as f64;
            }
        }
        best.push(top);
        start = end;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(track: u32, offset: i64) -> u64 {
        ((track as u64) << 32) | (offset + OFFSET_BIAS) as u64
    }

    #[test]
    fn aligned_votes_win_over_scattered_ones() {
        let mut votes = vec![
            vote(1, 100),
            vote(1, 100),
            vote(1, 101),
            vote(1, 99),
            vote(1, 500),
            vote(2, 3),
            vote(2, 40),
            vote(2, 41),
        ];
        votes.sort_unstable();
        let mut best = tally(&votes, 1);
        best.sort_by_key(|c| std::cmp::Reverse(c.hits));
        assert_eq!(best[0].track, TrackId(1));
        // The window spans 2 * tolerance: 99..=101 or 100..=102.
        assert_eq!(best[0].hits, 4);
        assert!((best[0].offset_frames - 100.0).abs() < 0.5);
        assert_eq!(best[1].track, TrackId(2));
        assert_eq!(best[1].hits, 2);
    }

    #[test]
    fn negative_offsets_are_kept() {
        let votes = vec![vote(0, -7), vote(0, -7), vote(0, -6)];
        let best = tally(&votes, 1);
        assert_eq!(best[0].hits, 3);
        assert!(best[0].offset_frames < -6.0);
    }
}
