//! The API's handlers: each checks the caller's key, does its work (CPU work
//! on the blocking pool, at most one job per core) and answers JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use earmark_engine::fingerprint::SCHEME;
use earmark_engine::{AudioFile, Fingerprint, FingerprintOptions};
use earmark_index::coverage::decide;
use earmark_index::rights::normalise_isrc;
use earmark_index::{Catalog, CatalogWriter, Heard, MatchOptions, Matcher, Track, TrackMeta};
use earmark_monitor::Event;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::plays::{valid_event_id, valid_track_id};
use crate::cli::ReportFormat;
use crate::cluster::gateway::{ClusterError, Gateway};
use crate::cluster::{TrackQuery, TrackUpload};
use crate::identify::{QueryFingerprinter, match_json, matched_json, round};
use crate::ingest::prepare_audio;
use crate::keys::{ApiKey, Role};
use crate::report::{CueSheet, Licensing, parse_time};

type Shared = State<Arc<AppState>>;
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The caller's key, if it has one of `roles`.
fn authorize(state: &AppState, headers: &HeaderMap, roles: &[Role]) -> ApiResult<ApiKey> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    let Some(presented) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an API key is needed: `Authorization: Bearer em_...`",
        ));
    };
    let keys = state.keys();
    let Some(key) = keys.verify(presented.trim()) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or revoked API key",
        ));
    };
    if key.role != Role::Admin && !roles.contains(&key.role) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("a {} key may not do this", key.role.as_str()),
        ));
    }
    Ok(key.clone())
}

/// Checks that `event` is a valid id the key may act for.
fn authorize_event(key: &ApiKey, event: &str) -> ApiResult<()> {
    if !valid_event_id(event) {
        return Err(ApiError::bad_request(format!(
            "{event:?} is not an event id (letters, digits, '.', '_', '-')"
        )));
    }
    if !key.allows_event(event) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("key {} is not for event {event}", key.id),
        ));
    }
    Ok(())
}

fn params(query: Params) -> ApiResult<HashMap<String, String>> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// Audio sent as the body or as a multipart form's file part, with the
/// form's other fields.
struct Upload {
    name: String,
    audio: Bytes,
    fields: HashMap<String, String>,
}

async fn read_upload(request: Request) -> ApiResult<Upload> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let audio = Bytes::from_request(request, &()).await?;
        return Ok(Upload {
            name: "upload".into(),
            audio,
            fields: HashMap::new(),
        });
    }
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    let mut upload = Upload {
        name: "upload".into(),
        audio: Bytes::new(),
        fields: HashMap::new(),
    };
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(e.status(), "bad_request", e.body_text())
    };
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "audio" || name == "file" || field.file_name().is_some() {
            if let Some(file) = field.file_name() {
                upload.name = file.to_owned();
            }
            upload.audio = field.bytes().await.map_err(bad)?;
        } else {
            let text = field.text().await.map_err(bad)?;
            upload.fields.insert(name, text);
        }
    }
    if upload.audio.is_empty() {
        return Err(ApiError::bad_request(
            "the form has no audio part (name it `audio`)",
        ));
    }
    Ok(upload)
}

/// Runs CPU work on the blocking pool, one job per core at a time.
pub(crate) async fn compute<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> T + Send + 'static,
) -> ApiResult<T> {
    let _permit = state.cpu.acquire().await.map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)
}

