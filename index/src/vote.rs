//! Matching: hash votes find candidates, the peak constellation decides.
//!
//! 1. **Vote.** Every pair landmark of the query whose hash is in the catalog
//!    votes for `(track, reference frame - query frame)`. A true match piles
//!    its votes on one offset; chance hits scatter. Votes within
//!    `offset_tolerance` frames of each other count together. The best offset
//!    of each track is a candidate.
//! 2. **Verify** each candidate against the track's stored peaks (see
//!    [`crate::verify`]), trying a few tempos near 1 around the vote's anchor.
//! 3. **Accept** the best score if it clears a threshold and beats the best
//!    other track by a margin; otherwise the answer is "no match", because a
//!    wrong identification is a wrong royalty claim.
//! 4. **Stretch.** When nothing is accepted, the triplet landmarks, which a
//!    change of tempo, pitch or speed leaves alone, nominate tracks; their
//!    tempo and pitch are estimated (see [`crate::stretch`]) and the resulting
//!    alignments are verified and accepted by the same rule.

use earmark_engine::fingerprint::frame_seconds;
use earmark_engine::hash::PairHasher;
use earmark_engine::hash::{TRIPLET, anchor_probes};
use earmark_engine::{Fingerprint, FingerprintOptions, Landmark};

use crate::catalog::{Catalog, HASH_BITS, Run};
use crate::stretch::{
    QueryPeaks, TempoRange, band_excess, band_excess_bound, dense_offsets, estimate_pitch,
    fit_tempo,
};
use crate::tracks::TrackId;
use crate::verify::{Alignment, PeakMask};

/// Voting, verification and acceptance parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MatchOptions {
    /// Votes this many frames apart count as aligned.
    pub offset_tolerance: i32,
    /// Hashes with more postings than this, or than `max_postings_ratio`
    /// times the catalog's mean, whichever is more, are skipped as
    /// uninformative (the mean grows with the catalog, and so do the lists
    /// of common hashes).
    pub max_postings_per_hash: usize,
    /// See `max_postings_per_hash`.
    pub max_postings_ratio: f64,
    /// Postings looked up per query and path, the query's rarest hashes
    /// first: in a large catalog the common hashes of a long query would
    /// bring millions of chance hits and little evidence.
    pub max_hits: u64,
    /// The same for the stretch path's triplet hashes, which are fewer and
    /// commoner than pairs: `stretch_share` of the query's triplet hits,
    /// within `min_stretch_hits..=max_stretch_hits`. A 10 s query's
    /// triplets bring about 100,000 hits in a catalog of 145 tracks, of
    /// which the rarest 50,000 find as many tracks; at 100,000 tracks they
    /// bring 20-50 million, and the rarest 200,000 find 56 more of the
    /// 1,275 dev clips than the rarest 100,000, for 2 ms more a query.
    pub max_stretch_hits: u64,
    /// See `max_stretch_hits`.
    pub min_stretch_hits: u64,
    /// See `max_stretch_hits`.
    pub stretch_share: f64,
    /// Candidates (best offset of a track) verified, most votes first.
    pub max_candidates: usize,
    /// The same for the quick look (see [`Matcher::identify`]).
    pub quick_candidates: usize,
    /// Fewest aligned votes a candidate needs to be verified.
    pub min_votes: u32,
    /// A reference peak is found again within this many frames...
    pub frame_tolerance: i32,
    /// ...and this many bins of a query peak.
    pub bin_tolerance: i32,
    /// Tempos (track duration over query duration) tried on the fast path.
    pub tempos: Vec<f32>,
    /// Tracks with the most triplet hits examined on the stretch path.
    pub stretch_candidates: usize,
    /// Largest tempo change searched on the stretch path (0.14: 14%).
    pub max_tempo_change: f32,
    /// Largest pitch change searched on the stretch path, in semitones.
    pub max_pitch_semitones: f32,
    /// Smallest score (standard deviations above chance) accepted.
    pub min_score: f32,
    /// Smallest score the quick look accepts (see [`Matcher::quick_candidates`]).
    pub quick_min_score: f32,
    /// Below this best score of the quick look, a query is taken to be
    /// shifted in pitch or speed (see [`MatchOptions::stretch_first`]).
    pub unshifted_score: f32,
    /// Fewest reference peaks that must be found again.
    pub min_matched: u32,
    /// The best track's score must exceed the best other track's by this.
    pub min_margin: f32,
    /// Tracks that verify at least this well...
    pub twin_min_score: f32,
    /// ...and score at least this share of the best one's hold the query's
    /// audio as surely as the best one: the same recording indexed twice (an
    /// album and a compilation, a file and its re-encoding) or an edit
    /// sharing the passage. They are its twins, not its rivals (see
    /// [`MatchOptions::twins`]).
    pub twin_share: f32,
    /// ...and hear it at the same tempo and pitch, within this share: the
    /// same audio is heard alike in both, and a twin must not carry a
    /// stretched alignment that only roughly fits.
    pub twin_agreement: f32,
    /// The second way to accept, for loud noise: when verification finds
    /// few of a track's peaks (noise buries the weak ones) but its hashes
    /// line up far more than any other track's, the best-scored candidate is
    /// a match with at least this many aligned votes...
    pub vote_min_votes: u32,
    /// ...this many times the most votes of any other candidate (the level
    /// chance reaches for this query: out-of-catalog clips stayed under 1.8
    /// times)...
    pub vote_ratio: f32,
    /// ...and a score of at least this (verification does not contradict).
    pub vote_min_score: f32,
    /// Music repeats, and in noise the best-voted offset of a track may be
    /// a repeat of the clip's passage rather than the passage itself: on
    /// the full pair path, the best this many windows of offsets of a track
    /// are verified...
    pub alternate_offsets: usize,
    /// ...when its best window holds at least this many votes and does not
    /// verify strongly (a score of `quick_min_score`)...
    pub alternate_min_votes: u32,
    /// ...and another window stands for the track when its score is higher
    /// by this (less, and chance would move the offsets of clips whose
    /// tempo the pair path does not follow).
    pub alternate_margin: f32,
}

impl Default for MatchOptions {
    fn default() -> Self {
        Self {
            offset_tolerance: 1,
            max_postings_per_hash: 200,
            max_postings_ratio: 1000.0,
            max_hits: 200_000,
            max_stretch_hits: 200_000,
            min_stretch_hits: 50_000,
            stretch_share: 0.4,
            max_candidates: 16,
            quick_candidates: 4,
            min_votes: 3,
            frame_tolerance: 1,
            bin_tolerance: 1,
            tempos: vec![0.96, 0.98, 1.0, 1.02, 1.04],
            stretch_candidates: 32,
            max_tempo_change: 0.14,
            max_pitch_semitones: 2.6,
            min_score: 6.0,
            quick_min_score: 12.0,
            unshifted_score: 6.0,
            min_matched: 8,
            min_margin: 4.0,
            twin_min_score: 12.0,
            twin_share: 0.75,
            twin_agreement: 0.01,
            vote_min_votes: 12,
            vote_ratio: 2.2,
            vote_min_score: 3.5,
            alternate_offsets: 3,
            alternate_min_votes: 8,
            alternate_margin: 2.0,
        }
    }
}

impl MatchOptions {
    /// Whole semitones by which the stretch path looks for a query's
    /// triplets under other anchor classes: the pitch change searched,
    /// plus the half a semitone of each side's rounding.
    pub fn pitch_reach(&self) -> u32 {
        ((self.max_pitch_semitones + 0.5).round() as u32).min(MAX_SHIFTS / 2 - 1)
    }

    /// How many of a query's `hits` triplet hits the stretch path reads
    /// (see [`MatchOptions::max_stretch_hits`]).
    pub fn stretch_budget(&self, hits: u64) -> u64 {
        let share = (hits as f64 * self.stretch_share) as u64;
        share.max(self.min_stretch_hits).min(self.max_stretch_hits)
    }

    /// The accept rule: whether `candidate` is a match when the best other
    /// track scores `runner_up_score`.
    pub fn accepts(&self, candidate: &Candidate, runner_up_score: f32) -> bool {
        self.could_accept(candidate) && candidate.score - runner_up_score >= self.min_margin
    }

    /// Whether `candidate` clears the threshold (score and peaks matched), so
    /// that no more than a margin over the best other track stands between
    /// it and a match.
    pub fn could_accept(&self, candidate: &Candidate) -> bool {
        candidate.score >= self.min_score && candidate.matched >= self.min_matched
    }

