//! Postings files: every landmark of a batch of tracks, laid out for lookup.
//!
//! A segment is written once, front to back, and never changed. Postings are
//! sorted by hash; each is bit-packed at a fixed width (the rest of its hash
//! below the bucket bits, its track's index in the segment and its frame). A
//! bucket table indexed by the top `table_bits` bits of the hash gives each
//! bucket's range, so a lookup is a table read and a short scan, straight
//! from the memory map.
//!
//! | part    | content                                                    |
//! |---------|------------------------------------------------------------|
//! | header  | magic, version, bit widths, counts (64 bytes)              |
//! | tracks  | `n_tracks` x u32: global track id of each local index      |
//! | entries | `n_postings` x `width` bits, then 8 bytes of padding       |
//! | table   | `2^table_bits + 1` x u32: first posting of each bucket     |
//! | peaks   | `n_tracks + 1` x u32: first peak entry of each track, then  |
//! |         | the entries (u16) and block bases (u32), see `constellation` |
//! | footer  | CRC-32 of everything before it, then the end magic         |
//!
//! The table follows the entries so that a segment, even one merged from
//! others bigger than memory, is written in one pass. The peaks are each
//! track's constellation in frame order; matching checks a candidate against
//! them (see `vote`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::constellation::{self, BLOCK};
pub use crate::constellation::{PeakList, StoredPeak};
use crate::error::{Error, Result, io};
use crate::mmap::Mapped;
use crate::tracks::TrackId;

const MAGIC: &[u8; 8] = b"EMKSEG\0\x01";
const END_MAGIC: &[u8; 8] = b"EMKSEGND";
/// Version of the postings layout this build reads and writes.
pub const FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 64;
const FOOTER_LEN: usize = 12;
/// Widest packed posting: a u64 read at any byte offset must hold it.
const MAX_WIDTH: u32 = 56;
/// Most postings one segment holds (entries are numbered by u32).
pub const MAX_POSTINGS: u64 = u32::MAX as u64;
/// A merge moves postings through memory this many hashes at a time.
const MERGE_CHUNK_BITS: u32 = 16;

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

/// Size and checksum of a segment file just written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Bytes in the file.
    pub bytes: u64,
    /// CRC-32 of everything before the footer, as the footer records it. (A
    /// CRC of the whole file would be the same for every segment: a CRC
    /// over data followed by its own CRC is a constant.)
    pub crc32: u32,
}

/// The bit layout of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    hash_bits: u32,
    table_bits: u32,
    track_bits: u32,
    frame_bits: u32,
}

impl Layout {
    /// The layout for `postings` postings of `tracks` tracks with frames up
    /// to `max_frame`.
    fn plan(hash_bits: u32, postings: u64, tracks: usize, max_frame: u32) -> Result<Self> {
        if postings > MAX_POSTINGS {
            return Err(Error::Limit {
                what: "postings in one segment".into(),
                max: MAX_POSTINGS,
            });
        }
        // About eight postings a bucket: a small table, and a short search.
        let table_bits = bits_for(postings / 8).clamp(8.min(hash_bits), hash_bits.min(24));
        let layout = Self {
            hash_bits,
            table_bits,
            track_bits: bits_for(tracks.saturating_sub(1) as u64),
            frame_bits: bits_for(max_frame as u64),
        };
        if layout.width() > MAX_WIDTH || layout.payload() + hash_bits > 64 {
            return Err(Error::Limit {
                what: format!("posting width of {} bits", layout.width()),
                max: MAX_WIDTH as u64,
            });
        }
        Ok(layout)
    }

    fn rest_bits(&self) -> u32 {
        self.hash_bits - self.table_bits
    }

    /// Bits of a posting below its hash: track index and frame.
    fn payload(&self) -> u32 {
        self.track_bits + self.frame_bits
    }

    fn width(&self) -> u32 {
        self.rest_bits() + self.payload()
    }

    /// A posting as one number that sorts like the posting.
    fn key(&self, hash: u32, local: u32, frame: u32) -> u64 {
        ((hash as u64) << self.payload()) | ((local as u64) << self.frame_bits) | frame as u64
    }

    fn frame_mask(&self) -> u64 {
        (1u64 << self.frame_bits) - 1
    }

    fn track_mask(&self) -> u64 {
        (1u64 << self.track_bits) - 1
    }
}