/// `POST /v1/identify`.
pub async fn identify(State(state): Shared, headers: HeaderMap, request: Request) -> Response {
    match identify_inner(&state, &headers, request).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn identify_inner(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    request: Request,
) -> ApiResult<Value> {
    // The body is read first: a client that sends all of it before reading
    // the answer would see a broken pipe instead of a refusal.
    let upload = read_upload(request).await?;
    authorize(state, headers, &[Role::Lookup])?;
    let started = Instant::now();
    let max_s = state.limits.max_clip_s;
    let (name, audio) = (upload.name.clone(), upload.audio);
    let mut hop_ms = None;
    let (found, matched) = match &state.cluster {
        Some(cluster) => {
            let query = compute(state, move || clip_query(&name, &audio, max_s)).await??;
            let identified = cluster.identify(&query).await.map_err(cluster_error)?;
            hop_ms = Some(round(identified.hop.as_secs_f64() * 1e3, 2));
            match identified.best {
                Some((track, m)) => (matched_json(Some(&track), &m), true),
                None => (Value::Null, false),
            }
        }
        None => {
            let catalog = state.catalog();
            compute(state, move || {
                let query = clip_query(&name, &audio, max_s)?;
                let id = Matcher::new(&catalog, MatchOptions::default()).identify(&query);
                Ok::<_, ApiError>((match_json(&catalog, &id), id.best.is_some()))
            })
            .await??
        }
    };
    state.metrics.identified(matched);
    let mut answer = json!({
        "file": upload.name,
        "match": found,
        "elapsed_ms": round(started.elapsed().as_secs_f64() * 1e3, 2),
    });
    if let Some(hop_ms) = hop_ms {
        answer["nats_hop_ms"] = json!(hop_ms);
    }
    Ok(answer)
}

/// The query fingerprint of an uploaded clip: 422 when it cannot be
/// decoded, 413 when it is longer than `max_s` seconds.
fn clip_query(name: &str, audio: &Bytes, max_s: f64) -> ApiResult<Fingerprint> {
    let bad = |e: earmark_engine::Error| ApiError::bad_audio(e.to_string());
    let mut file = AudioFile::from_bytes(name, audio.clone()).map_err(bad)?;
    thread_local! {
        // Requests run on the blocking pool's long-lived threads.
        static FINGERPRINTER: std::cell::RefCell<QueryFingerprinter> = Default::default();
    }
    let (fingerprint, seconds) = FINGERPRINTER
        .with_borrow_mut(|f| f.fingerprint_stream(&mut file, max_s + 0.5))
        .map_err(bad)?;
    if seconds > max_s {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_long",
            format!("clips are limited to {max_s} s"),
        ));
    }
    Ok(fingerprint)
}

/// A cluster's failure as an answer: 503 when shards are missing.
fn cluster_error(e: ClusterError) -> ApiError {
    let (status, code) = match e {
        ClusterError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "shards_unavailable"),
        ClusterError::Failed(_) => (StatusCode::SERVICE_UNAVAILABLE, "cluster_failed"),
        ClusterError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
    };
    ApiError::new(status, code, e.to_string())
}

/// A track with its rights metadata, as the API shows it.
pub(crate) fn track_json(catalog: &Catalog, track: &Track) -> Value {
    json!({
        "id": track.meta.external_id,
        "title": track.meta.title,
        "artist": track.meta.artist,
        "isrc": track.meta.isrc,
        "duration_s": round(track.duration_s, 2),
        "content_hash": track.content_hash,
        "rights": catalog.rights().get(&track.meta.external_id),
    })
}

/// `GET /v1/tracks/{id}`.
pub async fn track(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    authorize(&state, &headers, &[Role::Lookup])?;
    let catalog = state.catalog();
    let missing = || ApiError::not_found(format!("no track {id}"));
    if let Some(cluster) = &state.cluster {
        let query = TrackQuery {
            id: Some(id.clone()),
            limit: 1,
            ..TrackQuery::default()
        };
        let found = cluster.lookup(&query).await.map_err(cluster_error)?;
        let mut track = found.tracks.into_iter().next().ok_or_else(missing)?;
        with_rights(&catalog, &mut track);
        return Ok(Json(track));
    }
    let track = catalog.tracks().by_external_id(&id).ok_or_else(missing)?;
    Ok(Json(track_json(&catalog, track)))
}

/// `GET /v1/tracks?isrc=&q=&limit=&offset=`.
pub async fn tracks(
    State(state): Shared,
    headers: HeaderMap,
    query: Params,
) -> ApiResult<Json<Value>> {
    authorize(&state, &headers, &[Role::Lookup])?;
    let query = params(query)?;
    let number = |name: &str, default: usize| -> ApiResult<usize> {
        query.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("{name} must be a number")))
        })
    };
    let (limit, offset) = (number("limit", 50)?.min(1000), number("offset", 0)?);
    let isrc = match query.get("isrc") {
        Some(v) => Some(
            normalise_isrc(v)
                .ok_or_else(|| ApiError::bad_request(format!("{v:?} is not an ISRC")))?,
        ),
        None => None,
    };
    let words: Vec<String> = query
        .get("q")
        .map(|q| q.split_whitespace().map(str::to_lowercase).collect())
        .unwrap_or_default();
    let catalog = state.catalog();
    if let Some(cluster) = &state.cluster {
        let query = TrackQuery {
            isrc,
            words,
            limit: offset + limit,
            ..TrackQuery::default()
        };
        let found = cluster.lookup(&query).await.map_err(cluster_error)?;
        let mut page: Vec<Value> = found.tracks.into_iter().skip(offset).take(limit).collect();
        page.iter_mut().for_each(|t| with_rights(&catalog, t));
        return Ok(Json(json!({"total": found.total, "tracks": page})));
    }
    let found = matching_tracks(&catalog, isrc.as_deref(), &words);
    let page: Vec<Value> = (found.iter().skip(offset).take(limit))
        .map(|t| track_json(&catalog, t))
        .collect();
    Ok(Json(json!({"total": found.len(), "tracks": page})))
}

