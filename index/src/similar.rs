//! The similarity lane: every catalog track's embedding
//! ([`earmark_engine::chroma`]) and an HNSW graph over them (hnsw_rs), for
//! the works nearest a passage that matched no recording (a cover, an
//! adaptation). Both are written with the catalog and reopened without a
//! rebuild.

use std::path::Path;

use hnsw_rs::prelude::{AnnT, DistL2, Hnsw, HnswIo};

use earmark_engine::chroma::CHROMA;

use crate::error::{Error, Result};
use crate::tracks::TrackId;

/// Links per node of the graph.
const LINKS: usize = 24;
/// Breadth of the search while building.
const EF_BUILD: usize = 200;
/// Breadth of the search while querying.
const EF_SEARCH: usize = 96;

/// Beat chroma kept per beat: 12 pitch classes at 2 bits each.
type PackedBeat = [u8; CHROMA / 4];

/// Marks the file form that keeps beat chroma (the first form had only
/// embeddings and no mark).
const BEATS_MAGIC: &[u8; 8] = b"EMBEDv2\n";

/// A track's embedding and its beat chroma (for verifying a passage against
/// it without its audio).
#[derive(Debug, Clone, PartialEq)]
struct Row {
    track: TrackId,
    embedding: Vec<f32>,
    beats: Vec<PackedBeat>,
}

/// The embeddings of the catalog's tracks, with their beat chroma.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embeddings {
    rows: Vec<Row>,
}

/// Levels a class is kept at: beat chroma is squared ([`earmark_engine::
/// chroma::beat_chroma`]), so its square root is quantised evenly.
const LEVELS: [f32; 4] = [0.0, 1.0 / 9.0, 4.0 / 9.0, 1.0];

/// A beat's chroma (each class in 0..=1) in 2 bits a class.
fn pack(beat: &[f32; CHROMA]) -> PackedBeat {
    let level = |v: f32| (v.clamp(0.0, 1.0).sqrt() * 3.0).round() as u8;
    std::array::from_fn(|i| (0..4).fold(0, |byte, k| byte | (level(beat[4 * i + k]) << (2 * k))))
}

/// The chroma of a packed beat.
fn unpack(packed: &PackedBeat) -> [f32; CHROMA] {
    std::array::from_fn(|c| LEVELS[usize::from((packed[c / 4] >> (2 * (c % 4))) & 3)])
}

impl Embeddings {
    /// Adds a track's embedding and beat chroma.
    pub fn push(&mut self, track: TrackId, embedding: Vec<f32>, beats: &[[f32; CHROMA]]) {
        self.rows.push(Row {
            track,
            embedding,
            beats: beats.iter().map(pack).collect(),
        });
    }

    /// Tracks with an embedding.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no track has one.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn row(&self, track: TrackId) -> Option<&Row> {
        self.rows.iter().find(|r| r.track == track)
    }

    /// A track's embedding.
    pub fn get(&self, track: TrackId) -> Option<&[f32]> {
        self.row(track).map(|r| r.embedding.as_slice())
    }

    /// A track's beat chroma, to 2 bits a class; `None` when none is kept.
    pub fn beat_chroma(&self, track: TrackId) -> Option<Vec<[f32; CHROMA]>> {
        let row = self.row(track).filter(|r| !r.beats.is_empty())?;
        Some(row.beats.iter().map(unpack).collect())
    }

    /// Every track and its embedding.
    pub fn iter(&self) -> impl Iterator<Item = (TrackId, &[f32])> {
        self.rows.iter().map(|r| (r.track, r.embedding.as_slice()))
    }

    /// The file form: [`BEATS_MAGIC`], then per row the track id, the number
    /// of values, the values, the number of beats and the packed beats,
    /// little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = BEATS_MAGIC.to_vec();
        for row in &self.rows {
            bytes.extend_from_slice(&row.track.0.to_le_bytes());
            bytes.extend_from_slice(&(row.embedding.len() as u32).to_le_bytes());
            for v in &row.embedding {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            bytes.extend_from_slice(&(row.beats.len() as u32).to_le_bytes());
            bytes.extend(row.beats.iter().flatten());
        }
        bytes
    }

    /// Reads the file form back (also the first form, without beats).
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let (with_beats, mut at) = if bytes.starts_with(BEATS_MAGIC) {
            (true, BEATS_MAGIC.len())
        } else {
            (false, 0)
        };
        let take = |at: &mut usize, n: usize| -> std::result::Result<&[u8], String> {
            let b = (bytes.get(*at..*at + n)).ok_or_else(|| format!("cut short at byte {at}"))?;
            *at += n;
            Ok(b)
        };
        let word = |at: &mut usize| -> std::result::Result<[u8; 4], String> {
            take(at, 4).map(|b| [b[0], b[1], b[2], b[3]])
        };
        let mut rows = Vec::new();
        while at < bytes.len() {
            let track = TrackId(u32::from_le_bytes(word(&mut at)?));
            let n = u32::from_le_bytes(word(&mut at)?) as usize;
            let embedding = (0..n)
                .map(|_| word(&mut at).map(f32::from_le_bytes))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if embedding.iter().any(|v| !v.is_finite()) {
                return Err(format!(
                    "track {} has a value that is not a number",
                    track.0
                ));
            }
            let beats = if with_beats {
                let n = u32::from_le_bytes(word(&mut at)?) as usize;
                let packed = take(&mut at, n.saturating_mul(CHROMA / 4))?;
                (packed.chunks_exact(CHROMA / 4))
                    .map(|b| std::array::from_fn(|i| b[i]))
                    .collect()
            } else {
                Vec::new()
            };
            rows.push(Row {
                track,
                embedding,
                beats,
            });
        }
        Ok(Self { rows })
    }
}

