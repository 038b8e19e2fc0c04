//! Landmark hashes: pairs and triplets of peaks packed into 24-bit keys.
//!
//! **Pairs** (the fast path) hold an anchor's frequency, the frequency step to
//! a target peak and the time between them. They are specific but change when
//! the music is played faster, slower or higher.
//!
//! | bits  | field                                         |
//! |-------|-----------------------------------------------|
//! | 23    | kind: 0                                       |
//! | 13-21 | anchor bin, 0..=511                           |
//! | 6-12  | target bin minus anchor bin, offset by 64     |
//! | 0-5   | target frame minus anchor frame, 1..=63       |
//!
//! **Triplets** (the robust path, after Panako) hold what a change of tempo,
//! pitch or speed leaves alone: the ratio of the two time gaps and the two
//! intervals in semitones, plus the time span in coarse classes that a
//! change of up to about 12% rarely moves (a query probes both sides of a
//! class boundary it lies near), and the anchor's pitch in semitones. A
//! query played higher or lower looks its triplets up under the
//! neighbouring anchor classes too ([`anchor_probes`]): the hits of the
//! right track then agree on how far, and chance hits do not. The fields
//! are packed as digits of one number, the anchor class lowest, so that
//! the classes of one shape are neighbouring hashes.
//!
//! | digit        | field                                                 |
//! |--------------|-------------------------------------------------------|
//! | bit 23       | kind: 1                                               |
//! | highest (49) | semitones from anchor to second peak, offset by 24    |
//! | 49           | semitones from anchor to third peak, offset by 24     |
//! | 8            | (second - anchor) / (third - anchor) time, in 8ths    |
//! | 7            | third - anchor time, in classes of a factor of 1.5    |
//! | lowest (56)  | anchor pitch, semitones above 156 Hz                  |

use std::collections::VecDeque;

use crate::peaks::Peak;

/// A hash and the frame of the anchor peak it was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Landmark {
    /// The packed hash.
    pub hash: u32,
    /// The anchor's frame.
    pub frame: u32,
}

/// The decoded fields of a pair hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairFields {
    /// Anchor frequency, in whole bins.
    pub bin: u32,
    /// Target bin minus anchor bin.
    pub delta_bin: i32,
    /// Target frame minus anchor frame.
    pub delta_frame: u32,
}

/// Largest `|delta_bin|` a pair can have.
pub const MAX_DELTA_BIN: i32 = 63;
/// Largest `delta_frame` a pair can have.
pub const MAX_DELTA_FRAME: u32 = 63;

impl PairFields {
    /// Packs the fields; `None` if one is out of range.
    pub fn pack(self) -> Option<u32> {
        let in_range = self.bin < 512
            && self.delta_bin.abs() <= MAX_DELTA_BIN
            && (1..=MAX_DELTA_FRAME).contains(&self.delta_frame);
        in_range
            .then(|| (self.bin << 13) | (((self.delta_bin + 64) as u32) << 6) | self.delta_frame)
    }

    /// Unpacks a hash made by [`PairFields::pack`].
    pub fn unpack(hash: u32) -> Self {
        Self {
            bin: (hash >> 13) & 0x1ff,
            delta_bin: ((hash >> 6) & 0x7f) as i32 - 64,
            delta_frame: hash & 0x3f,
        }
    }
}

/// Which pairs are formed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PairOptions {
    /// Targets per anchor, nearest in time first.
    pub fan_out: usize,
    /// Smallest frame gap to a target.
    pub min_delta_frame: u32,
    /// Largest frame gap to a target (at most [`MAX_DELTA_FRAME`]).
    pub max_delta_frame: u32,
    /// Largest bin distance to a target (at most [`MAX_DELTA_BIN`]).
    pub max_delta_bin: i32,
    /// Only peaks of lower [`Peak::rank`] take part.
    pub max_rank: u32,
}

impl Default for PairOptions {
    fn default() -> Self {
        Self {
            fan_out: 3,
            min_delta_frame: 1,
            max_delta_frame: 48,
            max_delta_bin: 63,
            max_rank: 24,
        }
    }
}

/// Peaks held until every peak that can follow them in a landmark has
/// arrived; shared by the pair and triplet hashers.
#[derive(Debug, Default)]
struct AnchorWindow {
    peaks: VecDeque<Peak>,
}

