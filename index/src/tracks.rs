//! The track table: what each indexed recording is and where it came from.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Internal number of an indexed recording; postings refer to tracks by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrackId(pub u32);

/// Descriptive metadata of a recording, as given when it is indexed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackMeta {
    /// The catalog's own identifier (defaults to the file's stem).
    pub external_id: String,
    /// Title.
    pub title: String,
    /// Artist.
    pub artist: String,
    /// International Standard Recording Code, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isrc: Option<String>,
}

/// One indexed recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Internal number.
    pub id: TrackId,
    /// Descriptive metadata.
    #[serde(flatten)]
    pub meta: TrackMeta,
    /// Decoded duration in seconds.
    pub duration_s: f64,
    /// The file it was indexed from.
    pub path: String,
    /// BLAKE3 of the file's bytes: the same file is never indexed twice.
    pub content_hash: String,
    /// Landmarks stored for it.
    pub landmarks: u64,
}

/// The first 64 bits of a hex content hash (0 if it is not hex): a number
/// every catalog holding the recording agrees on, whatever its track id.
pub fn content_key(content_hash: &str) -> u64 {
    let head = content_hash.get(..16).unwrap_or(content_hash);
    u64::from_str_radix(head, 16).unwrap_or(0)
}

/// All tracks of a catalog, with lookups by id, external id and content.
#[derive(Debug, Clone, Default)]
pub struct TrackTable {
    tracks: Vec<Track>,
    /// The [`content_key`] of each track, by id.
    keys: Vec<u64>,
    /// The duration of each track, by id: matching reads those of many
    /// tracks, which a table of [`Track`]s would spread over memory.
    durations_s: Vec<f64>,
    by_external: HashMap<String, TrackId>,
    by_content: HashMap<String, TrackId>,
}

impl TrackTable {
    /// Builds the table from tracks in id order.
    ///
    /// # Errors
    /// As [`TrackTable::insert`].
    pub fn from_tracks(tracks: Vec<Track>) -> Result<Self> {
        let mut table = Self::default();
        for track in tracks {
            table.insert(track)?;
        }
        Ok(table)
    }

    /// Adds a track; its id must be the next free one.
    ///
    /// # Errors
    /// [`Error::Limit`] when the id is out of sequence, [`Error::Duplicate`]
    /// when its external id or content is already present.
    pub fn insert(&mut self, track: Track) -> Result<()> {
        if track.id != self.next_id() {
            return Err(Error::Limit {
                what: format!("track id {} out of sequence", track.id.0),
                max: self.next_id().0 as u64,
            });
        }
        if let Some(existing) = self.by_external.get(&track.meta.external_id) {
            return Err(Error::Duplicate(format!(
                "track id {:?} is already used by track {}",
                track.meta.external_id, existing.0
            )));
        }
        if self.by_content.contains_key(&track.content_hash) {
            return Err(Error::Duplicate(format!(
                "{} is already indexed",
                track.path
            )));
        }
        self.by_external
            .insert(track.meta.external_id.clone(), track.id);
        self.by_content.insert(track.content_hash.clone(), track.id);
        self.keys.push(content_key(&track.content_hash));
        self.durations_s.push(track.duration_s);
        self.tracks.push(track);
        Ok(())
    }

    /// The id the next track will get.
    pub fn next_id(&self) -> TrackId {
        TrackId(self.tracks.len() as u32)
    }

    /// The track with this id.
    pub fn get(&self, id: TrackId) -> Option<&Track> {
        self.tracks.get(id.0 as usize)
    }

    /// The [`content_key`] of a track (0 for an unknown id).
    pub fn key(&self, id: TrackId) -> u64 {
        self.keys.get(id.0 as usize).copied().unwrap_or(0)
    }

    /// The duration of a track in seconds, if the id is known.
    pub fn duration_s(&self, id: TrackId) -> Option<f64> {
        self.durations_s.get(id.0 as usize).copied()
    }

    /// The track with this external id.
    pub fn by_external_id(&self, external_id: &str) -> Option<&Track> {
        self.by_external
            .get(external_id)
            .and_then(|&id| self.get(id))
    }

    /// The track indexed from a file with these contents.
    pub fn by_content_hash(&self, content_hash: &str) -> Option<&Track> {
        self.by_content
            .get(content_hash)
            .and_then(|&id| self.get(id))
    }

    /// All tracks in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Track> {
        self.tracks.iter()
    }

    /// Number of tracks.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether there are no tracks.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Serialises the table as JSON Lines.
    ///
    /// # Errors
    /// Never in practice; serde_json reports non-finite durations.
    pub fn to_jsonl(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for track in &self.tracks {
            serde_json::to_writer(&mut out, track).map_err(|e| Error::Limit {
                what: format!("track {}: {e}", track.id.0),
                max: 0,
            })?;
            out.push(b'\n');
        }
        Ok(out)
    }

    /// Parses a table written by [`TrackTable::to_jsonl`].
    ///
    /// # Errors
    /// A message naming the line that does not parse.
    pub fn from_jsonl(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut tracks = Vec::new();
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let track: Track =
                serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", i + 1))?;
            tracks.push(track);
        }
        Self::from_tracks(tracks).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(id: u32, name: &str) -> Track {
        Track {
            id: TrackId(id),
            meta: TrackMeta {
                external_id: name.into(),
                title: format!("{name} title"),
                artist: "someone".into(),
                isrc: None,
            },
            duration_s: 60.0,
            path: format!("/music/{name}.ogg"),
            content_hash: format!("hash-{name}"),
            landmarks: 100,
        }
    }

    #[test]
    fn jsonl_round_trip() {
        let table = TrackTable::from_tracks(vec![track(0, "a"), track(1, "b")]).expect("table");
        let bytes = table.to_jsonl().expect("jsonl");
        let back = TrackTable::from_jsonl(&bytes).expect("parse");
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            table.iter().collect::<Vec<_>>()
        );
        assert_eq!(back.by_external_id("b").map(|t| t.id), Some(TrackId(1)));
        assert_eq!(
            back.by_content_hash("hash-a").map(|t| t.id),
            Some(TrackId(0))
        );
    }

    #[test]
    fn duplicates_are_refused() {
        let mut table = TrackTable::from_tracks(vec![track(0, "a")]).expect("table");
        assert!(table.insert(track(1, "a")).is_err());
        let mut same_content = track(1, "c");
        same_content.content_hash = "hash-a".into();
        assert!(table.insert(same_content).is_err());
        assert!(table.insert(track(5, "d")).is_err());
        assert!(table.insert(track(1, "d")).is_ok());
    }

    #[test]
    fn bad_line_is_named() {
        let err = TrackTable::from_jsonl(b"{\"id\":0}\n").err();
        assert!(err.is_some_and(|e| e.starts_with("line 1:")));
    }
}
