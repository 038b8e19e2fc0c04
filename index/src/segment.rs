//! Postings files: every landmark of a batch of tracks, laid out for lookup.
//!
//! A segment is written once and never changed. Postings are sorted by hash; a
//! bucket table indexed by the top `table_bits` bits of the hash gives each
//! bucket's range, and each posting is bit-packed at a fixed width (the rest of
//! its hash, its track's index in the segment and its frame), so a lookup is a
//! table read and a short scan, straight from the memory map.
//!
//! | part    | content                                                    |
//! |---------|------------------------------------------------------------|
//! | header  | magic, version, bit widths, counts (64 bytes)              |
//! | tracks  | `n_tracks` x u32: global track id of each local index      |
//! | table   | `2^table_bits + 1` x u32: first posting of each bucket     |
//! | entries | `n_postings` x `width` bits, then 8 bytes of padding       |
//! | peaks   | `n_tracks + 1` x u32: first peak entry of each track, then  |
//! |         | the entries (u16) and block bases (u32), see `constellation` |
//! | footer  | CRC-32 of everything before it, then the end magic         |
//!
//! The peaks are each track's constellation in frame order; matching checks
//! a candidate against them (see `vote`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::mmap::Mapped;
use crate::tracks::TrackId;

const MAGIC: &[u8; 8] = b"EMKSEG\0\x01";
const END_MAGIC: &[u8; 8] = b"EMKSEGND";
/// Version of the postings layout this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
const FOOTER_LEN: usize = 12;
/// Widest packed posting: a u64 read at any byte offset must hold it.
const MAX_WIDTH: u32 = 56;

/// One landmark of one track, as the writer receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Posting {
    /// The landmark's hash.
    pub hash: u32,
    /// The track it belongs to.
    pub track: TrackId,
    /// The anchor's frame in the track.
    pub frame: u32,
}

use crate::constellation::{self, BLOCK};
pub use crate::constellation::{PeakList, StoredPeak};

/// The bit layout of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    hash_bits: u32,
    table_bits: u32,
    track_bits: u32,
    frame_bits: u32,
}

impl Layout {
    fn rest_bits(&self) -> u32 {
        self.hash_bits - self.table_bits
    }

    fn width(&self) -> u32 {
        self.rest_bits() + self.track_bits + self.frame_bits
    }
}

fn bits_for(max_value: u64) -> u32 {
    64 - max_value.leading_zeros()
}

