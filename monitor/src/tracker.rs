//! The tracker: window matches in, plays out.
//!
//! Each window is identified; a match that no play under way explains starts
//! a play. A play under way is checked in every window at its own alignment
//! (no hash lookups), so it survives noise, speech over it and a crossfade
//! into the next track; once no window for `lost_after` frames has found it, it
//! ends. A play knows where in the stream each track frame sounds (start,
//! tempo, pitch), so its start and end are refined second by second: a
//! second belongs to the play while enough of the track's peaks that fall in
//! it are found among the stream's peaks.

use earmark_engine::Fingerprint;
use earmark_engine::fingerprint::frame_seconds;
use earmark_index::verify::PeakMask;
use earmark_index::{Alignment, Candidate, Catalog, Matcher, TrackId};

use crate::window::{Window, Windows};

/// Frames per block of the boundary search (about a second).
const BLOCK: u32 = 31;
/// Frames either side of its expected place that a play is looked for.
const DRIFT_FRAMES: i32 = 4;
/// What a window's score at a play's expected place shifted for drift counts
/// less than the score: the best of eight shifted places beats one place by
/// chance alone. Counted at the full score, such best-of-eight checks kept
/// plays going past their tracks' ends on chance evidence; on the dev
/// sessions at four frame phases, scans and monitors then agreed within 1 s
/// on 208 of 280 plays, and on 220 with this penalty (207 with 0.5, 214
/// with 1.5, 216 with 2; 189 with no shifted place counting at all).
const DRIFT_PENALTY: f32 = 1.0;
/// A match within this many frames (2 s) of where a play expects its track
/// is that play heard again.
const SAME_PLACE_FRAMES: f64 = 2.0 / frame_seconds();
/// Anchors must span this many frames (10 s) before a play's tempo is fitted
/// through them rather than taken from one window.
const FIT_SPAN_FRAMES: f64 = 312.0;
/// Evidence (z-scores summed over a window's seconds) that a shifted line
/// must hold beyond a play's own to replace it, at least, and at least as
/// much again as the play's own (see [`settled`]): only a line that has lost
/// its track moves. Where the line holds it, a frame or two either way holds
/// about as much (peaks are found within a frame), and moving to the best of
/// nine by a lesser margin moves lines at random: on generated songs of
/// sustained chords, a crossfade's boundaries then came out 3 and 5 s off.
const SETTLE_MARGIN: f32 = 3.0;
/// Seconds without the track that a start search crosses.
const MAX_GAP_BLOCKS: u32 = 3;
/// Frames a boundary steps outward at a time once its run is found.
const EDGE_STEP: u32 = BLOCK / 2;
/// Most steps a boundary takes outward beyond its run (2 s).
const MAX_EDGE_STEPS: u32 = 4;
/// The z-score of a lone second beyond a second without the track that
/// carries a boundary search's run on: a second scores z 2 by chance once in
/// 30 (see [`CHANCE_SHIFTS`]), 4 once in a few thousand. After a generated
/// song, a chance second of z 3.5 carried its end 2.3 s into the music that
/// followed.
const LONE_Z: f32 = 4.0;
/// Blocks in a row where the track has too few peaks to tell (a pause in
/// the music) that a boundary search steps over.
const MAX_SILENT_BLOCKS: u32 = 3;
/// Furthest a boundary is carried beyond the windows that heard the play by
/// evidence summed over seconds (see [`carry`]), in frames (about 29 s).
const CARRY_REACH: u32 = 900;
/// What each second's z-score must bring to the sum that carries a boundary
/// on: half a standard error, so chance seconds (z about 0) drag it down.
const CARRY_DRIFT: f32 = 0.5;
/// The sum a boundary needs to be carried, and the fall from its peak that
/// ends the walk.
const CARRY_MIN: f32 = 6.0;
/// The sum that carries a play's end when the walk reaches the end of the
/// stream before the sum could fall: the seconds that would have taken it
/// to `CARRY_MIN` were never recorded. On the dev sessions, at four frame
/// phases, the last track (faded out under babble in the last 3 s) ended
/// 4.2-4.6 s early in 5 of 12 scans without it, and in none with it.
const CARRY_TO_END: f32 = 2.0;
/// A second's z-score beyond which a boundary steps outward over it.
const EDGE_Z: f32 = 1.0;
/// Frames between the last block where a play is heard and its end when
/// it hands over to another play: where the incoming track is first heard
/// just as the outgoing one stops being heard, the crossfade's second half
/// hid the outgoing track (drowned in the incoming one and the venue's
/// noise). On four dev sessions such ends came a median 1 s before the
/// truth, starts on time.
const FADE_TAIL: u32 = BLOCK;
/// A play starting within this many frames of the last block where another
/// is heard (2 s) takes over from it.
const HANDOVER_FRAMES: f64 = 62.0;