/// An HNSW graph over the embeddings.
pub struct Similar {
    graph: Hnsw<'static, f32, DistL2>,
}

impl std::fmt::Debug for Similar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Similar")
            .field("points", &self.graph.get_nb_point())
            .finish()
    }
}

impl Similar {
    /// The graph of `embeddings`; `None` when there are none.
    pub fn build(embeddings: &Embeddings) -> Option<Self> {
        if embeddings.is_empty() {
            return None;
        }
        let graph = Hnsw::new(LINKS, embeddings.len(), 16, EF_BUILD, DistL2);
        for (track, values) in embeddings.iter() {
            graph.insert((values, track.0 as usize));
        }
        Some(Self { graph })
    }

    /// The names of the two files a graph called `basename` is kept in.
    pub fn files(basename: &str) -> [String; 2] {
        [
            format!("{basename}.hnsw.graph"),
            format!("{basename}.hnsw.data"),
        ]
    }

    /// Writes the graph into `dir` as [`Similar::files`] of `basename`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the graph file when hnsw_rs fails to write.
    pub fn dump(&self, dir: &Path, basename: &str) -> Result<()> {
        let written = self
            .graph
            .file_dump(dir, basename)
            .map_err(|e| Error::Corrupt {
                path: dir.join(&Self::files(basename)[0]),
                what: format!("cannot write the similarity graph: {e}"),
            })?;
        if written != basename {
            return Err(Error::Corrupt {
                path: dir.join(&Self::files(basename)[0]),
                what: format!("hnsw_rs wrote {written} instead"),
            });
        }
        Ok(())
    }

    /// Reads a graph [`Similar::dump`] wrote (its files already checked
    /// against the manifest).
    ///
    /// # Errors
    /// [`Error::Corrupt`] when hnsw_rs cannot read it.
    pub fn load(dir: &Path, basename: &str) -> Result<Self> {
        // hnsw_rs's graph borrows its loader for its whole life: the loader
        // (a few hundred bytes, no mapping) lives as long as the process.
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, basename)));
        let graph = io.load_hnsw::<f32, DistL2>().map_err(|e| Error::Corrupt {
            path: dir.join(&Self::files(basename)[0]),
            what: format!("cannot read the similarity graph: {e}"),
        })?;
        Ok(Self { graph })
    }

    /// The `k` tracks nearest `query`, nearest first, with their distances.
    pub fn nearest(&self, query: &[f32], k: usize) -> Vec<(TrackId, f32)> {
        self.graph
            .search(query, k, EF_SEARCH.max(k))
            .into_iter()
            .map(|n| (TrackId(n.d_id as u32), n.distance))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u32) -> Vec<f32> {
        let v: Vec<f32> = (0..16u64)
            .map(|i| ((u64::from(seed) * 2_654_435_761 + i * 40_503) >> 5) % 1000)
            .map(|x| x as f32)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn embeddings_round_trip_and_refuse_damage() {
        let beats: Vec<[f32; CHROMA]> = (0..40)
            .map(|b| std::array::from_fn(|c| LEVELS[(b * 7 + c * 5) % 4]))
            .collect();
        let mut e = Embeddings::default();
        e.push(TrackId(9), unit(2), &[]);
        e.push(TrackId(3), unit(1), &beats);
        let bytes = e.encode();
        let back = Embeddings::decode(&bytes);
        assert_eq!(back.as_ref(), Ok(&e));
        let kept = back.ok().and_then(|b| b.beat_chroma(TrackId(3)));
        let error = (kept.iter().flatten().zip(&beats))
            .flat_map(|(k, b)| k.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0.0f32, f32::max);
        assert!(error < 1e-6, "beats kept within {error}");
        assert!(e.beat_chroma(TrackId(9)).is_none());
        // Cut inside the last track's beats.
        assert!(Embeddings::decode(&bytes[..bytes.len() - 2]).is_err());
    }

    #[test]
    fn the_first_file_form_reads_without_beats() {
        let mut old = Vec::new();
        old.extend_from_slice(&5u32.to_le_bytes());
        old.extend_from_slice(&2u32.to_le_bytes());
        old.extend_from_slice(&0.6f32.to_le_bytes());
        old.extend_from_slice(&0.8f32.to_le_bytes());
        let e = Embeddings::decode(&old).expect("the first form");
        assert_eq!(e.get(TrackId(5)), Some(&[0.6f32, 0.8][..]));
        assert!(e.beat_chroma(TrackId(5)).is_none());
    }

    #[test]
    fn the_graph_finds_the_nearest_and_survives_a_reload() -> Result<()> {
        let mut e = Embeddings::default();
        for t in 0..50 {
            e.push(TrackId(t), unit(t), &[]);
        }
        let similar = Similar::build(&e).ok_or_else(|| Error::Missing {
            path: "graph".into(),
        })?;
        let near = similar.nearest(&unit(17), 3);
        assert_eq!(near[0].0, TrackId(17));
        let dir = tempfile::tempdir().map_err(|error| Error::Io {
            path: "tempdir".into(),
            error,
        })?;
        similar.dump(dir.path(), "similar-1")?;
        let again = Similar::load(dir.path(), "similar-1")?;
        assert_eq!(again.nearest(&unit(17), 3), near);
        assert!(Similar::build(&Embeddings::default()).is_none());
        Ok(())
    }
}
