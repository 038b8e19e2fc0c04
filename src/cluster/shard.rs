//! A shard node: `earmark serve --shard k/K --nats URL`. It answers identify
//! queries and track lookups for its part of the catalog, and indexes the
//! recordings the gateways queue for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use serde::Serialize;

use earmark_index::{Candidate, Catalog, MatchOptions, Matcher};

use super::census::{CHUNK_HASHES, decode_round, encode_chunk};
use super::{
    Reply, Round, Shard, ShardAnswer, ShardCandidate, ShardList, ShardPlay, TrackList, TrackQuery,
    TrackUpload, add_subject, counts_subject, decode_job, decode_peaks, decode_query,
    follow_subject, lookup_subject, tracks_stream,
};
use crate::serve::AppState;
use crate::serve::routes::{add_recording, compute, matching_tracks, track_json};

/// Serves shard `shard` of the catalog in `state` over NATS at `url` until
/// interrupted; `replica` names this replica's place in the stream of
/// recordings to add (each replica indexes every one of them).
pub async fn run(
    state: Arc<AppState>,
    url: &str,
    shard: Shard,
    replica: &str,
) -> anyhow::Result<()> {
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("cannot reach NATS at {url}"))?;
    let group = format!("earmark-shard-{}", shard.index);
    let mut queries = client
        .queue_subscribe(
            format!("earmark.shard.{}.identify.*", shard.index),
            group.clone(),
        )
        .await?;
    let mut lookups = client
        .queue_subscribe(lookup_subject(shard.index), group.clone())
        .await?;
    let mut jobs = client
        .queue_subscribe(follow_subject(shard.index), group.clone())
        .await?;
    let mut counts = client
        .queue_subscribe(counts_subject(shard.index), group)
        .await?;
    let additions = consume_additions(Arc::clone(&state), client.clone(), shard, replica);
    let catalog = state.catalog();
    eprintln!(
        "earmark serve: shard {shard} ({} tracks) replica {replica} on {url}",
        catalog.tracks().len()
    );
    let serve = async {
        loop {
            tokio::select! {
                Some(message) = queries.next() => {
                    let (state, client) = (Arc::clone(&state), client.clone());
                    tokio::spawn(async move {
                        let round = if message.subject.ends_with(Round::Quick.name()) {
                            Round::Quick
                        } else {
                            Round::Full
                        };
                        let answer = identify(&state, round, &message.payload).await;
                        respond(&client, message.reply, &answer).await;
                    });
                }
                Some(message) = jobs.next() => {
                    let (state, client) = (Arc::clone(&state), client.clone());
                    tokio::spawn(async move {
                        let answer = follow(&state, &message.payload).await;
                        respond(&client, message.reply, &answer).await;
                    });
                }
                Some(message) = counts.next() => {
                    let (state, client) = (Arc::clone(&state), client.clone());
                    tokio::spawn(async move {
                        let Some(reply) = message.reply else { return };
                        let bytes = count(&state, &message.payload).await;
                        if let Err(e) = client.publish(reply, bytes.into()).await {
                            eprintln!("earmark serve: counts not sent: {e}");
                        }
                    });
                }
                Some(message) = lookups.next() => {
                    let answer = lookup(&state.catalog(), &message.payload);
                    respond(&client, message.reply, &answer).await;
                }
                else => break,
            }
        }
    };
    tokio::select! {
        _ = serve => {}
        r = additions => r?,
        _ = crate::serve::shutdown() => {}
    }
    // Leaves the queue groups before going, so no query waits on this node.
    client.drain().await.ok();
    eprintln!("earmark serve: shard {shard} stopped");
    Ok(())
}

async fn respond<T: Serialize>(
    client: &async_nats::Client,
    reply: Option<async_nats::Subject>,
    answer: &Reply<T>,
) {
    let Some(reply) = reply else { return };
    let bytes = serde_json::to_vec(answer).unwrap_or_default();
    if let Err(e) = client.publish(reply, bytes.into()).await {
        eprintln!("earmark serve: answer not sent: {e}");
    }
}

/// Votes a round of a query against this shard's catalog.
async fn identify(state: &Arc<AppState>, round: Round, payload: &[u8]) -> Reply<ShardAnswer> {
    let started = Instant::now();
    let decode = match round {
        Round::Quick => decode_peaks,
        Round::Full => decode_query,
    };
    let (whole, query) = match decode_round(payload).and_then(|(w, q)| Ok((w, decode(q)?))) {
        Ok(q) => q,
        Err(e) => return Reply::Error(e),
    };
    let catalog = state.catalog();
    let answer = compute(state, move || {
        let mut matcher = Matcher::new(&catalog, MatchOptions::default());
        matcher.count_as(whole);
        let lists = match round {
            Round::Quick => {
                let quick = matcher.quick_candidates(&query);
                vec![shard_list(&catalog, &matcher, quick, None)]
            }
            Round::Full => {
                let full = matcher.full_candidates(&query, Vec::new());
                let full = shard_list(&catalog, &matcher, full, None);
                let mut stretched = Vec::new();
                matcher.add_stretched(&query, &mut stretched);
                let chosen = matcher.stretch_ranks().to_vec();
                vec![
                    full,
                    shard_list(&catalog, &matcher, stretched, Some(chosen)),
                ]
            }
        };
        ShardAnswer {
            lists,
            work_us: started.elapsed().as_micros() as u64,
            postings: catalog.postings(),
        }
    })
    .await;
    match answer {
        Ok(a) => Reply::Ok(a),
        Err(e) => Reply::Error(e.to_string()),
    }
}