/// How plays are kept and bounded.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrackerOptions {
    /// A play under way is confirmed by a window scoring at least this.
    pub keep_score: f32,
    /// A play is lost when windows starting more than this many frames
    /// after the last window that confirmed it have all missed it.
    pub lost_after: u32,
    /// A lost play is found again, as the same play, by a window that
    /// scores at least `found_again_score` where the play expects its
    /// track, until windows starting this many frames after the last one
    /// that confirmed it; then it ends. A track buried for a while under an
    /// announcement and the crowd goes on where it was.
    pub forgotten_after: u32,
    /// See `forgotten_after`: the accept rule's threshold, since the
    /// place is the play's own but the evidence is a window's alone.
    pub found_again_score: f32,
    /// Furthest a boundary search looks beyond the windows that confirmed
    /// the play, in frames.
    pub boundary_reach: u32,
    /// A second belongs to a play when the share of the track's peaks found
    /// in it exceeds the share found at wrong alignments by this much.
    pub boundary_excess: f32,
    /// A play is announced once a window ending this many frames after the
    /// one that found it confirms it: a match that does not last is
    /// chance, and never reported.
    pub confirm_after: u32,
    /// A play found by a window scoring at least this is announced at
    /// once, if set. Chance reaches such scores now and then on the last
    /// seconds of a window; those plays are withdrawn when they end (see
    /// `min_play`).
    pub sure_score: Option<f32>,
    /// Whether a track may start a play while a playing track outscores it
    /// over the window, if it leads in the window's second half: the
    /// incoming track of a crossfade is named sooner (a live monitor's
    /// concern; a scan searches every play's start back anyway).
    pub early_newcomers: bool,
    /// When no newcomer is found, the window's last this many frames are
    /// identified on their own, if set: a track that has just begun fills
    /// them, where it fills only part of the window.
    pub fresh_frames: Option<u32>,
    /// An announced play whose music, bounded when it ends, lasts fewer
    /// frames than this was chance and is withdrawn: a sure score on the
    /// last seconds of a window, from music outside the catalog, is not
    /// heard again around them.
    pub min_play: u32,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        Self {
            keep_score: 4.0,
            // 12 s of speech or noise over a play.
            lost_after: 372,
            // 48 s: within the minute of stream the windows keep, where
            // the end of a play is searched once it is forgotten.
            forgotten_after: 1_500,
            found_again_score: 6.0,
            boundary_reach: 500,
            boundary_excess: 0.07,
            confirm_after: 93,
            sure_score: None,
            early_newcomers: false,
            fresh_frames: None,
            // 6 s. On the dev sessions, at four frame phases, the chance
            // plays lasted 2.9-3.5 s and the shortest true one 8.3 s.
            min_play: 187,
        }
    }
}

/// One play of a catalog track.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Play {
    /// Number of the play in its stream, from 1 (0 until it is confirmed).
    pub id: u64,
    /// The track.
    pub track: TrackId,
    /// Stream frame where it starts.
    pub start_frame: f64,
    /// Stream frame where it ends.
    pub end_frame: f64,
    /// Track frame heard at stream frame 0 (by extrapolation).
    pub track_at_zero: f64,
    /// Track frames per stream frame (1.04: played 4% fast).
    pub tempo: f32,
    /// Stream frequency over track frequency.
    pub pitch: f32,
    /// Best verification score of its windows.
    pub score: f32,
}

impl Play {
    /// Start in seconds from the stream's start.
    pub fn start_s(&self) -> f64 {
        self.start_frame * frame_seconds()
    }

    /// End in seconds from the stream's start.
    pub fn end_s(&self) -> f64 {
        self.end_frame * frame_seconds()
    }

    /// Where in the track the play starts, in seconds.
    pub fn track_start_s(&self) -> f64 {
        self.track_frame(self.start_frame) * frame_seconds()
    }

    /// The share of the stream frames `span` in which the track, `length`
    /// frames long, is heard at the play's alignment.
    fn share_within(&self, span: (u32, u32), length: f64) -> f64 {
        let track = |frame: u32| self.track_frame(frame as f64);
        let (from, to) = (track(span.0), track(span.1));
        let inside = to.min(length) - from.max(0.0);
        (inside / (to - from)).clamp(0.0, 1.0)
    }

    fn track_frame(&self, stream_frame: f64) -> f64 {
        self.track_at_zero + self.tempo as f64 * stream_frame
    }

    /// The alignment of a window starting at `start` with this play.
    fn alignment(&self, start: u32) -> Alignment {
        Alignment {
            start_frame: self.track_frame(start as f64),
            tempo: self.tempo as f64,
            pitch: self.pitch as f64,
        }
    }
}

/// What the tracker reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlayEvent {
    /// A play began (its start is refined, its end is where it was last heard).
    Started(Play),
    /// A play under way was heard again: its end moved on.
    Heard(Play),
    /// A play is over.
    Ended(Play),
    /// An announced play was chance (see [`TrackerOptions::min_play`]).
    Withdrawn(Play),
}

#[derive(Debug)]
struct Active {
    play: Play,
    /// Stream frames of the last window that confirmed it.
    last_window: (u32, u32),
    misses: u32,
    /// (stream frame, track frame) points the play's alignment is fitted to.
    anchors: Vec<(f64, f64)>,
    /// Stream frames of the window that found it.
    found: (u32, u32),
    /// The score it was found with.
    found_score: f32,
    /// Whether its start was searched again with a fitted tempo.
    refitted: bool,
    /// Whether it is lost (see [`TrackerOptions::lost_after`]): it is then
    /// no longer playing, but may be found again.
    lost: bool,
    /// Whether a window ending `confirm_after` frames or more after the one
    /// that found it identified it again on its own, as a play must before
    /// it is announced; one announced at once on a sure score that never
    /// was is withdrawn when it ends. Its checks where it is expected do not
    /// count: those windows share most of their audio with the one that
    /// found it, and so its chance alignments (at a crossfade of music
    /// outside the catalog, a sure score's play was kept for 7.4 s so).
    identified_again: bool,
}

impl Active {
    /// Whether a window spanning the stream frames `span` ends
    /// `confirm_after` frames or more after the one that found the play.
    fn due(&self, span: (u32, u32), confirm_after: u32) -> bool {
        span.1 >= self.found.1 + confirm_after
    }

    /// Stream frames its anchors span.
    fn anchor_span(&self) -> f64 {
        match (self.anchors.first(), self.anchors.last()) {
            (Some(f), Some(l)) => l.0 - f.0,
            _ => 0.0,
        }
    }
}