/// Where each section of a segment starts.
#[derive(Debug, Clone, Copy)]
struct Sections {
    entries_at: usize,
    table_at: usize,
    peak_index_at: usize,
    peaks_at: usize,
    bases_at: usize,
    /// Where the footer starts.
    end: u64,
}

impl Sections {
    fn of(layout: Layout, n_tracks: usize, postings: u64, peak_entries: u64) -> Self {
        let entries_at = HEADER_LEN + n_tracks * 4;
        let entries_len = (postings * layout.width() as u64).div_ceil(8) as usize + 8;
        let table_at = entries_at + entries_len;
        let peak_index_at = table_at + ((1usize << layout.table_bits) + 1) * 4;
        let peaks_at = peak_index_at + (n_tracks + 1) * 4;
        let bases_at = peaks_at + peak_entries as usize * 2;
        Self {
            entries_at,
            table_at,
            peak_index_at,
            peaks_at,
            bases_at,
            end: bases_at as u64 + peak_entries / BLOCK as u64 * 4,
        }
    }
}

fn bits_for(max_value: u64) -> u32 {
    64 - max_value.leading_zeros()
}

/// One track's coded peaks, as little-endian bytes.
#[derive(Debug, Clone, Copy)]
struct PeakBytes<'a> {
    entries: &'a [u8],
    bases: &'a [u8],
}

/// A file written front to back through a buffer, checksummed on the way.
struct Sink {
    path: PathBuf,
    file: File,
    crc: crc32fast::Hasher,
    buffer: Vec<u8>,
    bytes: u64,
    /// Bits not yet written: fewer than 8, in the low bits.
    bits: u64,
    n_bits: u32,
}

impl Sink {
    fn create(path: &Path) -> Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            file: File::create(path).map_err(io(path))?,
            crc: crc32fast::Hasher::new(),
            buffer: Vec::with_capacity(1 << 20),
            bytes: 0,
            bits: 0,
            n_bits: 0,
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= 1 << 20 {
            self.drain()?;
        }
        Ok(())
    }

    /// Appends the low `width` bits of `value` (`width` <= 56) to a
    /// little-endian bit stream.
    fn put_bits(&mut self, value: u64, width: u32) -> Result<()> {
        let word = self.bits | (value << self.n_bits);
        let total = self.n_bits + width;
        let whole = (total / 8) as usize;
        self.put(&word.to_le_bytes()[..whole])?;
        self.bits = if whole == 8 { 0 } else { word >> (whole * 8) };
        self.n_bits = total % 8;
        Ok(())
    }

    /// Writes out a partial byte of the bit stream.
    fn end_bits(&mut self) -> Result<()> {
        if self.n_bits > 0 {
            self.put(&[self.bits as u8])?;
        }
        self.bits = 0;
        self.n_bits = 0;
        Ok(())
    }

    fn drain(&mut self) -> Result<()> {
        self.crc.update(&self.buffer);
        self.bytes += self.buffer.len() as u64;
        self.file.write_all(&self.buffer).map_err(io(&self.path))?;
        self.buffer.clear();
        Ok(())
    }

    /// Appends the checksum and end magic and syncs the file.
    fn finish(mut self) -> Result<Written> {
        self.drain()?;
        let crc32 = self.crc.clone().finalize();
        self.put(&crc32.to_le_bytes())?;
        self.put(END_MAGIC)?;
        self.drain()?;
        self.file.sync_all().map_err(io(&self.path))?;
        Ok(Written {
            bytes: self.bytes,
            crc32,
        })
    }
}

/// Writes a segment front to back: header and tracks, postings in key
/// order, then the table and peaks.
struct SegmentWriter {
    sink: Sink,
    layout: Layout,
    sections: Sections,
    postings: u64,
    written: u64,
    /// First posting of each bucket so far.
    table: Vec<u32>,
    last: u64,
}

impl SegmentWriter {
    fn create(
        path: &Path,
        layout: Layout,
        tracks: &[TrackId],
        postings: u64,
        peak_entries: u64,
    ) -> Result<Self> {
        let mut sink = Sink::create(path)?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        for v in [
            FORMAT_VERSION,
            layout.hash_bits,
            layout.table_bits,
            layout.track_bits,
            layout.frame_bits,
            tracks.len() as u32,
        ] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        header.extend_from_slice(&postings.to_le_bytes());
        header.extend_from_slice(&peak_entries.to_le_bytes());
        header.resize(HEADER_LEN, 0);
        sink.put(&header)?;
        for t in tracks {
            sink.put(&t.0.to_le_bytes())?;
        }
        Ok(Self {
            sink,
            layout,
            sections: Sections::of(layout, tracks.len(), postings, peak_entries),
            postings,
            written: 0,
            table: Vec::with_capacity((1 << layout.table_bits) + 1),
            last: 0,
        })
    }

