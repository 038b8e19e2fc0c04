//! Compact storage of a track's peak constellation, for verifying matches.
//!
//! Peaks are stored in frame order as 16-bit entries: the frame step from the
//! previous peak (6 bits) and the frequency in half bins (10 bits). A step of
//! [`SKIP`] marks an entry with no peak that only advances the frame by its
//! low 10 bits, for gaps longer than 62 frames. Entries come in blocks of
//! [`BLOCK`]; each block records the frame it starts from, so a range of
//! frames is found by a binary search over blocks and a short decode. A track
//! is padded with empty skips to whole blocks. That is about 2.1 bytes a peak.

/// Entries per block.
pub const BLOCK: usize = 64;
/// The step value that marks a skip entry.
const SKIP: u16 = 63;
const BIN_BITS: u32 = 10;
const BIN_MASK: u16 = (1 << BIN_BITS) - 1;

/// A reference peak kept for verification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredPeak {
    /// Frame in the track.
    pub frame: u32,
    /// Frequency in bins, to half a bin.
    pub bin: f32,
}

/// Encodes peaks sorted by frame: returns the entries (a whole number of
/// blocks) and the frame each block starts from.
pub fn encode(peaks: &[StoredPeak]) -> (Vec<u16>, Vec<u32>) {
    let mut entries = Vec::with_capacity(peaks.len() + BLOCK);
    let mut bases = Vec::new();
    let mut frame = 0u32;
    fn push(entries: &mut Vec<u16>, bases: &mut Vec<u32>, entry: u16, at: u32) {
        if entries.len().is_multiple_of(BLOCK) {
            bases.push(at);
        }
        entries.push(entry);
    }
    for p in peaks {
        let target = p.frame.max(frame);
        while target - frame > (SKIP - 1) as u32 {
            let step = (target - frame).min(BIN_MASK as u32);
            push(
                &mut entries,
                &mut bases,
                (SKIP << BIN_BITS) | step as u16,
                frame,
            );
            frame += step;
        }
        let bin = (p.bin * 2.0).round().clamp(0.0, BIN_MASK as f32) as u16;
        push(
            &mut entries,
            &mut bases,
            (((target - frame) as u16) << BIN_BITS) | bin,
            frame,
        );
        frame = target;
    }
    while entries.len() % BLOCK != 0 {
        entries.push(SKIP << BIN_BITS);
    }
    (entries, bases)
}

/// One track's stored peaks, in frame order.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeakList<'a> {
    entries: &'a [u8],
    bases: &'a [u8],
}

fn u16_at(bytes: &[u8], i: usize) -> u16 {
    bytes
        .get(i * 2..i * 2 + 2)
        .map_or(SKIP << BIN_BITS, |b| u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], i: usize) -> u32 {
    bytes
        .get(i * 4..i * 4 + 4)
        .map_or(u32::MAX, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl<'a> PeakList<'a> {
    /// A list over little-endian `entries` (u16) and block `bases` (u32).
    pub fn new(entries: &'a [u8], bases: &'a [u8]) -> Self {
        Self { entries, bases }
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All peaks.
    pub fn iter(&self) -> impl Iterator<Item = StoredPeak> + 'a {
        self.decode_from(0)
    }

    /// The peaks with `from <= frame < to`.
    pub fn range(&self, from: u32, to: u32) -> impl Iterator<Item = StoredPeak> + 'a {
        // The last block starting before `from`: earlier blocks end at or
        // before its start, so they hold no peak at or after `from`.
        let blocks = self.bases.len() / 4;
        let (mut lo, mut hi) = (0, blocks);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if u32_at(self.bases, mid) < from {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.decode_from(lo.saturating_sub(1))
            .skip_while(move |p| p.frame < from)
            .take_while(move |p| p.frame < to)
    }

    fn decode_from(&self, block: usize) -> impl Iterator<Item = StoredPeak> + 'a {
        let entries = self.entries;
        let mut frame = if self.bases.is_empty() {
            0
        } else {
            u32_at(self.bases, block)
        };
        (block * BLOCK..entries.len() / 2).filter_map(move |i| {
            let e = u16_at(entries, i);
            let step = e >> BIN_BITS;
            if step == SKIP {
                frame = frame.saturating_add((e & BIN_MASK) as u32);
                return None;
            }
            frame = frame.saturating_add(step as u32);
            Some(StoredPeak {
                frame,
                bin: (e & BIN_MASK) as f32 / 2.0,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn to_bytes(entries: &[u16], bases: &[u32]) -> (Vec<u8>, Vec<u8>) {
        (
            entries.iter().flat_map(|e| e.to_le_bytes()).collect(),
            bases.iter().flat_map(|b| b.to_le_bytes()).collect(),
        )
    }

    proptest! {
        #[test]
        fn round_trip_and_ranges(
            steps in proptest::collection::vec((0u32..400, 0u32..1000), 0..500),
            from in 0u32..40_000,
            len in 0u32..5_000,
        ) {
            let mut frame = 0;
            let peaks: Vec<StoredPeak> = steps
                .iter()
                .map(|&(step, bin)| {
                    frame += step;
                    StoredPeak { frame, bin: bin as f32 / 2.0 }
                })
                .collect();
            let (entries, bases) = encode(&peaks);
            prop_assert_eq!(entries.len() % BLOCK, 0);
            let (e, b) = to_bytes(&entries, &bases);
            let list = PeakList::new(&e, &b);
            prop_assert_eq!(list.iter().collect::<Vec<_>>(), peaks.clone());
            let expected: Vec<StoredPeak> = peaks
                .iter()
                .copied()
                .filter(|p| p.frame >= from && p.frame < from + len)
                .collect();
            prop_assert_eq!(list.range(from, from + len).collect::<Vec<_>>(), expected);
        }
    }

    #[test]
    fn empty_list_has_no_peaks() {
        let (entries, bases) = encode(&[]);
        assert!(entries.is_empty() && bases.is_empty());
        assert_eq!(PeakList::default().range(0, 100).count(), 0);
    }
}