    /// Whether `a` and `b` are twins: both verify beyond doubt, about as
    /// well, at the same tempo and pitch (see [`MatchOptions::twin_share`]).
    pub fn twins(&self, a: &Candidate, b: &Candidate) -> bool {
        let sure = |c: &Candidate| self.could_accept(c) && c.score >= self.twin_min_score;
        let agree = |x: f32, y: f32| (x / y - 1.0).abs() <= self.twin_agreement;
        sure(a)
            && sure(b)
            && a.score.min(b.score) >= self.twin_share * a.score.max(b.score)
            && agree(a.tempo, b.tempo)
            && agree(a.pitch, b.pitch)
    }

    /// Of candidates ranked best score first, those the best must hold the
    /// margin against: all from the first that is not its twin on. The
    /// best answers, whichever of its twins it is: on one node or a
    /// cluster, the same scores rank the same way.
    pub fn rivals<'r, T>(&self, ranked: &'r [T], candidate: impl Fn(&T) -> &Candidate) -> &'r [T] {
        let Some((top, rest)) = ranked.split_first() else {
            return ranked;
        };
        let twins = rest
            .iter()
            .take_while(|t| self.twins(candidate(top), candidate(t)));
        &rest[twins.count()..]
    }

    /// Whether `candidate` has the votes and score to be accepted by its
    /// votes (see [`MatchOptions::vote_min_votes`]), so that no more than the
    /// other candidates' votes stand between it and a match. Only the pair
    /// paths' votes count: triplet hits on a tempo line are fewer per second
    /// and gather differently by chance.
    pub fn could_accept_by_votes(&self, candidate: &Candidate) -> bool {
        !candidate.stretched
            && candidate.votes >= self.vote_min_votes
            && candidate.score >= self.vote_min_score
    }

    /// The most pair votes among `others`, the level chance reaches for this
    /// query (see [`MatchOptions::vote_ratio`]).
    pub fn rival_votes<'a>(others: impl IntoIterator<Item = &'a Candidate>) -> u32 {
        (others.into_iter())
            .filter(|c| !c.stretched)
            .map(|c| c.votes)
            .max()
            .unwrap_or(0)
    }

    /// The match of the best candidate `top`, if the accept rule passes
    /// against the best other track's candidate `runner_up`, or failing
    /// that, if `top`'s votes stand far above `rival_votes`, the most votes
    /// of any other candidate; `reported` gives the candidate the match
    /// reports (its tempo sharpened).
    pub fn decide(
        &self,
        top: &Candidate,
        runner_up: Option<&Candidate>,
        rival_votes: u32,
        reported: impl FnOnce() -> Candidate,
    ) -> Option<Match> {
        let runner_up_score = runner_up.map_or(0.0, |c| c.score.max(0.0));
        let by_votes = || {
            self.could_accept_by_votes(top)
                && top.votes as f32 >= self.vote_ratio * rival_votes as f32
        };
        if !self.accepts(top, runner_up_score) && !by_votes() {
            return None;
        }
        Some(Match {
            candidate: reported(),
            runner_up_score,
            confidence: self.confidence(top.score),
        })
    }

    /// The longest postings list looked up in a catalog of `postings`
    /// postings (see `max_postings_per_hash`).
    fn postings_limit(&self, postings: u64) -> u64 {
        let mean = postings as f64 / (1u64 << HASH_BITS) as f64;
        (self.max_postings_per_hash as u64).max((self.max_postings_ratio * mean) as u64)
    }

    /// Whether the quick look may answer with `best`, an accepted match: only
    /// on strong evidence, a score of at least `quick_min_score`.
    pub fn answers_quickly(&self, best: &Match) -> bool {
        best.candidate.score >= self.quick_min_score
    }

    /// Whether the stretch path goes before the full pair path, given the
    /// quick look's candidates: when they hold nothing like the query at its
    /// own pitch and speed, the query is most likely shifted, and a strong
    /// answer of the stretch path (see [`MatchOptions::answers_quickly`])
    /// spares the pair path's dense lookups, which could not find it.
    pub fn stretch_first<'a>(&self, quick: impl IntoIterator<Item = &'a Candidate>) -> bool {
        quick.into_iter().all(|c| c.score < self.unshifted_score)
    }

    /// How far an accepted `score` clears the threshold, in `[0.5, 1]`: 0.5
    /// at the threshold, approaching 1 at twice the threshold.
    fn confidence(&self, score: f32) -> f32 {
        0.5 + 0.5 * ((score - self.min_score) / self.min_score).clamp(0.0, 1.0)
    }
}

/// A track whose hash votes line up, with the verification of its alignment.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    /// The track.
    pub track: TrackId,
    /// Aligned hash votes.
    pub votes: u32,
    /// Frame in the track heard at the start of the query.
    pub start_frame: f64,
    /// Track duration over query duration (1.04: played 4% fast).
    pub tempo: f32,
    /// Query frequency over track frequency (1.06: a semitone higher).
    pub pitch: f32,
    /// Reference peaks in the aligned span.
    pub peaks: u32,
    /// Of those, found again in the query.
    pub matched: u32,
    /// Matched peaks above the count expected from wrong alignments, in
    /// standard errors.
    pub score: f32,
    /// Query frame where the alignment is best known (the middle of the
    /// hash hits it came from); a change of tempo pivots around it.
    pub pivot_frame: f64,
    /// What chose it for verification: its aligned votes on the pair paths,
    /// how far its densest band of hits stands above chance on the stretch
    /// path (see [`ranked`]).
    pub rank: f32,
    /// Whether the stretch path found it: its votes are then triplet hits
    /// on a tempo line, not aligned pair hashes.
    #[serde(default)]
    pub stretched: bool,
}

/// The order in which tracks are chosen for verification: by rank, best
/// first, ties by content key (see [`crate::content_key`]), so that
/// catalogs holding parts of one catalog (a cluster's shards) choose as the
/// whole would.
pub fn ranked((rank_a, key_a): (f32, u64), (rank_b, key_b): (f32, u64)) -> std::cmp::Ordering {
    rank_b.total_cmp(&rank_a).then(key_a.cmp(&key_b))
}

impl Candidate {
    /// The alignment found.
    pub fn alignment(&self) -> Alignment {
        Alignment {
            start_frame: self.start_frame,
            tempo: self.tempo as f64,
            pitch: self.pitch as f64,
        }
    }

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
    /// Distinct landmarks looked up (by the quick look, when it answered).
    pub query_landmarks: u32,
}

/// Votes and verifies queries against a catalog, reusing buffers.
#[derive(Debug)]
pub struct Matcher<'c> {
    catalog: &'c Catalog,
    options: MatchOptions,
    /// Packed votes of the tracks with at least `min_votes`, grouped by
    /// track in track order, each track's by offset.
    votes: Vec<u64>,
    /// Packed votes as read.
    read: Vec<u64>,
    /// Votes or triplet hits per track: scratch of both paths.
    counts: Vec<u32>,
    query: Vec<Landmark>,
    /// The quick look's landmarks.
    quick: Vec<Landmark>,
    mask: PeakMask,
    peaks: QueryPeaks,
    /// Triplet hits as packed votes, grouped by track; their query frames
    /// carry the hit's pitch shift step in the low [`SHIFT_BITS`].
    hits: Vec<u64>,
    /// One track's triplet hits as (track frame, query frame), and band
    /// counts: the stretch path's scratch.
    pairs: Vec<(u32, u32)>,
    bands: Vec<u32>,
    /// The landmarks that may be looked up, with their pitch shift steps
    /// (see [`Matcher::choose`]), by hash.
    probes: Vec<(Landmark, u32)>,
    /// The landmarks looked up, with their postings counts, where their
    /// runs are in `runs` and their pitch shift steps.
    chosen: Vec<(u64, Landmark, std::ops::Range<usize>, u32)>,
    runs: Vec<Run>,
    /// Postings count and runs of each distinct hash looked up.
    found: Vec<(u64, std::ops::Range<usize>)>,
    /// Longest postings list looked up.
    postings_limit: u64,
    /// The counts of the whole catalog this one is part of, by which to
    /// choose lookups (see [`Matcher::count_as`]).
    whole: Option<WholeCounts>,
    /// The rank and content key of each track the last stretch path chose.
    stretch_ranks: Vec<(f32, u64)>,
}

/// The landmarks the quick look of `query` looks up, into `out`: the pairs
/// of its peaks that the catalog makes of a track's (see
/// [`Matcher::quick_candidates`]).
pub fn quick_landmarks(query: &Fingerprint, out: &mut Vec<Landmark>) {
    let mut pairs = PairHasher::new(FingerprintOptions::reference().pairs);
    out.clear();
    for &p in &query.peaks {
        pairs.push(p, &mut |l| out.push(l));
    }
    pairs.flush(&mut |l| out.push(l));
}