    /// Appends a posting given as its [`Layout::key`]; keys come in
    /// ascending order.
    fn push(&mut self, key: u64) -> Result<()> {
        if key < self.last || self.written == self.postings {
            return Err(self.broken("postings out of order or too many"));
        }
        self.last = key;
        let bucket = (key >> (self.layout.payload() + self.layout.rest_bits())) as usize;
        while self.table.len() <= bucket {
            self.table.push(self.written as u32);
        }
        let width = self.layout.width();
        self.sink.put_bits(key & ((1u64 << width) - 1), width)?;
        self.written += 1;
        Ok(())
    }

    fn broken(&self, what: &str) -> Error {
        Error::Corrupt {
            path: self.sink.path.clone(),
            what: what.to_owned(),
        }
    }

    /// Writes the table and the peaks of every track, in the order of the
    /// track list, and closes the file.
    fn finish(mut self, peaks: &[PeakBytes<'_>]) -> Result<Written> {
        if self.written != self.postings {
            return Err(self.broken("fewer postings than announced"));
        }
        self.sink.end_bits()?;
        self.sink.put(&[0; 8])?;
        let buckets = 1usize << self.layout.table_bits;
        while self.table.len() <= buckets {
            self.table.push(self.written as u32);
        }
        for at in std::mem::take(&mut self.table) {
            self.sink.put(&at.to_le_bytes())?;
        }
        let mut first = 0u32;
        for p in peaks {
            self.sink.put(&first.to_le_bytes())?;
            first += (p.entries.len() / 2) as u32;
        }
        self.sink.put(&first.to_le_bytes())?;
        for p in peaks {
            self.sink.put(p.entries)?;
        }
        for p in peaks {
            self.sink.put(p.bases)?;
        }
        let expected = self.sections.end;
        if self.sink.bytes + self.sink.buffer.len() as u64 != expected {
            return Err(self.broken("sections do not add up"));
        }
        self.sink.finish()
    }
}

/// Writes postings and peaks as the segment file `path`.
///
/// `hash_bits` is the width of the hash space (every hash is below
/// `2^hash_bits`). The postings are sorted and deduplicated in place; each
/// track's peaks must be in frame order.
///
/// # Errors
/// [`Error::Limit`] if a hash or frame is out of range or the batch cannot be
/// packed, or an I/O error.
pub fn write(
    path: &Path,
    postings: &mut Vec<Posting>,
    peaks: &BTreeMap<TrackId, Vec<StoredPeak>>,
    hash_bits: u32,
) -> Result<Written> {
    postings.sort_unstable();
    postings.dedup();
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
    let layout = Layout::plan(hash_bits, postings.len() as u64, tracks.len(), max_frame)?;
    let coded: Vec<(Vec<u8>, Vec<u8>)> = tracks
        .iter()
        .map(|t| {
            let (entries, bases) = constellation::encode(peaks.get(t).map_or(&[], Vec::as_slice));
            (
                entries.iter().flat_map(|e| e.to_le_bytes()).collect(),
                bases.iter().flat_map(|b| b.to_le_bytes()).collect(),
            )
        })
        .collect();
    let peak_bytes: Vec<PeakBytes<'_>> = coded
        .iter()
        .map(|(entries, bases)| PeakBytes { entries, bases })
        .collect();
    let peak_entries = peak_bytes.iter().map(|p| p.entries.len() as u64 / 2).sum();
    check_peak_entries(peak_entries)?;
    let mut writer =
        SegmentWriter::create(path, layout, &tracks, postings.len() as u64, peak_entries)?;
    for p in postings.iter() {
        let local = tracks.partition_point(|t| *t < p.track) as u32;
        writer.push(layout.key(p.hash, local, p.frame))?;
    }
    writer.finish(&peak_bytes)
}

fn check_peak_entries(n: u64) -> Result<()> {
    if n > u32::MAX as u64 {
        return Err(Error::Limit {
            what: "peak entries in one segment".into(),
            max: u32::MAX as u64,
        });
    }
    Ok(())
}

/// Merges segments into the one file `path`, a bounded slice of the hash
/// space at a time, so inputs bigger than memory merge in one pass.
///
/// # Errors
/// [`Error::Limit`] if the result cannot be packed, or an I/O error.
pub fn merge(path: &Path, sources: &[&Segment]) -> Result<Written> {
    let hash_bits = sources
        .iter()
        .map(|s| s.layout.hash_bits)
        .max()
        .unwrap_or(0);
    let mut tracks: Vec<TrackId> = sources.iter().flat_map(|s| s.tracks.clone()).collect();
    tracks.sort_unstable();
    tracks.dedup();
    let postings: u64 = sources.iter().map(|s| s.postings).sum();
    let max_frame = sources
        .iter()
        .map(|s| s.layout.frame_mask() as u32)
        .max()
        .unwrap_or(0);
    let layout = Layout::plan(hash_bits, postings, tracks.len(), max_frame)?;
    // Each source's local track index, as an index into the merged list.
    let locals: Vec<Vec<u32>> = sources
        .iter()
        .map(|s| {
            s.tracks
                .iter()
                .map(|t| tracks.partition_point(|x| x < t) as u32)
                .collect()
        })
        .collect();
    // Where each merged track's peaks are: the last source that holds it.
    let mut owner = vec![0usize; tracks.len()];
    for (i, local) in locals.iter().enumerate() {
        for &l in local {
            owner[l as usize] = i;
        }
    }
    let peak_bytes: Vec<PeakBytes<'_>> = tracks
        .iter()
        .zip(&owner)
        .map(|(t, &i)| sources[i].peak_bytes(*t))
        .collect();
    let peak_entries = peak_bytes.iter().map(|p| p.entries.len() as u64 / 2).sum();
    check_peak_entries(peak_entries)?;
    let mut writer = SegmentWriter::create(path, layout, &tracks, postings, peak_entries)?;
    let chunk_bits = MERGE_CHUNK_BITS.min(hash_bits);
    let mut keys = Vec::new();
    for chunk in 0..1u64 << (hash_bits - chunk_bits) {
        keys.clear();
        let (lo, hi) = (chunk << chunk_bits, (chunk + 1) << chunk_bits);
        for (source, local) in sources.iter().zip(&locals) {
            source.for_each_between(lo, hi, |hash, l, frame| {
                if let Some(&merged) = local.get(l as usize) {
                    keys.push(layout.key(hash, merged, frame));
                }
            });
        }
        keys.sort_unstable();
        for &key in &keys {
            writer.push(key)?;
        }
    }
    writer.finish(&peak_bytes)
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

/// Whether the `n` u32 offsets at `at` rise from 0 or more to exactly
/// `total`, each a multiple of `align`.
fn offsets_in_order(bytes: &[u8], at: usize, n: usize, total: u64, align: usize) -> bool {
    let mut previous = 0u32;
    for i in 0..n {
        let offset = read_u32(bytes, at + i * 4);
        if offset < previous || offset as u64 > total || !(offset as usize).is_multiple_of(align) {
            return false;
        }
        previous = offset;
    }
    previous as u64 == total
}

/// An open segment whose header and section sizes have been checked.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    map: Mapped,
    layout: Layout,
    tracks: Vec<TrackId>,
    /// The first track's id when the tracks are numbered in a row, as
    /// tracks added together are: a posting's track is then found without
    /// reading `tracks` (a cache miss in a large catalog's lookups).
    first_of_row: Option<u32>,
    postings: u64,
    sections: Sections,
}

impl Segment {
    /// Maps a segment file and checks its magic, version, layout and section
    /// sizes. The checksum and the bucket table are left to
    /// [`Segment::verify`]: reading every byte would make opening a large
    /// catalog slow, and lookups stay in bounds whatever the table says.
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
            || postings > MAX_POSTINGS
            || n_entries > u32::MAX as u64
            || !n_entries.is_multiple_of(BLOCK as u64)
        {
            return Err(corrupt("impossible bit layout"));
        }
        let sections = Sections::of(layout, n_tracks, postings, n_entries);
        if sections.end != body as u64 {
            return Err(corrupt("section sizes do not add up"));
        }
        if !offsets_in_order(
            bytes,
            sections.peak_index_at,
            n_tracks + 1,
            n_entries,
            BLOCK,
        ) {
            return Err(corrupt("peak index out of order or not covering the peaks"));
        }
        let tracks: Vec<TrackId> = (0..n_tracks)
            .map(|i| TrackId(read_u32(bytes, HEADER_LEN + i * 4)))
            .collect();
        if tracks.windows(2).any(|w| w[0] >= w[1]) {
            return Err(corrupt("track list out of order"));
        }
        let first_of_row = match (tracks.first(), tracks.last()) {
            (Some(f), Some(l)) if (l.0 - f.0) as usize == n_tracks - 1 => Some(f.0),
            _ => None,
        };
        Ok(Self {
            path: path.to_owned(),
            map,
            layout,
            tracks,
            first_of_row,
            postings,
            sections,
        })
    }

