//! Prometheus metrics in the text exposition format: HTTP request counts and latency, recorded
//! by a middleware, plus figures that sources compute at scrape time (sagas by state, outbox
//! backlog, bus counters), so they are true after a restart too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

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
}

#[derive(Debug, Default)]
struct HttpTables {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
}

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family computed by a [`MetricSource`].
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// Computes metric families at scrape time.
#[async_trait]
pub trait MetricSource: Send + Sync {
    async fn collect(&self) -> Vec<Family>;
}

/// The metrics of one process.
#[derive(Default)]
pub struct Metrics {
    http: Mutex<HttpTables>,
    sources: Vec<Arc<dyn MetricSource>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("sources", &self.sources.len())
            .finish_non_exhaustive()
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    #[must_use]
    pub fn new(sources: Vec<Arc<dyn MetricSource>>) -> Self {
        Self {
            http: Mutex::default(),
            sources,
        }
    }

    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        *http
            .requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        http.latency
            .entry((method.to_owned(), route.to_owned()))
            .or_default()
            .observe(seconds);
    }

    /// The whole exposition, HTTP metrics first.
    pub async fn render(&self) -> String {
        let mut out = String::new();
        {
            let http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
            out.push_str("# HELP http_requests_total HTTP requests by method, route and status.\n");
            out.push_str("# TYPE http_requests_total counter\n");
            for ((method, route, status), n) in &http.requests {
                let l = labels(&[
                    ("method", method.clone()),
                    ("route", route.clone()),
                    ("status", status.to_string()),
                ]);
                let _ = writeln!(out, "http_requests_total{l} {n}");
            }
            out.push_str("# HELP http_request_duration_seconds HTTP request latency.\n");
            out.push_str("# TYPE http_request_duration_seconds histogram\n");
            for ((method, route), h) in &http.latency {
                let base = [("method", method.clone()), ("route", route.clone())];
                for (bound, count) in BUCKETS.iter().zip(h.counts) {
                    let mut with_le = base.to_vec();
                    with_le.push(("le", bound.to_string()));
                    let _ = writeln!(
                        out,
                        "http_request_duration_seconds_bucket{} {count}",
                        labels(&with_le)
                    );
                }
                let mut inf = base.to_vec();
                inf.push(("le", "+Inf".to_owned()));
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{} {}",
                    labels(&inf),
                    h.count
                );
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_sum{} {}",
                    labels(&base),
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_count{} {}",
                    labels(&base),
                    h.count
                );
            }
        }
        for source in &self.sources {
            for family in source.collect().await {
                let kind = match family.kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                };
                let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
                let _ = writeln!(out, "# TYPE {} {kind}", family.name);
                for (l, v) in &family.samples {
                    let _ = writeln!(out, "{}{} {v}", family.name, labels(l));
                }
            }
        }
        out
    }
}

/// Middleware: counts and times every request by its route template (not its raw path, which
/// would make one series per order id).
pub(crate) async fn track(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `ordership_sagas{state}`: sagas by state, from the order store.
pub struct SagaStates(
    pub Arc<dyn ordership_domain::ports::UnitOfWork<dyn ordership_domain::ports::OrderTransaction>>,
);

#[async_trait]
impl MetricSource for SagaStates {
    async fn collect(&self) -> Vec<Family> {
        match ordership_application::monitoring::saga_counts(self.0.as_ref()).await {
            Ok(counts) => vec![Family {
                name: "ordership_sagas",
                help: "Fulfilment sagas by state (completed/compensated/failed are outcomes).",
                kind: Kind::Gauge,
                samples: counts
                    .into_iter()
                    .map(|(state, n)| (vec![("state", state.as_str().to_owned())], n as f64))
                    .collect(),
            }],
            Err(e) => {
                tracing::warn!(error = %e, "cannot read saga counts for metrics");
                Vec::new()
            }
        }
    }
}

/// `ordership_outbox_pending{service}` and the age of the oldest pending message.
pub struct OutboxBacklog<Tx: ?Sized> {
    pub service: &'static str,
    pub uow: Arc<dyn ordership_domain::ports::UnitOfWork<Tx>>,
    pub clock: Arc<dyn ordership_domain::ports::Clock>,
}

#[async_trait]
impl<Tx: ?Sized + ordership_domain::ports::Transaction + 'static> MetricSource
    for OutboxBacklog<Tx>
{
    async fn collect(&self) -> Vec<Family> {
        match ordership_application::monitoring::outbox_stats(self.uow.as_ref()).await {
            Ok(stats) => {
                let label = || vec![("service", self.service.to_owned())];
                let age = stats.oldest_pending_at.map_or(0.0, |at| {
                    (self.clock.now() - at).num_milliseconds().max(0) as f64 / 1000.0
                });
                vec![
                    Family {
                        name: "ordership_outbox_pending",
                        help: "Outbox messages not yet published.",
                        kind: Kind::Gauge,
                        samples: vec![(label(), stats.pending as f64)],
                    },
                    Family {
                        name: "ordership_outbox_parked",
                        help: "Outbox messages the broker refused for good, set aside with their reason.",
                        kind: Kind::Gauge,
                        samples: vec![(label(), stats.parked as f64)],
                    },
                    Family {
                        name: "ordership_outbox_oldest_pending_age_seconds",
                        help: "Age of the oldest unpublished outbox message.",
                        kind: Kind::Gauge,
                        samples: vec![(label(), age)],
                    },
                ]
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read outbox stats for metrics");
                Vec::new()
            }
        }
    }
}