/// Every hash a query's `landmarks` may look up: pairs as they are, each
/// triplet under the anchor classes within [`MatchOptions::pitch_reach`].
pub fn lookups<'a>(
    landmarks: &'a [Landmark],
    options: &MatchOptions,
) -> impl Iterator<Item = u32> + 'a {
    let reach = options.pitch_reach();
    landmarks
        .iter()
        .flat_map(move |&l| probes_of(l, reach).map(|(l, _)| l.hash))
}

/// What `landmark` is looked up as, each with its pitch shift step: a pair
/// as it is (step 0), a triplet under the anchor classes within `reach`
/// (step: the query's class minus the catalog's, plus `reach`).
fn probes_of(landmark: Landmark, reach: u32) -> impl Iterator<Item = (Landmark, u32)> {
    let triplet = landmark.hash & TRIPLET != 0;
    let pair = (!triplet).then_some((landmark, 0));
    let probes = triplet.then(|| {
        anchor_probes(landmark.hash, reach).map(move |(hash, shift)| {
            let step = (shift + reach as i32) as u32;
            (Landmark { hash, ..landmark }, step)
        })
    });
    pair.into_iter().chain(probes.into_iter().flatten())
}

/// The postings counts of a whole catalog for the hashes a query looks up,
/// given to a matcher over a part of it (see [`Matcher::count_as`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WholeCounts {
    /// All postings of the whole catalog.
    pub postings: u64,
    /// Hash and postings count, in hash order; a hash not here has none.
    pub counts: Vec<(u32, u32)>,
}

/// A vote packs track, offset and query frame into one sortable word:
/// track in the top 20 bits, offset plus [`OFFSET_BIAS`] in the next 24, the
/// query frame in the low 20 (queries are limited to about 9 hours).
/// Offsets of -2^15 to 2^15 frames (about 8.7 minutes either way) share
/// the top byte of the biased offset, so the radix sort of votes, which
/// skips a byte all votes share, makes one pass fewer.
const OFFSET_BIAS: i64 = (1 << 23) + (1 << 15);
/// Frames of offset (0.5 s) between the windows of one track verified as
/// alternatives (see [`MatchOptions::alternate_offsets`]).
const ALTERNATE_APART: i64 = 16;

