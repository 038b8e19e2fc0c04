//! A gateway's way to the shards: every query goes to every shard, whose
//! replicas share the work; the answers are merged as one node would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::client::RequestErrorKind;
use async_nats::jetstream;
use axum::body::Bytes;
use futures_util::future::join_all;
use serde::de::DeserializeOwned;

use earmark_engine::Fingerprint;
use earmark_index::{
    Candidate, Match, MatchOptions, Paths, Track, decide_after_quick, lookups, quick_landmarks,
};
use tokio::sync::RwLock;

use super::census::{CHUNKS, Census, encode_round};
use super::{
    Reply, Round, Shard, ShardAnswer, ShardCandidate, ShardList, ShardPlay, TrackList, TrackQuery,
    TrackUpload, add_subject, choose, counts_subject, decide, encode_job, encode_query,
    follow_subject, identify_subject, lookup_subject, merge,
};
use crate::scan::Stretch;

/// Tries of one shard before it counts as down: a replica that dies with a
/// query in hand leaves it unanswered, and the next try goes to another.
const TRIES: usize = 3;
/// How long a shard may take to follow 10 minutes of a recording.
const FOLLOW_PATIENCE: Duration = Duration::from_secs(60);

/// Why the cluster could not answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterError {
    /// No replica of these shards answered: any answer would be partial.
    Unavailable(Vec<u32>),
    /// A shard answered with an error, or NATS failed.
    Failed(String),
    /// The recording is larger than NATS carries.
    TooLarge(usize),
}

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(shards) => {
                let names: Vec<String> = shards.iter().map(u32::to_string).collect();
                write!(
                    f,
                    "no replica of shard {} answered: the answer would be partial",
                    names.join(", ")
                )
            }
            Self::Failed(why) => write!(f, "the cluster failed: {why}"),
            Self::TooLarge(max) => write!(f, "recordings over {max} bytes do not fit a message"),
        }
    }
}

/// The cluster's answer to a query.
#[derive(Debug, Clone)]
pub struct Identified {
    /// The accepted match and its track.
    pub best: Option<(Track, Match)>,
    /// What the way between gateway and shards added to the answer's time:
    /// per round, the round trip less the shard's work, of the shard that
    /// answered last (the others' answers waited for it anyway).
    pub hop: Duration,
}

/// The whole catalog's lists of the full round, as one node's paths would
/// give them (see [`decide_after_quick`]).
struct RoundLists<'o> {
    options: &'o MatchOptions,
    full: Vec<ShardCandidate>,
    stretched: Vec<ShardCandidate>,
}

impl Paths for RoundLists<'_> {
    type Candidate = ShardCandidate;
    type Match = (Track, Match);

    fn options(&self) -> &MatchOptions {
        self.options
    }

    fn candidate(c: &ShardCandidate) -> &Candidate {
        &c.candidate
    }

    fn matched(m: &(Track, Match)) -> &Match {
        &m.1
    }

    fn full(&mut self) -> Vec<ShardCandidate> {
        std::mem::take(&mut self.full)
    }

    fn stretched(&mut self) -> Vec<ShardCandidate> {
        std::mem::take(&mut self.stretched)
    }

    fn merge(&self, candidates: &mut Vec<ShardCandidate>, more: Vec<ShardCandidate>) {
        merge(candidates, more);
    }

    fn decide(&self, candidates: &mut Vec<ShardCandidate>) -> Option<(Track, Match)> {
        decide(self.options, candidates)
    }
}

/// A connection to the shards of a cluster.
#[derive(Debug, Clone)]
pub struct Gateway {
    client: async_nats::Client,
    shards: u32,
    /// How long one try of a shard may take.
    patience: Duration,
    options: MatchOptions,
    /// The whole catalog's postings counts, taken at the first query.
    census: Arc<RwLock<Option<Arc<Census>>>>,
    /// Whether the census is being taken again.
    recounting: Arc<AtomicBool>,
}