impl Active {
    /// Refits the play's alignment through its anchors: a least-squares line
    /// once they span 10 seconds, else through the latest with `tempo`.
    fn fit(&mut self, tempo: f32, pitch: f32) {
        self.play.pitch = pitch;
        let (first, last) = match (self.anchors.first(), self.anchors.last()) {
            (Some(&f), Some(&l)) => (f, l),
            _ => return,
        };
        let n = self.anchors.len() as f64;
        let (ms, mt) = self
            .anchors
            .iter()
            .fold((0.0, 0.0), |(a, b), &(s, t)| (a + s / n, b + t / n));
        let (sss, sst) = self.anchors.iter().fold((0.0, 0.0), |(a, b), &(s, t)| {
            (a + (s - ms) * (s - ms), b + (s - ms) * (t - mt))
        });
        let slope = if last.0 - first.0 >= FIT_SPAN_FRAMES && sss > 0.0 {
            sst / sss
        } else {
            tempo as f64
        };
        self.play.tempo = slope as f32;
        self.play.track_at_zero = if slope == tempo as f64 {
            last.1 - slope * last.0
        } else {
            mt - slope * ms
        };
    }
}

/// Turns window matches into plays.
#[derive(Debug, Default)]
pub struct Tracker {
    options: TrackerOptions,
    active: Vec<Active>,
    plays: u64,
}

impl Tracker {
    /// A tracker whose first play is numbered `first` (for a stream that
    /// continues an earlier one's numbering).
    pub fn numbered_from(options: TrackerOptions, first: u64) -> Self {
        Self {
            options,
            plays: first.saturating_sub(1),
            ..Self::default()
        }
    }

    /// Plays under way (not lost).
    pub fn active(&self) -> impl Iterator<Item = &Play> {
        self.active.iter().filter(|a| !a.lost).map(|a| &a.play)
    }

    /// Identifies a window and updates the plays; `windows` supplies the
    /// stream's recent peaks for the boundary search.
    pub fn window(
        &mut self,
        matcher: &mut Matcher<'_>,
        windows: &Windows,
        window: &Window,
    ) -> Vec<PlayEvent> {
        let mut events = Vec::new();
        // While every play under way was heard in the last window, the music
        // is being followed: the stretch path (tempo and pitch changes beyond
        // what a play's own checks absorb) is only needed when it is not.
        let following = !self.active.is_empty() && self.active.iter().all(|a| a.misses == 0);
        let id = matcher.identify_with(&window.fingerprint, !following);
        let span = (window.start, window.start + window.fingerprint.frames);
        let middle = middle(span);
        let heard_at = |c: &Candidate| heard_at(c, span);
        // A play not yet announced is confirmed only by a window that
        // identifies it again on its own, by the accept rule, leaving aside
        // the other plays under way (a crossfade's outgoing track): a check
        // where it is expected shares most of its audio with the window that
        // found it, and so its chance alignments.
        let rival = |track: TrackId| {
            (id.candidates.iter())
                .filter(|c| c.track != track && !self.playing(c.track))
                .map(|c| c.score)
                .fold(0.0f32, f32::max)
        };
        let again: Vec<bool> = (self.active.iter())
            .map(|a| {
                let expected = a.play.track_frame(middle);
                id.candidates.iter().any(|c| {
                    c.track == a.play.track
                        && (heard_at(c) - expected).abs() < SAME_PLACE_FRAMES
                        && matcher.options().accepts(c, rival(c.track))
                })
            })
            .collect();
        // A track no play explains starts one when it passes the accept
        // rule against all others or, with early newcomers, against the
        // other tracks not playing and against those playing in the
        // window's second half: in a crossfade the outgoing track may still
        // outscore the incoming one over the window, not where it fades
        // out; another edition of the playing track is outscored there too.
        let newcomer = (id.candidates.iter())
            .find(|c| !self.explains(c, span))
            .filter(|c| matcher.options().accepts(c, rival(c.track)))
            .and_then(|c| match id.best {
                Some(m) if m.candidate.track == c.track => {
                    (!self.twin_of_playing(matcher, window, c)).then_some(m.candidate)
                }
                _ if self.options.early_newcomers => self
                    .holds_late(matcher, window, c, &id.candidates)
                    .then_some(*c),
                _ => None,
            });
        // Plays under way are checked where they are expected, and a few
        // frames either side: a clear improvement there is drift, and the
        // point found anchors the play's alignment. A play not yet announced
        // counts as confirmed only if the window also identified it again.
        let confirm_after = self.options.confirm_after;
        let (keep, found_again) = (self.options.keep_score, self.options.found_again_score);
        let catalog = matcher.catalog();
        let mut confirmed: Vec<bool> = (self.active.iter_mut())
            .zip(&again)
            .map(|(a, &again)| {
                a.identified_again |= again && a.due(span, confirm_after);
                // A window the track fills less than half of, at the play's
                // alignment, holds too few of its peaks to tell: by chance,
                // such checks past a track's end carried a play on over the
                // next track.
                if a.play
                    .share_within(span, track_frames(catalog, a.play.track))
                    < 0.5
                {
                    return false;
                }
                let needed = if a.lost { found_again } else { keep };
                let expected = a.play.alignment(window.start);
                let shifts = -DRIFT_FRAMES..=DRIFT_FRAMES;
                let at = |shift: i32| Alignment {
                    start_frame: expected.start_frame + shift as f64,
                    ..expected
                };
                let alignments: Vec<Alignment> = shifts.map(at).collect();
                let scores = matcher.check(a.play.track, &alignments);
                let (shift, score) = drifted(scores.iter().map(|c| c.score));
                a.play.score = a.play.score.max(score);
                if score >= needed {
                    let track_frame = a.play.track_frame(middle) + shift as f64;
                    a.anchors.push((middle, track_frame));
                    let tempo = a.play.tempo;
                    a.fit(tempo, a.play.pitch);
                }
                score >= needed && (a.play.id > 0 || again)
            })
            .collect();
        // A match of a track already playing belongs to that play. At the
        // place the play expects, it adds an anchor point, and the play's
        // tempo is fitted through all of them (one window measures tempo to
        // a few tenths of a percent; a minute of anchors far better). Where
        // the play is unconfirmed, a match elsewhere in the same track is its
        // music repeating, as looped music does: the play follows it (a lost
        // play does not: that match starts another play of the track).
        let best_playing =
            (id.best).and_then(|m| Some((self.explaining(&m.candidate, span)?, m.candidate)));
        if let Some((i, c)) = best_playing {
            let track_frame = heard_at(&c);
            let a = &mut self.active[i];
            a.identified_again |= a.due(span, confirm_after);
            let drift = a.play.track_frame(middle) - track_frame;
            if drift.abs() < SAME_PLACE_FRAMES {
                if !confirmed[i] {
                    a.anchors.push((middle, track_frame));
                    a.fit(c.tempo, c.pitch);
                }
                confirmed[i] = true;
            } else if !confirmed[i] {
                a.anchors = vec![(middle, track_frame)];
                a.fit(c.tempo, c.pitch);
                // Its start, searched at the old place, is searched again.
                a.refitted = false;
                confirmed[i] = true;
            }
        }
        let newcomer = match newcomer {
            Some(c) => Some((c, span)),
            None => self.fresh_newcomer(matcher, window),
        };
        if let Some((c, found_in)) = newcomer {
            self.begin(matcher, windows, c, found_in);
            confirmed.push(true);
        }
        // One window measures tempo roughly (a play found by the pair hashes
        // is taken at tempo 1): once anchors span enough to fit it, the
        // start is searched again, since a wrong tempo loses the track a few
        // seconds away from the window that found it.
        for i in 0..self.active.len() {
            let a = &self.active[i];
            if a.refitted || a.anchor_span() < FIT_SPAN_FRAMES {
                continue;
            }
            let (play, found) = (a.play, a.found);
            let start = self.start(matcher.catalog(), windows, &play, found);
            let a = &mut self.active[i];
            a.refitted = true;
            if start != a.play.start_frame {
                a.play.start_frame = start;
                if a.play.id > 0 {
                    events.push(PlayEvent::Heard(a.play));
                }
            }
        }
        // Confirmed plays extend; the others end after enough misses.
        let mut i = 0;
        while i < self.active.len() {
            let a = &mut self.active[i];
            if confirmed[i] {
                a.last_window = span;
                a.misses = 0;
                let grew = span.1 as f64 > a.play.end_frame;
                a.play.end_frame = a.play.end_frame.max(span.1 as f64);
                let due = (self.options.sure_score).is_some_and(|s| a.found_score >= s)
                    || a.due(span, self.options.confirm_after);
                if a.play.id == 0 && due {
                    self.plays += 1;
                    a.play.id = self.plays;
                    events.push(PlayEvent::Started(a.play));
                } else if grew && a.play.id > 0 {
                    events.push(PlayEvent::Heard(a.play));
                }
            } else {
                a.misses += 1;
            }
            let silent = span.0.saturating_sub(a.last_window.0);
            a.lost = silent > self.options.lost_after;
            // A play never announced is not kept once lost.
            let forgotten = silent > self.options.forgotten_after || a.play.id == 0;
            if a.lost && forgotten {
                let a = self.active.remove(i);
                confirmed.remove(i);
                // A play never confirmed was chance: nobody hears of it.
                if a.play.id > 0 {
                    events.push(self.close(matcher.catalog(), windows, a, false));
                }
            } else {
                i += 1;
            }
        }
        events
    }