/// Dense bands of offsets per track around which the stretch path looks
/// for a tempo line.
const DENSE_BANDS: usize = 3;
const QUERY_BITS: u32 = 20;
/// Runs of votes longer than this are radix-sorted.
const RADIX_SORT_LEN: usize = 256;
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
            postings_limit: options.postings_limit(catalog.postings()),
            whole: None,
            probes: Vec::new(),
            chosen: Vec::new(),
            runs: Vec::new(),
            found: Vec::new(),
            catalog,
            options,
            votes: Vec::new(),
            read: Vec::new(),
            counts: Vec::new(),
            query: Vec::new(),
            quick: Vec::new(),
            mask: PeakMask::default(),
            peaks: QueryPeaks::default(),
            hits: Vec::new(),
            pairs: Vec::new(),
            bands: Vec::new(),
            stretch_ranks: Vec::new(),
        }
    }

    /// The catalog matched against.
    pub fn catalog(&self) -> &'c Catalog {
        self.catalog
    }

    /// The options in force.
    pub fn options(&self) -> &MatchOptions {
        &self.options
    }

    /// Identifies a query fingerprint: first by a quick look, then, unless
    /// that found a strong match, by the full query, which also weighs the
    /// quick look's candidates. When the quick look found nothing like the
    /// query, the stretch path goes first (see
    /// [`MatchOptions::stretch_first`]).
    pub fn identify(&mut self, query: &Fingerprint) -> Identification {
        let mut quick = self.quick_candidates(query);
        let strong = (self.accept(&mut quick)).filter(|b| self.options.answers_quickly(b));
        let (best, candidates) = match strong {
            Some(best) => (Some(best), quick),
            None => {
                let mut paths = MatcherPaths {
                    matcher: self,
                    query,
                    loaded: false,
                };
                decide_after_quick(&mut paths, quick)
            }
        };
        Identification {
            best,
            candidates,
            query_landmarks: self.query.len() as u32,
        }
    }

    /// The quick look's candidates: it looks up only the pairs the catalog
    /// itself makes (of the query's strongest peaks, a tenth of the query's
    /// own landmarks), and its best is accepted only on strong evidence (see
    /// [`MatchOptions::answers_quickly`]): an easy query (clean, coded,
    /// reverberant, a few percent off tempo) is then answered without the
    /// dense lookups, and anything less certain gets the full query. In a
    /// large catalog, where the full query's lookups are capped, these are
    /// the ones that count.
    pub fn quick_candidates(&mut self, query: &Fingerprint) -> Vec<Candidate> {
        let mut landmarks = std::mem::take(&mut self.quick);
        quick_landmarks(query, &mut landmarks);
        // One window of votes a track: the quick look answers only strong
        // matches, which verify at their best-voted offset.
        self.load(query, &landmarks);
        let candidates = self.verified(self.options.quick_candidates, 1);
        self.quick = landmarks;
        candidates
    }

    /// Chooses the hashes to look up by the postings counts of `whole`, the
    /// whole catalog this one is part of (a cluster's shard), rather than by
    /// its own: the parts of a catalog then each look up their share of
    /// what the whole would, and together find the whole catalog's
    /// candidates. `whole` must count every hash the next query looks up.
    pub fn count_as(&mut self, whole: WholeCounts) {
        self.postings_limit = self.options.postings_limit(whole.postings);
        self.whole = Some(whole);
    }

    /// Identifies a query fingerprint, trying the stretch path (tempo and
    /// pitch changes beyond a few percent) only if `stretch` is set: a caller
    /// already following the music can skip its cost.
    pub fn identify_with(&mut self, query: &Fingerprint, stretch: bool) -> Identification {
        let mut candidates = self.full_path(query);
        let mut best = self.accept(&mut candidates);
        if best.is_none() && stretch {
            let stretched = self.stretched(query);
            merge(&mut candidates, stretched);
            best = self.accept(&mut candidates);
        }
        Identification {
            best,
            candidates,
            query_landmarks: self.query.len() as u32,
        }
    }

    /// The full query's candidates (every landmark of the query looked up),
    /// weighed with those already `seen`: of a track, the better counts.
    pub fn full_candidates(&mut self, query: &Fingerprint, seen: Vec<Candidate>) -> Vec<Candidate> {
        let mut candidates = self.full_path(query);
        merge(&mut candidates, seen);
        candidates
    }

    /// The full pair path: every landmark of `query` looked up.
    fn full_path(&mut self, query: &Fingerprint) -> Vec<Candidate> {
        self.load(query, &query.landmarks);
        self.full_verified()
    }

    /// The full pair path's candidates of the query last loaded.
    fn full_verified(&mut self) -> Vec<Candidate> {
        let (most, alternates) = (self.options.max_candidates, self.options.alternate_offsets);
        self.verified(most, alternates)
    }

    /// The pair path's candidates of the query last loaded (votes of its
    /// landmarks, verified against its peaks): of each of the
    /// `max_candidates` tracks with the most votes, the best verified of its
    /// `alternates` best windows of votes (see
    /// [`MatchOptions::alternate_offsets`]).
    fn verified(&mut self, max_candidates: usize, alternates: usize) -> Vec<Candidate> {
        let voted = self.vote(max_candidates);
        let o = &self.options;
        let tolerance = o.offset_tolerance as i64;
        (voted.iter())
            .map(|v| {
                let best = self.verify_near_one(v);
                if v.votes < o.alternate_min_votes || best.score >= o.quick_min_score {
                    return best;
                }
                let group = votes_of(&self.votes, v.track);
                (windows(group, tolerance, alternates, ALTERNATE_APART).iter())
                    .skip(1)
                    .map(|w| self.verify_near_one(w))
                    .fold(best, |a, b| match b.score > a.score + o.alternate_margin {
                        true => b,
                        false => a,
                    })
            })
            .collect()
    }

    /// Every candidate of both paths, best score first, with no accept rule:
    /// for comparing passages with each other rather than with a catalog
    /// (their best match is themselves; the others matter).
    pub fn all_candidates(&mut self, query: &Fingerprint) -> Vec<Candidate> {
        let mut candidates = self.identify_with(query, false).candidates;
        self.add_stretched(query, &mut candidates);
        candidates.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.track.cmp(&b.track)));
        candidates
    }

    /// Takes `landmarks` of `query` as the ones to look up, and its peaks
    /// as those to verify against.
    fn load(&mut self, query: &Fingerprint, landmarks: &[Landmark]) {
        self.query.clear();
        self.query.extend_from_slice(landmarks);
        // By hash, then frame (their order as a `Landmark`), radix-sorted.
        radsort::sort_by_key(&mut self.query, |l| {
            (u64::from(l.hash) << 32) | u64::from(l.frame)
        });
        self.query.dedup();
        self.mask.build(
            &query.peaks,
            query.frames as usize,
            self.options.frame_tolerance,
            self.options.bin_tolerance,
        );
    }

    /// Adds the stretch path's candidates, keeping the better of two for a
    /// track.
    pub fn add_stretched(&mut self, query: &Fingerprint, candidates: &mut Vec<Candidate>) {
        let stretched = self.stretched(query);
        merge(candidates, stretched);
    }

    /// The stretch path's candidates of the query last loaded.
    fn stretched(&mut self, query: &Fingerprint) -> Vec<Candidate> {
        self.peaks.build(&query.peaks, query.frames as usize);
        self.stretch()
    }

    /// Verifies known alignments of `track` against the query last passed
    /// to [`Matcher::identify`]: how a play already under way holds up in a
    /// new window, a few frames either side of where it is expected,
    /// without any hash lookups. The track's peaks are decoded once for all
    /// the alignments.
    pub fn check(&self, track: TrackId, alignments: &[Alignment]) -> Vec<Candidate> {
        let peaks = self.catalog.peaks(track);
        let decoded = peaks.map(|p| self.mask.decode(&p, alignments));
        (alignments.iter())
            .map(|&a| {
                let (overlap, score) = match &decoded {
                    Some(peaks) => self.mask.score_in(peaks, a),
                    None => Default::default(),
                };
                candidate(track, 0, (a, 0.0), overlap, score)
            })
            .collect()
    }

    /// Verifies alignments of tracks against `query`, a part of the query
    /// last identified, leaving that query as it is: which of several
    /// tracks heard at once holds up in part of the window.
    pub fn check_part(&self, query: &Fingerprint, heard: &[(TrackId, Alignment)]) -> Vec<f32> {
        let mut mask = PeakMask::default();
        let (frame_tol, bin_tol) = (self.options.frame_tolerance, self.options.bin_tolerance);
        mask.build(&query.peaks, query.frames as usize, frame_tol, bin_tol);
        (heard.iter())
            .map(|&(track, a)| {
                self.catalog
                    .peaks(track)
                    .map_or(0.0, |p| mask.score(&p, a).1)
            })
            .collect()
    }

    /// The accept rule over `candidates`, which it sorts best score first.
    /// When a match is accepted, the best candidate's twins (the same audio
    /// in other tracks, see [`MatchOptions::twins`]) leave the list: what
    /// follows it are its rivals.
    fn accept(&self, candidates: &mut Vec<Candidate>) -> Option<Match> {
        candidates.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.track.cmp(&b.track)));
        let top = *candidates.first()?;
        let rivals = self.options.rivals(candidates, |c| c);
        let twins = 1..candidates.len() - rivals.len();
        let rival_votes = MatchOptions::rival_votes(rivals);
        let best = (self.options).decide(&top, rivals.first(), rival_votes, || self.refine(top))?;
        candidates.drain(twins);
        Some(best)
    }

    /// The rank and content key (see [`ranked`]) of every track the last
    /// stretch path chose to examine, best first, whether or not it became
    /// a candidate: a caller merging several catalogs' stretch candidates
    /// needs the rank of the last one chosen.
    pub fn stretch_ranks(&self) -> &[(f32, u64)] {
        &self.stretch_ranks
    }

    /// A candidate of the query last looked up with its tempo sharpened, as
    /// it is when accepted.
    pub fn refined(&self, c: Candidate) -> Candidate {
        self.refine(c)
    }

    /// Sharpens the tempo of an accepted candidate: the pair path only tries
    /// a coarse grid near 1 and the triplet fit is a few tenths of a percent
    /// off. The tempo is searched, pivoting on the candidate's anchor, for
    /// the one under which most of the track's peaks reappear: within one
    /// grid step, or over the whole range when the pair path's best tempo was
    /// the edge of its grid (the music may be further off).
    fn refine(&self, c: Candidate) -> Candidate {
        let grid = &self.options.tempos;
        let at_edge = |f: fn(f32, f32) -> f32| grid.iter().copied().reduce(f) == Some(c.tempo);
        let reach = if at_edge(f32::min) || at_edge(f32::max) {
            self.options.max_tempo_change as f64
        } else {
            0.02
        };
        self.refine_within(c, reach)
    }

    /// Searches a candidate's tempo over the whole range the matcher allows,
    /// against the query last identified: for a match about to be trusted
    /// for longer than one query (a play), where a tempo a few percent off
    /// would lose the track seconds away.
    pub fn sharpen(&self, c: Candidate) -> Candidate {
        self.refine_within(c, self.options.max_tempo_change as f64)
    }

    /// [`Matcher::refine`] over tempos within `reach` of the candidate's.
    fn refine_within(&self, c: Candidate, reach: f64) -> Candidate {
        let Some(peaks) = self.catalog.peaks(c.track) else {
            return c;
        };
        let pivot_track = c.start_frame + c.tempo as f64 * c.pivot_frame;
        let at = |tempo: f64| Alignment {
            start_frame: pivot_track - tempo * c.pivot_frame,
            tempo,
            pitch: c.pitch as f64,
        };
        let steps = (reach / 0.005).ceil() as i32;
        // The coarse search reaches `steps` steps of 0.5% either way, the fine
        // one five steps of 0.1% beyond: less than two more coarse steps.
        let edge = |sign: f64| c.tempo as f64 * (1.0 + sign * 0.005 * (steps + 2) as f64);
        let peaks = self.mask.decode(&peaks, &[at(edge(-1.0)), at(edge(1.0))]);
        // A tempo away from the candidate's must win clearly (5% more peaks,
        // and 2): on an unchanged clip chance must not tilt the tempo and
        // with it the offset. The last, fine step takes the plain maximum.
        let search = |centre: f64, step: f64, n: i32, margin: f64| {
            let here = self.mask.overlap_in(&peaks, at(centre)).matched as f64;
            let mut best = (centre, here);
            for k in (1..=n).flat_map(|k| [k, -k]) {
                let tempo = centre * (1.0 + k as f64 * step);
                let matched = self.mask.overlap_in(&peaks, at(tempo)).matched as f64;
                if matched > best.1 && matched > here * (1.0 + margin) + 2.0 * margin.signum() {
                    best = (tempo, matched);
                }
            }
            best.0
        };
        let tempo = search(search(c.tempo as f64, 0.005, steps, 0.05), 0.001, 5, 0.0);
        let (overlap, score) = self.mask.score_in(&peaks, at(tempo));
        if overlap.matched < c.matched || score < c.score {
            return c;
        }
        Candidate {
            start_frame: at(tempo).start_frame,
            tempo: tempo as f32,
            peaks: overlap.peaks,
            matched: overlap.matched,
            score,
            ..c
        }
    }

    /// The best-voted offset of each track from pair landmarks, most votes
    /// first.
    fn vote(&mut self, max_candidates: usize) -> Vec<Voted> {
        self.choose(false);
        self.read_votes(false);
        let min_votes = self.options.min_votes;
        group_by_track(&self.read, min_votes, &mut self.counts, &mut self.votes);
        let tolerance = self.options.offset_tolerance as i64;
        let mut best = Vec::new();
        for group in track_groups_mut(&mut self.votes) {
            sort_votes(group);
            let window = best_window(group, tolerance);
            if window.votes >= min_votes {
                best.push(window);
            }
        }
        let tracks = self.catalog.tracks();
        let rank = |v: &Voted| (v.votes as f32, tracks.key(v.track));
        let order = |a: &Voted, b: &Voted| ranked(rank(a), rank(b)).then(a.track.cmp(&b.track));
        if best.len() > max_candidates {
            best.select_nth_unstable_by(max_candidates, order);
            best.truncate(max_candidates);
        }
        best.sort_unstable_by(order);
        best
    }

    /// Reads the postings of the landmarks chosen into `read` as packed
    /// votes, counting each track's in `counts`. A triplet hit's query
    /// frame carries its pitch shift step in its low [`SHIFT_BITS`], which
    /// leaves room for 2^16 frames (35 minutes): later triplets of a longer
    /// query are not read.
    fn read_votes(&mut self, triplets: bool) {
        self.read.clear();
        self.counts.clear();
        self.counts.resize(self.catalog.tracks().len(), 0);
        for &(_, l, ref runs, shift) in &self.chosen {
            let query_frame = match triplets {
                true if l.frame < 1 << (QUERY_BITS - SHIFT_BITS) => l.frame << SHIFT_BITS | shift,
                true => continue,
                false => l.frame,
            };
            for run in &self.runs[runs.clone()] {
                let (read, counts) = (&mut self.read, &mut self.counts);
                self.catalog.read(run, |track, frame| {
                    let offset = frame as i64 - l.frame as i64;
                    if let Some(vote) = pack_vote(track, offset, query_frame) {
                        read.push(vote);
                        count_vote(counts, track);
                    }
                });
            }
        }
    }

    /// Picks the query's pair (or triplet) landmarks to look up: those with
    /// postings but not too many, rarest first, up to `max_hits` postings
    /// (for triplets, [`MatchOptions::stretch_budget`]).
    fn choose(&mut self, triplets: bool) {
        self.chosen.clear();
        self.runs.clear();
        self.found.clear();
        self.probes.clear();
        let reach = self.options.pitch_reach();
        let wanted = |l: &&Landmark| (l.hash & TRIPLET != 0) == triplets;
        for &l in self.query.iter().filter(wanted) {
            self.probes.extend(probes_of(l, reach));
        }
        if triplets {
            radsort::sort_by_key(&mut self.probes, |(l, _)| l.hash);
        }
        // By hash: a hash heard at several frames is found once.
        let mut hashes: Vec<u32> = self.probes.iter().map(|(l, _)| l.hash).collect();
        hashes.dedup();
        self.catalog.find(&hashes, &mut self.runs, &mut self.found);
        let mut found = hashes.iter().zip(&self.found).peekable();
        let mut whole = (self.whole.as_ref()).map(|w| w.counts.iter().peekable());
        for &(l, shift) in &self.probes {
            while found.next_if(|&(&hash, _)| hash != l.hash).is_some() {}
            let Some(&(_, (n, runs))) = found.peek() else {
                break;
            };
            // The whole has at least this part's postings, unless it was
            // counted before this part grew.
            let n = match &mut whole {
                Some(counts) => {
                    while counts.next_if(|c| c.0 < l.hash).is_some() {}
                    let whole = counts.peek().filter(|c| c.0 == l.hash).map_or(0, |c| c.1);
                    (*n).max(whole as u64)
                }
                None => *n,
            };
            if n > 0 && n <= self.postings_limit {
                self.chosen.push((n, l, runs.clone(), shift));
            }
        }
        self.chosen.sort_unstable_by_key(|c| c.0);
        let budget = match triplets {
            true => (self.options).stretch_budget(self.chosen.iter().map(|c| c.0).sum()),
            false => self.options.max_hits,
        };
        let mut total = 0;
        let within = self
            .chosen
            .iter()
            .take_while(|&&(n, ..)| {
                total += n;
                total <= budget
            })
            .count();
        self.chosen.truncate(within);
    }

    /// Verifies a voted offset at the fast path's tempos, pivoting on the
    /// vote's anchor point.
    fn verify_near_one(&self, voted: &Voted) -> Candidate {
        let plain = Alignment::plain(voted.ref_anchor - voted.query_anchor);
        let Some(peaks) = self.catalog.peaks(voted.track) else {
            return candidate(
                voted.track,
                voted.votes,
                (plain, voted.query_anchor),
                Default::default(),
                0.0,
            );
        };
        // Tempos nearest 1 first; another wins only by a clear excess, so
        // noise does not tilt an unchanged clip and shift its offset.
        let mut tempos = self.options.tempos.clone();
        tempos.sort_by(|a, b| a.ln().abs().total_cmp(&b.ln().abs()));
        let at = |tempo: f64| Alignment {
            start_frame: voted.ref_anchor - tempo * voted.query_anchor,
            tempo,
            pitch: 1.0,
        };
        let extremes = [f32::min, f32::max].map(|f| tempos.iter().copied().fold(1.0, f));
        let peaks = self.mask.decode(&peaks, &extremes.map(|t| at(t as f64)));
        let mut best: Option<(Alignment, u32)> = None;
        for tempo in tempos {
            let a = at(tempo as f64);
            let matched = self.mask.overlap_in(&peaks, a).matched;
            if best.is_none_or(|(_, m)| matched as f64 > m as f64 * 1.05 + 2.0) {
                best = Some((a, matched));
            }
        }
        let a = best.map_or(plain, |b| b.0);
        let (overlap, score) = self.mask.score_in(&peaks, a);
        candidate(
            voted.track,
            voted.votes,
            (a, voted.query_anchor),
            overlap,
            score,
        )
    }

    /// Candidates from triplet hits, at their estimated tempo and pitch.
    fn stretch(&mut self) -> Vec<Candidate> {
        self.choose(true);
        self.read_votes(true);
        let o = &self.options;
        group_by_track(&self.read, o.min_votes, &mut self.counts, &mut self.hits);
        // Rank tracks by how far their densest band of offsets, among the
        // hits of a few neighbouring pitch shifts, stands above the hits a
        // band of that width collects by chance.
        let query_frames = self.mask.frames() as f64;
        let width = 8.0 + o.max_tempo_change as f64 * query_frames / 2.0;
        let shifts = 2 * o.pitch_reach() as usize + 1;
        let share = SHIFT_WINDOW as f64 / shifts as f64;
        let table = self.catalog.tracks();
        // (excess, track, its hits in `self.hits`, first shift step)
        let mut tracks: Vec<(f32, u32, std::ops::Range<usize>, usize)> = Vec::new();
        // In a large catalog most tracks have a few chance hits: a track
        // whose hits could not rank it among the kept ones even if they all
        // lined up is passed over unranked.
        let mut kept = Largest::new(o.stretch_candidates);
        let mut first = 0;
        let mut starts = [0; MAX_SHIFTS as usize + 1];
        for run in self.hits.chunk_by(same_track) {
            let hits = first..first + run.len();
            first += run.len();
            let t = unpack_vote(run[0]).0;
            let frames = (table.duration_s(TrackId(t))).map_or(1.0, |d| d / frame_seconds());
            let span = frames + query_frames;
            let chance = run.len() as f64 * share;
            let bound = |n: usize| band_excess_bound(n, chance, width, span) as f32;
            if bound(run.len()) < kept.least {
                continue;
            }
            shifted_hits_of(run, shifts, &mut self.pairs, &mut starts);
            let mut best = (f32::NEG_INFINITY, 0);
            for low in 0..=shifts.saturating_sub(SHIFT_WINDOW) {
                let within = shift_window(&self.pairs, &starts, low, shifts);
                if bound(within.len()) <= best.0.max(kept.least) {
                    continue;
                }
                let excess = band_excess(within, chance, width, span, &mut self.bands) as f32;
                if excess > best.0 {
                    best = (excess, low);
                }
            }
            if best.0 > f32::NEG_INFINITY {
                kept.offer(best.0);
                tracks.push((best.0, t, hits, best.1));
            }
        }
        let rank = |(excess, t, ..): &(f32, u32, _, _)| (*excess, table.key(TrackId(*t)));
        let order = |x: &_, y: &_| ranked(rank(x), rank(y)).then(x.1.cmp(&y.1));
        if tracks.len() > o.stretch_candidates {
            tracks.select_nth_unstable_by(o.stretch_candidates, order);
            tracks.truncate(o.stretch_candidates);
        }
        tracks.sort_unstable_by(order);
        self.stretch_ranks.clear();
        self.stretch_ranks.extend(tracks.iter().map(rank));
        let change = o.max_tempo_change as f64;
        let range = TempoRange {
            min: 1.0 - change,
            max: 1.0 + change,
            step: 0.01,
        };
        // A line through a dense band keeps its hits' offsets within the
        // tempo's drift over the query of it: the tempo search needs only
        // the hits near the densest few bands, a few percent of a long
        // track's hits.
        let reach = change * query_frames + 2.0 * width;
        let mut near = Vec::new();
        let mut out = Vec::new();
        for (excess, track, run, low) in tracks {
            shifted_hits_of(&self.hits[run], shifts, &mut self.pairs, &mut starts);
            let run = shift_window(&self.pairs, &starts, low, shifts);
            let dense = dense_offsets(run, width, DENSE_BANDS, reach);
            near.clear();
            near.extend(run.iter().copied().filter(|&(r, q)| {
                let offset = r as f64 - q as f64;
                dense.iter().any(|d| (offset - d).abs() <= reach)
            }));
            let Some((line, votes, pivot)) = fit_tempo(&near, range) else {
                continue;
            };
            if votes < o.min_votes {
                continue;
            }
            let track = TrackId(track);
            let Some(peaks) = self.catalog.peaks(track) else {
                continue;
            };
            let pitch = estimate_pitch(&peaks, &self.peaks, line, o.max_pitch_semitones as f64)
                .unwrap_or(1.0);
            let a = Alignment { pitch, ..line };
            let (overlap, score) = self.mask.score(&peaks, a);
            let mut c = candidate(track, votes, (a, pivot), overlap, score);
            c.rank = excess;
            c.stretched = true;
            out.push(c);
        }
        out
    }
}

