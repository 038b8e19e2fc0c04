//! earmark as a cluster on NATS.
//!
//! The catalog is split by track into K shards (by content hash, so every
//! node agrees where a recording belongs without asking). Each shard node
//! (`serve --shard k/K`) holds the whole index of its tracks and answers on
//! its shard's identify subject; its replicas share a queue group, so NATS
//! balances the load and routes around a dead replica. A gateway (`serve
//! --gateway`) fingerprints a clip once, sends the peaks to every shard
//! with the whole catalog's postings counts of the hashes they look up,
//! merges the best candidates of each and applies the single node's accept
//! rule. New recordings go to a JetStream stream that every replica of the
//! owning shard consumes; scan jobs go to a JetStream work queue that
//! `earmark worker` processes pull from.

pub mod census;
pub mod gateway;
pub mod shard;
pub mod worker;

use std::str::FromStr;

use anyhow::Context;
use async_nats::jetstream::{self, stream};

use serde::{Deserialize, Serialize};

use earmark_engine::{Fingerprint, FingerprintOptions, Landmarker, Peak};
use earmark_index::{
    Candidate, Match, MatchOptions, Track, TrackMeta, content_key, merge_by, ranked,
};
use earmark_monitor::Play;

use crate::scan::Stretch;

/// The JetStream stream of recordings to add, one subject per shard.
const TRACKS_STREAM: &str = "EARMARK_TRACKS";

/// The part of a sharded catalog a node holds: the tracks whose content hash
/// falls to shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, from 1.
    pub index: u32,
    /// How many shards the catalog is split into.
    pub count: u32,
}

impl Shard {
    /// The shard (1-based) of `count` that a recording with this BLAKE3
    /// content hash (hex) belongs to.
    pub fn of(content_hash: &str, count: u32) -> u32 {
        (content_key(content_hash) % count.max(1) as u64) as u32 + 1
    }

    /// Whether this shard holds the recording with `content_hash`.
    pub fn owns(&self, content_hash: &str) -> bool {
        Self::of(content_hash, self.count) == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a shard: write k/K, e.g. 2/3");
        let (index, count) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            index.trim().parse().map_err(|_| bad())?,
            count.trim().parse().map_err(|_| bad())?,
        );
        if !(1..=count).contains(&index) || count > 4096 {
            return Err(format!(
                "shard {index}/{count}: k must be in 1..=K, K at most 4096"
            ));
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// This machine's host name, as far as it is a safe name part (letters,
/// digits, '-'): replicas and workers name themselves by it.
pub fn host_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    (host.trim().chars())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// A round of a query through the cluster: the stages of
/// [`earmark_index::Matcher::identify`], each decided over every shard's
/// candidates before the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// The quick look; its answer is one list.
    Quick,
    /// The full query and the stretch path; its answer is a list of each.
    Full,
}

impl Round {
    /// Its name in subjects.
    pub fn name(self) -> &'static str {
        match self {
            Self::Quick => "quick",
            Self::Full => "full",
        }
    }
}

/// A JetStream stream, created with `config` if it is not there yet.
pub async fn stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> anyhow::Result<stream::Stream> {
    let name = config.name.clone();
    js.get_or_create_stream(config)
        .await
        .with_context(|| format!("JetStream stream {name} (is JetStream on?)"))
}

/// The stream of recordings to add, one subject per shard.
pub async fn tracks_stream(js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    let config = stream::Config {
        name: TRACKS_STREAM.into(),
        subjects: vec!["earmark.tracks.*".into()],
        duplicate_window: std::time::Duration::from_secs(24 * 3600),
        ..Default::default()
    };
    stream(js, config).await
}

/// The subject a shard's replicas answer a round of identify queries on.
pub fn identify_subject(shard: u32, round: Round) -> String {
    format!("earmark.shard.{shard}.identify.{}", round.name())
}

/// The subject a shard's replicas follow a stretch of a recording on (see
/// [`crate::scan::follow`]).
pub fn follow_subject(shard: u32) -> String {
    format!("earmark.shard.{shard}.follow")
}

