//! Prometheus metrics in the text exposition format: HTTP request counts and latency, recorded
//! by a middleware, plus figures that sources compute at scrape time (sagas by state, outbox
//! backlog, bus counters), so they are true after a restart too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ordership_application::monitoring::{
    HandlerMetrics, Histogram, HistogramSnapshot, RelayMetrics,
};
use std::sync::atomic::Ordering;

type Labels = Vec<(&'static str, String)>;

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
    Histogram,
}

/// The samples of a family: plain values, or histograms.
#[derive(Debug, Clone)]
pub enum Samples {
    Values(Vec<(Labels, f64)>),
    Histograms(Vec<(Labels, HistogramSnapshot)>),
}

/// One metric family computed by a [`MetricSource`].
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Samples,
}

impl Family {
    #[must_use]
    pub const fn counter(
        name: &'static str,
        help: &'static str,
        samples: Vec<(Labels, f64)>,
    ) -> Self {
        Self {
            name,
            help,
            kind: Kind::Counter,
            samples: Samples::Values(samples),
        }
    }

    #[must_use]
    pub const fn gauge(
        name: &'static str,
        help: &'static str,
        samples: Vec<(Labels, f64)>,
    ) -> Self {
        Self {
            name,
            help,
            kind: Kind::Gauge,
            samples: Samples::Values(samples),
        }
    }

    #[must_use]
    pub const fn histogram(
        name: &'static str,
        help: &'static str,
        samples: Vec<(Labels, HistogramSnapshot)>,
    ) -> Self {
        Self {
            name,
            help,
            kind: Kind::Histogram,
            samples: Samples::Histograms(samples),
        }
    }

    /// Appends the family in the text exposition format.
    fn render(&self, out: &mut String) {
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
        match &self.samples {
            Samples::Values(samples) => {
                for (l, v) in samples {
                    let _ = writeln!(out, "{}{} {v}", self.name, labels(l));
                }
            }
            Samples::Histograms(samples) => {
                for (l, h) in samples {
                    let bounds = h
                        .buckets
                        .iter()
                        .map(|(bound, n)| (bound.to_string(), *n))
                        .chain([("+Inf".to_owned(), h.count)]);
                    for (le, n) in bounds {
                        let mut with_le = l.clone();
                        with_le.push(("le", le));
                        let _ = writeln!(out, "{}_bucket{} {n}", self.name, labels(&with_le));
                    }
                    let _ = writeln!(out, "{}_sum{} {}", self.name, labels(l), h.sum_seconds);
                    let _ = writeln!(out, "{}_count{} {}", self.name, labels(l), h.count);
                }
            }
        }
    }
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

    fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        *http
            .requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        http.latency
            .entry((method.to_owned(), route.to_owned()))
            .or_default()
            .observe(elapsed);
    }

    /// The whole exposition, HTTP metrics first.
    pub async fn render(&self) -> String {
        let http = {
            let http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
            [
                Family::counter(
                    "http_requests_total",
                    "HTTP requests by method, route and status.",
                    http.requests
                        .iter()
                        .map(|((method, route, status), n)| {
                            let l = vec![
                                ("method", method.clone()),
                                ("route", route.clone()),
                                ("status", status.to_string()),
                            ];
                            (l, *n as f64)
                        })
                        .collect(),
                ),
                Family::histogram(
                    "http_request_duration_seconds",
                    "HTTP request latency.",
                    http.latency
                        .iter()
                        .map(|((method, route), h)| {
                            let l = vec![("method", method.clone()), ("route", route.clone())];
                            (l, h.snapshot())
                        })
                        .collect(),
                ),
            ]
        };
        let mut families: Vec<Family> = http.into();
        for source in &self.sources {
            for family in source.collect().await {
                // Sources of two services may report the same family: one family, all samples.
                match families.iter_mut().find(|f| f.name == family.name) {
                    Some(known) => match (&mut known.samples, family.samples) {
                        (Samples::Values(all), Samples::Values(more)) => all.extend(more),
                        (Samples::Histograms(all), Samples::Histograms(more)) => all.extend(more),
                        _ => tracing::warn!(name = family.name, "metric family of two kinds"),
                    },
                    None => families.push(family),
                }
            }
        }
        let mut out = String::new();
        for family in &families {
            family.render(&mut out);
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
        started.elapsed(),
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
            Ok(counts) => vec![Family::gauge(
                "ordership_sagas",
                "Fulfilment sagas by state (completed/compensated/failed are outcomes).",
                counts
                    .into_iter()
                    .map(|(state, n)| (vec![("state", state.as_str().to_owned())], n as f64))
                    .collect(),
            )],
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
                    Family::gauge(
                        "ordership_outbox_pending",
                        "Outbox messages not yet published.",
                        vec![(label(), stats.pending as f64)],
                    ),
                    Family::gauge(
                        "ordership_outbox_parked",
                        "Outbox messages the broker refused for good, set aside with their reason.",
                        vec![(label(), stats.parked as f64)],
                    ),
                    Family::gauge(
                        "ordership_outbox_oldest_pending_age_seconds",
                        "Age of the oldest unpublished outbox message.",
                        vec![(label(), age)],
                    ),
                ]
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read outbox stats for metrics");
                Vec::new()
            }
        }
    }
}

