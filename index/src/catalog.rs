//! A catalog directory: segments, the track table and the manifest naming them.
//!
//! Every file but the manifest is written once under a fresh name, synced and
//! renamed into place; then a new `manifest.json` is written the same way. The
//! rename of the manifest is the commit: a crash before it leaves the previous
//! catalog exactly as it was, and the next writer deletes the orphans. Readers
//! never lock; one writer at a time holds `LOCK`.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use earmark_engine::chroma::CHROMA;
use earmark_engine::{Landmark, Peak};

use crate::error::{Error, Result, io};
use crate::licence::Licence;
use crate::rights::{Linked, RightsRow, RightsTable};
use crate::segment::{self, PeakList, Posting, Segment, StoredPeak};
use crate::similar::{Embeddings, Similar};
use crate::tracks::{Track, TrackId, TrackMeta, TrackTable};

/// Version of the catalog layout (manifest and file set).
pub const CATALOG_FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const LOCK: &str = "LOCK";
/// Width of the hash space; every landmark hash is below `2^HASH_BITS`.
pub const HASH_BITS: u32 = 24;
/// Segments fall in tiers of postings counts growing by this factor; when a
/// tier holds this many segments, [`CatalogWriter::merge`] folds them into
/// one of the next tier. Each posting is thus rewritten about
/// `log4(catalog / batch)` times in its life, and a lookup visits at most
/// three segments per tier.
const MERGE_FACTOR: u64 = 4;
/// Postings of the first tier's upper bound (about 3 hours of music).
const TIER_BASE: u64 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileRef {
    file: String,
    bytes: u64,
    crc32: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    generation: u64,
    /// The fingerprint scheme the postings were made with.
    fingerprint: String,
    segments: Vec<FileRef>,
    tracks: FileRef,
    /// Rights metadata, once imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rights: Option<FileRef>,
    /// Licences, once added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    licences: Option<FileRef>,
    /// Similarity embeddings of the tracks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    embeddings: Option<FileRef>,
    /// The HNSW graph over them: its graph and data files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    similar: Vec<FileRef>,
}

/// Size and content figures of a catalog.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogInfo {
    /// Indexed recordings.
    pub tracks: usize,
    /// Their total duration in hours.
    pub hours: f64,
    /// Stored landmarks.
    pub postings: u64,
    /// Segment files.
    pub segments: usize,
    /// Bytes of every file the manifest names, itself included.
    pub bytes_on_disk: u64,
    /// The fingerprint scheme of the postings.
    pub fingerprint: String,
}

/// A read-only view of a catalog as of one manifest.
#[derive(Debug)]
pub struct Catalog {
    dir: PathBuf,
    manifest: Manifest,
    segments: Vec<Segment>,
    /// Which segment holds each track's peaks, by track id.
    peak_segment: Vec<u32>,
    tracks: TrackTable,
    rights: RightsTable,
    licences: Vec<Licence>,
    embeddings: Embeddings,
    similar: Option<Arc<Similar>>,
}