/// The subject a shard's replicas send their hashes' postings counts on (see
/// [`census`]).
pub fn counts_subject(shard: u32) -> String {
    format!("earmark.shard.{shard}.counts")
}

/// The subject a shard's replicas answer track lookups on.
pub fn lookup_subject(shard: u32) -> String {
    format!("earmark.shard.{shard}.tracks")
}

/// The subject of recordings to add to a shard (in [`TRACKS_STREAM`]).
pub fn add_subject(shard: u32) -> String {
    format!("earmark.tracks.{shard}")
}

const QUERY_MAGIC: &[u8; 4] = b"EMQ1";
const PEAK_BYTES: usize = 16;

/// A query's peaks as sent to the shards: `EMQ1`, frames, then per peak its
/// frame, bin, strength and rank (little-endian, 16 bytes). The landmarks are
/// made again from the peaks on the shard, which is cheaper than sending them.
pub fn encode_query(query: &Fingerprint) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + query.peaks.len() * PEAK_BYTES);
    out.extend_from_slice(QUERY_MAGIC);
    out.extend_from_slice(&query.frames.to_le_bytes());
    for p in &query.peaks {
        out.extend_from_slice(&p.frame.to_le_bytes());
        out.extend_from_slice(&p.bin.to_le_bytes());
        out.extend_from_slice(&p.strength.to_le_bytes());
        out.extend_from_slice(&p.rank.to_le_bytes());
    }
    out
}

/// A stretch of a recording to follow: its base (little-endian u32), 1 if
/// the recording ends with it (else 0), then the stretch as
/// [`encode_query`] writes it.
pub fn encode_job(job: &Fingerprint, stretch: Stretch) -> Vec<u8> {
    let mut out = stretch.base.to_le_bytes().to_vec();
    out.push(stretch.last.into());
    out.extend_from_slice(&encode_query(job));
    out
}

/// The stretch [`encode_job`] sent, and where it lies.
pub fn decode_job(bytes: &[u8]) -> Result<(Fingerprint, Stretch), String> {
    let (head, query) = bytes
        .split_at_checked(5)
        .ok_or("a job starts with its base and whether it is the last")?;
    let stretch = Stretch {
        base: u32::from_le_bytes([head[0], head[1], head[2], head[3]]),
        last: head[4] != 0,
    };
    Ok((decode_query(query)?, stretch))
}

/// The query fingerprint [`encode_query`] sent, landmarks made again.
pub fn decode_query(bytes: &[u8]) -> Result<Fingerprint, String> {
    let mut query = decode_peaks(bytes)?;
    let mut landmarker = Landmarker::new(&FingerprintOptions::query());
    for &peak in &query.peaks {
        landmarker.push(peak, &mut query.landmarks);
    }
    landmarker.flush(&mut query.landmarks);
    Ok(query)
}

/// The peaks of the query fingerprint [`encode_query`] sent, without its
/// landmarks: all the quick look needs, since it pairs the peaks as the
/// catalog does.
pub fn decode_peaks(bytes: &[u8]) -> Result<Fingerprint, String> {
    let body = bytes
        .strip_prefix(QUERY_MAGIC)
        .filter(|b| b.len() >= 4 && (b.len() - 4) % PEAK_BYTES == 0)
        .ok_or("not an earmark query (EMQ1 and whole peaks)")?;
    let word = |b: &[u8], at: usize| [b[at], b[at + 1], b[at + 2], b[at + 3]];
    let frames = u32::from_le_bytes(word(body, 0));
    let mut query = Fingerprint {
        frames,
        ..Fingerprint::default()
    };
    for chunk in body[4..].chunks_exact(PEAK_BYTES) {
        let peak = Peak {
            frame: u32::from_le_bytes(word(chunk, 0)),
            bin: f32::from_le_bytes(word(chunk, 4)),
            strength: f32::from_le_bytes(word(chunk, 8)),
            rank: u32::from_le_bytes(word(chunk, 12)),
        };
        if peak.frame >= frames || query.peaks.last().is_some_and(|p| p.frame > peak.frame) {
            return Err("peaks out of frame order".into());
        }
        query.peaks.push(peak);
    }
    Ok(query)
}