    /// Whether a play of `track` is under way (and not lost).
    fn playing(&self, track: TrackId) -> bool {
        self.active.iter().any(|a| a.play.track == track && !a.lost)
    }

    /// The play that explains `c`, a match in the stream frames `span`: a
    /// play of its track under way, or a lost one (see
    /// [`TrackerOptions::forgotten_after`]) that expects the track where
    /// `c` hears it.
    fn explaining(&self, c: &Candidate, span: (u32, u32)) -> Option<usize> {
        let (middle, heard_at) = (middle(span), heard_at(c, span));
        (self.active.iter()).position(|a| {
            a.play.track == c.track
                && (!a.lost || (a.play.track_frame(middle) - heard_at).abs() < SAME_PLACE_FRAMES)
        })
    }

    /// Whether a play explains `c` (see [`Tracker::explaining`]).
    fn explains(&self, c: &Candidate, span: (u32, u32)) -> bool {
        self.explaining(c, span).is_some()
    }

    /// Whether `c`, a match in `window`, is a twin (see
    /// [`earmark_index::MatchOptions::twins`]) of a play under way where
    /// the play expects its track: the same audio in another track (another
    /// release, a re-encoding) is the play going on, not another play.
    fn twin_of_playing(&self, matcher: &Matcher<'_>, window: &Window, c: &Candidate) -> bool {
        (self.active.iter().filter(|a| !a.lost)).any(|a| {
            let expected = a.play.alignment(window.start);
            let heard = matcher.check(a.play.track, &[expected]);
            (heard.first()).is_some_and(|h| matcher.options().twins(c, h))
        })
    }