/// Where a query's candidates come from once its quick look has found no
/// strong match, path by path: one node's matcher computes each path when
/// asked; a cluster's gateway holds what its shards sent in one round. Both
/// take the paths in the order of [`decide_after_quick`], so that a cluster
/// answers as one node does.
pub trait Paths {
    /// A candidate as this side holds it.
    type Candidate: Clone;
    /// An accepted match as this side reports it.
    type Match;
    /// The options deciding.
    fn options(&self) -> &MatchOptions;
    /// The verified candidate inside.
    fn candidate(c: &Self::Candidate) -> &Candidate;
    /// The match inside.
    fn matched(m: &Self::Match) -> &Match;
    /// The full pair path's candidates.
    fn full(&mut self) -> Vec<Self::Candidate>;
    /// The stretch path's candidates.
    fn stretched(&mut self) -> Vec<Self::Candidate>;
    /// Adds `more` to `candidates`, keeping the better of two for a track.
    fn merge(&self, candidates: &mut Vec<Self::Candidate>, more: Vec<Self::Candidate>);
    /// The accept rule over `candidates` (which it may reorder).
    fn decide(&self, candidates: &mut Vec<Self::Candidate>) -> Option<Self::Match>;
}

/// Decides a query whose quick look found no strong match, given the quick
/// look's candidates: when they hold nothing like the query at its own pitch
/// (see [`MatchOptions::stretch_first`]), the stretch path goes first and
/// its strong answer stands; otherwise, or failing that, the full pair path
/// weighed with the quick look, then with the stretch path. Returns the
/// match and the candidates it was chosen from.
pub fn decide_after_quick<P: Paths>(
    paths: &mut P,
    quick: Vec<P::Candidate>,
) -> (Option<P::Match>, Vec<P::Candidate>) {
    let mut stretched = None;
    if (paths.options()).stretch_first(quick.iter().map(P::candidate)) {
        let found = paths.stretched();
        let mut first = quick.clone();
        paths.merge(&mut first, found.clone());
        let best = paths.decide(&mut first);
        if best
            .as_ref()
            .is_some_and(|m| paths.options().answers_quickly(P::matched(m)))
        {
            return (best, first);
        }
        stretched = Some(found);
    }
    let mut candidates = paths.full();
    paths.merge(&mut candidates, quick);
    let mut best = paths.decide(&mut candidates);
    if best.is_none() {
        let found = stretched.unwrap_or_else(|| paths.stretched());
        paths.merge(&mut candidates, found);
        best = paths.decide(&mut candidates);
    }
    (best, candidates)
}