impl AnchorWindow {
    /// Adds `peak` unless its rank is `max_rank` or more; first hands every
    /// held peak more than `span` frames older than it to `anchor`, with the
    /// peaks that follow it.
    fn push(
        &mut self,
        peak: Peak,
        max_rank: u32,
        span: u32,
        mut anchor: impl FnMut(Peak, &VecDeque<Peak>),
    ) {
        if peak.rank >= max_rank {
            return;
        }
        while let Some(&front) = self.peaks.front() {
            if peak.frame <= front.frame + span {
                break;
            }
            self.peaks.pop_front();
            anchor(front, &self.peaks);
        }
        self.peaks.push_back(peak);
    }

    /// Hands every held peak to `anchor` and starts afresh.
    fn flush(&mut self, mut anchor: impl FnMut(Peak, &VecDeque<Peak>)) {
        while let Some(front) = self.peaks.pop_front() {
            anchor(front, &self.peaks);
        }
    }
}

/// Streaming pair hasher: push peaks in frame order, receive landmarks.
#[derive(Debug)]
pub struct PairHasher {
    options: PairOptions,
    window: AnchorWindow,
}

impl PairHasher {
    /// A hasher with the given options (gaps clamped to what a hash can hold).
    pub fn new(options: PairOptions) -> Self {
        let mut options = options;
        options.max_delta_frame = options.max_delta_frame.min(MAX_DELTA_FRAME);
        options.min_delta_frame = options.min_delta_frame.clamp(1, options.max_delta_frame);
        options.max_delta_bin = options.max_delta_bin.min(MAX_DELTA_BIN);
        Self {
            options,
            window: AnchorWindow::default(),
        }
    }

    /// Adds a peak; emits the landmarks of anchors whose target zone is
    /// complete. Peaks of [`PairOptions::max_rank`] or more are ignored.
    pub fn push(&mut self, peak: Peak, out: &mut impl FnMut(Landmark)) {
        let o = &self.options;
        self.window
            .push(peak, o.max_rank, o.max_delta_frame, |a, rest| {
                pairs(o, a, rest, out)
            });
    }

    /// Emits the landmarks of every remaining anchor and starts afresh.
    pub fn flush(&mut self, out: &mut impl FnMut(Landmark)) {
        let o = &self.options;
        self.window.flush(|a, rest| pairs(o, a, rest, out));
    }
}

/// Emits the pairs of `anchor` with the peaks that follow it.
fn pairs(
    o: &PairOptions,
    anchor: Peak,
    following: &VecDeque<Peak>,
    out: &mut impl FnMut(Landmark),
) {
    let anchor_bin = anchor.bin.round() as i32;
    let mut made = 0;
    for target in following {
        if made == o.fan_out {
            break;
        }
        let dt = target.frame - anchor.frame;
        if dt < o.min_delta_frame {
            continue;
        }
        if dt > o.max_delta_frame {
            break;
        }
        let delta_bin = target.bin.round() as i32 - anchor_bin;
        if delta_bin.abs() > o.max_delta_bin {
            continue;
        }
        let fields = PairFields {
            bin: anchor_bin.max(0) as u32,
            delta_bin,
            delta_frame: dt,
        };
        if let Some(hash) = fields.pack() {
            out(Landmark {
                hash,
                frame: anchor.frame,
            });
            made += 1;
        }
    }
}

/// Bit that marks a triplet hash.
pub const TRIPLET: u32 = 1 << 23;
/// Largest interval, in semitones, between a triplet's anchor and a target.
pub const MAX_SEMITONES: i32 = 24;
/// Bin of anchor class 0: the lowest bin peaks are picked from.
const ANCHOR_BASE_BIN: f32 = 20.0;
/// Anchor classes, a semitone each, up to the highest bin peaks are picked
/// from (55 semitones above the lowest).
pub const ANCHOR_CLASSES: u32 = 56;
/// Steps of the time ratio field.
const RATIO_STEPS: u32 = 8;
/// Ratio between consecutive time-span classes.
const SPAN_CLASS_RATIO: f32 = 1.5;
/// Span classes a hash can hold, from [`FIRST_SPAN_CLASS`]: spans of 8 to
/// 48 frames fall in classes 5 to 9, and a query probes one either side.
const SPAN_CLASSES: u32 = 7;
/// The class of the shortest span a hash holds.
const FIRST_SPAN_CLASS: i32 = 4;
/// Values of an interval field.
const INTERVALS: u32 = 2 * MAX_SEMITONES as u32 + 1;