    /// Whether `c` passes the accept rule against the plays under way in
    /// the second half of `window`, each where it expects its track or
    /// where the window's `candidates` found it.
    fn holds_late(
        &self,
        matcher: &Matcher<'_>,
        window: &Window,
        c: &Candidate,
        candidates: &[Candidate],
    ) -> bool {
        let frames = window.fingerprint.frames;
        let half = frames / 2;
        let late = Fingerprint::between(&window.fingerprint.peaks, [], half, frames);
        let found = (candidates.iter())
            .filter(|o| self.playing(o.track))
            .map(|o| (o.track, o.alignment().shifted(half as f64)));
        let expected =
            (self.active.iter()).map(|a| (a.play.track, a.play.alignment(window.start + half)));
        let mut heard = vec![(c.track, c.alignment().shifted(half as f64))];
        heard.extend(found.chain(expected));
        leads(matcher, &late, &heard)
    }

    /// A match of a track not playing in the last `fresh_frames` of
    /// `window`, by the accept rule against every other track and against
    /// the plays under way where they expect their tracks, with the stream
    /// frames it spans: the query last identified is then that part.
    fn fresh_newcomer(
        &self,
        matcher: &mut Matcher<'_>,
        window: &Window,
    ) -> Option<(Candidate, (u32, u32))> {
        let frames = window.fingerprint.frames;
        let from = frames.checked_sub(self.options.fresh_frames?)?;
        let fp = &window.fingerprint;
        let fresh = Fingerprint::between(&fp.peaks, &fp.landmarks, from, frames);
        let best = matcher.identify_with(&fresh, true).best?.candidate;
        let span = (window.start + from, window.start + frames);
        if self.explains(&best, span) {
            return None;
        }
        let mut heard = vec![(best.track, best.alignment())];
        heard.extend(
            (self.active.iter()).map(|a| (a.play.track, a.play.alignment(window.start + from))),
        );
        leads(matcher, &fresh, &heard).then_some((best, span))
    }

    /// Starts a play of a match no play explains, found in the window
    /// spanning `span`. It is numbered and announced once a later window
    /// confirms it, or at once if it was found with a sure score.
    fn begin(&mut self, matcher: &Matcher<'_>, windows: &Windows, c: Candidate, span: (u32, u32)) {
        let c = matcher.sharpen(c);
        let (middle, track_frame) = (middle(span), heard_at(&c, span));
        let mut play = Play {
            id: 0,
            track: c.track,
            start_frame: span.0 as f64,
            end_frame: span.1 as f64,
            track_at_zero: track_frame - c.tempo as f64 * middle,
            tempo: c.tempo,
            pitch: c.pitch,
            score: c.score,
        };
        play.start_frame = self.start(matcher.catalog(), windows, &play, span);
        self.active.push(Active {
            play,
            last_window: span,
            misses: 0,
            anchors: vec![(middle, track_frame)],
            found: span,
            found_score: c.score,
            refitted: false,
            lost: false,
            identified_again: false,
        });
    }

    /// Ends every play where the windows end: the end of the stream when
    /// `ended`, else of a stretch of it followed on its own (see
    /// [`crate::Follower::finish`]).
    pub fn finish(&mut self, catalog: &Catalog, windows: &Windows, ended: bool) -> Vec<PlayEvent> {
        std::mem::take(&mut self.active)
            .into_iter()
            .filter(|a| a.play.id > 0)
            .map(|a| self.close(catalog, windows, a, ended))
            .collect()
    }

    /// Ends an announced play, or withdraws it if its music was too short
    /// to be anything but chance or it was never identified again (see
    /// `Active::identified_again`); `ended` when the stream has ended.
    fn close(&self, catalog: &Catalog, windows: &Windows, a: Active, ended: bool) -> PlayEvent {
        let identified_again = a.identified_again;
        let play = self.end(catalog, windows, a, ended);
        if !identified_again || play.end_frame - play.start_frame < self.options.min_play as f64 {
            PlayEvent::Withdrawn(play)
        } else {
            PlayEvent::Ended(play)
        }
    }

    /// Where a new play starts: the first second of the run of seconds with
    /// enough of the track that reaches the end of the window that found it
    /// (the window may begin before the music does), carried further back
    /// over a quiet passage that leans the track's way (see [`carry`]).
    fn start(&self, catalog: &Catalog, windows: &Windows, play: &Play, span: (u32, u32)) -> f64 {
        let play = &settled(play, span, |p, b| block_evidence(catalog, windows, p, b));
        let limit = span.0.saturating_sub(self.options.boundary_reach);
        let far = span.0.saturating_sub(CARRY_REACH);
        let first = span.1.saturating_sub(BLOCK);
        let within = |b: &u32| play.track_frame(*b as f64) >= 0.0;
        let blocks = (0..)
            .map_while(|k: u32| first.checked_sub(k * BLOCK))
            .take_while(|&b| b >= limit && within(&b));
        let back = |b: u32, step: u32| b.checked_sub(step).filter(|b| *b >= far && within(b));
        let evidence = |b| block_evidence(catalog, windows, play, b);
        self.boundary(blocks, back, evidence, CARRY_MIN)
            .map_or(span.0 as f64, |first| first as f64)
    }