/// One node's [`Paths`]: each computed when first asked, the full query
/// looked up once for both.
struct MatcherPaths<'m, 'c, 'q> {
    matcher: &'m mut Matcher<'c>,
    query: &'q Fingerprint,
    /// Whether the full query's landmarks are loaded.
    loaded: bool,
}

impl Paths for MatcherPaths<'_, '_, '_> {
    type Candidate = Candidate;
    type Match = Match;

    fn options(&self) -> &MatchOptions {
        &self.matcher.options
    }

    fn candidate(c: &Candidate) -> &Candidate {
        c
    }

    fn matched(m: &Match) -> &Match {
        m
    }

    fn full(&mut self) -> Vec<Candidate> {
        if !self.loaded {
            self.loaded = true;
            return self.matcher.full_path(self.query);
        }
        self.matcher.full_verified()
    }

    fn stretched(&mut self) -> Vec<Candidate> {
        if !self.loaded {
            self.loaded = true;
            self.matcher.load(self.query, &self.query.landmarks);
        }
        self.matcher.stretched(self.query)
    }

    fn merge(&self, candidates: &mut Vec<Candidate>, more: Vec<Candidate>) {
        merge(candidates, more);
    }

    fn decide(&self, candidates: &mut Vec<Candidate>) -> Option<Match> {
        self.matcher.accept(candidates)
    }
}

/// Adds `more` to `candidates`, keeping the better of two for a track.
fn merge(candidates: &mut Vec<Candidate>, more: Vec<Candidate>) {
    merge_by(candidates, more, |c| (c.track, c.score));
}

/// Adds `more` to `candidates`, keeping of two with the same key (what
/// `key_score` gives first) the one with the better score (second), the
/// one already there on a tie: candidates of one track from several paths
/// (or a cluster's shards) weighed together.
pub fn merge_by<T, K: PartialEq>(
    candidates: &mut Vec<T>,
    more: Vec<T>,
    key_score: impl Fn(&T) -> (K, f32),
) {
    for c in more {
        let (key, score) = key_score(&c);
        match candidates.iter_mut().find(|x| key_score(x).0 == key) {
            Some(x) if key_score(x).1 >= score => {}
            Some(x) => *x = c,
            None => candidates.push(c),
        }
    }
}

fn candidate(
    track: TrackId,
    votes: u32,
    (a, pivot_frame): (Alignment, f64),
    overlap: crate::verify::Overlap,
    score: f32,
) -> Candidate {
    Candidate {
        track,
        votes,
        start_frame: a.start_frame,
        tempo: a.tempo as f32,
        pitch: a.pitch as f32,
        peaks: overlap.peaks,
        matched: overlap.matched,
        score,
        pivot_frame,
        rank: votes as f32,
        stretched: false,
    }
}

/// The `n` largest of the values offered so far, for the least of them.
#[derive(Debug)]
struct Largest {
    n: usize,
    values: Vec<f32>,
    /// The least of `values` once it holds `n`, minus infinity before: a
    /// value below it is not among the `n` largest.
    least: f32,
}

impl Largest {
    fn new(n: usize) -> Self {
        Self {
            n,
            values: Vec::with_capacity(n),
            least: f32::NEG_INFINITY,
        }
    }

    fn offer(&mut self, value: f32) {
        if self.values.len() < self.n {
            self.values.push(value);
        } else if value > self.least {
            match self.values.iter_mut().find(|v| **v == self.least) {
                Some(least) => *least = value,
                None => return,
            }
        } else {
            return;
        }
        if self.values.len() == self.n {
            self.least = self.values.iter().copied().fold(f32::INFINITY, f32::min);
        }
    }
}

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

/// Counts a vote of `track` in `counts`.
fn count_vote(counts: &mut Vec<u32>, track: TrackId) {
    let track = track.0 as usize;
    if track >= counts.len() {
        counts.resize(track + 1, 0);
    }
    counts[track] += 1;
}

/// Groups packed `votes` by track with a counting sort into `out`: the
/// votes of each track that has at least `min` of them, in track order.
/// `counts` holds each track's votes (see [`count_vote`]) and is used up.
fn group_by_track(votes: &[u64], min: u32, counts: &mut [u32], out: &mut Vec<u64>) {
    // Each kept track's first slot; `u32::MAX` marks a track left out.
    let mut total = 0;
    for c in counts.iter_mut() {
        let n = *c;
        *c = u32::MAX;
        if n >= min.max(1) {
            *c = total;
            total += n;
        }
    }
    out.clear();
    out.resize(total as usize, 0);
    for &v in votes {
        match counts.get_mut(unpack_vote(v).0 as usize) {
            Some(slot) if *slot != u32::MAX => {
                out[*slot as usize] = v;
                *slot += 1;
            }
            _ => {}
        }
    }
}

/// Sorts one track's packed votes by offset, then query frame.
fn sort_votes(group: &mut [u64]) {
    // A radix sort wins on the long runs of a small catalog's tracks.
    match group.len() > RADIX_SORT_LEN {
        true => radsort::sort(group),
        false => group.sort_unstable(),
    }
}

/// Whether two packed votes are of one track.
fn same_track(a: &u64, b: &u64) -> bool {
    unpack_vote(*a).0 == unpack_vote(*b).0
}

/// The runs of one track each in votes grouped by track.
fn track_groups_mut(votes: &mut [u64]) -> impl Iterator<Item = &mut [u64]> {
    votes.chunk_by_mut(same_track)
}

/// Bits of a triplet vote's query frame that hold its pitch shift step:
/// the difference between the anchor classes of the query's triplet and
/// the catalog's, plus [`MatchOptions::pitch_reach`].
const SHIFT_BITS: u32 = 4;
/// Most pitch shift steps a triplet vote can hold.
const MAX_SHIFTS: u32 = 1 << SHIFT_BITS;
/// Neighbouring shift steps whose hits a track is ranked by: the right
/// track's hits differ from its shift by less than a semitone (each side
/// rounded its anchor to a whole one).
const SHIFT_WINDOW: usize = 2;