/// The tracks whose ISRC (their own or their rights') is `isrc`, if given,
/// and whose id, title, artists or rights title contain every one of `words`
/// (lower case).
pub(crate) fn matching_tracks<'c>(
    catalog: &'c Catalog,
    isrc: Option<&str>,
    words: &[String],
) -> Vec<&'c Track> {
    catalog
        .tracks()
        .iter()
        .filter(|t| {
            let rights = catalog.rights().get(&t.meta.external_id);
            let isrcs = [
                t.meta.isrc.as_deref(),
                rights.and_then(|r| r.isrc.as_deref()),
            ];
            let isrc_ok = isrc.is_none_or(|want| {
                isrcs
                    .into_iter()
                    .flatten()
                    .any(|have| normalise_isrc(have).as_deref() == Some(want))
            });
            let text = format!(
                "{} {} {} {} {}",
                t.meta.external_id,
                t.meta.title,
                t.meta.artist,
                rights.map_or("", |r| r.title.as_str()),
                rights.map_or(String::new(), |r| r.artists.join(" "))
            )
            .to_lowercase();
            isrc_ok && words.iter().all(|w| text.contains(w.as_str()))
        })
        .collect()
}

/// `POST /v1/tracks`: a reference recording, with metadata as form fields
/// or query parameters (`id`, `title`, `artist`, `isrc`).
pub async fn add_track(
    State(state): Shared,
    headers: HeaderMap,
    query: Params,
    request: Request,
) -> Response {
    match add_track_inner(&state, &headers, query, request).await {
        Ok((status, v)) => (status, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn add_track_inner(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    query: Params,
    request: Request,
) -> ApiResult<(StatusCode, Value)> {
    let upload = read_upload(request).await?;
    authorize(state, headers, &[])?;
    let mut fields = params(query)?;
    fields.extend(upload.fields);
    let field = |name: &str| {
        fields
            .get(name)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let isrc = field("isrc");
    let meta = TrackMeta {
        external_id: field("id"),
        title: field("title"),
        artist: field("artist"),
        isrc: match isrc.as_str() {
            "" => None,
            v => Some(
                normalise_isrc(v)
                    .ok_or_else(|| ApiError::bad_request(format!("{v:?} is not an ISRC")))?,
            ),
        },
    };
    if meta.external_id.is_empty() {
        return Err(ApiError::bad_request("a track needs an `id`"));
    }
    if !valid_track_id(&meta.external_id) {
        return Err(ApiError::bad_request(
            "a track's `id` is at most 128 bytes, without control characters, slashes or quotes",
        ));
    }
    let _adding = state.adding.lock().await;
    let hash = blake3::hash(&upload.audio).to_hex().to_string();
    refuse_known(state, &meta.external_id, &hash).await?;
    if let Some(cluster) = &state.cluster {
        return queue_track(state, cluster, upload.name, &upload.audio, meta, hash).await;
    }
    let db = state.db.clone();
    let name = upload.name.clone();
    let added = compute(state, move || {
        add_recording(&db, &name, &upload.audio, meta, hash)
    })
    .await?;
    let id = added?;
    state.reload().map_err(ApiError::internal)?;
    let catalog = state.catalog();
    let track = catalog
        .tracks()
        .by_external_id(&id)
        .ok_or_else(|| ApiError::internal(format!("track {id} vanished after its commit")))?;
    Ok((StatusCode::CREATED, track_json(&catalog, track)))
}

/// Refuses a recording the catalog holds already, by id or by content.
async fn refuse_known(state: &AppState, id: &str, hash: &str) -> ApiResult<()> {
    let exists = |message: String| Err(ApiError::new(StatusCode::CONFLICT, "exists", message));
    let held = match &state.cluster {
        Some(cluster) => {
            let by_id = TrackQuery {
                id: Some(id.to_owned()),
                ..TrackQuery::default()
            };
            let by_content = TrackQuery {
                content_hash: Some(hash.to_owned()),
                limit: 1,
                ..TrackQuery::default()
            };
            if cluster.lookup(&by_id).await.map_err(cluster_error)?.total > 0 {
                return exists(format!("track {id} is already in the catalog"));
            }
            let found = cluster.lookup(&by_content).await.map_err(cluster_error)?;
            (found.tracks.first()).map(|t| t["id"].as_str().unwrap_or_default().to_owned())
        }
        None => {
            let catalog = state.catalog();
            if catalog.tracks().by_external_id(id).is_some() {
                return exists(format!("track {id} is already in the catalog"));
            }
            (catalog.tracks().by_content_hash(hash)).map(|t| t.meta.external_id.clone())
        }
    };
    match held {
        Some(other) => exists(format!("this recording is already track {other}")),
        None => Ok(()),
    }
}

/// Queues a recording for its shard and waits a while for it to be
/// searchable: 201 with the track if it is, else 202 with where it went.
async fn queue_track(
    state: &AppState,
    cluster: &Gateway,
    name: String,
    audio: &[u8],
    meta: TrackMeta,
    content_hash: String,
) -> ApiResult<(StatusCode, Value)> {
    let queued = TrackUpload {
        meta,
        name,
        content_hash,
    };
    let shard = (cluster.add(&queued, audio).await).map_err(cluster_error)?;
    let query = TrackQuery {
        content_hash: Some(queued.content_hash.clone()),
        limit: 1,
        ..TrackQuery::default()
    };
    let patience = Instant::now() + std::time::Duration::from_secs(30);
    while Instant::now() < patience {
        let found = cluster.lookup(&query).await.map_err(cluster_error)?;
        if let Some(mut track) = found.tracks.into_iter().next() {
            with_rights(&state.catalog(), &mut track);
            return Ok((StatusCode::CREATED, track));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok((
        StatusCode::ACCEPTED,
        json!({"status": "queued", "shard": shard, "content_hash": queued.content_hash}),
    ))
}

/// Puts the gateway's rights of a track into a shard's view of it (a
/// cluster keeps rights and licences at its gateways).
fn with_rights(catalog: &Catalog, track: &mut Value) {
    let id = track["id"].as_str().unwrap_or_default();
    if let Some(rights) = catalog.rights().get(id) {
        track["rights"] = json!(rights);
    }
}

/// Keeps the recording under `DB/uploads/`, fingerprints and commits it.
pub(crate) fn add_recording(
    db: &std::path::Path,
    name: &str,
    audio: &Bytes,
    meta: TrackMeta,
    hash: String,
) -> ApiResult<String> {
    let mut file = AudioFile::from_bytes(name, audio.clone())
        .map_err(|e| ApiError::bad_audio(e.to_string()))?;
    let extension = std::path::Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or("audio");
    let dir = db.join("uploads");
    let path = dir.join(format!("{hash}.{extension}"));
    let track = prepare_audio(
        &mut file,
        &FingerprintOptions::reference(),
        meta,
        &path,
        hash,
    )
    .map_err(|e| ApiError::bad_audio(format!("{e:#}")))?;
    std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
    crate::scan::write_atomically(&path, audio).map_err(ApiError::internal)?;
    let id = track.meta.external_id.clone();
    let mut writer = open_writer(db)?;
    writer.commit(vec![track]).map_err(ApiError::internal)?;
    // The track is searchable now; folding small segments together can go
    // on after the answer (the next add waits for it).
    std::thread::spawn(move || {
        if let Err(e) = writer.merge() {
            eprintln!("earmark serve: segments not merged: {e}");
        }
    });
    Ok(id)
}

/// The catalog's writer, waiting a while for another add or a merge to end.
fn open_writer(db: &std::path::Path) -> ApiResult<CatalogWriter> {
    let patience = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match CatalogWriter::open(db, SCHEME) {
            Ok(writer) => return Ok(writer),
            Err(earmark_index::Error::Locked { .. }) if std::time::Instant::now() < patience => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e @ earmark_index::Error::Locked { .. }) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "catalog_locked",
                    format!("{e}: another writer is adding to the catalog; try again"),
                ));
            }
            Err(e) => return Err(ApiError::internal(e)),
        }
    }
}

/// Body of `POST /v1/coverage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageQuery {
    track_id: Option<String>,
    isrc: Option<String>,
    event: Option<String>,
    licence: Option<String>,
    /// When the play began (RFC 3339 with an offset).
    start: Option<String>,
    /// When it ended (default: its start).
    end: Option<String>,
}

