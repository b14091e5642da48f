//! Prometheus metrics (`[metrics] listen`): requests, gateway sessions, federation queues and
//! failures by peer, store latency. Served on a listener of their own, never on the public
//! port, and off unless configured.
//!
//! The counters are process-wide (one registry per node, as Prometheus expects) and bounded:
//! requests are labelled by route pattern, never by raw path, and at most [`MAX_PEERS`]
//! peers get a series of their own.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// Peers with series of their own; failures towards any further peer count as `other`.
const MAX_PEERS: usize = 1000;

/// The registry of this process.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);
    &METRICS
}

/// What is counted.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `(method, route, status)` → requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Route → request durations.
    request_seconds: Mutex<BTreeMap<String, Histogram>>,
    /// Open gateway connections.
    gateway_sessions: AtomicI64,
    /// Peer → failed deliveries.
    federation_failures: Mutex<HashMap<String, u64>>,
    /// Store operation → durations.
    store_seconds: Mutex<BTreeMap<&'static str, Histogram>>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let separator = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

impl Metrics {
    fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        }
        if let Ok(mut seconds) = self.request_seconds.lock() {
            seconds.entry(route.to_owned()).or_default().observe(took.as_secs_f64());
        }
    }

    /// A gateway connection opened; it counts until the guard drops.
    pub fn gateway_session(&'static self) -> GatewaySession {
        self.gateway_sessions.fetch_add(1, Ordering::Relaxed);
        GatewaySession(self)
    }

    /// A delivery to `peer` failed.
    pub fn federation_failure(&self, peer: &str) {
        if let Ok(mut failures) = self.federation_failures.lock() {
            let key = if failures.contains_key(peer) || failures.len() < MAX_PEERS {
                peer.to_owned()
            } else {
                "other".to_owned()
            };
            *failures.entry(key).or_default() += 1;
        }
    }

    /// A store operation took `took`.
    pub fn store(&self, operation: &'static str, took: Duration) {
        if let Ok(mut seconds) = self.store_seconds.lock() {
            seconds.entry(operation).or_default().observe(took.as_secs_f64());
        }
    }

    /// The text exposition format, with the queue depths read now.
    fn render(&self, queues: &[(String, i64, i64)]) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP guildhall_http_requests_total HTTP requests by route pattern and status.\n",
        );
        out.push_str("# TYPE guildhall_http_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((method, route, status), count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "guildhall_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP guildhall_http_request_duration_seconds HTTP request durations.\n");
        out.push_str("# TYPE guildhall_http_request_duration_seconds histogram\n");
        if let Ok(seconds) = self.request_seconds.lock() {
            for (route, histogram) in seconds.iter() {
                let labels = format!("route=\"{}\"", escape(route));
                histogram.render(&mut out, "guildhall_http_request_duration_seconds", &labels);
            }
        }
        out.push_str("# HELP guildhall_gateway_sessions Open gateway connections on this node.\n");
        out.push_str("# TYPE guildhall_gateway_sessions gauge\n");
        let _ = writeln!(
            out,
            "guildhall_gateway_sessions {}",
            self.gateway_sessions.load(Ordering::Relaxed)
        );
        out.push_str("# HELP guildhall_federation_queue_events Events queued for a peer.\n");
        out.push_str("# TYPE guildhall_federation_queue_events gauge\n");
        for (peer, events, _) in queues {
            let _ = writeln!(
                out,
                "guildhall_federation_queue_events{{peer=\"{}\"}} {events}",
                escape(peer)
            );
        }
        out.push_str("# HELP guildhall_federation_queue_proposals Proposals queued for a host.\n");
        out.push_str("# TYPE guildhall_federation_queue_proposals gauge\n");
        for (peer, _, proposals) in queues {
            let _ = writeln!(
                out,
                "guildhall_federation_queue_proposals{{peer=\"{}\"}} {proposals}",
                escape(peer)
            );
        }
        out.push_str("# HELP guildhall_federation_failures_total Failed deliveries by peer.\n");
        out.push_str("# TYPE guildhall_federation_failures_total counter\n");
        if let Ok(failures) = self.federation_failures.lock() {
            let sorted: BTreeMap<_, _> = failures.iter().collect();
            for (peer, count) in sorted {
                let _ = writeln!(
                    out,
                    "guildhall_federation_failures_total{{peer=\"{}\"}} {count}",
                    escape(peer)
                );
            }
        }
        out.push_str("# HELP guildhall_store_duration_seconds Store operation durations.\n");
        out.push_str("# TYPE guildhall_store_duration_seconds histogram\n");
        if let Ok(seconds) = self.store_seconds.lock() {
            for (operation, histogram) in seconds.iter() {
                let labels = format!("operation=\"{operation}\"");
                histogram.render(&mut out, "guildhall_store_duration_seconds", &labels);
            }
        }
        out
    }
}

/// An open gateway connection, counted until dropped.
#[derive(Debug)]
pub struct GatewaySession(&'static Metrics);

impl Drop for GatewaySession {
    fn drop(&mut self) {
        self.0.gateway_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Counts a request by its route pattern (`/api/v1/channels/{channel_id}/messages`; requests
/// that match no route count as `unmatched`).
pub async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    // Any token is a method to HTTP: only the ones the API uses get a series of their own.
    let method = match request.method().as_str() {
        method @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => method,
        _ => "other",
    }
    .to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    global().request(&method, &route, response.status().as_u16(), started.elapsed());
    response
}

/// `GET /metrics` on the metrics listener.
pub async fn scrape(State(state): State<AppState>) -> Response {
    let started = std::time::Instant::now();
    let queues = state.store.outbound_queue_sizes().await;
    global().store("outbound_queue_sizes", started.elapsed());
    let queues = match queues {
        Ok(queues) => queues,
        Err(error) => {
            tracing::warn!(%error, "reading queue depths for metrics");
            Vec::new()
        }
    };
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], global().render(&queues))
        .into_response()
}

/// The metrics listener's routes.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(scrape)).with_state(state)
}