/// One track's packed triplet votes as (track frame, query frame) into
/// `out`, by pitch shift step: those of step `s` are at `starts[s]..starts[s
/// + 1]`, for each of `shifts` steps.
fn shifted_hits_of(
    votes: &[u64],
    shifts: usize,
    out: &mut Vec<(u32, u32)>,
    starts: &mut [usize; MAX_SHIFTS as usize + 1],
) {
    let shift_of = |q: u32| (q & (MAX_SHIFTS - 1)) as usize;
    starts.fill(0);
    for &v in votes {
        starts[shift_of(unpack_vote(v).2) + 1] += 1;
    }
    for s in 1..=shifts {
        starts[s] += starts[s - 1];
    }
    let mut next = *starts;
    out.clear();
    out.resize(votes.len(), (0, 0));
    for &v in votes {
        let (_, offset, q) = unpack_vote(v);
        let frame = q >> SHIFT_BITS;
        let at = &mut next[shift_of(q)];
        out[*at] = ((offset + frame as i64) as u32, frame);
        *at += 1;
    }
}

/// The hits of [`SHIFT_WINDOW`] shift steps from `low`, of hits arranged
/// by [`shifted_hits_of`].
fn shift_window<'a>(
    hits: &'a [(u32, u32)],
    starts: &[usize; MAX_SHIFTS as usize + 1],
    low: usize,
    shifts: usize,
) -> &'a [(u32, u32)] {
    &hits[starts[low]..starts[(low + SHIFT_WINDOW).min(shifts)]]
}

/// The votes of `track` among sorted packed `votes`.
fn votes_of(votes: &[u64], track: TrackId) -> &[u64] {
    let first = votes.partition_point(|&v| unpack_vote(v).0 < track.0);
    let last = first + votes[first..].partition_point(|&v| unpack_vote(v).0 == track.0);
    &votes[first..last]
}

/// Slides a window of offsets within `2 * tolerance` of each other over one
/// track's sorted votes, handing `at` the window ending at each vote: its
/// votes, mean offset and mean query frame.
fn slide(group: &[u64], tolerance: i64, mut at: impl FnMut((u32, f64, f64))) {
    let (mut lo, mut count) = (0usize, 0u32);
    let (mut sum_offset, mut sum_query) = (0i64, 0i64);
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
        at((
            count,
            sum_offset as f64 / count as f64,
            sum_query as f64 / count as f64,
        ));
    }
}

/// The window of one track's sorted votes that holds the most, the earliest
/// of equals.
fn best_window(group: &[u64], tolerance: i64) -> Voted {
    let mut top = (0u32, 0.0, 0.0);
    slide(group, tolerance, |w| {
        if w.0 > top.0 {
            top = w;
        }
    });
    voted(group, top)
}

/// The `n` windows of one track's sorted votes that hold the most votes,
/// more than `apart` frames of offset from each other, most votes first.
fn windows(group: &[u64], tolerance: i64, n: usize, apart: i64) -> Vec<Voted> {
    let mut all: Vec<(u32, f64, f64)> = Vec::with_capacity(group.len());
    slide(group, tolerance, |w| all.push(w));
    // Most votes first, the earliest of equals (a stable sort).
    all.sort_by_key(|w| std::cmp::Reverse(w.0));
    let mut chosen: Vec<(u32, f64, f64)> = Vec::with_capacity(n);
    for w in all {
        if chosen.len() == n {
            break;
        }
        if chosen.iter().all(|c| (c.1 - w.1).abs() > apart as f64) {
            chosen.push(w);
        }
    }
    chosen.into_iter().map(|w| voted(group, w)).collect()
}