/// Serialises postings and peaks into the bytes of a segment file.
///
/// `hash_bits` is the width of the hash space (every hash is below
/// `2^hash_bits`). The postings are sorted and deduplicated in place; each
/// track's peaks must be in frame order.
///
/// # Errors
/// [`Error::Limit`] if a hash or frame is out of range or the batch cannot be
/// packed.
pub fn encode(
    postings: &mut Vec<Posting>,
    peaks: &BTreeMap<TrackId, Vec<StoredPeak>>,
    hash_bits: u32,
) -> Result<Vec<u8>> {
    postings.sort_unstable();
    postings.dedup();
    let n = postings.len() as u64;
    if n > u32::MAX as u64 {
        return Err(Error::Limit {
            what: "postings in one segment".into(),
            max: u32::MAX as u64,
        });
    }
    if let Some(p) = postings.iter().find(|p| (p.hash as u64) >> hash_bits != 0) {
        return Err(Error::Limit {
            what: format!("hash {:#x}", p.hash),
            max: (1u64 << hash_bits) - 1,
        });
    }
    let mut tracks: Vec<TrackId> = postings
        .iter()
        .map(|p| p.track)
        .chain(peaks.keys().copied())
        .collect();
    tracks.sort_unstable();
    tracks.dedup();
    let max_frame = postings.iter().map(|p| p.frame).max().unwrap_or(0);
    // About eight postings a bucket: a small table, and a short binary search.
    let table_bits = bits_for(n / 8).clamp(8, hash_bits.min(24));
    let layout = Layout {
        hash_bits,
        table_bits,
        track_bits: bits_for(tracks.len().saturating_sub(1) as u64),
        frame_bits: bits_for(max_frame as u64),
    };
    if layout.width() > MAX_WIDTH {
        return Err(Error::Limit {
            what: format!("posting width of {} bits", layout.width()),
            max: MAX_WIDTH as u64,
        });
    }
    let buckets = 1usize << table_bits;
    let width = layout.width() as u64;
    let entries_len = (n * width).div_ceil(8) as usize + 8;
    let mut out = Vec::with_capacity(
        HEADER_LEN + tracks.len() * 4 + (buckets + 1) * 4 + entries_len + FOOTER_LEN,
    );
    out.extend_from_slice(MAGIC);
    for v in [
        FORMAT_VERSION,
        layout.hash_bits,
        layout.table_bits,
        layout.track_bits,
        layout.frame_bits,
        tracks.len() as u32,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&n.to_le_bytes());
    let coded: Vec<(Vec<u16>, Vec<u32>)> = tracks
        .iter()
        .map(|t| constellation::encode(peaks.get(t).map_or(&[], Vec::as_slice)))
        .collect();
    let n_entries: usize = coded.iter().map(|(e, _)| e.len()).sum();
    if n_entries > u32::MAX as usize {
        return Err(Error::Limit {
            what: "peak entries in one segment".into(),
            max: u32::MAX as u64,
        });
    }
    out.extend_from_slice(&(n_entries as u64).to_le_bytes());
    out.resize(HEADER_LEN, 0);
    for t in &tracks {
        out.extend_from_slice(&t.0.to_le_bytes());
    }
    // Bucket table: the first posting of each bucket, then the total.
    let shift = layout.rest_bits();
    let mut next = 0usize;
    for bucket in 0..buckets {
        while next < postings.len() && ((postings[next].hash >> shift) as usize) < bucket {
            next += 1;
        }
        out.extend_from_slice(&(next as u32).to_le_bytes());
    }
    out.extend_from_slice(&(n as u32).to_le_bytes());
    // Entries, bit-packed little-endian.
    let entries_start = out.len();
    out.resize(entries_start + entries_len, 0);
    let rest_mask = (1u64 << layout.rest_bits()) - 1;
    for (i, p) in postings.iter().enumerate() {
        let local = tracks.partition_point(|t| *t < p.track) as u64;
        let value = ((p.hash as u64 & rest_mask) << (layout.track_bits + layout.frame_bits))
            | (local << layout.frame_bits)
            | p.frame as u64;
        let bit = i as u64 * width;
        let at = entries_start + (bit / 8) as usize;
        let word = u64::from_le_bytes(read8(&out, at)) | (value << (bit % 8));
        out[at..at + 8].copy_from_slice(&word.to_le_bytes());
    }
    // Peaks: where each track's entries start, the entries, the block bases.
    let mut first = 0u32;
    for (entries, _) in &coded {
        out.extend_from_slice(&first.to_le_bytes());
        first += entries.len() as u32;
    }
    out.extend_from_slice(&first.to_le_bytes());
    for (entries, _) in &coded {
        out.extend(entries.iter().flat_map(|e| e.to_le_bytes()));
    }
    for (_, bases) in &coded {
        out.extend(bases.iter().flat_map(|b| b.to_le_bytes()));
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(END_MAGIC);
    Ok(out)
}

fn read8(bytes: &[u8], at: usize) -> [u8; 8] {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    word
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_le_bytes(word)
}

/// An open, verified segment.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    map: Mapped,
    layout: Layout,
    tracks: Vec<TrackId>,
    postings: u64,
    table_at: usize,
    entries_at: usize,
    peak_index_at: usize,
    peaks_at: usize,
    bases_at: usize,
}