impl Catalog {
    /// Opens the catalog in `dir`, checking every file against the manifest.
    ///
    /// # Errors
    /// [`Error::Missing`] when there is no catalog, [`Error::Corrupt`] or
    /// [`Error::Version`] when a file fails its checks.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = read_manifest(dir)?.ok_or_else(|| Error::Missing {
            path: dir.to_owned(),
        })?;
        Self::load(dir, manifest)
    }

    /// Opens the catalog in `dir` for queries fingerprinted with the scheme
    /// `fingerprint`.
    ///
    /// # Errors
    /// As [`Catalog::open`], and [`Error::Corrupt`] if the catalog was built
    /// with another scheme (its answers would be chance).
    pub fn open_for(dir: &Path, fingerprint: &str) -> Result<Self> {
        let catalog = Self::open(dir)?;
        catalog.check_scheme(fingerprint)?;
        Ok(catalog)
    }

    fn check_scheme(&self, fingerprint: &str) -> Result<()> {
        if self.manifest.fingerprint == fingerprint {
            return Ok(());
        }
        Err(Error::Corrupt {
            path: self.dir.join(MANIFEST),
            what: format!(
                "built with fingerprint scheme {:?}, this build makes {fingerprint:?}; \
                 rebuild the catalog",
                self.manifest.fingerprint
            ),
        })
    }

    fn empty(dir: &Path, fingerprint: &str) -> Self {
        Self {
            dir: dir.to_owned(),
            manifest: Manifest {
                format: CATALOG_FORMAT,
                generation: 0,
                fingerprint: fingerprint.to_owned(),
                segments: Vec::new(),
                tracks: FileRef {
                    file: String::new(),
                    bytes: 0,
                    crc32: 0,
                },
                rights: None,
                licences: None,
                embeddings: None,
                similar: Vec::new(),
            },
            segments: Vec::new(),
            peak_segment: Vec::new(),
            tracks: TrackTable::default(),
            rights: RightsTable::default(),
            licences: Vec::new(),
            embeddings: Embeddings::default(),
            similar: None,
        }
    }

    fn load(dir: &Path, manifest: Manifest) -> Result<Self> {
        let mut segments = Vec::with_capacity(manifest.segments.len());
        for file in &manifest.segments {
            let path = dir.join(&file.file);
            let segment = Segment::open(&path)?;
            if segment.bytes() != file.bytes {
                return Err(Error::Corrupt {
                    path,
                    what: "size differs from the manifest".into(),
                });
            }
            segments.push(segment);
        }
        let tracks = match read_checked(dir, Some(&manifest.tracks))? {
            Some((path, bytes)) => {
                TrackTable::from_jsonl(&bytes).map_err(|what| Error::Corrupt { path, what })?
            }
            None => TrackTable::default(),
        };
        let rights = match read_checked(dir, manifest.rights.as_ref())? {
            Some((path, bytes)) => {
                RightsTable::from_jsonl(&bytes).map_err(|what| Error::Corrupt { path, what })?
            }
            None => RightsTable::default(),
        };
        let licences = match read_checked(dir, manifest.licences.as_ref())? {
            Some((path, bytes)) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path,
                what: e.to_string(),
            })?,
            None => Vec::new(),
        };
        let embeddings = match read_checked(dir, manifest.embeddings.as_ref())? {
            Some((path, bytes)) => {
                Embeddings::decode(&bytes).map_err(|what| Error::Corrupt { path, what })?
            }
            None => Embeddings::default(),
        };
        let similar = match manifest.similar.first() {
            Some(graph) => {
                // hnsw_rs trusts its files: check them before it reads them.
                for file in &manifest.similar {
                    read_checked(dir, Some(file))?;
                }
                let basename = graph.file.trim_end_matches(".hnsw.graph");
                Some(Arc::new(Similar::load(dir, basename)?))
            }
            None => None,
        };
        let mut peak_segment = vec![u32::MAX; tracks.len()];
        for (i, segment) in segments.iter().enumerate() {
            for t in segment.tracks() {
                match peak_segment.get_mut(t.0 as usize) {
                    Some(slot) => *slot = i as u32,
                    None => {
                        return Err(Error::Corrupt {
                            path: segment.path().to_owned(),
                            what: format!(
                                "postings name track {} which the track table lacks",
                                t.0
                            ),
                        });
                    }
                }
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            manifest,
            segments,
            peak_segment,
            tracks,
            rights,
            licences,
            embeddings,
            similar,
        })
    }

    /// The file whose replacement publishes a new state of the catalog in
    /// `dir`: watching it tells a reader when to reopen.
    pub fn manifest_path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST)
    }

    /// The tracks whose embedding is nearest `embedding`, nearest first, with
    /// their distances (0 the same, 2 the farthest); none when no track has
    /// an embedding.
    pub fn similar_to(&self, embedding: &[f32], k: usize) -> Vec<(TrackId, f32)> {
        self.similar
            .as_ref()
            .map_or_else(Vec::new, |s| s.nearest(embedding, k))
    }

    /// A track's similarity embedding.
    pub fn embedding(&self, track: TrackId) -> Option<&[f32]> {
        self.embeddings.get(track)
    }

    /// A track's beat chroma, as kept with its embedding (2 bits a class).
    pub fn beat_chroma(&self, track: TrackId) -> Option<Vec<[f32; CHROMA]>> {
        self.embeddings.beat_chroma(track)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tracks.
    pub fn tracks(&self) -> &TrackTable {
        &self.tracks
    }

    /// The rights metadata of the tracks.
    pub fn rights(&self) -> &RightsTable {
        &self.rights
    }

    /// Every stored licence, in the order added.
    pub fn licences(&self) -> &[Licence] {
        &self.licences
    }

    /// The licences of an event.
    pub fn licences_for(&self, event: &str) -> Vec<&Licence> {
        self.licences.iter().filter(|l| l.event == event).collect()
    }

    /// The fingerprint scheme the catalog was built with.
    pub fn fingerprint(&self) -> &str {
        &self.manifest.fingerprint
    }

    /// Finds where the postings of each of `hashes` are: appends to `runs`
    /// one [`Run`] per segment that has some, a hash's runs together, and to
    /// `found` each hash's postings count and the range of its runs.
    pub fn find(&self, hashes: &[u32], runs: &mut Vec<Run>, found: &mut Vec<(u64, Range<usize>)>) {
        let n = hashes.len();
        if n == 0 {
            return;
        }
        // Segment by segment, so that each searches many hashes side by side.
        let mut ranges = Vec::with_capacity(n * self.segments.len());
        for s in &self.segments {
            s.ranges(hashes, &mut ranges);
        }
        for i in 0..n {
            let first = runs.len();
            let mut count = 0;
            for (segment, (start, end)) in ranges.iter().skip(i).step_by(n).copied().enumerate() {
                if end > start {
                    runs.push(Run {
                        segment: segment as u32,
                        start,
                        end,
                    });
                    count += end - start;
                }
            }
            found.push((count, first..runs.len()));
        }
    }

    /// Calls `hit` with the track and frame of every posting of a run.
    pub fn read(&self, run: &Run, hit: impl FnMut(TrackId, u32)) {
        if let Some(s) = self.segments.get(run.segment as usize) {
            s.read((run.start, run.end), hit);
        }
    }

    /// Postings of all segments.
    pub fn postings(&self) -> u64 {
        self.segments.iter().map(Segment::postings).sum()
    }

    /// Adds to `counts[i]` the postings of hash `first + i`, for as many
    /// hashes as `counts` holds.
    pub fn count_postings(&self, first: u32, counts: &mut [u32]) {
        for s in &self.segments {
            s.count_postings(first, counts);
        }
    }

    /// Reads every file the manifest names and checks its checksum, and
    /// cross-checks postings, peaks and embeddings against the track table.
    /// Returns the number of files checked.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the first faulty file and the fault.
    pub fn verify(&self) -> Result<usize> {
        let m = &self.manifest;
        let mut files = 0;
        for (segment, file) in self.segments.iter().zip(&m.segments) {
            if segment.crc32() != file.crc32 {
                return Err(Error::Corrupt {
                    path: segment.path().to_owned(),
                    what: "checksum differs from the manifest".into(),
                });
            }
            segment.verify()?;
            files += 1;
        }
        for file in [&m.rights, &m.licences, &m.embeddings]
            .into_iter()
            .flatten()
            .chain(&m.similar)
            .chain([&m.tracks])
        {
            files += read_checked(&self.dir, Some(file))?.map_or(0, |_| 1);
        }
        let corrupt = |what: String| Error::Corrupt {
            path: self.dir.join(MANIFEST),
            what,
        };
        let mut owners = vec![0u32; self.tracks.len()];
        for segment in &self.segments {
            for t in segment.tracks() {
                owners[t.0 as usize] += 1;
            }
        }
        for t in self.tracks.iter() {
            match owners.get(t.id.0 as usize) {
                Some(1) => {}
                Some(0) if t.landmarks == 0 => {}
                n => {
                    return Err(corrupt(format!(
                        "track {} ({}) is in {} segments",
                        t.id.0,
                        t.meta.external_id,
                        n.copied().unwrap_or(0)
                    )));
                }
            }
        }
        if let Some(id) = self
            .embeddings
            .iter()
            .map(|(id, _)| id)
            .find(|id| self.tracks.get(*id).is_none())
        {
            return Err(corrupt(format!(
                "an embedding names track {} which the track table lacks",
                id.0
            )));
        }
        Ok(files)
    }

    /// The stored peaks of a track, in frame order.
    pub fn peaks(&self, track: TrackId) -> Option<PeakList<'_>> {
        let segment = *self.peak_segment.get(track.0 as usize)?;
        Some(self.segments.get(segment as usize)?.peaks(track))
    }

    /// Size and content figures.
    pub fn info(&self) -> CatalogInfo {
        let manifest_bytes = fs::metadata(self.dir.join(MANIFEST)).map_or(0, |m| m.len());
        CatalogInfo {
            tracks: self.tracks.len(),
            // From +0.0: an empty f64 `sum` is -0.0 ("-0.00 h").
            hours: (self.tracks.iter()).fold(0.0, |h, t| h + t.duration_s) / 3600.0,
            postings: self.segments.iter().map(Segment::postings).sum(),
            segments: self.segments.len(),
            bytes_on_disk: self.segments.iter().map(Segment::bytes).sum::<u64>()
                + self.manifest.tracks.bytes
                + [
                    &self.manifest.rights,
                    &self.manifest.licences,
                    &self.manifest.embeddings,
                ]
                .iter()
                .filter_map(|f| f.as_ref().map(|f| f.bytes))
                .sum::<u64>()
                + self.manifest.similar.iter().map(|f| f.bytes).sum::<u64>()
                + manifest_bytes,
            fingerprint: self.manifest.fingerprint.clone(),
        }
    }
}