/// The decoded fields of a triplet hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TripletFields {
    /// Semitones from the anchor to the second peak.
    pub semitones_b: i32,
    /// Semitones from the anchor to the third peak.
    pub semitones_c: i32,
    /// Time from anchor to second peak over time to third, in 8ths.
    pub ratio: u32,
    /// Class of the time from anchor to third peak, less the first class
    /// a hash holds.
    pub span: u32,
    /// The anchor's pitch, in semitones above 156 Hz.
    pub anchor: u32,
}

impl TripletFields {
    /// Packs the fields; `None` if one is out of range.
    pub fn pack(self) -> Option<u32> {
        let ok = self.semitones_b.abs() <= MAX_SEMITONES
            && self.semitones_c.abs() <= MAX_SEMITONES
            && self.ratio < RATIO_STEPS
            && self.span < SPAN_CLASSES
            && self.anchor < ANCHOR_CLASSES;
        ok.then(|| {
            let mut packed = (self.semitones_b + MAX_SEMITONES) as u32;
            packed = packed * INTERVALS + (self.semitones_c + MAX_SEMITONES) as u32;
            packed = packed * RATIO_STEPS + self.ratio;
            packed = packed * SPAN_CLASSES + self.span;
            packed = packed * ANCHOR_CLASSES + self.anchor;
            TRIPLET | packed
        })
    }

    /// Unpacks a hash made by [`TripletFields::pack`].
    pub fn unpack(hash: u32) -> Self {
        let mut rest = hash & !TRIPLET;
        let mut next = |radix: u32| {
            let value = rest % radix;
            rest /= radix;
            value
        };
        let anchor = next(ANCHOR_CLASSES);
        let span = next(SPAN_CLASSES);
        let ratio = next(RATIO_STEPS);
        let semitones_c = next(INTERVALS) as i32 - MAX_SEMITONES;
        Self {
            semitones_b: rest as i32 - MAX_SEMITONES,
            semitones_c,
            ratio,
            span,
            anchor,
        }
    }
}

/// The hashes a catalog triplet of `triplet`'s shape has when its anchor is
/// up to `reach` semitones lower or higher than `triplet`'s, each with that
/// difference (the query's anchor class minus the catalog's). A triplet's
/// anchor class is the lowest digit of its hash, so these are neighbours.
pub fn anchor_probes(triplet: u32, reach: u32) -> impl Iterator<Item = (u32, i32)> {
    let class = TripletFields::unpack(triplet).anchor;
    let base = triplet - class;
    let lowest = class.saturating_sub(reach);
    let highest = (class + reach).min(ANCHOR_CLASSES - 1);
    (lowest..=highest).map(move |c| (base + c, class as i32 - c as i32))
}

/// Which triplets are formed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TripletOptions {
    /// Each anchor takes this many following peaks and makes a triplet of
    /// every two of them.
    pub fan_out: usize,
    /// Smallest frame gap from anchor to second peak.
    pub min_gap: u32,
    /// Smallest frame gap from anchor to third peak: over shorter spans a
    /// frame of jitter changes the time ratio too much.
    pub min_span: u32,
    /// Largest frame gap from anchor to third peak.
    pub max_span: u32,
    /// Also emit the neighbouring value of each field that lies within this
    /// share of a quantisation step of a boundary (queries only; 0 = off).
    pub probe_margin: f32,
    /// At most this many hashes per triplet when probing.
    pub max_probes: usize,
    /// Only peaks of lower [`Peak::rank`] take part.
    pub max_rank: u32,
}

impl Default for TripletOptions {
    fn default() -> Self {
        Self {
            fan_out: 3,
            min_gap: 4,
            min_span: 8,
            max_span: 48,
            probe_margin: 0.0,
            max_probes: 8,
            max_rank: 24,
        }
    }
}

/// A quantised value and, when it sits near a boundary, the other side.
fn quantise(value: f32, margin: f32) -> (i32, Option<i32>) {
    let q = value.round();
    let frac = value - q;
    let other = (margin > 0.0 && frac.abs() > 0.5 - margin)
        .then(|| q as i32 + if frac > 0.0 { 1 } else { -1 });
    (q as i32, other)
}

/// Streaming triplet hasher: push peaks in frame order, receive landmarks.
#[derive(Debug)]
pub struct TripletHasher {
    options: TripletOptions,
    window: AnchorWindow,
    targets: Vec<Peak>,
}

impl TripletHasher {
    /// A hasher with the given options.
    pub fn new(options: TripletOptions) -> Self {
        let mut options = options;
        options.max_span = options.max_span.clamp(2, 63);
        Self {
            options,
            window: AnchorWindow::default(),
            targets: Vec::new(),
        }
    }