    /// Closes a play: its end is the last second of the run of seconds with
    /// enough of the track that goes on from the last window confirming it,
    /// carried further over a quiet passage that leans the track's way (to
    /// the end of the stream on less evidence, once it has `ended`), and at
    /// a crossfade the fade's tail past it.
    fn end(&self, catalog: &Catalog, windows: &Windows, a: Active, ended: bool) -> Play {
        let mut play = a.play;
        let frames = windows.frames();
        let limit = (a.last_window.1 + self.options.boundary_reach).min(frames);
        let far = (a.last_window.1 + CARRY_REACH).min(frames);
        let track_end = track_frames(catalog, play.track);
        let within = |b: u32| play.track_frame((b + BLOCK) as f64) <= track_end;
        let first = a.last_window.0.max(play.start_frame as u32);
        let blocks = (0..)
            .map(|k: u32| first + k * BLOCK)
            .take_while(|&b| b + BLOCK <= limit && within(b));
        let on = |b: u32, step: u32| Some(b + step).filter(|&b| b + BLOCK <= far && within(b));
        let line = settled(&play, a.last_window, |p, b| {
            block_evidence(catalog, windows, p, b)
        });
        let evidence = |b| block_evidence(catalog, windows, &line, b);
        // The stream ended while the track could still be playing: a track
        // that ends before the stream does needs the full bar.
        let to_end = if ended && far == frames && within(frames.saturating_sub(BLOCK)) {
            CARRY_TO_END
        } else {
            CARRY_MIN
        };
        if let Some(last) = self.boundary(blocks, on, evidence, to_end) {
            let end = last + BLOCK;
            let incoming = end as f64 - HANDOVER_FRAMES..end as f64 + HANDOVER_FRAMES;
            let handover = (self.active.iter()).any(|o| incoming.contains(&o.play.start_frame));
            play.end_frame = (end + if handover { FADE_TAIL } else { 0 }).min(frames) as f64;
        }
        play
    }

    /// The outermost block of a play one way: the furthest block of its run
    /// along `blocks`, carried on over a quiet passage that leans the
    /// track's way (see [`carry`]; `to_end` is the sum that carries it
    /// when the walk runs out of blocks), its edge then stepped out over a
    /// faint fade (see [`edge`]). `step(block, frames)` is the block that
    /// many frames further out, if the search may go there.
    fn boundary(
        &self,
        blocks: impl Iterator<Item = u32>,
        step: impl Fn(u32, u32) -> Option<u32>,
        evidence: impl Fn(u32) -> Option<Evidence>,
        to_end: f32,
    ) -> Option<u32> {
        let run = self.furthest(blocks, &evidence)?;
        let carried = carry(run, |b| step(b, BLOCK), &evidence, to_end);
        Some(edge(carried, |b| step(b, EDGE_STEP), &evidence))
    }

    /// Walks blocks away from where a play was heard and returns the
    /// furthest block of its run. Quiet passages of the track drown in venue
    /// noise: the run crosses a second without the track if two seconds
    /// with it lie beyond, or one that shows it beyond doubt (see
    /// [`LONE_Z`]), and up to `MAX_GAP_BLOCKS` seconds if two do; and up to
    /// `MAX_SILENT_BLOCKS` seconds where the track has too few peaks to tell.
    fn furthest(
        &self,
        blocks: impl Iterator<Item = u32>,
        evidence: impl Fn(u32) -> Option<Evidence>,
    ) -> Option<u32> {
        let (mut last, mut gap, mut beyond, mut silent) = (None, 0, 0, 0);
        for block in blocks {
            match evidence(block) {
                Some(e) if e.share() >= self.options.boundary_excess => {
                    silent = 0;
                    if gap == 0 {
                        last = Some(block);
                    } else {
                        beyond += 1;
                        if beyond >= 2 || (gap == 1 && e.z >= LONE_Z) {
                            (last, gap, beyond) = (Some(block), 0, 0);
                        }
                    }
                }
                None if silent < MAX_SILENT_BLOCKS => silent += 1,
                _ if last.is_none() => {}
                _ => {
                    gap += 1;
                    beyond = 0;
                    if gap > MAX_GAP_BLOCKS {
                        break;
                    }
                }
            }
        }
        last
    }
}

/// The length of a catalog track in frames (unbounded if it is unknown).
fn track_frames(catalog: &Catalog, track: TrackId) -> f64 {
    (catalog.tracks().get(track)).map_or(f64::MAX, |t| t.duration_s / frame_seconds())
}

/// The middle of the stream frames `span`.
fn middle(span: (u32, u32)) -> f64 {
    (span.0 + span.1) as f64 / 2.0
}

/// Where in its track `c`, a match in the stream frames `span`, puts their
/// middle.
fn heard_at(c: &Candidate, span: (u32, u32)) -> f64 {
    c.start_frame + c.tempo as f64 * (middle(span) - span.0 as f64)
}

/// Whether the first of `heard` (track and alignment) passes the accept
/// rule against the others over `part`, scored at those alignments.
fn leads(matcher: &Matcher<'_>, part: &Fingerprint, heard: &[(TrackId, Alignment)]) -> bool {
    let scores = matcher.check_part(part, heard);
    let others = scores[1..].iter().copied().fold(0.0f32, f32::max);
    let options = matcher.options();
    scores[0] >= options.min_score && scores[0] - others >= options.min_margin
}

/// Carries a boundary block outward over seconds where no second alone is
/// clear but the track's evidence, summed, keeps above chance: a quiet
/// passage under babble. Walks the blocks `next` gives, summing each one's
/// z-score less `CARRY_DRIFT` (a cumulative sum test), stops once the sum
/// falls `CARRY_MIN` below its peak, and returns the block where it peaked
/// if the peak reached `CARRY_MIN` (`to_end` if the blocks ran out first);
/// else `block`.
fn carry(
    block: u32,
    next: impl Fn(u32) -> Option<u32>,
    evidence: impl Fn(u32) -> Option<Evidence>,
    to_end: f32,
) -> u32 {
    let (mut sum, mut peak, mut at, mut b) = (0.0, 0.0, block, block);
    let mut needed = to_end;
    while let Some(n) = next(b) {
        b = n;
        let Some(e) = evidence(b) else { continue };
        sum += e.z - CARRY_DRIFT;
        if sum > peak {
            (peak, at) = (sum, b);
        } else if sum < peak - CARRY_MIN {
            needed = CARRY_MIN;
            break;
        }
    }
    if peak >= needed { at } else { block }
}