/// Where some postings of one hash are: a range of one segment's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    segment: u32,
    start: u64,
    end: u64,
}

/// A recording ready to be added: its metadata and landmarks.
#[derive(Debug, Clone)]
pub struct NewTrack {
    /// Descriptive metadata.
    pub meta: TrackMeta,
    /// Decoded duration in seconds.
    pub duration_s: f64,
    /// The source file.
    pub path: String,
    /// BLAKE3 of the source file's bytes.
    pub content_hash: String,
    /// Its landmarks.
    pub landmarks: Vec<Landmark>,
    /// The peaks kept for verifying matches, in frame order.
    pub peaks: Vec<Peak>,
    /// Its similarity embedding, if the music has enough beats for one.
    pub embedding: Option<Vec<f32>>,
    /// Its beat-synchronous chroma, kept with the embedding.
    pub beat_chroma: Vec<[f32; CHROMA]>,
}

/// The single writer of a catalog directory.
#[derive(Debug)]
pub struct CatalogWriter {
    _lock: File,
    current: Catalog,
}

impl CatalogWriter {
    /// Opens (creating if needed) the catalog in `dir` for writing and deletes
    /// files left behind by an interrupted writer.
    ///
    /// # Errors
    /// [`Error::Locked`] if another writer holds the catalog, [`Error::Corrupt`]
    /// if the catalog was built with another `fingerprint` scheme, or any
    /// error of [`Catalog::open`].
    pub fn open(dir: &Path, fingerprint: &str) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: lock_path }),
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let current = match read_manifest(dir)? {
            Some(manifest) => Catalog::load(dir, manifest)?,
            None => Catalog::empty(dir, fingerprint),
        };
        current.check_scheme(fingerprint)?;
        let writer = Self {
            _lock: lock,
            current,
        };
        writer.remove_orphans()?;
        Ok(writer)
    }

    /// The catalog as of the last commit.
    pub fn catalog(&self) -> &Catalog {
        &self.current
    }

    /// Adds a batch of tracks atomically: after a crash the catalog holds all
    /// of them or none. Returns their ids.
    ///
    /// # Errors
    /// [`Error::Duplicate`] if a track is already indexed (nothing is written),
    /// or any I/O error (the previous catalog stays in place).
    pub fn commit(&mut self, batch: Vec<NewTrack>) -> Result<Vec<TrackId>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tracks = self.current.tracks.clone();
        let mut postings = Vec::new();
        let mut peaks = BTreeMap::new();
        let mut ids = Vec::with_capacity(batch.len());
        let mut embeddings = self.current.embeddings.clone();
        for new in batch {
            let id = tracks.next_id();
            if let Some(e) = new.embedding {
                embeddings.push(id, e, &new.beat_chroma);
            }
            peaks.insert(
                id,
                new.peaks
                    .iter()
                    .map(|p| StoredPeak {
                        frame: p.frame,
                        bin: p.bin,
                    })
                    .collect::<Vec<_>>(),
            );
            postings.extend(new.landmarks.iter().map(|l| Posting {
                hash: l.hash,
                track: id,
                frame: l.frame,
            }));
            tracks.insert(Track {
                id,
                meta: new.meta,
                duration_s: new.duration_s,
                path: new.path,
                content_hash: new.content_hash,
                landmarks: new.landmarks.len() as u64,
            })?;
            ids.push(id);
        }
        let generation = self.current.manifest.generation + 1;
        let mut segments = self.current.manifest.segments.clone();
        segments.push(self.write_segment(generation, |path| {
            segment::write(path, &mut postings, &peaks, HASH_BITS)
        })?);
        let table = self.write_file(
            &format!("tracks-{generation:08}.jsonl"),
            &tracks.to_jsonl()?,
        )?;
        let (embedding_file, similar) = if embeddings == self.current.embeddings {
            (
                self.current.manifest.embeddings.clone(),
                self.current.manifest.similar.clone(),
            )
        } else {
            self.write_similar(generation, &embeddings)?
        };
        self.publish(Manifest {
            generation,
            segments,
            tracks: table,
            embeddings: embedding_file,
            similar,
            ..self.current.manifest.clone()
        })?;
        Ok(ids)
    }

    /// Merges segments, a tier at a time (see [`MERGE_FACTOR`]), until no
    /// tier is full. Each merge is published on its own, so readers see the
    /// same tracks throughout. Returns the number of merges made.
    ///
    /// # Errors
    /// Any I/O error (the catalog as of the last merge stays in place).
    pub fn merge(&mut self) -> Result<usize> {
        let mut merges = 0;
        while let Some(tier) = self.full_tier() {
            self.merge_where(|s| tier_of(s.postings()) == tier)?;
            merges += 1;
        }
        Ok(merges)
    }

    /// Merges every segment into one, so that a lookup visits one segment
    /// (as after a bulk load that will not grow for a while); published
    /// like a merge. Returns whether there was anything to merge: not when
    /// there is at most one segment, or their postings would not fit in one.
    ///
    /// # Errors
    /// Any I/O error (the catalog as it was stays in place).
    pub fn compact(&mut self) -> Result<bool> {
        let segments = &self.current.segments;
        let postings: u64 = segments.iter().map(Segment::postings).sum();
        if segments.len() < 2 || postings > segment::MAX_POSTINGS {
            return Ok(false);
        }
        self.merge_where(|_| true)?;
        Ok(true)
    }

    /// Merges the segments `chosen` picks into one and publishes the result.
    fn merge_where(&mut self, chosen: impl Fn(&Segment) -> bool) -> Result<()> {
        let generation = self.current.manifest.generation + 1;
        let (chosen, kept): (Vec<usize>, Vec<usize>) =
            (0..self.current.segments.len()).partition(|&i| chosen(&self.current.segments[i]));
        let sources: Vec<&Segment> = chosen.iter().map(|&i| &self.current.segments[i]).collect();
        // A fault merged into a new segment would get a valid checksum.
        for source in &sources {
            source.check_sum()?;
        }
        let merged = self.write_segment(generation, |path| segment::merge(path, &sources))?;
        let mut segments: Vec<FileRef> = kept
            .iter()
            .map(|&i| self.current.manifest.segments[i].clone())
            .collect();
        segments.push(merged);
        self.publish(Manifest {
            generation,
            segments,
            ..self.current.manifest.clone()
        })
    }

    /// The lowest tier holding [`MERGE_FACTOR`] segments whose merge fits in
    /// one segment.
    fn full_tier(&self) -> Option<u32> {
        let mut tiers: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for s in &self.current.segments {
            let entry = tiers.entry(tier_of(s.postings())).or_default();
            entry.0 += 1;
            entry.1 += s.postings();
        }
        tiers
            .into_iter()
            .find(|(_, (n, postings))| *n >= MERGE_FACTOR && *postings <= segment::MAX_POSTINGS)
            .map(|(tier, _)| tier)
    }

    /// Adds or replaces the rights metadata of the rows that name an indexed
    /// recording, atomically; lists the rows that name none.
    ///
    /// # Errors
    /// Any I/O error (the previous catalog stays in place).
    pub fn import_rights(&mut self, rows: Vec<RightsRow>) -> Result<Linked> {
        let mut rights = self.current.rights.clone();
        let linked = rights.link(rows, &self.current.tracks);
        let generation = self.current.manifest.generation + 1;
        let file = self.write_file(
            &format!("rights-{generation:08}.jsonl"),
            &rights.to_jsonl()?,
        )?;
        self.publish(Manifest {
            generation,
            rights: Some(file),
            ..self.current.manifest.clone()
        })?;
        Ok(linked)
    }

    /// Stores licences, atomically; with `replace`, one with a stored id
    /// takes its place.
    ///
    /// # Errors
    /// [`Error::Duplicate`] when an id is stored already (without `replace`)
    /// or given twice (nothing is written), or any I/O error.
    pub fn add_licences(&mut self, new: Vec<Licence>, replace: bool) -> Result<()> {
        let mut licences = self.current.licences.clone();
        let mut seen = HashSet::new();
        for licence in new {
            if !seen.insert(licence.id.clone()) {
                return Err(Error::Duplicate(format!(
                    "licence {} is given twice",
                    licence.id
                )));
            }
            match licences.iter_mut().find(|l| l.id == licence.id) {
                Some(old) if replace => *old = licence,
                Some(_) => {
                    return Err(Error::Duplicate(format!(
                        "licence {} is already stored (add it with --replace to change it)",
                        licence.id
                    )));
                }
                None => licences.push(licence),
            }
        }
        self.store_licences(licences)
    }

    /// Deletes a stored licence.
    ///
    /// # Errors
    /// [`Error::NotFound`] when no licence has this id, or any I/O error.
    pub fn remove_licence(&mut self, id: &str) -> Result<()> {
        let mut licences = self.current.licences.clone();
        let before = licences.len();
        licences.retain(|l| l.id != id);
        if licences.len() == before {
            return Err(Error::NotFound(format!("no licence {id}")));
        }
        self.store_licences(licences)
    }

    fn store_licences(&mut self, licences: Vec<Licence>) -> Result<()> {
        let generation = self.current.manifest.generation + 1;
        let json = serde_json::to_vec_pretty(&licences).map_err(|e| Error::Limit {
            what: format!("licences: {e}"),
            max: 0,
        })?;
        let file = self.write_file(&format!("licences-{generation:08}.json"), &json)?;
        self.publish(Manifest {
            generation,
            licences: Some(file),
            ..self.current.manifest.clone()
        })
    }

    /// Publishes the catalog if it never was, so that it opens while it holds
    /// no tracks (a cluster's gateway keeps only rights and licences).
    ///
    /// # Errors
    /// Any I/O error.
    pub fn ensure_published(&mut self) -> Result<()> {
        match read_manifest(self.dir())? {
            Some(_) => Ok(()),
            None => self.publish(self.current.manifest.clone()),
        }
    }

    /// Writes `manifest` (the commit point), reloads and removes orphans.
    fn publish(&mut self, manifest: Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Corrupt {
            path: self.dir().join(MANIFEST),
            what: e.to_string(),
        })?;
        self.write_file(MANIFEST, &json)?;
        self.current = Catalog::load(self.dir(), manifest)?;
        self.remove_orphans()
    }

    fn dir(&self) -> &Path {
        &self.current.dir
    }

    /// Writes the embeddings and their HNSW graph for `generation`.
    fn write_similar(
        &self,
        generation: u64,
        embeddings: &Embeddings,
    ) -> Result<(Option<FileRef>, Vec<FileRef>)> {
        let file = self.write_file(&format!("embed-{generation:08}.bin"), &embeddings.encode())?;
        let Some(similar) = Similar::build(embeddings) else {
            return Ok((Some(file), Vec::new()));
        };
        let basename = format!("similar-{generation:08}");
        similar.dump(self.dir(), &basename)?;
        let mut refs = Vec::new();
        for name in Similar::files(&basename) {
            let path = self.dir().join(&name);
            let bytes = fs::read(&path).map_err(io(&path))?;
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io(&path))?;
            refs.push(FileRef {
                file: name,
                bytes: bytes.len() as u64,
                crc32: crc32fast::hash(&bytes),
            });
        }
        Ok((Some(file), refs))
    }

    /// Writes segment `seg-{generation}.post` with `write`, through a
    /// temporary file and a rename.
    fn write_segment(
        &self,
        generation: u64,
        write: impl FnOnce(&Path) -> Result<segment::Written>,
    ) -> Result<FileRef> {
        let name = format!("seg-{generation:08}.post");
        let tmp = self.dir().join(format!("{name}.tmp"));
        let written = write(&tmp).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })?;
        self.rename_into_place(&tmp, &name)?;
        Ok(FileRef {
            file: name,
            bytes: written.bytes,
            crc32: written.crc32,
        })
    }

    /// Renames a synced temporary file to `name` and syncs the directory.
    fn rename_into_place(&self, tmp: &Path, name: &str) -> Result<()> {
        let dir = self.dir();
        let path = dir.join(name);
        fs::rename(tmp, &path).map_err(io(&path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    }

    /// Writes `bytes` to `name` through a synced temporary file and a rename.
    fn write_file(&self, name: &str, bytes: &[u8]) -> Result<FileRef> {
        let tmp = self.dir().join(format!("{name}.tmp"));
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        self.rename_into_place(&tmp, name)?;
        Ok(FileRef {
            file: name.to_owned(),
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
        })
    }

    /// Deletes files that the manifest does not name.
    fn remove_orphans(&self) -> Result<()> {
        let dir = self.dir();
        let manifest = &self.current.manifest;
        let keep: HashSet<&str> = manifest
            .segments
            .iter()
            .chain(
                [&manifest.rights, &manifest.licences, &manifest.embeddings]
                    .into_iter()
                    .flatten(),
            )
            .chain(&manifest.similar)
            .chain([&manifest.tracks])
            .map(|f| f.file.as_str())
            .chain([MANIFEST, LOCK])
            .collect();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let ours = [
                "seg-",
                "tracks-",
                "rights-",
                "licences-",
                "embed-",
                "similar-",
            ]
            .iter()
            .any(|p| name.starts_with(p))
                || name.ends_with(".tmp");
            if ours && !keep.contains(name) {
                let path = entry.path();
                fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}

/// The merge tier of a segment of `postings` postings.
fn tier_of(postings: u64) -> u32 {
    (postings / TIER_BASE).max(1).ilog(MERGE_FACTOR)
}

/// The bytes of a file the manifest names, checked against its size and
/// checksum, with its path.
fn read_checked(dir: &Path, file: Option<&FileRef>) -> Result<Option<(PathBuf, Vec<u8>)>> {
    let Some(file) = file.filter(|f| !f.file.is_empty()) else {
        return Ok(None);
    };
    let path = dir.join(&file.file);
    let bytes = fs::read(&path).map_err(io(&path))?;
    if bytes.len() as u64 != file.bytes || crc32fast::hash(&bytes) != file.crc32 {
        return Err(Error::Corrupt {
            path,
            what: "checksum mismatch".into(),
        });
    }
    Ok(Some((path, bytes)))
}

fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: path.clone(),
        what: e.to_string(),
    })?;
    if manifest.format != CATALOG_FORMAT {
        return Err(Error::Version {
            path,
            found: manifest.format,
            supported: CATALOG_FORMAT,
        });
    }
    Ok(Some(manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_track(name: &str, hashes: &[u32]) -> NewTrack {
        NewTrack {
            meta: TrackMeta {
                external_id: name.into(),
                title: name.into(),
                artist: "a".into(),
                isrc: None,
            },
            duration_s: 10.0,
            path: format!("/{name}.wav"),
            content_hash: format!("c-{name}"),
            landmarks: hashes
                .iter()
                .enumerate()
                .map(|(i, &hash)| Landmark {
                    hash,
                    frame: i as u32,
                })
                .collect(),
            peaks: vec![Peak {
                frame: 1,
                bin: 50.0,
                strength: 0.0,
                rank: 0,
            }],
            embedding: Some(vec![
                name.len() as f32,
                name.bytes().map(f32::from).sum(),
                1.0,
            ]),
            beat_chroma: vec![
                std::array::from_fn(|c| if (name.len() + c).is_multiple_of(3) {
                    1.0
                } else {
                    0.0
                });
                8
            ],
        }
    }

    fn hits(catalog: &Catalog, hash: u32) -> Vec<(TrackId, u32)> {
        let mut runs = Vec::new();
        catalog.find(&[hash], &mut runs, &mut Vec::new());
        let mut out = Vec::new();
        for run in &runs {
            catalog.read(run, |t, f| out.push((t, f)));
        }
        out
    }

    #[test]
    fn commits_survive_reopen_and_merge() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut writer = CatalogWriter::open(dir.path(), "test").expect("writer");
            for i in 0..10 {
                let ids = writer
                    .commit(vec![new_track(&format!("t{i}"), &[7, 100 + i])])
                    .expect("commit");
                assert_eq!(ids, vec![TrackId(i)]);
                writer.merge().expect("merge");
            }
        }
        let catalog = Catalog::open(dir.path()).expect("open");
        assert_eq!(catalog.tracks().len(), 10);
        // Tiny segments share the first tier: every fourth is merged.
        assert_eq!(catalog.info().segments, 1);
        // The segment, the track table, the embeddings and their graph's two.
        assert_eq!(catalog.verify().expect("verify"), 5);
        assert_eq!(hits(&catalog, 7).len(), 10);
        assert_eq!(hits(&catalog, 103), vec![(TrackId(3), 1)]);
        for t in catalog.tracks().iter() {
            assert_eq!(catalog.peaks(t.id).map(|p| p.iter().count()), Some(1));
            let own = catalog.embedding(t.id).expect("an embedding").to_vec();
            assert_eq!(catalog.similar_to(&own, 1)[0].0, t.id);
            let beats = catalog.beat_chroma(t.id).expect("beat chroma");
            assert_eq!(beats.len(), 8);
            let first = if t.meta.external_id.len().is_multiple_of(3) {
                1.0
            } else {
                0.0
            };
            assert_eq!(beats[0][0], first);
        }
    }

    #[test]
    fn compacting_leaves_one_segment_with_every_posting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = CatalogWriter::open(dir.path(), "test").expect("writer");
        for i in 0..3 {
            writer
                .commit(vec![new_track(&format!("t{i}"), &[7, 100 + i])])
                .expect("commit");
        }
        assert_eq!(writer.catalog().info().segments, 3);
        assert!(writer.compact().expect("compact"));
        assert!(!writer.compact().expect("nothing left to compact"));
        drop(writer);
        let catalog = Catalog::open(dir.path()).expect("open");
        assert_eq!(catalog.info().segments, 1);
        assert_eq!(hits(&catalog, 7).len(), 3);
        assert_eq!(hits(&catalog, 102), vec![(TrackId(2), 1)]);
        assert_eq!(catalog.verify().expect("verify"), 5);
    }

    #[test]
    fn a_corrupt_segment_is_not_merged_into_a_sound_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = CatalogWriter::open(dir.path(), "test").expect("writer");
        for i in 0..2 {
            writer
                .commit(vec![new_track(&format!("t{i}"), &[7, 100 + i])])
                .expect("commit");
        }
        drop(writer);
        let segments = || -> Vec<PathBuf> {
            let mut names: Vec<PathBuf> = (fs::read_dir(dir.path()).expect("dir"))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "post"))
                .collect();
            names.sort();
            names
        };
        let before = segments();
        let mut bytes = fs::read(&before[0]).expect("read");
        // The last byte before the footer (checksum and end magic).
        let at = bytes.len() - 13;
        bytes[at] ^= 0x40;
        fs::write(&before[0], bytes).expect("write");
        let mut writer = CatalogWriter::open(dir.path(), "test").expect("writer");
        let refused = writer.compact().expect_err("corrupt");
        assert!(refused.to_string().contains("checksum"), "{refused}");
        assert_eq!(segments(), before, "no segment published");
        let left: Vec<_> = (fs::read_dir(dir.path()).expect("dir"))
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn duplicate_content_leaves_catalog_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = CatalogWriter::open(dir.path(), "test").expect("writer");
        writer.commit(vec![new_track("a", &[1])]).expect("commit");
        let mut dup = new_track("b", &[2]);
        dup.content_hash = "c-a".into();
        assert!(matches!(writer.commit(vec![dup]), Err(Error::Duplicate(_))));
        drop(writer);
        let catalog = Catalog::open(dir.path()).expect("open");
        assert_eq!(catalog.tracks().len(), 1);
        assert!(hits(&catalog, 2).is_empty());
    }

    #[test]
    fn an_empty_catalog_holds_zero_hours_not_minus_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = CatalogWriter::open(dir.path(), "test").expect("writer");
        let hours = writer.catalog().info().hours;
        assert!(hours == 0.0 && hours.is_sign_positive(), "{hours}");
    }

    #[test]
    fn second_writer_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = CatalogWriter::open(dir.path(), "test").expect("writer");
        assert!(matches!(
            CatalogWriter::open(dir.path(), "test"),
            Err(Error::Locked { .. })
        ));
    }

    #[test]
    fn other_fingerprint_scheme_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = CatalogWriter::open(dir.path(), "v1").expect("writer");
        writer.commit(vec![new_track("a", &[1])]).expect("commit");
        drop(writer);
        assert!(CatalogWriter::open(dir.path(), "v2").is_err());
        let refused = Catalog::open_for(dir.path(), "v2").expect_err("queries of v2");
        assert!(
            refused.to_string().contains("rebuild the catalog"),
            "{refused}"
        );
        assert!(Catalog::open_for(dir.path(), "v1").is_ok());
    }

    #[test]
    fn orphans_of_a_crashed_writer_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = CatalogWriter::open(dir.path(), "test").expect("writer");
        writer.commit(vec![new_track("a", &[1])]).expect("commit");
        drop(writer);
        fs::write(dir.path().join("seg-00000099.post.tmp"), b"half").expect("write");
        fs::write(dir.path().join("seg-00000099.post"), b"whole").expect("write");
        let _writer = CatalogWriter::open(dir.path(), "test").expect("writer");
        assert!(!dir.path().join("seg-00000099.post.tmp").exists());
        assert!(!dir.path().join("seg-00000099.post").exists());
        assert_eq!(Catalog::open(dir.path()).expect("open").tracks().len(), 1);
    }

    #[test]
    fn rights_and_licences_are_stored_with_the_catalog() {
        use crate::licence::{LicenceKind, Period, Works};
        use crate::rights::{Link, Rights};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = CatalogWriter::open(dir.path(), "test").expect("writer");
        writer.commit(vec![new_track("a", &[1])]).expect("commit");
        let row = |id: &str| RightsRow {
            line: 2,
            link: Link::Id(id.into()),
            rights: Rights {
                managed: true,
                ..Rights::default()
            },
        };
        let linked = writer
            .import_rights(vec![row("a"), row("zz")])
            .expect("import");
        assert_eq!(linked.added, 1);
        assert_eq!(linked.unknown.len(), 1);
        let period = Period {
            from: jiff::Timestamp::UNIX_EPOCH,
            to: jiff::Timestamp::MAX,
            time_zone: "UTC".into(),
        };
        let licence = Licence {
            id: "L1".into(),
            kind: LicenceKind::Blanket,
            licensee: "x".into(),
            event: "show".into(),
            event_name: None,
            venue: None,
            period,
            exclude: Works::default(),
            works: Works::default(),
        };
        writer
            .add_licences(vec![licence.clone()], false)
            .expect("add");
        assert!(matches!(
            writer.add_licences(vec![licence.clone()], false),
            Err(Error::Duplicate(_))
        ));
        // Adding tracks keeps rights and licences.
        writer.commit(vec![new_track("b", &[2])]).expect("commit");
        drop(writer);
        let catalog = Catalog::open(dir.path()).expect("open");
        assert!(catalog.rights().get("a").is_some_and(|r| r.managed));
        assert_eq!(catalog.licences_for("show"), vec![&licence]);
        assert!(catalog.licences_for("other").is_empty());
        let mut writer = CatalogWriter::open(dir.path(), "test").expect("writer");
        writer.remove_licence("L1").expect("remove");
        assert!(writer.catalog().licences().is_empty());
        assert_eq!(writer.catalog().rights().len(), 1);
    }

    #[test]
    fn missing_catalog_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Catalog::open(dir.path()),
            Err(Error::Missing { .. })
        ));
    }
}