/// A window (votes, mean offset, mean query frame) of the track whose votes
/// `group` holds.
fn voted(group: &[u64], (votes, offset, query_anchor): (u32, f64, f64)) -> Voted {
    Voted {
        track: TrackId(group.first().map_or(0, |&v| unpack_vote(v).0)),
        votes,
        query_anchor,
        ref_anchor: query_anchor + offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CatalogWriter, NewTrack};
    use crate::tracks::TrackMeta;
    use earmark_engine::fingerprint::SCHEME;
    use earmark_engine::testutil::{mix_at_snr, noise, reissue, song};

    proptest::proptest! {
        #[test]
        fn the_least_of_the_largest_is_the_nth_largest(
            values in proptest::collection::vec(-100.0f32..100.0, 0..200),
            n in 1usize..40,
        ) {
            let mut largest = Largest::new(n);
            for &v in &values {
                largest.offer(v);
            }
            let mut sorted = values.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let expected = sorted.get(n - 1).copied().unwrap_or(f32::NEG_INFINITY);
            proptest::prop_assert_eq!(largest.least, expected);
        }
    }

    const RATE: u32 = 8_000;

    fn fingerprint(samples: &[f32], options: &FingerprintOptions) -> Fingerprint {
        earmark_engine::fingerprint_samples(samples, RATE, options).expect("8 kHz")
    }

    /// A catalog in `dir` of `songs`, named `song{i}` by their index.
    fn catalog_of(dir: &std::path::Path, songs: &[(usize, &[f32])]) -> Vec<TrackId> {
        let mut writer = CatalogWriter::open(dir, SCHEME).expect("catalog");
        let batch = (songs.iter())
            .map(|&(i, samples)| {
                let f = fingerprint(samples, &FingerprintOptions::reference());
                let name = format!("song{i}");
                NewTrack {
                    meta: TrackMeta {
                        external_id: name.clone(),
                        ..TrackMeta::default()
                    },
                    duration_s: samples.len() as f64 / RATE as f64,
                    path: format!("/{name}.wav"),
                    content_hash: name,
                    landmarks: f.landmarks,
                    peaks: f.peaks,
                    embedding: None,
                    beat_chroma: Vec::new(),
                }
            })
            .collect();
        writer.commit(batch).expect("commit")
    }

    #[test]
    fn the_stretch_path_reads_a_share_of_a_querys_triplet_hits_within_bounds() {
        let o = MatchOptions::default();
        // A short query reads all it can up to the floor, a 20 s one in the
        // dev catalog (200,000 hits) a share, one in a large catalog the cap.
        assert_eq!(o.stretch_budget(20_000), 50_000);
        assert_eq!(o.stretch_budget(200_000), 80_000);
        assert_eq!(o.stretch_budget(20_000_000), 200_000);
    }

    #[test]
    fn a_track_whose_music_repeats_offers_each_repeat_as_a_window_of_votes() {
        let track = TrackId(7);
        // 10 votes at offset 100 (one a frame off), 8 at 300 (a repeat), 1 at 104.
        let mut votes: Vec<u64> = (0..10)
            .map(|q| (100 + (q == 3) as i64, q))
            .chain((0..8).map(|q| (300, q + 20)))
            .chain([(104, 40)])
            .filter_map(|(offset, q)| pack_vote(track, offset, q))
            .collect();
        votes.sort_unstable();
        let offset = |v: &Voted| v.ref_anchor - v.query_anchor;
        let found = windows(&votes, 1, 3, ALTERNATE_APART);
        let got: Vec<(u32, i64)> = (found.iter())
            .map(|v| (v.votes, offset(v).round() as i64))
            .collect();
        assert_eq!(got, [(10, 100), (8, 300)], "104 is the window at 100 again");
        assert!((offset(&found[0]) - 100.1).abs() < 1e-9, "the mean offset");
        // One window is the best one.
        assert_eq!(windows(&votes, 1, 1, 0), [best_window(&votes, 1)]);
        assert_eq!(votes_of(&votes, track).len(), votes.len());
        assert!(votes_of(&votes, TrackId(8)).is_empty());
    }

    #[test]
    fn a_track_whose_votes_dwarf_the_others_is_accepted_on_a_modest_score() {
        let o = MatchOptions::default();
        let track = |votes, score| Candidate {
            track: TrackId(0),
            votes,
            start_frame: 0.0,
            tempo: 1.0,
            pitch: 1.0,
            peaks: 400,
            matched: 60,
            score,
            pivot_frame: 0.0,
            rank: votes as f32,
            stretched: false,
        };
        let decide = |top: Candidate, rival_votes| {
            let runner_up = track(rival_votes, 3.0);
            o.decide(&top, Some(&runner_up), rival_votes, || top)
                .is_some()
        };
        // Pink noise at -10 dB (q01303 of the dev queries): 23 aligned votes
        // against at most 8 of any other track, a score of 6.7.
        assert!(decide(track(23, 6.7), 8));
        assert!(decide(track(23, 4.0), 8));
        // Chance: the best of an out-of-catalog clip had at most 1.8 times
        // the next one's votes.
        assert!(!decide(track(17, 4.0), 10));
        // Too few votes, or a verification that finds nothing.
        assert!(!decide(track(10, 5.0), 3));
        assert!(!decide(track(23, 2.0), 8));
        // The score rule alone still accepts.
        assert!(decide(track(9, 12.0), 9));
        // Triplet hits on a stretch path's line are not pair votes.
        let stretched = Candidate {
            stretched: true,
            ..track(23, 4.0)
        };
        assert!(!decide(stretched, 8));
    }

    #[test]
    fn twins_verify_beyond_doubt_about_as_well_and_alike() {
        let o = MatchOptions::default();
        let heard = |score, tempo| Candidate {
            track: TrackId(0),
            votes: 30,
            start_frame: 0.0,
            tempo,
            pitch: 1.0,
            peaks: 400,
            matched: 60,
            score,
            pivot_frame: 0.0,
            rank: 30.0,
            stretched: false,
        };
        assert!(o.twins(&heard(40.0, 1.0), &heard(31.0, 1.004)));
        // Far apart, one in doubt, or one heard at another tempo: rivals.
        assert!(!o.twins(&heard(40.0, 1.0), &heard(28.0, 1.0)));
        assert!(!o.twins(&heard(13.0, 1.0), &heard(11.0, 1.0)));
        assert!(!o.twins(&heard(20.0, 1.0), &heard(19.0, 1.042)));
    }

    #[test]
    fn the_same_audio_in_two_tracks_is_answered_by_the_better_not_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let songs: Vec<Vec<f32>> = (0..2).map(|seed| song(RATE, 60.0, seed)).collect();
        // Track 2 is track 1 again, as another release would hold it.
        let copy = reissue(&songs[1]);
        let ids = catalog_of(dir.path(), &[(0, &songs[0]), (1, &songs[1]), (2, &copy)]);
        let catalog = Catalog::open(dir.path()).expect("open");
        let mut matcher = Matcher::new(&catalog, MatchOptions::default());
        for (from, at_s) in [(&songs[1], 5), (&copy, 20), (&songs[1], 40)] {
            let clip = &from[at_s * RATE as usize..(at_s + 10) * RATE as usize];
            let id = matcher.identify(&fingerprint(clip, &FingerprintOptions::query()));
            let best = id.best.expect("the audio is in the catalog");
            let track = best.candidate.track;
            assert!(track == ids[1] || track == ids[2], "{best:?}");
            assert!((best.candidate.offset_s() - at_s as f64).abs() < 0.1);
            // Its twin is not a rival, and leaves the candidates.
            assert!(best.runner_up_score < 6.0, "{best:?}");
            let twin = if track == ids[1] { ids[2] } else { ids[1] };
            assert!(id.candidates.iter().all(|c| c.track != twin));
            assert_eq!(id.candidates[0].track, track);
        }
        // The other song is unaffected.
        let clip = &songs[0][30 * RATE as usize..40 * RATE as usize];
        let id = matcher.identify(&fingerprint(clip, &FingerprintOptions::query()));
        assert_eq!(id.best.map(|m| m.candidate.track), Some(ids[0]));
    }

    #[test]
    fn a_clear_query_takes_the_quick_look_and_a_noisy_one_the_full_query() {
        let dir = tempfile::tempdir().expect("tempdir");
        let songs: Vec<Vec<f32>> = (0..3).map(|seed| song(RATE, 60.0, seed)).collect();
        let all: Vec<(usize, &[f32])> = songs.iter().map(Vec::as_slice).enumerate().collect();
        let ids = catalog_of(dir.path(), &all);
        let catalog = Catalog::open(dir.path()).expect("open");
        let mut matcher = Matcher::new(&catalog, MatchOptions::default());
        let clip = &songs[1][20 * RATE as usize..30 * RATE as usize];

        let clear = fingerprint(clip, &FingerprintOptions::query());
        let id = matcher.identify(&clear);
        let best = id.best.expect("a clear clip is found");
        assert_eq!(best.candidate.track, ids[1]);
        assert!(best.candidate.score >= MatchOptions::default().quick_min_score);
        let full = matcher.identify_with(&clear, true).query_landmarks;
        assert!(
            id.query_landmarks * 4 < full,
            "the quick look used {} landmarks, the full query {full}",
            id.query_landmarks
        );

        // Noise loud enough to leave only weak evidence: the full query runs.
        let noisy = mix_at_snr(clip, &noise(RATE, 10.0, 1.0, 9), -12.0);
        let noisy = fingerprint(&noisy, &FingerprintOptions::query());
        let id = matcher.identify(&noisy);
        assert_eq!(
            id.query_landmarks,
            matcher.identify_with(&noisy, true).query_landmarks
        );
    }

    #[test]
    fn a_part_of_a_catalog_counted_as_the_whole_finds_what_the_whole_finds() {
        let songs: Vec<Vec<f32>> = (0..4).map(|seed| song(RATE, 30.0, seed)).collect();
        let all: Vec<(usize, &[f32])> = songs.iter().map(Vec::as_slice).enumerate().collect();
        let (whole_dir, part_dir) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        catalog_of(whole_dir.path(), &all);
        catalog_of(part_dir.path(), &all[1..3]);
        let (whole, part) = (
            Catalog::open(whole_dir.path()).expect("open"),
            Catalog::open(part_dir.path()).expect("open"),
        );
        let clip = mix_at_snr(
            &songs[1][8 * RATE as usize..16 * RATE as usize],
            &noise(RATE, 8.0, 1.0, 5),
            0.0,
        );
        let query = fingerprint(&clip, &FingerprintOptions::query());
        // Limits that bind: a hash of more than one posting is too common,
        // and the budget stops short of the query's rarest hashes.
        let options = MatchOptions {
            max_postings_per_hash: 1,
            max_postings_ratio: 0.0,
            max_hits: 1_500,
            max_stretch_hits: 1_500,
            ..MatchOptions::default()
        };
        // The candidates of the part's tracks, by name: of the pair path,
        // and of the stretch path.
        let found = |catalog: &Catalog, counts: Option<WholeCounts>| {
            let mut matcher = Matcher::new(catalog, options.clone());
            if let Some(counts) = counts {
                matcher.count_as(counts);
            }
            let named = |candidates: Vec<Candidate>| {
                let mut named: Vec<(String, Candidate)> = (candidates.into_iter())
                    .map(|c| {
                        let track = catalog.tracks().get(c.track).expect("track");
                        let unnumbered = Candidate {
                            track: TrackId(0),
                            ..c
                        };
                        (track.meta.external_id.clone(), unnumbered)
                    })
                    .filter(|(name, _)| name == "song1" || name == "song2")
                    .collect();
                named.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.score.total_cmp(&a.1.score)));
                named
            };
            let paired = matcher.full_candidates(&query, Vec::new());
            let mut stretched = Vec::new();
            matcher.add_stretched(&query, &mut stretched);
            (named(paired), named(stretched))
        };
        let mut hashes: Vec<u32> = lookups(&query.landmarks, &options).collect();
        hashes.sort_unstable();
        hashes.dedup();
        let counts = WholeCounts {
            postings: whole.postings(),
            counts: (hashes.into_iter())
                .map(|h| {
                    let mut n = [0];
                    whole.count_postings(h, &mut n);
                    (h, n[0])
                })
                .filter(|c| c.1 > 0)
                .collect(),
        };
        let expected = found(&whole, None);
        assert!(
            (expected.0.iter()).any(|(name, c)| name == "song1" && c.votes >= 10),
            "{expected:?}"
        );
        assert_eq!(found(&part, Some(counts)), expected);
        // By its own counts, the part looks up other hashes.
        assert_ne!(found(&part, None), expected);
    }

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
        let votes = vec![
            vote(2, 41, 3),
            vote(1, 100, 20),
            vote(3, 7, 1),
            vote(1, 500, 5),
            vote(1, 101, 30),
            vote(2, 3, 1),
            vote(1, 100, 10),
            vote(3, 7, 2),
            vote(1, 99, 40),
            vote(2, 40, 2),
        ];
        let (mut counts, mut grouped) = (Vec::new(), Vec::new());
        for &v in &votes {
            count_vote(&mut counts, TrackId(unpack_vote(v).0));
        }
        group_by_track(&votes, 3, &mut counts, &mut grouped);
        let tracks: Vec<u32> = grouped.iter().map(|&v| unpack_vote(v).0).collect();
        assert_eq!(
            tracks,
            [1, 1, 1, 1, 1, 2, 2, 2],
            "track 3 has too few votes"
        );
        track_groups_mut(&mut grouped).for_each(sort_votes);
        assert!(grouped.is_sorted(), "each track's votes by offset");
        let best: Vec<Voted> = (grouped.chunk_by(same_track))
            .map(|g| best_window(g, 1))
            .collect();
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
        let best = best_window(&votes, 1);
        assert_eq!(best.votes, 3);
        assert!(best.ref_anchor - best.query_anchor < -6.0);
    }
}