/// `POST /v1/coverage`.
pub async fn coverage(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Value>> {
    authorize(&state, &headers, &[Role::Lookup])?;
    let q: CoverageQuery =
        serde_json::from_slice(&body?).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let catalog = state.catalog();
    let isrc = match &q.isrc {
        Some(isrc) => Some(
            normalise_isrc(isrc)
                .ok_or_else(|| ApiError::bad_request(format!("{isrc:?} is not an ISRC")))?,
        ),
        None => None,
    };
    if q.track_id.is_none() && isrc.is_none() {
        return Err(ApiError::bad_request("give `track_id` or `isrc`"));
    }
    let track_id = match &state.cluster {
        Some(cluster) => {
            let query = TrackQuery {
                id: q.track_id.clone(),
                isrc,
                limit: 1,
                ..TrackQuery::default()
            };
            let found = cluster.lookup(&query).await.map_err(cluster_error)?;
            (found.tracks.first()).and_then(|t| t["id"].as_str().map(str::to_owned))
        }
        None => match &q.track_id {
            Some(id) => catalog.tracks().by_external_id(id),
            None => matching_tracks(&catalog, isrc.as_deref(), &[])
                .first()
                .copied(),
        }
        .map(|t| t.meta.external_id.clone()),
    }
    .ok_or_else(|| ApiError::not_found("no such track in the catalog"))?;
    let licences = match (&q.licence, &q.event) {
        (Some(id), _) => vec![
            (catalog.licences().iter())
                .find(|l| &l.id == id)
                .ok_or_else(|| ApiError::not_found(format!("no licence {id}")))?,
        ],
        (None, Some(event)) => catalog.licences_for(event),
        (None, None) => return Err(ApiError::bad_request("give `event` or `licence`")),
    };
    let time = |t: &Option<String>| {
        t.as_deref()
            .map(parse_time)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))
    };
    let (start, end) = (time(&q.start)?, time(&q.end)?);
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        return Err(ApiError::bad_request("`end` is before `start`"));
    }
    let heard = start.map(|start| Heard {
        start,
        end: end.unwrap_or(start),
    });
    let rights = catalog.rights().get(&track_id);
    let decision = decide(rights, heard, &licences);
    Ok(Json(json!({
        "track_id": track_id,
        "decision": decision,
    })))
}

