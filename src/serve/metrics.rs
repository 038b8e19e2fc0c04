//! The service's figures in Prometheus text format: requests, latencies,
//! index size and identification outcomes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use earmark_index::Catalog;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type Latencies = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The registry and the handles requests update.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Latencies,
    identifications: Family<ResultLabels, Counter>,
    tracks: Gauge,
    bytes: Gauge,
    postings: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("earmark");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let latency: Latencies = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request",
            latency.clone(),
        );
        let identifications = Family::<ResultLabels, Counter>::default();
        registry.register(
            "identifications",
            "Clips identified, by result (match, no_match)",
            identifications.clone(),
        );
        let tracks = Gauge::default();
        registry.register("index_tracks", "Tracks in the catalog", tracks.clone());
        let bytes = Gauge::default();
        registry.register("index_bytes", "Catalog bytes on disk", bytes.clone());
        let postings = Gauge::default();
        registry.register(
            "index_postings",
            "Hash postings in the catalog",
            postings.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            identifications,
            tracks,
            bytes,
            postings,
        }
    }

    /// Counts a request to `route` answered with `status` in `seconds`.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts an identification.
    pub fn identified(&self, matched: bool) {
        let result = if matched { "match" } else { "no_match" };
        self.identifications
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Records the size of the catalog now served.
    pub fn index(&self, catalog: &Catalog) {
        let info = catalog.info();
        self.tracks.set(info.tracks as i64);
        self.bytes.set(info.bytes_on_disk as i64);
        self.postings.set(info.postings as i64);
    }

    /// Every metric in Prometheus text format.
    pub fn text(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