    /// Adds a peak; emits the landmarks of anchors whose targets are known.
    /// Peaks of [`TripletOptions::max_rank`] or more are ignored.
    pub fn push(&mut self, peak: Peak, out: &mut impl FnMut(Landmark)) {
        let Self {
            options: o,
            window,
            targets,
        } = self;
        window.push(peak, o.max_rank, o.max_span, |a, rest| {
            triplets(o, a, rest, targets, out)
        });
    }

    /// Emits the landmarks of every remaining anchor and starts afresh.
    pub fn flush(&mut self, out: &mut impl FnMut(Landmark)) {
        let Self {
            options: o,
            window,
            targets,
        } = self;
        window.flush(|a, rest| triplets(o, a, rest, targets, out));
    }
}

/// Emits the triplets of `anchor` with the peaks that follow it.
fn triplets(
    o: &TripletOptions,
    anchor: Peak,
    following: &VecDeque<Peak>,
    targets: &mut Vec<Peak>,
    out: &mut impl FnMut(Landmark),
) {
    let semitones = |p: &Peak| 12.0 * (p.bin.max(1.0) / anchor.bin.max(1.0)).log2();
    targets.clear();
    targets.extend(
        following
            .iter()
            .filter(|p| p.frame >= anchor.frame + o.min_gap && p.frame - anchor.frame <= o.max_span)
            .filter(|p| semitones(p).abs() <= MAX_SEMITONES as f32 - 0.5)
            .take(o.fan_out)
            .copied(),
    );
    let anchor_class = (12.0 * (anchor.bin.max(1.0) / ANCHOR_BASE_BIN).log2())
        .round()
        .clamp(0.0, (ANCHOR_CLASSES - 1) as f32) as u32;
    for (i, b) in targets.iter().enumerate() {
        for c in &targets[i + 1..] {
            if c.frame <= b.frame || c.frame - anchor.frame < o.min_span {
                continue;
            }
            let span = (c.frame - anchor.frame) as f32;
            let ratio = (b.frame - anchor.frame) as f32 / span * RATIO_STEPS as f32;
            let fields = [
                quantise(semitones(b), o.probe_margin),
                quantise(semitones(c), o.probe_margin),
                quantise(ratio - 0.5, o.probe_margin),
                quantise(span.ln() / SPAN_CLASS_RATIO.ln() - 0.5, o.probe_margin),
            ];
            emit_probes(&fields, anchor_class, o.max_probes, anchor.frame, out);
        }
    }
}