/// What an outbox relay published, and how fast.
pub struct RelayLatency {
    pub service: &'static str,
    pub metrics: Arc<RelayMetrics>,
}

#[async_trait]
impl MetricSource for RelayLatency {
    async fn collect(&self) -> Vec<Family> {
        let label = || vec![("service", self.service.to_owned())];
        vec![
            Family::counter(
                "ordership_relay_published_total",
                "Outbox messages the broker acknowledged.",
                vec![(
                    label(),
                    self.metrics.published.load(Ordering::Relaxed) as f64,
                )],
            ),
            Family::histogram(
                "ordership_relay_lag_seconds",
                "From a message's creation to the broker's acknowledgement.",
                vec![(label(), self.metrics.lag.snapshot())],
            ),
            Family::histogram(
                "ordership_relay_publish_seconds",
                "Broker round trip of one outbox batch, first send to last acknowledgement.",
                vec![(label(), self.metrics.publish.snapshot())],
            ),
        ]
    }
}

/// How long one consumer's handler takes, and what it did.
pub struct HandlerLatency {
    pub consumer: &'static str,
    pub metrics: Arc<HandlerMetrics>,
}

#[async_trait]
impl MetricSource for HandlerLatency {
    async fn collect(&self) -> Vec<Family> {
        let label = || vec![("consumer", self.consumer.to_owned())];
        let count =
            |n: &std::sync::atomic::AtomicU64| vec![(label(), n.load(Ordering::Relaxed) as f64)];
        vec![
            Family::histogram(
                "ordership_consumer_handle_seconds",
                "Time to handle one message (one attempt, in its own transaction).",
                vec![(label(), self.metrics.latency.snapshot())],
            ),
            Family::counter(
                "ordership_messages_handled_total",
                "Messages consumers handled, duplicates included.",
                count(&self.metrics.handled),
            ),
            Family::counter(
                "ordership_inbox_duplicates_discarded_total",
                "Duplicates the inbox acknowledged without effect.",
                count(&self.metrics.duplicates_discarded),
            ),
            Family::counter(
                "ordership_consumer_failures_total",
                "Handler attempts that failed (retried or dead-lettered by the transport).",
                count(&self.metrics.failed),
            ),
        ]
    }
}

/// `ordership_cdc_slot_lag_bytes{service}`: how far the CDC relay's replication slot trails the
/// write-ahead log (the log the server must keep for it).
pub struct SlotLag {
    pub service: &'static str,
    pub feed: Arc<dyn ordership_domain::ports::OutboxFeed>,
}

#[async_trait]
impl MetricSource for SlotLag {
    async fn collect(&self) -> Vec<Family> {
        match self.feed.lag_bytes().await {
            Ok(lag) => vec![Family::gauge(
                "ordership_cdc_slot_lag_bytes",
                "Write-ahead log the CDC relay's replication slot has not confirmed yet.",
                vec![(vec![("service", self.service.to_owned())], lag as f64)],
            )],
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the replication slot's lag");
                Vec::new()
            }
        }
    }
}