impl Segment {
    /// Maps a segment file and checks its magic, version, checksum and layout.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or [`Error::Version`] for a file that fails a check.
    pub fn open(path: &Path) -> Result<Self> {
        let map = Mapped::open(path)?;
        let corrupt = |what: &str| Error::Corrupt {
            path: path.to_owned(),
            what: what.to_owned(),
        };
        let bytes = map.bytes();
        if bytes.len() < HEADER_LEN + FOOTER_LEN || &bytes[..8] != MAGIC {
            return Err(corrupt("not a postings file"));
        }
        let version = read_u32(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(Error::Version {
                path: path.to_owned(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let body = bytes.len() - FOOTER_LEN;
        if &bytes[body + 4..] != END_MAGIC {
            return Err(corrupt("the file is truncated"));
        }
        if crc32fast::hash(&bytes[..body]) != read_u32(bytes, body) {
            return Err(corrupt("checksum mismatch"));
        }
        let layout = Layout {
            hash_bits: read_u32(bytes, 12),
            table_bits: read_u32(bytes, 16),
            track_bits: read_u32(bytes, 20),
            frame_bits: read_u32(bytes, 24),
        };
        let n_tracks = read_u32(bytes, 28) as usize;
        let postings = u64::from_le_bytes(read8(bytes, 32));
        let n_entries = u64::from_le_bytes(read8(bytes, 40));
        if layout.hash_bits > 32
            || layout.table_bits > layout.hash_bits
            || layout.table_bits > 24
            || layout.width() > MAX_WIDTH
            || (n_tracks as u64) > (1u64 << layout.track_bits).max(1)
        {
            return Err(corrupt("impossible bit layout"));
        }
        let table_at = HEADER_LEN + n_tracks * 4;
        let buckets = 1usize << layout.table_bits;
        let entries_at = table_at + (buckets + 1) * 4;
        let entries_len = (postings * layout.width() as u64).div_ceil(8) + 8;
        let peak_index_at = entries_at + entries_len as usize;
        let peaks_at = peak_index_at + (n_tracks + 1) * 4;
        let bases_at = peaks_at + n_entries as usize * 2;
        if !n_entries.is_multiple_of(BLOCK as u64)
            || bases_at as u64 + n_entries / BLOCK as u64 * 4 != body as u64
        {
            return Err(corrupt("section sizes do not add up"));
        }
        let mut previous = 0u32;
        for t in 0..=n_tracks {
            let at = read_u32(bytes, peak_index_at + t * 4);
            if at < previous || at as u64 > n_entries || !(at as usize).is_multiple_of(BLOCK) {
                return Err(corrupt("peak index out of order"));
            }
            previous = at;
        }
        if previous as u64 != n_entries {
            return Err(corrupt("peak index does not cover the peaks"));
        }
        let tracks: Vec<TrackId> = (0..n_tracks)
            .map(|i| TrackId(read_u32(bytes, HEADER_LEN + i * 4)))
            .collect();
        let mut previous = 0u32;
        for b in 0..=buckets {
            let at = read_u32(bytes, table_at + b * 4);
            if at < previous || at as u64 > postings {
                return Err(corrupt("bucket table out of order"));
            }
            previous = at;
        }
        if previous as u64 != postings {
            return Err(corrupt("bucket table does not cover the postings"));
        }
        Ok(Self {
            path: path.to_owned(),
            map,
            layout,
            tracks,
            postings,
            table_at,
            entries_at,
            peak_index_at,
            peaks_at,
            bases_at,
        })
    }

    /// The stored peaks of `track` (empty if it has none here).
    pub fn peaks(&self, track: TrackId) -> PeakList<'_> {
        let bytes = self.map.bytes();
        let Ok(local) = self.tracks.binary_search(&track) else {
            return PeakList::default();
        };
        let start = read_u32(bytes, self.peak_index_at + local * 4) as usize;
        let end = read_u32(bytes, self.peak_index_at + (local + 1) * 4) as usize;
        let entries = bytes.get(self.peaks_at + start * 2..self.peaks_at + end * 2);
        let bases = bytes.get(self.bases_at + start / BLOCK * 4..self.bases_at + end / BLOCK * 4);
        match (entries, bases) {
            (Some(entries), Some(bases)) => PeakList::new(entries, bases),
            _ => PeakList::default(),
        }
    }

    /// The file this segment was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of postings.
    pub fn postings(&self) -> u64 {
        self.postings
    }

    /// The tracks with postings here.
    pub fn tracks(&self) -> &[TrackId] {
        &self.tracks
    }

    /// Size of the file in bytes.
    pub fn bytes(&self) -> u64 {
        self.map.bytes().len() as u64
    }

    /// Calls `each` with every track's peaks.
    pub fn for_each_peaks(&self, mut each: impl FnMut(TrackId, Vec<StoredPeak>)) {
        for &track in &self.tracks {
            each(track, self.peaks(track).iter().collect());
        }
    }

    /// Calls `each` with every posting, in hash order.
    pub fn for_each(&self, mut each: impl FnMut(Posting)) {
        let layout = self.layout;
        let bytes = self.map.bytes();
        let width = layout.width() as u64;
        let shift = layout.rest_bits();
        let payload = layout.track_bits + layout.frame_bits;
        let mask = (1u64 << width) - 1;
        for bucket in 0..(1u64 << layout.table_bits) {
            let start = read_u32(bytes, self.table_at + bucket as usize * 4) as u64;
            let end = read_u32(bytes, self.table_at + (bucket as usize + 1) * 4) as u64;
            for i in start..end {
                let value = self.entry(i, width) & mask;
                let local =
                    ((value >> layout.frame_bits) & ((1u64 << layout.track_bits) - 1)) as usize;
                if let Some(&track) = self.tracks.get(local) {
                    each(Posting {
                        hash: ((bucket << shift) | (value >> payload)) as u32,
                        track,
                        frame: (value & ((1u64 << layout.frame_bits) - 1)) as u32,
                    });
                }
            }
        }
    }

    fn entry(&self, i: u64, width: u64) -> u64 {
        let bit = i * width;
        let word = u64::from_le_bytes(read8(
            self.map.bytes(),
            self.entries_at + (bit / 8) as usize,
        ));
        word >> (bit % 8)
    }

    /// Calls `hit` with the track and frame of every posting of `hash`.
    /// Returns the number of postings found.
    pub fn lookup(&self, hash: u32, mut hit: impl FnMut(TrackId, u32)) -> usize {
        let layout = self.layout;
        if layout.hash_bits < 32 && hash >> layout.hash_bits != 0 {
            return 0;
        }
        let bytes = self.map.bytes();
        let shift = layout.rest_bits();
        let bucket = (hash >> shift) as usize;
        let start = read_u32(bytes, self.table_at + bucket * 4) as u64;
        let end = read_u32(bytes, self.table_at + (bucket + 1) * 4) as u64;
        let width = layout.width() as u64;
        let mask = (1u64 << width) - 1;
        let rest_mask = (1u64 << shift) - 1;
        let want = hash as u64 & rest_mask;
        let payload = layout.track_bits + layout.frame_bits;
        let frame_mask = (1u64 << layout.frame_bits) - 1;
        let track_mask = (1u64 << layout.track_bits) - 1;
        // Entries are sorted within the bucket: find the first of `hash`.
        let (mut lo, mut hi) = (start, end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if (self.entry(mid, width) & mask) >> payload < want {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut found = 0;
        for i in lo..end {
            let value = self.entry(i, width) & mask;
            if value >> payload != want {
                break;
            }
            let local = ((value >> layout.frame_bits) & track_mask) as usize;
            if let Some(&track) = self.tracks.get(local) {
                hit(track, (value & frame_mask) as u32);
                found += 1;
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write_and_open(postings: &mut Vec<Posting>) -> (tempfile::TempDir, Segment) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seg");
        let peaks = BTreeMap::from([(
            TrackId(7),
            vec![
                StoredPeak {
                    frame: 3,
                    bin: 20.5,
                },
                StoredPeak {
                    frame: 9,
                    bin: 300.5,
                },
                StoredPeak {
                    frame: 40,
                    bin: 100.0,
                },
            ],
        )]);
        let bytes = encode(postings, &peaks, 24).expect("encode");
        std::fs::write(&path, bytes).expect("write");
        let segment = Segment::open(&path).expect("open");
        (dir, segment)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn every_posting_is_found_again(
            raw in proptest::collection::vec((0u32..1 << 24, 0u32..50, 0u32..100_000), 1..2_000)
        ) {
            let mut postings: Vec<Posting> = raw
                .iter()
                .map(|&(hash, track, frame)| Posting { hash, track: TrackId(track * 7), frame })
                .collect();
            let (_dir, segment) = write_and_open(&mut postings);
            for p in &postings {
                let mut hits = Vec::new();
                segment.lookup(p.hash, |t, f| hits.push((t, f)));
                let expected: Vec<(TrackId, u32)> = postings
                    .iter()
                    .filter(|q| q.hash == p.hash)
                    .map(|q| (q.track, q.frame))
                    .collect();
                prop_assert_eq!(hits, expected);
            }
        }
    }

    #[test]
    fn peaks_come_back_by_range() {
        let mut postings = vec![Posting {
            hash: 5,
            track: TrackId(1),
            frame: 9,
        }];
        let (_dir, segment) = write_and_open(&mut postings);
        let all: Vec<StoredPeak> = segment.peaks(TrackId(7)).iter().collect();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[0],
            StoredPeak {
                frame: 3,
                bin: 20.5
            }
        );
        let some: Vec<u32> = segment
            .peaks(TrackId(7))
            .range(4, 40)
            .map(|p| p.frame)
            .collect();
        assert_eq!(some, vec![9]);
        assert!(segment.peaks(TrackId(1)).is_empty());
        assert!(segment.peaks(TrackId(2)).is_empty());
    }

    #[test]
    fn flipped_byte_is_detected() {
        let mut postings = vec![Posting {
            hash: 5,
            track: TrackId(1),
            frame: 9,
        }];
        let (dir, segment) = write_and_open(&mut postings);
        let path = segment.path().to_owned();
        drop(segment);
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&path, &bytes).expect("write");
        let err = Segment::open(&path).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("checksum")));
        drop(dir);
    }

    #[test]
    fn truncated_file_is_detected() {
        let mut postings = vec![Posting {
            hash: 5,
            track: TrackId(1),
            frame: 9,
        }];
        let (dir, segment) = write_and_open(&mut postings);
        let path = segment.path().to_owned();
        drop(segment);
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 5]).expect("write");
        assert!(matches!(Segment::open(&path), Err(Error::Corrupt { .. })));
        drop(dir);
    }
}