/// Emits the hash of every combination of each field's value and its probed
/// neighbour, at most `max` of them, the unprobed one first.
fn emit_probes(
    fields: &[(i32, Option<i32>); 4],
    anchor: u32,
    max: usize,
    frame: u32,
    out: &mut impl FnMut(Landmark),
) {
    let mut made = 0;
    for mask in 0u32..16 {
        if made == max {
            break;
        }
        let pick = |k: usize| -> Option<i32> {
            let (v, other) = fields[k];
            if mask & (1 << k) == 0 { Some(v) } else { other }
        };
        let (Some(b), Some(c), Some(r), Some(s)) = (pick(0), pick(1), pick(2), pick(3)) else {
            continue;
        };
        let packed = TripletFields {
            semitones_b: b,
            semitones_c: c,
            ratio: r.clamp(0, RATIO_STEPS as i32 - 1) as u32,
            span: (s - FIRST_SPAN_CLASS).clamp(0, SPAN_CLASSES as i32 - 1) as u32,
            anchor,
        }
        .pack();
        if let Some(hash) = packed {
            out(Landmark { hash, frame });
            made += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pack_unpack_round_trip(bin in 0u32..512, delta_bin in -63i32..=63, delta_frame in 1u32..=63) {
            let fields = PairFields { bin, delta_bin, delta_frame };
            let hash = fields.pack();
            prop_assert!(hash.is_some_and(|h| h & TRIPLET == 0));
            prop_assert_eq!(hash.map(PairFields::unpack), Some(fields));
        }

        #[test]
        fn triplet_pack_unpack_round_trip(
            semitones_b in -24i32..=24, semitones_c in -24i32..=24,
            ratio in 0u32..RATIO_STEPS, span in 0u32..SPAN_CLASSES, anchor in 0u32..ANCHOR_CLASSES,
        ) {
            let fields = TripletFields { semitones_b, semitones_c, ratio, span, anchor };
            let hash = fields.pack();
            prop_assert!(hash.is_some_and(|h| h & TRIPLET != 0 && h < 1 << 24));
            prop_assert_eq!(hash.map(TripletFields::unpack), Some(fields));
        }
    }

    #[test]
    fn out_of_range_fields_do_not_pack() {
        let ok = PairFields {
            bin: 10,
            delta_bin: 0,
            delta_frame: 1,
        };
        assert!(PairFields { bin: 512, ..ok }.pack().is_none());
        assert!(
            PairFields {
                delta_bin: 64,
                ..ok
            }
            .pack()
            .is_none()
        );
        assert!(
            PairFields {
                delta_frame: 0,
                ..ok
            }
            .pack()
            .is_none()
        );
        assert!(
            PairFields {
                delta_frame: 64,
                ..ok
            }
            .pack()
            .is_none()
        );
    }

    fn triplets(peaks: &[Peak], options: TripletOptions) -> Vec<Landmark> {
        let mut hasher = TripletHasher::new(options);
        let mut out = Vec::new();
        for &p in peaks {
            hasher.push(p, &mut |l| out.push(l));
        }
        hasher.flush(&mut |l| out.push(l));
        out
    }

    fn constellation(time_factor: f32, freq_factor: f32) -> Vec<Peak> {
        // Irregular times and frequencies, spread over 40 frames.
        [
            (0, 60.0),
            (7, 90.0),
            (13, 71.0),
            (22, 120.0),
            (30, 64.0),
            (38, 101.0),
        ]
        .iter()
        .map(|&(t, f)| Peak {
            frame: (t as f32 * time_factor).round() as u32,
            bin: f * freq_factor,
            strength: 1.0,
            rank: 0,
        })
        .collect()
    }

    #[test]
    fn triplets_survive_tempo_and_pitch_changes() {
        let plain: Vec<u32> = triplets(&constellation(1.0, 1.0), TripletOptions::default())
            .iter()
            .map(|l| l.hash)
            .collect();
        assert!(plain.len() >= 9, "{}", plain.len());
        let probing = TripletOptions {
            probe_margin: 0.25,
            ..TripletOptions::default()
        };
        // 10% slower and a whole tone higher, as a DJ might play it: found
        // under anchor classes two semitones lower.
        let changed: Vec<(u32, i32)> = triplets(&constellation(1.1, 1.12), probing)
            .iter()
            .flat_map(|l| anchor_probes(l.hash, 3))
            .collect();
        let found = plain.iter().filter(|&&h| changed.contains(&(h, 2))).count();
        assert!(found * 2 >= plain.len(), "{found} of {}", plain.len());
        assert!(!changed.iter().any(|c| plain.contains(&c.0) && c.1 != 2));
    }

    #[test]
    fn anchor_probes_are_the_neighbouring_classes() {
        let fields = TripletFields {
            semitones_b: 3,
            semitones_c: -5,
            ratio: 2,
            span: 4,
            anchor: 1,
        };
        let hash = fields.pack().expect("in range");
        let probes: Vec<(TripletFields, i32)> = anchor_probes(hash, 3)
            .map(|(h, shift)| (TripletFields::unpack(h), shift))
            .collect();
        let expected: Vec<(TripletFields, i32)> = (0..=4)
            .map(|anchor| (TripletFields { anchor, ..fields }, 1 - anchor as i32))
            .collect();
        assert_eq!(probes, expected);
    }

    #[test]
    fn anchors_pair_with_nearest_targets() {
        let peak = |frame, bin| Peak {
            frame,
            bin,
            strength: 1.0,
            rank: 0,
        };
        let mut hasher = PairHasher::new(PairOptions {
            fan_out: 2,
            ..Default::default()
        });
        let mut out = Vec::new();
        for p in [
            peak(0, 100.0),
            peak(2, 110.0),
            peak(5, 90.0),
            peak(9, 100.0),
        ] {
            hasher.push(p, &mut |l| out.push(l));
        }
        hasher.flush(&mut |l| out.push(l));
        let first: Vec<PairFields> = out
            .iter()
            .filter(|l| l.frame == 0)
            .map(|l| PairFields::unpack(l.hash))
            .collect();
        assert_eq!(
            first,
            vec![
                PairFields {
                    bin: 100,
                    delta_bin: 10,
                    delta_frame: 2
                },
                PairFields {
                    bin: 100,
                    delta_bin: -10,
                    delta_frame: 5
                },
            ]
        );
        // 3 anchors have targets: 2 + 2 + 1 landmarks.
        assert_eq!(out.len(), 5);
    }
}