/// Steps a boundary block outward by half seconds while the track is still
/// heard there, however faintly (one standard error over chance): a
/// crossfade's far end, where the track is too quiet for the run's own
/// test but there.
fn edge(
    block: u32,
    next: impl Fn(u32) -> Option<u32>,
    evidence: impl Fn(u32) -> Option<Evidence>,
) -> u32 {
    let mut edge = block;
    for _ in 0..MAX_EDGE_STEPS {
        match next(edge) {
            Some(b) if evidence(b).is_some_and(|e| e.z >= EDGE_Z) => edge = b,
            _ => break,
        }
    }
    edge
}

/// Of a play's window scores at its expected place shifted by
/// `-DRIFT_FRAMES..=DRIFT_FRAMES` frames, the shift the play has drifted by
/// and the score it counts for. A shifted place counts `DRIFT_PENALTY` less
/// than its score, and the expected place wins ties.
fn drifted(scores: impl IntoIterator<Item = f32>) -> (i32, f32) {
    (-DRIFT_FRAMES..=DRIFT_FRAMES)
        .zip(scores)
        .map(|(shift, score)| match shift {
            0 => (0, score),
            _ => (shift, score - DRIFT_PENALTY),
        })
        .fold((0, f32::NEG_INFINITY), |best, (shift, score)| {
            let wins = score > best.1 || (shift == 0 && score == best.1);
            if wins { (shift, score) } else { best }
        })
}

/// `play` moved by up to `DRIFT_FRAMES` track frames to where the stream
/// frames `span` hold the most of its track by `evidence`, if that is over
/// twice what they hold where it is (see [`SETTLE_MARGIN`]). A play's line
/// is fitted through points that windows' matches placed at those windows'
/// tempos, and a second's evidence counts peaks found within a frame: on a
/// DJ set, a track at tempo 0.952 matched at 0.98 left its line 2.5 frames
/// off in the window that found it, where the start search begins, and the
/// search found the track 13 s before it began. An end search settles the
/// line in the last window that confirmed the play, where the fit's ends are
/// least certain.
fn settled(
    play: &Play,
    span: (u32, u32),
    evidence: impl Fn(&Play, u32) -> Option<Evidence>,
) -> Play {
    let at = |shift: i32| Play {
        track_at_zero: play.track_at_zero + shift as f64,
        ..*play
    };
    let total = |shift: i32| -> f32 {
        (span.0..span.1.saturating_sub(BLOCK - 1))
            .step_by(BLOCK as usize)
            .filter_map(|b| evidence(&at(shift), b))
            .map(|e| e.z)
            .sum()
    };
    let here = total(0);
    (-DRIFT_FRAMES..=DRIFT_FRAMES)
        .filter(|&shift| shift != 0)
        .map(|shift| (shift, total(shift)))
        .filter(|&(_, z)| z > here + SETTLE_MARGIN.max(here))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(*play, |(shift, _)| at(shift))
}

/// Offsets, in track frames, of wrong alignments that measure how many of a
/// block's track peaks the stream's peaks cover by chance. A second holds
/// few track peaks, so a few shifts measure chance roughly: with four
/// (+-37, +-97), seconds of six dev sessions before their track began
/// scored z above 3 in 1.0% and above 4 in 0.23% (a normal variable: 0.13%
/// and 0.003%), and such seconds carried starts back over chance; with
/// these eight, 0.42% and 0.03%, and the scans' starts more than 2 s early
/// fell from 16 to 8 of 280.
const CHANCE_SHIFTS: [f64; 8] = [-131.0, -97.0, -61.0, -37.0, 37.0, 61.0, 97.0, 131.0];

/// How much a stream block holds of a play's track.
#[derive(Debug, Clone, Copy)]
struct Evidence {
    /// Share of the track's peaks in the block found among the stream's
    /// peaks, less the share found at wrong alignments (dense noise covers
    /// many by chance).
    excess: f32,
    /// That excess in standard errors of the chance count.
    z: f32,
}

impl Evidence {
    /// The excess when it is two standard errors or more (a handful of
    /// peaks can beat chance by luck), else 0.
    fn share(self) -> f32 {
        if self.z >= 2.0 { self.excess } else { 0.0 }
    }
}