impl Gateway {
    /// Connects to NATS at `url`, for a catalog split into `shards`.
    pub async fn connect(url: &str, shards: u32, patience: Duration) -> anyhow::Result<Self> {
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("cannot reach NATS at {url}"))?;
        Ok(Self {
            client,
            shards,
            patience,
            options: MatchOptions::default(),
            census: Arc::default(),
            recounting: Arc::default(),
        })
    }

    /// The NATS connection.
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// How many shards the catalog is split into.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// Asks one replica of a shard, trying others when one does not answer.
    async fn ask(
        &self,
        subject: String,
        payload: Bytes,
        patience: Duration,
    ) -> Result<(Bytes, Duration), Option<String>> {
        let mut why = None;
        for _ in 0..TRIES {
            let started = Instant::now();
            let request = async_nats::Request::new()
                .payload(payload.clone())
                .timeout(Some(patience));
            match self.client.send_request(subject.clone(), request).await {
                Ok(message) => return Ok((message.payload, started.elapsed())),
                Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                    // A replica may be on its way back.
                    tokio::time::sleep(patience / 10).await;
                }
                Err(e) if e.kind() == RequestErrorKind::TimedOut => {}
                Err(e) => why = Some(e.to_string()),
            }
        }
        Err(why)
    }

    /// Sends `payload` to every shard on the subject `subject(k)`; their
    /// answers in shard order, each with the time its last try took.
    async fn scatter<T: DeserializeOwned>(
        &self,
        subject: impl Fn(u32) -> String,
        payload: Bytes,
        patience: Duration,
    ) -> Result<Vec<(T, Duration)>, ClusterError> {
        let replies = self.gather(subject, payload, patience).await?;
        let mut answers = Vec::with_capacity(replies.len());
        for (k, (bytes, took)) in (1..).zip(replies) {
            match serde_json::from_slice::<Reply<T>>(&bytes) {
                Ok(Reply::Ok(answer)) => answers.push((answer, took)),
                Ok(Reply::Error(why)) => {
                    return Err(ClusterError::Failed(format!("shard {k}: {why}")));
                }
                Err(e) => return Err(ClusterError::Failed(format!("shard {k}: {e}"))),
            }
        }
        Ok(answers)
    }

    /// [`Gateway::scatter`]'s messages as they come back.
    async fn gather(
        &self,
        subject: impl Fn(u32) -> String,
        payload: Bytes,
        patience: Duration,
    ) -> Result<Vec<(Bytes, Duration)>, ClusterError> {
        let asks = (1..=self.shards).map(|k| self.ask(subject(k), payload.clone(), patience));
        let replies = join_all(asks).await;
        let mut missing = Vec::new();
        let mut answers = Vec::with_capacity(replies.len());
        for (k, reply) in (1..).zip(replies) {
            match reply {
                Ok(answer) => answers.push(answer),
                Err(Some(why)) => return Err(ClusterError::Failed(format!("shard {k}: {why}"))),
                Err(None) => missing.push(k),
            }
        }
        if missing.is_empty() {
            Ok(answers)
        } else {
            Err(ClusterError::Unavailable(missing))
        }
    }

    /// Identifies a query fingerprint against the whole catalog, deciding
    /// as one node would: the quick look first, and the full query only if
    /// the quick look found no strong match. With the match, the time the
    /// answers spent on the way rather than at work (see
    /// [`Identified::hop`]).
    pub async fn identify(&self, query: &Fingerprint) -> Result<Identified, ClusterError> {
        let o = &self.options;
        let census = self.census().await?;
        let peaks = encode_query(query);
        let mut quick = Vec::new();
        quick_landmarks(query, &mut quick);
        let counts = census.counts_of(quick.iter().map(|l| l.hash));
        let payload = encode_round(&counts, &peaks).into();
        let (mut paths, mut hop) = self.round(Round::Quick, payload, &census).await?;
        let quick = choose(paths.next().unwrap_or_default(), o.quick_candidates);
        let best = decide(o, &quick).filter(|(_, m)| o.answers_quickly(m));
        if best.is_some() {
            return Ok(Identified { best, hop });
        }
        let counts = census.counts_of(lookups(&query.landmarks, o));
        let payload = encode_round(&counts, &peaks).into();
        let (mut paths, full_hop) = self.round(Round::Full, payload, &census).await?;
        hop += full_hop;
        let mut lists = RoundLists {
            options: o,
            full: choose(paths.next().unwrap_or_default(), o.max_candidates),
            stretched: choose(paths.next().unwrap_or_default(), o.stretch_candidates),
        };
        let (best, _) = decide_after_quick(&mut lists, quick);
        Ok(Identified { best, hop })
    }

    /// A round of a query on every shard: per path, the shards' lists; and
    /// the time the last answer spent on the way. When the shards have
    /// changed since `census` was taken, it is taken again for the next
    /// queries.
    async fn round(
        &self,
        round: Round,
        payload: Bytes,
        census: &Census,
    ) -> Result<(impl Iterator<Item = Vec<ShardList>>, Duration), ClusterError> {
        let answers: Vec<(ShardAnswer, Duration)> = self
            .scatter(|k| identify_subject(k, round), payload, self.patience)
            .await?;
        if !census.is_current(answers.iter().map(|(a, _)| a.postings)) {
            self.recount();
        }
        let hop = (answers.iter())
            .max_by_key(|(_, took)| *took)
            .map(|(a, took)| took.saturating_sub(Duration::from_micros(a.work_us)))
            .unwrap_or_default();
        let mut paths: Vec<Vec<ShardList>> = Vec::new();
        for (answer, _) in answers {
            for (i, list) in answer.lists.into_iter().enumerate() {
                paths.resize_with(paths.len().max(i + 1), Vec::new);
                paths[i].push(list);
            }
        }
        Ok((paths.into_iter(), hop))
    }

    /// The census of the whole catalog, taken now if it has not been.
    async fn census(&self) -> Result<Arc<Census>, ClusterError> {
        if let Some(census) = self.census.read().await.as_ref() {
            return Ok(Arc::clone(census));
        }
        let mut slot = self.census.write().await;
        if let Some(census) = slot.as_ref() {
            return Ok(Arc::clone(census));
        }
        let census = Arc::new(self.take_census().await?);
        *slot = Some(Arc::clone(&census));
        Ok(census)
    }

    /// Takes the census again in the background, unless that is under way;
    /// queries go on with the one they have.
    fn recount(&self) {
        if self.recounting.swap(true, Ordering::SeqCst) {
            return;
        }
        let gateway = self.clone();
        tokio::spawn(async move {
            match gateway.take_census().await {
                Ok(census) => *gateway.census.write().await = Some(Arc::new(census)),
                Err(e) => eprintln!("earmark serve: the catalog's counts were not taken: {e}"),
            }
            gateway.recounting.store(false, Ordering::SeqCst);
        });
    }

    /// Asks every shard for its counts, a chunk of hashes at a time, and
    /// sums them.
    async fn take_census(&self) -> Result<Census, ClusterError> {
        let started = Instant::now();
        let mut census = Census::new(self.shards);
        for chunk in 0..CHUNKS {
            let counts: Vec<(Bytes, Duration)> = self
                .gather(
                    counts_subject,
                    chunk.to_le_bytes().to_vec().into(),
                    self.patience,
                )
                .await?;
            for (k, (message, _)) in (1..).zip(counts) {
                (census.add_chunk(k, chunk, &message))
                    .map_err(|why| ClusterError::Failed(format!("shard {k}: {why}")))?;
            }
        }
        eprintln!(
            "earmark serve: counted the catalog's {} postings by hash in {} ms",
            census.postings(),
            started.elapsed().as_millis()
        );
        Ok(census)
    }

    /// Looks tracks up in every shard: the total and the first
    /// `query.limit` tracks of each shard, in shard order.
    pub async fn lookup(&self, query: &TrackQuery) -> Result<TrackList, ClusterError> {
        let payload = serde_json::to_vec(query).map_err(|e| ClusterError::Failed(e.to_string()))?;
        let lists: Vec<(TrackList, Duration)> = self
            .scatter(lookup_subject, payload.into(), self.patience)
            .await?;
        Ok(TrackList {
            total: lists.iter().map(|(l, _)| l.total).sum(),
            tracks: lists.into_iter().flat_map(|(l, _)| l.tracks).collect(),
        })
    }

    /// The plays every shard follows in a stretch of a recording, with
    /// their tracks.
    pub async fn follow(
        &self,
        job: &Fingerprint,
        stretch: Stretch,
    ) -> Result<Vec<ShardPlay>, ClusterError> {
        let payload: Bytes = encode_job(job, stretch).into();
        let lists: Vec<(Vec<ShardPlay>, Duration)> = self
            .scatter(follow_subject, payload, FOLLOW_PATIENCE)
            .await?;
        Ok(lists.into_iter().flat_map(|(plays, _)| plays).collect())
    }

    /// Queues a recording for the replicas of the shard that owns it; the
    /// shard. The same recording queued twice is stored once (JetStream
    /// drops a message id it has seen within a day, and the replicas skip
    /// a content hash they hold).
    pub async fn add(&self, upload: &TrackUpload, audio: &[u8]) -> Result<u32, ClusterError> {
        let failed = |e: &dyn std::fmt::Display| ClusterError::Failed(e.to_string());
        let message = upload.encode(audio);
        let max = self.client.server_info().max_payload;
        if message.len() > max {
            return Err(ClusterError::TooLarge(max));
        }
        let js = jetstream::new(self.client.clone());
        super::tracks_stream(&js).await.map_err(|e| failed(&e))?;
        let shard = Shard::of(&upload.content_hash, self.shards);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            upload.content_hash.as_str(),
        );
        js.publish_with_headers(add_subject(shard), headers, message.into())
            .await
            .map_err(|e| failed(&e))?
            .await
            .map_err(|e| failed(&e))?;
        Ok(shard)
    }
}
