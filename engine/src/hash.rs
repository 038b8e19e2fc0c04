//! Landmark hashes: pairs of peaks packed into 32-bit keys.
//!
//! An anchor peak is paired with the next peaks in a target zone after it; each
//! pair becomes a [`Landmark`] whose hash holds the anchor's frequency, the
//! frequency step to the target and the time between them:
//!
//! | bits  | field                                         |
//! |-------|-----------------------------------------------|
//! | 22    | kind (0 = pair)                               |
//! | 13-21 | anchor bin, 0..=511                           |
//! | 6-12  | target bin minus anchor bin, offset by 64     |
//! | 0-5   | target frame minus anchor frame, 1..=63       |

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
}

impl Default for PairOptions {
    fn default() -> Self {
        Self {
            fan_out: 4,
            min_delta_frame: 1,
            max_delta_frame: 48,
            max_delta_bin: 63,
        }
    }
}

/// Streaming pair hasher: push peaks in frame order, receive landmarks.
#[derive(Debug)]
pub struct PairHasher {
    options: PairOptions,
    window: VecDeque<Peak>,
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
            window: VecDeque::new(),
        }
    }

    /// Adds a peak; emits the landmarks of anchors whose target zone is
    /// complete. Peaks not marked [`Peak::landmark`] are ignored.
    pub fn push(&mut self, peak: Peak, out: &mut impl FnMut(Landmark)) {
        if !peak.landmark {
            return;
        }
        while let Some(front) = self.window.front() {
            if peak.frame <= front.frame + self.options.max_delta_frame {
                break;
            }
            self.emit_front(out);
        }
        self.window.push_back(peak);
    }

    /// Emits the landmarks of every remaining anchor and starts afresh.
    pub fn flush(&mut self, out: &mut impl FnMut(Landmark)) {
        while !self.window.is_empty() {
            self.emit_front(out);
        }
    }

    fn emit_front(&mut self, out: &mut impl FnMut(Landmark)) {
        let Some(anchor) = self.window.pop_front() else {
            return;
        };
        let o = &self.options;
        let anchor_bin = anchor.bin.round() as i32;
        let mut made = 0;
        for target in &self.window {
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
            prop_assert!(hash.is_some());
            prop_assert_eq!(hash.map(PairFields::unpack), Some(fields));
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

    #[test]
    fn anchors_pair_with_nearest_targets() {
        let peak = |frame, bin| Peak {
            frame,
            bin,
            strength: 1.0,
            landmark: true,
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