/// A shard's candidate: how well a track matched.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardCandidate {
    /// The track's content key (see [`content_key`]).
    pub key: u64,
    /// The verified candidate (its track id is the shard's own).
    pub candidate: Candidate,
    /// Only when its score and matched peaks could be accepted: its track,
    /// and the candidate with its tempo sharpened as an accepted match
    /// reports it. The others go without, which keeps answers small.
    pub acceptable: Option<(Track, Candidate)>,
}

impl ShardCandidate {
    /// What chose it, in the order [`ranked`] sorts.
    fn rank(&self) -> (f32, u64) {
        (self.candidate.rank, self.key)
    }
}

/// The candidates one of a shard's paths verified.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardList {
    /// The candidates.
    pub candidates: Vec<ShardCandidate>,
    /// The rank and content key of every track the path chose to verify
    /// (the stretch path drops some), best first.
    pub chosen: Vec<(f32, u64)>,
}

/// A shard's answer to a round of a query: a list per path the round runs.
/// Each holds what the shard chose as if it were the whole catalog (the
/// most candidates a path verifies); the gateway keeps what the whole
/// catalog would have chosen.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardAnswer {
    /// The quick look's list, or the full query's and the stretch path's.
    pub lists: Vec<ShardList>,
    /// Microseconds the shard spent on the query, from its arrival to its
    /// answer (the rest of the round trip is the network's).
    pub work_us: u64,
    /// The postings the shard holds: when they change, the gateway counts
    /// them again (see [`census`]).
    pub postings: u64,
}

/// Of the shards' lists of one path, the candidates the whole catalog
/// would have chosen: the `most` best ranked tracks of all.
pub fn choose(lists: impl IntoIterator<Item = ShardList>, most: usize) -> Vec<ShardCandidate> {
    let (mut chosen, mut candidates) = (Vec::new(), Vec::new());
    for list in lists {
        chosen.extend(list.chosen);
        candidates.extend(list.candidates);
    }
    chosen.sort_by(|&a, &b| ranked(a, b));
    chosen.truncate(most);
    let Some(&last) = chosen.last() else {
        return Vec::new();
    };
    candidates.retain(|c| ranked(c.rank(), last).is_le());
    candidates
}

/// Adds `more` to `candidates`, keeping the better of two for a track.
pub fn merge(candidates: &mut Vec<ShardCandidate>, more: Vec<ShardCandidate>) {
    merge_by(candidates, more, |c| (c.key, c.candidate.score));
}

/// The accepted match among candidates of the whole catalog, by the single
/// node's rule: the best score must clear the threshold and the best other
/// track's score by the margin (twins aside: the same audio in other
/// tracks), or its votes stand far above the others'.
pub fn decide(options: &MatchOptions, candidates: &[ShardCandidate]) -> Option<(Track, Match)> {
    let mut ranked: Vec<&ShardCandidate> = candidates.iter().collect();
    ranked
        .sort_by(|a, b| (b.candidate.score.total_cmp(&a.candidate.score)).then(a.key.cmp(&b.key)));
    let top = ranked.first()?;
    let (track, refined) = top.acceptable.as_ref()?;
    let rivals = options.rivals(&ranked, |c| &c.candidate);
    let runner_up = rivals.first().map(|c| &c.candidate);
    let rival_votes = MatchOptions::rival_votes(rivals.iter().map(|c| &c.candidate));
    let m = options.decide(&top.candidate, runner_up, rival_votes, || *refined)?;
    Some((track.clone(), m))
}

/// A play a shard followed, with its track.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardPlay {
    /// The play (its track id is the shard's own).
    pub play: Play,
    /// The track.
    pub track: Track,
}