/// A path's candidates with their tracks, sharpened when they could be
/// accepted, and the ranks of the tracks chosen (those of the candidates,
/// unless given).
fn shard_list(
    catalog: &Catalog,
    matcher: &Matcher<'_>,
    candidates: Vec<Candidate>,
    chosen: Option<Vec<(f32, u64)>>,
) -> ShardList {
    let o = matcher.options();
    let tracks = catalog.tracks();
    let chosen = chosen.unwrap_or_else(|| {
        (candidates.iter())
            .map(|c| (c.rank, tracks.key(c.track)))
            .collect()
    });
    let candidates = (candidates.into_iter())
        .map(|c| {
            let acceptable = (o.could_accept(&c) || o.could_accept_by_votes(&c))
                .then(|| tracks.get(c.track))
                .flatten();
            ShardCandidate {
                key: tracks.key(c.track),
                candidate: c,
                acceptable: acceptable.map(|t| (t.clone(), matcher.refined(c))),
            }
        })
        .collect();
    ShardList { candidates, chosen }
}

/// This shard's counts of the chunk of hashes a gateway asks for (its
/// number, little-endian), as [`encode_chunk`] writes them; an empty
/// message when the question is not a chunk's number.
async fn count(state: &Arc<AppState>, payload: &[u8]) -> Vec<u8> {
    let Ok(chunk) = <[u8; 4]>::try_from(payload).map(u32::from_le_bytes) else {
        return Vec::new();
    };
    let catalog = state.catalog();
    let counted = compute(state, move || {
        let mut counts = vec![0; CHUNK_HASHES as usize];
        catalog.count_postings(chunk.saturating_mul(CHUNK_HASHES), &mut counts);
        encode_chunk(catalog.postings(), &counts)
    });
    counted.await.unwrap_or_default()
}

/// Follows a stretch of a recording through this shard's catalog.
async fn follow(state: &Arc<AppState>, payload: &[u8]) -> Reply<Vec<ShardPlay>> {
    let (job, stretch) = match decode_job(payload) {
        Ok(j) => j,
        Err(e) => return Reply::Error(e),
    };
    let catalog = state.catalog();
    let plays = compute(state, move || {
        (crate::scan::follow(&catalog, &job, stretch).into_iter())
            .filter_map(|play| {
                let track = catalog.tracks().get(play.track)?.clone();
                Some(ShardPlay { play, track })
            })
            .collect()
    })
    .await;
    match plays {
        Ok(p) => Reply::Ok(p),
        Err(e) => Reply::Error(e.to_string()),
    }
}

/// Looks tracks up in this shard's catalog.
fn lookup(catalog: &Catalog, payload: &[u8]) -> Reply<TrackList> {
    let query: TrackQuery = match serde_json::from_slice(payload) {
        Ok(q) => q,
        Err(e) => return Reply::Error(format!("not a track query: {e}")),
    };
    let tracks = catalog.tracks();
    let found = match (&query.id, &query.content_hash) {
        (Some(id), _) => tracks.by_external_id(id).into_iter().collect(),
        (None, Some(hash)) => tracks.by_content_hash(hash).into_iter().collect(),
        (None, None) => matching_tracks(catalog, query.isrc.as_deref(), &query.words),
    };
    Reply::Ok(TrackList {
        total: found.len(),
        tracks: (found.iter().take(query.limit))
            .map(|t| track_json(catalog, t))
            .collect(),
    })
}

/// Indexes the recordings queued for this shard, each once per replica:
/// the replica's durable consumer remembers where it got to.
async fn consume_additions(
    state: Arc<AppState>,
    client: async_nats::Client,
    shard: Shard,
    replica: &str,
) -> anyhow::Result<()> {
    let js = jetstream::new(client);
    let stream = tracks_stream(&js).await?;
    let name = format!("shard-{}-{replica}", shard.index);
    let consumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: add_subject(shard.index),
                ack_wait: Duration::from_secs(120),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("consumer {name} of the recordings to add"))?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                eprintln!("earmark serve: shard {shard}: {e}");
                continue;
            }
        };
        let payload = message.payload.clone();
        let shared = Arc::clone(&state);
        let added = compute(&state, move || add(&shared, &payload)).await;
        match added {
            Ok(Ok(Some(id))) => eprintln!("earmark serve: shard {shard} added track {id}"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => eprintln!("earmark serve: shard {shard}: recording refused: {e}"),
            Err(e) => eprintln!("earmark serve: shard {shard}: {e}"),
        }
        // A recording that cannot be indexed never will be: it is not
        // offered again.
        if let Err(e) = message.ack().await {
            eprintln!("earmark serve: shard {shard}: not acknowledged: {e}");
        }
    }
    Ok(())
}

/// Indexes one queued recording unless this replica has it already; the
/// id of the track added.
fn add(state: &AppState, message: &[u8]) -> anyhow::Result<Option<String>> {
    let (upload, audio) = TrackUpload::decode(message).map_err(anyhow::Error::msg)?;
    let catalog = state.catalog();
    if catalog
        .tracks()
        .by_content_hash(&upload.content_hash)
        .is_some()
    {
        return Ok(None);
    }
    let hash = blake3::hash(audio).to_hex().to_string();
    anyhow::ensure!(
        hash == upload.content_hash,
        "its bytes do not match its hash"
    );
    let id = add_recording(
        state.db(),
        &upload.name,
        &audio.to_vec().into(),
        upload.meta,
        hash,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    state.reload()?;
    Ok(Some(id))
}