    /// Reads the whole file through and compares it with its checksum.
    ///
    /// # Errors
    /// [`Error::Corrupt`] on a mismatch.
    pub fn check_sum(&self) -> Result<()> {
        let bytes = self.map.bytes();
        let body = bytes.len() - FOOTER_LEN;
        if crc32fast::hash(&bytes[..body]) == read_u32(bytes, body) {
            return Ok(());
        }
        Err(Error::Corrupt {
            path: self.path.clone(),
            what: "checksum mismatch".into(),
        })
    }

    /// Reads the whole file: its checksum, the bucket table and the order of
    /// every posting.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the first fault found.
    pub fn verify(&self) -> Result<()> {
        self.check_sum()?;
        let bytes = self.map.bytes();
        let corrupt = |what: String| Error::Corrupt {
            path: self.path.clone(),
            what,
        };
        let buckets = (1usize << self.layout.table_bits) + 1;
        if !offsets_in_order(bytes, self.sections.table_at, buckets, self.postings, 1) {
            return Err(corrupt(
                "bucket table out of order or not covering the postings".into(),
            ));
        }
        let mut last = None;
        let mut fault = None;
        self.for_each_between(0, 1 << self.layout.hash_bits, |hash, local, frame| {
            let key = self.layout.key(hash, local, frame);
            if fault.is_none()
                && (last.is_some_and(|l| l > key) || local as usize >= self.tracks.len())
            {
                fault = Some(format!(
                    "posting of hash {hash:#x} out of order or out of range"
                ));
            }
            last = Some(key);
        });
        match fault {
            Some(what) => Err(corrupt(what)),
            None => Ok(()),
        }
    }