/// A track lookup sent to every shard: by id, by content hash, or a search.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrackQuery {
    /// The catalog's id of the track.
    pub id: Option<String>,
    /// The BLAKE3 hash of its recording.
    pub content_hash: Option<String>,
    /// An ISRC (normalised) the track or its rights carry.
    pub isrc: Option<String>,
    /// Words (lower case) its id, title or artists contain.
    pub words: Vec<String>,
    /// Most tracks to send back.
    pub limit: usize,
}

/// A shard's answer to a [`TrackQuery`]: how many tracks match and the
/// first `limit` of them, as the API shows them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrackList {
    /// Tracks matching.
    pub total: usize,
    /// The first of them.
    pub tracks: Vec<serde_json::Value>,
}

/// A shard's reply: its answer or why it has none.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply<T> {
    /// The answer.
    Ok(T),
    /// What went wrong.
    Error(String),
}

/// A recording to add, as the gateway puts it in [`TRACKS_STREAM`]: its
/// metadata as one JSON line, then the file's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackUpload {
    /// Descriptive metadata.
    pub meta: TrackMeta,
    /// The uploaded file's name (its extension helps decoding).
    pub name: String,
    /// BLAKE3 of the file's bytes.
    pub content_hash: String,
}

impl TrackUpload {
    /// The message: the metadata line and the audio.
    pub fn encode(&self, audio: &[u8]) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out.extend_from_slice(audio);
        out
    }

    /// The metadata and the audio of a message [`TrackUpload::encode`] made.
    pub fn decode(message: &[u8]) -> Result<(Self, &[u8]), String> {
        let split = (message.iter().position(|&b| b == b'\n'))
            .ok_or("a track upload starts with a line of JSON")?;
        let upload = serde_json::from_slice(&message[..split]).map_err(|e| e.to_string())?;
        Ok((upload, &message[split + 1..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use earmark_index::TrackId;

    #[test]
    fn shards_parse_and_split_hashes_between_them() {
        let shard: Shard = "2/3".parse().unwrap();
        assert_eq!((shard.index, shard.count), (2, 3));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let hashes: Vec<String> = (0..300u32)
            .map(|i| blake3::hash(&i.to_le_bytes()).to_hex().to_string())
            .collect();
        let mut counts = [0; 3];
        for h in &hashes {
            let owners: Vec<u32> = (1..=3)
                .filter(|&k| Shard { index: k, count: 3 }.owns(h))
                .collect();
            assert_eq!(owners.len(), 1, "exactly one shard owns {h}");
            counts[owners[0] as usize - 1] += 1;
        }
        assert!(counts.iter().all(|&n| n > 70), "{counts:?}");
    }

    #[test]
    fn a_query_crosses_the_wire_with_the_same_peaks_and_landmarks() {
        let song = earmark_engine::testutil::song(8000, 12.0, 7);
        let query =
            earmark_engine::fingerprint_samples(&song, 8000, &FingerprintOptions::query()).unwrap();
        assert!(query.landmarks.len() > 100);
        let sent = decode_query(&encode_query(&query)).unwrap();
        assert_eq!(sent, query);
        let peaks = decode_peaks(&encode_query(&query)).unwrap();
        assert_eq!((&peaks.peaks, peaks.frames), (&query.peaks, query.frames));
        assert!(peaks.landmarks.is_empty());
        assert!(decode_query(b"EMQ1\x01").is_err());
        assert!(decode_query(b"nope").is_err());
        let stretch = Stretch {
            base: 930,
            last: true,
        };
        let (job, sent) = decode_job(&encode_job(&query, stretch)).unwrap();
        assert_eq!((job, sent), (query, stretch));
        assert!(decode_job(b"EM").is_err());
    }

    fn candidate(id: &str, rank: f32, score: f32) -> ShardCandidate {
        let candidate = Candidate {
            track: TrackId(0),
            votes: 10,
            start_frame: 0.0,
            tempo: 1.0,
            pitch: 1.0,
            peaks: 100,
            matched: 50,
            score,
            pivot_frame: 0.0,
            rank,
            stretched: false,
        };
        let track = Track {
            id: TrackId(0),
            meta: TrackMeta {
                external_id: id.into(),
                ..TrackMeta::default()
            },
            duration_s: 60.0,
            path: String::new(),
            content_hash: blake3::hash(id.as_bytes()).to_hex().to_string(),
            landmarks: 0,
        };
        let refined = Candidate {
            tempo: 1.01,
            ..candidate
        };
        ShardCandidate {
            key: content_key(&track.content_hash),
            candidate,
            acceptable: Some((track, refined)),
        }
    }

    fn list(candidates: Vec<ShardCandidate>, dropped: &[f32]) -> ShardList {
        let mut chosen: Vec<(f32, u64)> = candidates.iter().map(ShardCandidate::rank).collect();
        chosen.extend(dropped.iter().map(|&r| (r, 0)));
        chosen.sort_by(|&a, &b| ranked(a, b));
        ShardList { candidates, chosen }
    }

    #[test]
    fn the_shards_lists_are_cut_where_the_whole_catalog_would_cut() {
        let ids = |c: &[ShardCandidate]| -> Vec<String> {
            let mut ids: Vec<String> = (c.iter().filter_map(|c| c.acceptable.as_ref()))
                .map(|(t, _)| t.meta.external_id.clone())
                .collect();
            ids.sort();
            ids
        };
        let a = list(
            vec![candidate("a1", 9.0, 1.0), candidate("a2", 5.0, 1.0)],
            &[],
        );
        // b's best choice could not be verified; it still takes a place.
        let b = list(vec![candidate("b1", 7.0, 1.0)], &[8.0]);
        assert_eq!(ids(&choose([a.clone(), b.clone()], 3)), ["a1", "b1"]);
        assert_eq!(ids(&choose([a.clone(), b.clone()], 4)), ["a1", "a2", "b1"]);
        assert!(choose([a, b], 0).is_empty());
    }

    #[test]
    fn merging_applies_the_margin_across_shards() {
        let o = MatchOptions::default();
        let (track, m) =
            decide(&o, &[candidate("a", 9.0, 30.0), candidate("b", 9.0, 9.0)]).unwrap();
        assert_eq!(track.meta.external_id, "a");
        assert_eq!((m.runner_up_score, m.candidate.tempo), (9.0, 1.01));
        // Each shard alone would accept its track; together neither wins.
        assert!(decide(&o, &[candidate("a", 9.0, 10.0), candidate("b", 9.0, 8.0)]).is_none());
        // Unless both hold the query's audio beyond doubt: the better
        // answers, and its twin is no rival.
        let twins = [candidate("a", 9.0, 30.0), candidate("b", 9.0, 28.0)];
        for pair in [twins.clone(), [twins[1].clone(), twins[0].clone()]] {
            let (track, m) = decide(&o, &pair).expect("twins answer");
            assert_eq!(track.meta.external_id, "a");
            assert_eq!(m.runner_up_score, 0.0);
        }
        // A track within the margin that does not verify beyond doubt is a
        // rival still.
        let third = |score| {
            [
                candidate("a", 9.0, 14.0),
                candidate("b", 9.0, 13.0),
                candidate("c", 9.0, score),
            ]
        };
        assert!(decide(&o, &third(11.0)).is_none());
        assert_eq!(
            decide(&o, &third(9.5)).expect("a match").1.runner_up_score,
            9.5
        );
        assert!(decide(&o, &[candidate("a", 9.0, 3.0)]).is_none());
        assert!(decide(&o, &[]).is_none());
        // Of a track in two lists, the better counts.
        let mut merged = vec![candidate("a", 9.0, 30.0)];
        merge(
            &mut merged,
            vec![candidate("a", 3.0, 31.0), candidate("b", 3.0, 5.0)],
        );
        let scores: Vec<f32> = merged.iter().map(|c| c.candidate.score).collect();
        assert_eq!(scores, [31.0, 5.0]);
    }
}
