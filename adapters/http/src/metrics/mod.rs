//! Prometheus metrics in the text exposition format: HTTP request counts and latency, recorded
//! by a middleware, plus figures that sources compute at scrape time (sagas by state, outbox
//! backlog, bus counters), so they are true after a restart too.

mod exposition;
mod sources;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ordership_application::monitoring::Histogram;

pub use exposition::{Family, Kind, MetricSource, Samples};
pub use sources::{
    HandlerLatency, OutboxBacklog, RelayLatency, SagaStates, SlotLag, WaitingRoomFigures,
};

#[derive(Debug, Default)]
struct HttpTables {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
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

/// The method as a label: the standard methods by name, anything else `other`, so that a client
/// cannot grow the series (and `/metrics`) at will.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::TRACE => "TRACE",
        M::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Middleware: counts and times every request by its route template (not its raw path, which
/// would make one series per order id).
pub(crate) async fn track(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