/// The evidence of a play's track in the stream block starting at `block`;
/// `None` when the track has too few peaks there to tell.
fn block_evidence(
    catalog: &Catalog,
    windows: &Windows,
    play: &Play,
    block: u32,
) -> Option<Evidence> {
    let peaks = catalog.peaks(play.track)?;
    let mut mask = PeakMask::default();
    mask.build(
        &windows.peaks_between(block, block + BLOCK),
        BLOCK as usize,
        1,
        1,
    );
    let at = play.alignment(block);
    let o = mask.overlap(&peaks, at);
    if o.peaks < 5 {
        return None;
    }
    let (mut n, mut matched) = (0, 0);
    for shift in CHANCE_SHIFTS {
        let c = mask.overlap(
            &peaks,
            Alignment {
                start_frame: at.start_frame + shift,
                ..at
            },
        );
        n += c.peaks;
        matched += c.matched;
    }
    let chance = (matched as f32 / n.max(1) as f32).clamp(0.01, 0.99);
    let expected = o.peaks as f32 * chance;
    Some(Evidence {
        excess: o.matched as f32 / o.peaks as f32 - chance,
        z: (o.matched as f32 - expected) / (expected * (1.0 - chance)).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Carries block 0 over blocks 1, 2, ... with the z-scores `zs`.
    fn carried(zs: &[f32], to_end: f32) -> u32 {
        let next = |b: u32| Some(b + 1).filter(|&n| (n as usize) < zs.len());
        let evidence = |b: u32| {
            Some(Evidence {
                excess: 0.0,
                z: zs[b as usize],
            })
        };
        carry(0, next, evidence, to_end)
    }

    #[test]
    fn a_play_line_a_few_frames_off_is_settled_where_its_track_is() {
        let play = Play {
            id: 1,
            track: TrackId(0),
            start_frame: 0.0,
            end_frame: 620.0,
            track_at_zero: 1_000.0,
            tempo: 1.0,
            pitch: 1.0,
            score: 10.0,
        };
        // The track lines up 3 frames further on in the track: each second
        // there scores 5, a frame either side 1, elsewhere chance.
        let heard = |truth: f64| {
            move |p: &Play, _: u32| {
                let z = match (p.track_at_zero - truth).abs() {
                    0.0 => 5.0,
                    1.0 => 1.0,
                    _ => 0.0,
                };
                Some(Evidence { excess: 0.0, z })
            }
        };
        let settled_at = |truth| settled(&play, (310, 528), heard(truth)).track_at_zero;
        assert_eq!(settled_at(1_003.0), 1_003.0);
        assert_eq!(settled_at(997.0), 997.0);
        assert_eq!(settled_at(1_001.0), 1_001.0);
        // Where it is, or beyond the drift searched, the play stays put.
        assert_eq!(settled_at(1_000.0), 1_000.0);
        assert_eq!(settled_at(1_010.0), 1_000.0);
        // A line that holds its track stays where a shift holds a little more.
        let a_little_more = |p: &Play, _: u32| {
            let z = match p.track_at_zero - 1_000.0 {
                0.0 => 5.0,
                2.0 => 6.0,
                _ => 0.0,
            };
            Some(Evidence { excess: 0.0, z })
        };
        assert_eq!(
            settled(&play, (310, 528), a_little_more).track_at_zero,
            1_000.0
        );
    }

    #[test]
    fn a_shifted_place_must_beat_the_expected_one_and_counts_less() {
        // Scores at shifts -4..=4; the expected place (shift 0) is the fifth.
        let with = |shift: i32, score: f32, here: f32| {
            (-DRIFT_FRAMES..=DRIFT_FRAMES).map(move |d| match d {
                0 => here,
                _ if d == shift => score,
                _ => 0.0,
            })
        };
        // A shifted place scoring a little more than the expected one is
        // chance among eight: the play stays where it is.
        assert_eq!(drifted(with(3, 4.5, 3.8)), (0, 3.8));
        // One clearly better is drift, counted less: 4.5 alone would keep a
        // play (`keep_score` 4); chosen among eight it does not.
        assert_eq!(drifted(with(-2, 4.5, 2.0)), (-2, 3.5));
        assert!(drifted(with(-2, 4.5, 2.0)).1 < TrackerOptions::default().keep_score);
        // Strong drift is followed.
        assert_eq!(drifted(with(1, 12.0, 3.0)), (1, 11.0));
    }

    #[test]
    fn a_window_is_the_tracks_only_between_its_start_and_end() {
        // A 60 s track (1,875 frames) heard from stream frame 100.
        let play = Play {
            id: 1,
            track: TrackId(0),
            start_frame: 100.0,
            end_frame: 1_975.0,
            track_at_zero: -100.0,
            tempo: 1.0,
            pitch: 1.0,
            score: 10.0,
        };
        let share = |span| play.share_within(span, 1_875.0);
        assert_eq!(share((100, 412)), 1.0);
        assert_eq!(share((0, 200)), 0.5);
        assert_eq!(share((1_875, 2_075)), 0.5);
        assert_eq!(share((1_975, 2_287)), 0.0);
        // Played twice as fast, the track fills half as many stream frames.
        let fast = Play {
            tempo: 2.0,
            track_at_zero: 0.0,
            ..play
        };
        assert_eq!(fast.share_within((900, 950), 1_875.0), 0.75);
    }

    #[test]
    fn a_run_crosses_a_second_without_its_track_on_two_seconds_or_one_beyond_doubt() {
        // Blocks 0, 1, 2, ... with the z-scores `zs` (an excess of 0.1 each).
        let furthest = |zs: &[f32]| {
            let evidence = |b: u32| {
                Some(Evidence {
                    excess: 0.1,
                    z: zs[b as usize],
                })
            };
            Tracker::default().furthest(0..zs.len() as u32, evidence)
        };
        assert_eq!(furthest(&[9.0, 0.0, 3.5, 0.0, 0.0]), Some(0));
        assert_eq!(furthest(&[9.0, 0.0, 5.0, 0.0, 0.0]), Some(2));
        assert_eq!(furthest(&[9.0, 0.0, 3.0, 3.0, 0.0]), Some(3));
        // Past two seconds without it, two with it are needed, however clear.
        assert_eq!(furthest(&[9.0, 0.0, 0.0, 9.0, 0.0]), Some(0));
        assert_eq!(furthest(&[9.0, 0.0, 0.0, 3.0, 3.0]), Some(4));
    }

    #[test]
    fn a_faint_track_at_the_end_of_the_stream_is_carried_there_on_less_evidence() {
        // Seconds leaning the track's way (sums 0, 1.4, 4.3, 4.9), then
        // the stream ends before they reach the bar a walk otherwise needs.
        let leaning = [9.0, 0.5, 1.9, 3.4, 1.1];
        assert_eq!(carried(&leaning, CARRY_MIN), 0);
        assert_eq!(carried(&leaning, CARRY_TO_END), 4);
        // The same seconds followed by chance: the sum falls, and the
        // walk needs the full bar whatever comes after.
        let fallen = [9.0, 0.5, 1.9, 3.4, 1.1, -3.0, -3.0, 2.0, 2.0];
        assert_eq!(carried(&fallen, CARRY_TO_END), 0);
        // Enough evidence carries a boundary either way.
        let strong = [9.0, 3.0, 3.0, 3.0, -3.0, -3.0, -3.0];
        assert_eq!(carried(&strong, CARRY_MIN), 3);
    }
}
