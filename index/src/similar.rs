//! The similarity lane: every catalog track's embedding
//! ([`earmark_engine::chroma`]) and an HNSW graph over them (hnsw_rs), for
//! the works nearest a passage that matched no recording (a cover, an
//! adaptation). Both are written with the catalog and reopened without a
//! rebuild.

use std::path::Path;

use hnsw_rs::prelude::{AnnT, DistL2, Hnsw, HnswIo};

use crate::error::{Error, Result};
use crate::tracks::TrackId;

/// Links per node of the graph.
const LINKS: usize = 24;
/// Breadth of the search while building.
const EF_BUILD: usize = 200;
/// Breadth of the search while querying.
const EF_SEARCH: usize = 96;

/// The embeddings of the catalog's tracks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embeddings {
    rows: Vec<(TrackId, Vec<f32>)>,
}

impl Embeddings {
    /// Adds a track's embedding.
    pub fn push(&mut self, track: TrackId, embedding: Vec<f32>) {
        self.rows.push((track, embedding));
    }

    /// Tracks with an embedding.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no track has one.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A track's embedding.
    pub fn get(&self, track: TrackId) -> Option<&[f32]> {
        self.rows
            .iter()
            .find(|(t, _)| *t == track)
            .map(|(_, e)| e.as_slice())
    }

    /// Every track and its embedding.
    pub fn iter(&self) -> impl Iterator<Item = (TrackId, &[f32])> {
        self.rows.iter().map(|(t, e)| (*t, e.as_slice()))
    }

    /// The file form: per row the track id, the number of values and the
    /// values, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (track, values) in &self.rows {
            bytes.extend_from_slice(&track.0.to_le_bytes());
            bytes.extend_from_slice(&(values.len() as u32).to_le_bytes());
            for v in values {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        bytes
    }

    /// Reads the file form back.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut rows = Vec::new();
        let mut at = 0;
        let word = |at: &mut usize| -> std::result::Result<[u8; 4], String> {
            let w = bytes
                .get(*at..*at + 4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("cut short at byte {at}"))?;
            *at += 4;
            Ok(w)
        };
        while at < bytes.len() {
            let track = TrackId(u32::from_le_bytes(word(&mut at)?));
            let n = u32::from_le_bytes(word(&mut at)?) as usize;
            let values = (0..n)
                .map(|_| word(&mut at).map(f32::from_le_bytes))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if values.iter().any(|v| !v.is_finite()) {
                return Err(format!(
                    "track {} has a value that is not a number",
                    track.0
                ));
            }
            rows.push((track, values));
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
        let mut e = Embeddings::default();
        e.push(TrackId(3), unit(1));
        e.push(TrackId(9), unit(2));
        let bytes = e.encode();
        assert_eq!(Embeddings::decode(&bytes), Ok(e));
        assert!(Embeddings::decode(&bytes[..bytes.len() - 2]).is_err());
    }

    #[test]
    fn the_graph_finds_the_nearest_and_survives_a_reload() -> Result<()> {
        let mut e = Embeddings::default();
        for t in 0..50 {
            e.push(TrackId(t), unit(t));
        }
        let similar = Similar::build(&e).ok_or_else(|| Error::Missing {
            path: "graph".into(),
        })?;
        let near = similar.nearest(&unit(17), 3);
        assert_eq!(near[0].0, TrackId(17));
        let dir = tempfile::tempdir().map_err(|source| Error::Io {
            path: "tempdir".into(),
            source,
        })?;
        similar.dump(dir.path(), "similar-1")?;
        let again = Similar::load(dir.path(), "similar-1")?;
        assert_eq!(again.nearest(&unit(17), 3), near);
        assert!(Similar::build(&Embeddings::default()).is_none());
        Ok(())
    }
}