/// `POST /v1/events/{id}/plays?source=LOG`: a monitor's log lines (JSON
/// Lines); plays already stored are not stored again.
pub async fn upload_plays(
    State(state): Shared,
    headers: HeaderMap,
    Path(event): Path<String>,
    query: Params,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Value>> {
    let key = authorize(&state, &headers, &[Role::Monitor])?;
    authorize_event(&key, &event)?;
    let query = params(query)?;
    let source = query
        .get("source")
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or_else(|| ApiError::bad_request("`source` names the log the plays come from"))?
        .clone();
    let body = body?;
    let mut events = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event: Event = serde_json::from_slice(line)
            .map_err(|e| ApiError::bad_request(format!("line {}: {e}", n + 1)))?;
        events.push(event);
    }
    let (shared, id) = (Arc::clone(&state), event.clone());
    let outcome = compute(&state, move || shared.plays.upload(&id, &source, &events))
        .await?
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({"event": event, "stored": outcome.stored, "unchanged": outcome.unchanged}),
    ))
}

/// `GET /v1/events/{id}/report?format=csv|json|html`.
pub async fn report(
    State(state): Shared,
    headers: HeaderMap,
    Path(event): Path<String>,
    query: Params,
) -> ApiResult<Response> {
    let key = authorize(&state, &headers, &[Role::Lookup, Role::Monitor])?;
    authorize_event(&key, &event)?;
    let query = params(query)?;
    let (format, content_type) = match query.get("format").map_or("json", String::as_str) {
        "json" => (ReportFormat::Json, "application/json"),
        "csv" => (ReportFormat::Csv, "text/csv; charset=utf-8"),
        "html" => (ReportFormat::Html, "text/html; charset=utf-8"),
        other => {
            return Err(ApiError::bad_request(format!(
                "format {other:?}: csv, json or html"
            )));
        }
    };
    let show = state
        .plays
        .show(&event)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("nothing uploaded for event {event}")))?;
    let catalog = state.catalog();
    let licensing =
        Licensing::select(&catalog, Some(&event), None, None).map_err(ApiError::internal)?;
    let sheet = CueSheet::new(&show, Some(&catalog), licensing.as_ref());
    let bytes = sheet.render(format).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

/// `GET /healthz`.
pub async fn healthz(State(state): Shared) -> Json<Value> {
    let catalog = state.catalog();
    Json(json!({"status": "ok", "tracks": catalog.tracks().len()}))
}

/// `GET /metrics`.
pub async fn metrics(State(state): Shared) -> ApiResult<Response> {
    state.metrics.index(&state.catalog());
    let text = state.metrics.text().map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::OPENAPI).into_response()
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

/// A known path with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /openapi.json",
    )
}