    /// The checksum the footer records (see [`Written::crc32`]);
    /// [`Segment::verify`] checks it against the bytes.
    pub fn crc32(&self) -> u32 {
        let bytes = self.map.bytes();
        read_u32(bytes, bytes.len() - FOOTER_LEN)
    }

    /// The stored peaks of `track` (empty if it has none here).
    pub fn peaks(&self, track: TrackId) -> PeakList<'_> {
        let p = self.peak_bytes(track);
        PeakList::new(p.entries, p.bases)
    }

    fn peak_bytes(&self, track: TrackId) -> PeakBytes<'_> {
        let empty = PeakBytes {
            entries: &[],
            bases: &[],
        };
        let bytes = self.map.bytes();
        let Ok(local) = self.tracks.binary_search(&track) else {
            return empty;
        };
        let s = &self.sections;
        let start = read_u32(bytes, s.peak_index_at + local * 4) as usize;
        let end = read_u32(bytes, s.peak_index_at + (local + 1) * 4) as usize;
        let entries = bytes.get(s.peaks_at + start * 2..s.peaks_at + end * 2);
        let bases = bytes.get(s.bases_at + start / BLOCK * 4..s.bases_at + end / BLOCK * 4);
        match (entries, bases) {
            (Some(entries), Some(bases)) => PeakBytes { entries, bases },
            _ => empty,
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

    /// The postings of one bucket, clamped to the entries.
    fn bucket(&self, bucket: usize) -> (u64, u64) {
        let bytes = self.map.bytes();
        let at = self.sections.table_at + bucket * 4;
        let end = (read_u32(bytes, at + 4) as u64).min(self.postings);
        ((read_u32(bytes, at) as u64).min(end), end)
    }

    /// Adds to `counts[i]` the postings of hash `first + i`, for as many
    /// hashes as `counts` holds.
    pub fn count_postings(&self, first: u32, counts: &mut [u32]) {
        let lo = first as u64;
        self.for_each_between(lo, lo + counts.len() as u64, |hash, _, _| {
            counts[(hash - first) as usize] += 1;
        });
    }

    /// Calls `each` with the hash, local track index and frame of every
    /// posting whose hash is in `lo..hi`, in order.
    fn for_each_between(&self, lo: u64, hi: u64, mut each: impl FnMut(u32, u32, u32)) {
        let layout = self.layout;
        let width = layout.width() as u64;
        let shift = layout.rest_bits();
        let payload = layout.payload();
        let mask = (1u64 << width) - 1;
        let last_bucket = (1u64 << layout.table_bits) - 1;
        for bucket in lo >> shift..=((hi.max(1) - 1) >> shift).min(last_bucket) {
            let (start, end) = self.bucket(bucket as usize);
            for i in start..end {
                let value = self.entry(i, width) & mask;
                let hash = (bucket << shift) | (value >> payload);
                if (lo..hi).contains(&hash) {
                    each(
                        hash as u32,
                        ((value >> layout.frame_bits) & layout.track_mask()) as u32,
                        (value & layout.frame_mask()) as u32,
                    );
                }
            }
        }
    }

    fn entry(&self, i: u64, width: u64) -> u64 {
        let bit = i * width;
        let word = u64::from_le_bytes(read8(
            self.map.bytes(),
            self.sections.entries_at + (bit / 8) as usize,
        ));
        word >> (bit % 8)
    }

    /// The postings of each of `hashes` (ascending, distinct), as ranges of
    /// entries appended to `out`. Where the table does not hold every hash
    /// apart, a run of consecutive hashes in one bucket (a triplet under
    /// neighbouring anchor classes) is searched at its ends only, and the
    /// entries between are split by hash as they are read.
    pub fn ranges(&self, hashes: &[u32], out: &mut Vec<(u64, u64)>) {
        let shift = self.layout.rest_bits();
        if shift == 0 {
            self.search_all(hashes, out);
            return;
        }
        let same_run = |a: &u32, b: &u32| b.wrapping_sub(*a) == 1 && a >> shift == b >> shift;
        let runs = hashes.chunk_by(same_run);
        // The first and (for a longer run) the last hash of each run.
        let mut ends = Vec::new();
        for run in runs.clone() {
            ends.push(run[0]);
            if let [_, .., last] = run {
                ends.push(*last);
            }
        }
        let mut found = Vec::with_capacity(ends.len());
        self.search_all(&ends, &mut found);
        let width = self.layout.width() as u64;
        let mask = (1u64 << width) - 1;
        let payload = self.layout.payload();
        let rest = |i| (self.entry(i, width) & mask) >> payload;
        let rest_of_hash = (1u64 << shift) - 1;
        let mut found = found.into_iter();
        for run in runs {
            let Some(first) = found.next() else {
                break;
            };
            if run.len() == 1 {
                out.push(first);
                continue;
            }
            let Some(last) = found.next() else {
                break;
            };
            let mut at = first.0;
            for &hash in run {
                let want = u64::from(hash) & rest_of_hash;
                let start = at;
                while at < last.1 && rest(at) == want {
                    at += 1;
                }
                out.push((start, at));
            }
        }
    }

    /// The postings of each of `hashes`, as ranges of entries appended to
    /// `out`, searched [`SIDE_BY_SIDE`] at a time.
    fn search_all(&self, hashes: &[u32], out: &mut Vec<(u64, u64)>) {
        for chunk in hashes.chunks(SIDE_BY_SIDE) {
            let mut found = [(0, 0); SIDE_BY_SIDE];
            self.search(chunk, &mut found);
            out.extend_from_slice(&found[..chunk.len()]);
        }
    }

    /// Finds the ranges of up to [`SIDE_BY_SIDE`] hashes (the rest are
    /// ignored), searching them side by side and without branches on what
    /// is read: the reads of different hashes then wait for memory together
    /// instead of one after another.
    fn search(&self, hashes: &[u32], found: &mut [(u64, u64)]) {
        let layout = self.layout;
        let shift = layout.rest_bits();
        let n = hashes.len().min(SIDE_BY_SIDE).min(found.len());
        let mut lo = [0u64; SIDE_BY_SIDE];
        let mut hi = [0u64; SIDE_BY_SIDE];
        let mut want = [0u64; SIDE_BY_SIDE];
        for (k, &hash) in hashes.iter().take(n).enumerate() {
            if layout.hash_bits >= 32 || hash >> layout.hash_bits == 0 {
                (lo[k], hi[k]) = self.bucket((hash >> shift) as usize);
            }
            want[k] = hash as u64 & ((1u64 << shift) - 1);
        }
        if shift > 0 {
            let width = layout.width() as u64;
            let mask = (1u64 << width) - 1;
            let payload = layout.payload();
            let rest = |i| (self.entry(i, width) & mask) >> payload;
            // Entries are sorted within a bucket: a hash's run lies between
            // the first entry not below it and the first entry above it.
            let ends = hi;
            lower_bounds(&mut lo[..n], &ends[..n], |k, i| rest(i) < want[k]);
            let mut above = lo;
            lower_bounds(&mut above[..n], &ends[..n], |k, i| rest(i) <= want[k]);
            hi = above;
        }
        for (k, f) in found.iter_mut().take(n).enumerate() {
            *f = (lo[k], hi[k]);
        }
    }

    /// Calls `hit` with the track and frame of the postings in `range` (from
    /// [`Segment::ranges`]).
    pub fn read(&self, (start, end): (u64, u64), mut hit: impl FnMut(TrackId, u32)) {
        let layout = self.layout;
        let width = layout.width() as u64;
        let n_tracks = self.tracks.len();
        for i in start..end.min(self.postings) {
            let value = self.entry(i, width);
            let local = ((value >> layout.frame_bits) & layout.track_mask()) as usize;
            let track = match self.first_of_row {
                Some(first) => (local < n_tracks).then(|| TrackId(first + local as u32)),
                None => self.tracks.get(local).copied(),
            };
            if let Some(track) = track {
                hit(track, (value & layout.frame_mask()) as u32);
            }
        }
    }
}

