//! `earmark serve`: the society's HTTP API (axum on tokio).
//!
//! Readers share the catalog of the last published manifest; adding a track
//! commits a new manifest and swaps the shared catalog, so a request sees
//! either the old catalog or the new one, never half of it. A watcher reopens
//! the catalog when another process publishes one, and rereads the API keys
//! when `earmark keys` changes them.

mod error;
mod metrics;
mod plays;
pub(crate) mod routes;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Mutex, Semaphore};
use tower::limit::ConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use earmark_engine::fingerprint::SCHEME;
use earmark_index::{Catalog, CatalogWriter};

use crate::Outcome;
use crate::cli::ServeArgs;
use crate::cluster::gateway::Gateway;
use crate::keys::KeyStore;
use metrics::Metrics;
use plays::PlayStore;

/// The OpenAPI document of the routes below.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Limits on what one request may ask.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest clip `identify` takes, in seconds.
    pub max_clip_s: f64,
    /// Largest request body, in bytes.
    pub max_body: usize,
}

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    db: PathBuf,
    catalog: RwLock<Arc<Catalog>>,
    keys: RwLock<Arc<KeyStore>>,
    plays: PlayStore,
    metrics: Metrics,
    /// One permit per core for CPU-bound work.
    cpu: Semaphore,
    /// Held while a track is being added.
    adding: Mutex<()>,
    limits: Limits,
    /// The shards, when this is a cluster's gateway.
    cluster: Option<Gateway>,
}

impl AppState {
    /// Opens the catalog, keys and play store of `db`.
    pub fn open(db: &Path, limits: Limits) -> anyhow::Result<Self> {
        let db = &db
            .canonicalize()
            .with_context(|| format!("{}", db.display()))?;
        let catalog = Catalog::open_for(db, SCHEME)?;
        let keys = KeyStore::read(db)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let metrics = Metrics::new();
        metrics.index(&catalog);
        Ok(Self {
            db: db.to_owned(),
            catalog: RwLock::new(Arc::new(catalog)),
            keys: RwLock::new(Arc::new(keys)),
            plays: PlayStore::new(db.join("events")),
            metrics,
            cpu: Semaphore::new(cores),
            adding: Mutex::new(()),
            limits,
            cluster: None,
        })
    }

    /// The catalog directory.
    pub fn db(&self) -> &Path {
        &self.db
    }

    /// The catalog as last published.
    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The API keys as last read.
    pub fn keys(&self) -> Arc<KeyStore> {
        match self.keys.read() {
            Ok(k) => Arc::clone(&k),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reopens the catalog from its manifest.
    pub fn reload(&self) -> anyhow::Result<()> {
        let catalog = Arc::new(Catalog::open_for(&self.db, SCHEME)?);
        self.metrics.index(&catalog);
        match self.catalog.write() {
            Ok(mut c) => *c = catalog,
            Err(poisoned) => *poisoned.into_inner() = catalog,
        }
        Ok(())
    }

    fn reload_keys(&self) -> anyhow::Result<()> {
        let keys = Arc::new(KeyStore::read(&self.db)?);
        match self.keys.write() {
            Ok(mut k) => *k = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
        Ok(())
    }
}

/// The router with every route and limit.
pub fn router(state: Arc<AppState>, concurrency: usize, timeout: Duration) -> Router {
    let body_limit = state.limits.max_body;
    Router::new()
        .route("/v1/identify", post(routes::identify))
        .route("/v1/tracks", get(routes::tracks).post(routes::add_track))
        .route("/v1/tracks/{id}", get(routes::track))
        .route("/v1/coverage", post(routes::coverage))
        .route("/v1/events/{id}/plays", post(routes::upload_plays))
        .route("/v1/events/{id}/report", get(routes::report))
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            refuse_oversized,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(ConcurrencyLimitLayer::new(concurrency))
        .with_state(state)
}

/// Refuses a body whose announced length is over the limit before reading
/// any of it.
async fn refuse_oversized(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > state.limits.max_body as u64) {
        return error::ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "bodies are limited to {} MiB",
                state.limits.max_body / (1024 * 1024)
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Counts every request and its latency by route.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", MatchedPath::as_str)
        .to_owned();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// When a file last changed, to notice replacements.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reopens the catalog and rereads the keys when other processes change
/// them.
async fn watch(state: Arc<AppState>) {
    let manifest = Catalog::manifest_path(&state.db);
    let keys = KeyStore::path(&state.db);
    let (mut seen_manifest, mut seen_keys) = (stamp(&manifest), stamp(&keys));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let (now_manifest, now_keys) = (stamp(&manifest), stamp(&keys));
        if now_manifest != seen_manifest {
            match state.reload() {
                Ok(()) => seen_manifest = now_manifest,
                Err(e) => eprintln!("earmark serve: catalog not reloaded: {e:#}"),
            }
        }
        if now_keys != seen_keys {
            match state.reload_keys() {
                Ok(()) => seen_keys = now_keys,
                Err(e) => eprintln!("earmark serve: keys not reloaded: {e:#}"),
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// `earmark serve`.
pub fn run(args: &ServeArgs) -> anyhow::Result<Outcome> {
    crate::cpu::keep_freed_memory();
    if args.gateway || args.shard.is_some() {
        CatalogWriter::open(&args.db, SCHEME)?.ensure_published()?;
    }
    let mut state = AppState::open(
        &args.db,
        Limits {
            max_clip_s: args.max_clip_s,
            max_body: args.max_body_mb * 1024 * 1024,
        },
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        if let Some(shard) = args.shard {
            let replica = args
                .replica
                .clone()
                .unwrap_or_else(|| replica_name(&state.db));
            let state = Arc::new(state);
            tokio::spawn(watch(Arc::clone(&state)));
            crate::cluster::shard::run(state, &args.cluster.nats, shard, &replica).await?;
            return Ok(Outcome::Done);
        }
        if let Some(shards) = args.shards {
            state.cluster = Some(args.cluster.gateway(shards).await?);
        }
        let state = Arc::new(state);
        if state.keys().keys().is_empty() {
            eprintln!(
                "earmark serve: no API keys yet: every /v1 request is refused until \
                 `earmark keys add --db {} --role admin` makes one",
                args.db.display()
            );
        }
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        match &state.cluster {
            Some(cluster) => eprintln!(
                "earmark serve: gateway to {} shards on {}, listening on http://{address}",
                cluster.shards(),
                args.cluster.nats
            ),
            None => eprintln!(
                "earmark serve: {} tracks from {}, listening on http://{address}",
                state.catalog().tracks().len(),
                args.db.display()
            ),
        }
        tokio::spawn(watch(Arc::clone(&state)));
        let app = router(
            Arc::clone(&state),
            args.concurrency,
            Duration::from_secs_f64(args.timeout_s),
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
            .context("serving")?;
        eprintln!("earmark serve: stopped");
        Ok(Outcome::Done)
    })
}

/// A replica's default name: the host and a hash of its catalog directory.
fn replica_name(db: &Path) -> String {
    let dir = blake3::hash(db.as_os_str().as_encoded_bytes()).to_hex();
    format!("{}-{}", crate::cluster::host_name(), &dir[..12])
}