/// How many lookups [`Segment::ranges`] searches side by side.
const SIDE_BY_SIDE: usize = 16;

/// Binary searches side by side: for each `k`, moves `base[k]` to the
/// first `i` in `base[k]..end[k]` for which `below(k, i)` is false (all
/// before it being true). Each round halves every range with a conditional
/// move, whatever is read (a closed search reads at its end, which is
/// harmless), for as many rounds as the longest range needs: a fifth
/// faster than bisecting each to its own end, which checks after every
/// round which searches are still open (41 against 51 ns a hash for the
/// dev catalog and 10 s queries).
fn lower_bounds(base: &mut [u64], end: &[u64], below: impl Fn(usize, u64) -> bool) {
    let mut size = [0u64; SIDE_BY_SIDE];
    for (s, (&b, &e)) in size.iter_mut().zip(base.iter().zip(end)) {
        *s = e.saturating_sub(b);
    }
    let largest = size.iter().copied().max().unwrap_or(0);
    let rounds = u64::BITS - largest.saturating_sub(1).leading_zeros();
    for _ in 0..rounds {
        for (k, (b, s)) in base.iter_mut().zip(size.iter_mut()).enumerate() {
            let half = *s / 2;
            let mid = *b + half;
            *b = if below(k, mid) { mid } else { *b };
            *s -= half;
        }
    }
    for (k, (b, s)) in base.iter_mut().zip(size).enumerate() {
        *b += (s > 0 && below(k, *b)) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Calls `hit` with the track and frame of every posting of `hash`.
    fn lookup(segment: &Segment, hash: u32, hit: impl FnMut(TrackId, u32)) {
        let mut ranges = Vec::new();
        segment.ranges(&[hash], &mut ranges);
        segment.read(ranges[0], hit);
    }

    /// The track and frame of each of `postings` with `hash`, in order.
    fn postings_of(postings: &[Posting], hash: u32) -> Vec<(TrackId, u32)> {
        (postings.iter())
            .filter(|q| q.hash == hash)
            .map(|q| (q.track, q.frame))
            .collect()
    }

    /// Writes the `(hash, track, frame)` postings of `raw`, their hashes
    /// placed by `place`, asks for the ranges of `asked` (placed likewise)
    /// in one call, and checks that each holds its hash's postings.
    fn ranges_find_their_postings(
        raw: &[(u32, u32, u32)],
        asked: &[u32],
        place: impl Fn(u32) -> u32,
    ) -> std::result::Result<(), TestCaseError> {
        let mut postings: Vec<Posting> = (raw.iter())
            .map(|&(hash, track, frame)| Posting {
                hash: place(hash),
                track: TrackId(track),
                frame,
            })
            .collect();
        let (_dir, segment) = write_and_open(&mut postings);
        let asked: Vec<u32> = asked.iter().map(|&h| place(h)).collect();
        let mut ranges = Vec::new();
        segment.ranges(&asked, &mut ranges);
        prop_assert_eq!(ranges.len(), asked.len());
        for (&hash, &range) in asked.iter().zip(&ranges) {
            let mut hits = Vec::new();
            segment.read(range, |t, f| hits.push((t, f)));
            prop_assert_eq!(hits, postings_of(&postings, hash));
        }
        Ok(())
    }

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
        write(&path, postings, &peaks, 24).expect("write");
        let segment = Segment::open(&path).expect("open");
        (dir, segment)
    }

    #[test]
    fn postings_name_their_tracks_whether_numbered_in_a_row_or_not() {
        for (ids, in_row) in [([5, 6, 7], true), ([5, 7, 30], false)] {
            let mut postings: Vec<Posting> = (ids.iter().enumerate())
                .map(|(i, &t)| Posting {
                    hash: 1_000 + i as u32,
                    track: TrackId(t),
                    frame: 10 * i as u32,
                })
                .collect();
            let (_dir, segment) = write_and_open(&mut postings);
            assert_eq!(segment.first_of_row.is_some(), in_row);
            for p in &postings {
                let mut hits = Vec::new();
                lookup(&segment, p.hash, |t, f| hits.push((t, f)));
                assert_eq!(hits, [(p.track, p.frame)]);
            }
        }
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
                lookup(&segment, p.hash, |t, f| hits.push((t, f)));
                prop_assert_eq!(hits, postings_of(&postings, p.hash));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn hashes_searched_side_by_side_find_their_own_postings(
            raw in proptest::collection::vec((0u32..1 << 12, 0u32..20, 0u32..1_000), 1..3_000),
            asked in proptest::collection::vec(0u32..(1 << 12) + 8, 0..100),
        ) {
            // Beyond 2^24 the hashes are out of the segment's range.
            ranges_find_their_postings(&raw, &asked, |h| h << 12)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn runs_of_consecutive_hashes_find_their_own_postings(
            raw in proptest::collection::vec((0u32..1 << 10, 0u32..20, 0u32..1_000), 1..3_000),
            asked in proptest::collection::btree_set(0u32..(1 << 10) + 8, 0..300),
        ) {
            // Hashes packed close together, so that a bucket holds several.
            let asked: Vec<u32> = asked.into_iter().collect();
            ranges_find_their_postings(&raw, &asked, |h| h + 5_000)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn a_merge_holds_what_its_sources_held(
            raw in proptest::collection::vec((0u32..1 << 20, 0u32..30, 0u32..5_000), 1..3_000)
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut parts: [Vec<Posting>; 3] = Default::default();
            for &(hash, track, frame) in &raw {
                parts[track as usize % 3].push(Posting { hash, track: TrackId(track), frame });
            }
            let mut sources = Vec::new();
            for (i, part) in parts.iter_mut().enumerate() {
                let path = dir.path().join(format!("s{i}"));
                let peaks = part
                    .iter()
                    .map(|p| (p.track, vec![StoredPeak { frame: p.track.0, bin: 10.0 }]))
                    .collect();
                write(&path, part, &peaks, 20).expect("write");
                sources.push(Segment::open(&path).expect("open"));
            }
            let merged_path = dir.path().join("merged");
            let refs: Vec<&Segment> = sources.iter().collect();
            let written = merge(&merged_path, &refs).expect("merge");
            let merged = Segment::open(&merged_path).expect("open merged");
            merged.verify().expect("verify");
            prop_assert_eq!(written.crc32, merged.crc32());
            prop_assert_eq!(merged.postings(), refs.iter().map(|s| s.postings()).sum::<u64>());
            for &(hash, track, _) in &raw {
                let mut want = Vec::new();
                for s in &sources {
                    lookup(s, hash, |t, f| want.push((t, f)));
                }
                want.sort_unstable();
                let mut got = Vec::new();
                lookup(&merged, hash, |t, f| got.push((t, f)));
                prop_assert_eq!(got, want);
                let peaks: Vec<u32> = merged.peaks(TrackId(track)).iter().map(|p| p.frame).collect();
                prop_assert_eq!(peaks, vec![track]);
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
        let segment = Segment::open(&path).expect("open");
        let err = segment.verify().err().map(|e| e.to_string());
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
