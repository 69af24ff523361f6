//! # ordership-http
//!
//! The driving HTTP adapter (axum): the REST API of the order and delivery services with the
//! JSON contract of the design, RFC 9457 problem details for every error, `Idempotency-Key`
//! support, request-id / tracing / timeout / body-limit layers, health and Prometheus metrics,
//! and an OpenAPI 3.1 document generated from the handlers, shown by a Scalar reference page.
//!
//! Only this crate knows HTTP status codes and JSON DTOs; it calls the application's use cases
//! and nothing else.

pub mod auth;
mod deliveries;
mod docs;
pub mod dto;
mod extract;
mod fair_use;
mod health;
mod metrics;
mod openapi;
mod ops;
mod orders;
mod prefer;
pub mod problem;
mod refusals;
mod responses;
pub mod sagas;
pub mod waiting_room;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ordership_application::{
    DeliveryService, OrderService, OrderUpdates, SagaOperations, Shutdown, WaitingRoomService,
};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::auth::Authenticator;

pub use docs::SCALAR_VERSION;
pub use extract::IDEMPOTENCY_KEY;
pub use fair_use::{ClientAddr, FairUse, RATE_LIMIT, RATE_LIMIT_POLICY};
pub use health::{HealthCheck, StoreCheck, WaitingRoomCheck};
pub use metrics::{
    Family, HandlerLatency, Kind, MetricSource, Metrics, OutboxBacklog, RelayLatency, SagaStates,
    Samples, SlotLag, WaitingRoomFigures,
};
pub use orders::events::OrderUpdateEvent;
pub use orders::{ADMISSION_TOKEN, REPLAYED};
pub use problem::{ApiError, PROBLEM_JSON, Problem};
pub use waiting_room::QUEUE_TOKEN;

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// A request still running after this is answered with 503 (the server took too long); a
    /// request with `Prefer: wait=N` gets N seconds more.
    pub request_timeout: Duration,
    /// A request body from which nothing arrives for this long is answered with 408 (the client
    /// stalled) and its connection closed. Keep it below `request_timeout`, or the stall is
    /// answered as the server's fault.
    pub body_timeout: Duration,
    /// Larger bodies are refused with 413.
    pub body_limit: usize,
    /// Web origins (`https://shop.example`) whose pages may call the API from a browser. Empty
    /// (the default): none, and browsers keep cross-origin pages from reading any answer.
    pub cors_origins: Vec<HeaderValue>,
    /// How many waiting-room event streams this instance keeps open at once (each asks the
    /// queue every second); beyond it, 503 with `Retry-After` (buyers can still poll).
    pub max_room_streams: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(5),
            body_limit: 64 * 1024,
            cors_origins: Vec::new(),
            max_room_streams: 10_000,
        }
    }
}

/// CORS for the configured origins only: bearer tokens in the `Authorization` header, never
/// cookies (credentials are not allowed).
fn cors(origins: &[HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(IDEMPOTENCY_KEY),
            HeaderName::from_static(ADMISSION_TOKEN),
            HeaderName::from_static(QUEUE_TOKEN),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("traceparent"),
            HeaderName::from_static("prefer"),
            header::IF_NONE_MATCH,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::LOCATION,
            header::RETRY_AFTER,
            HeaderName::from_static(REPLAYED),
            HeaderName::from_static(prefer::PREFERENCE_APPLIED),
            header::ETAG,
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(600))
}

/// Assembles the API of the services this process runs.
#[derive(Default)]
pub struct ApiBuilder {
    orders: Option<orders::Orders>,
    sagas: Option<SagaOperations>,
    deliveries: Option<DeliveryService>,
    waiting_rooms: Option<WaitingRoomService>,
    shutdown: Option<Shutdown>,
    checks: Vec<Arc<dyn HealthCheck>>,
    metric_sources: Vec<Arc<dyn MetricSource>>,
    authenticator: Option<Arc<Authenticator>>,
    fair_use: FairUse,
    config: HttpConfig,
}

/// A client's `x-request-id` is kept (and echoed) only if it is 1–64 characters of letters,
/// digits, `-`, `_` or `.`; anything else is dropped and a fresh id is made, so neither logs nor
/// responses carry what a client smuggled in.
fn drop_invalid_request_id<B>(mut request: Request<B>) -> Request<B> {
    let valid = request.headers().get("x-request-id").map(|value| {
        let bytes = value.as_bytes();
        (1..=64).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    });
    if valid == Some(false) {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// Answers 503 for a request still running after the request timeout, plus the wait it asked
/// for with `Prefer: wait` (a long poll is meant to take that long).
async fn limit_time(
    State(timeout): State<Duration>,
    request: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let limit = timeout + prefer::preferred_wait(request.headers()).unwrap_or_default();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

impl std::fmt::Debug for ApiBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiBuilder")
            .field("orders", &self.orders.is_some())
            .field("deliveries", &self.deliveries.is_some())
            .field("waiting_rooms", &self.waiting_rooms.is_some())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ApiBuilder {
    #[must_use]
    pub fn new(config: HttpConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Serves the order service; `updates` follows orders for event streams and long polls.
    #[must_use]
    pub fn orders(mut self, orders: OrderService, updates: OrderUpdates) -> Self {
        self.orders = Some(orders::Orders {
            service: orders,
            updates,
        });
        self
    }

    /// Per-customer quotas and load shedding (off by default), with their metrics.
    #[must_use]
    pub fn fair_use(mut self, fair_use: FairUse) -> Self {
        if fair_use.is_on() {
            self.metric_sources.push(Arc::new(fair_use.clone()));
        }
        self.fair_use = fair_use;
        self
    }

    /// Serves the saga operations (operators only).
    #[must_use]
    pub fn sagas(mut self, operations: SagaOperations) -> Self {
        self.sagas = Some(operations);
        self
    }

    #[must_use]
    pub fn deliveries(mut self, deliveries: DeliveryService) -> Self {
        self.deliveries = Some(deliveries);
        self
    }

    /// Serves the waiting rooms (give the order service the same rooms, so it gates their SKUs).
    #[must_use]
    pub fn waiting_rooms(mut self, waiting_rooms: WaitingRoomService) -> Self {
        self.waiting_rooms = Some(waiting_rooms);
        self
    }

    /// Long-lived responses (the waiting rooms' event streams) end when this is requested, so
    /// that a graceful shutdown does not wait for them.
    #[must_use]
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// How bearer tokens are verified. Without one, every operation that needs a token fails.
    #[must_use]
    pub fn authenticator(mut self, authenticator: Arc<Authenticator>) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    #[must_use]
    pub fn check(mut self, check: Arc<dyn HealthCheck>) -> Self {
        self.checks.push(check);
        self
    }

    #[must_use]
    pub fn metric_source(mut self, source: Arc<dyn MetricSource>) -> Self {
        self.metric_sources.push(source);
        self
    }

    /// Adds several metric sources.
    #[must_use]
    pub fn metric_sources(
        mut self,
        sources: impl IntoIterator<Item = Arc<dyn MetricSource>>,
    ) -> Self {
        self.metric_sources.extend(sources);
        self
    }

    /// The OpenAPI document of the endpoints this builder will serve.
    #[must_use]
    pub fn openapi(&self) -> utoipa::openapi::OpenApi {
        openapi::document(
            self.orders.is_some(),
            self.deliveries.is_some(),
            self.waiting_rooms.is_some(),
        )
    }

    /// The router, with every layer.
    pub fn build(self) -> Router {
        let doc = self.openapi();
        let openapi_json: Arc<str> = openapi::to_json(&doc).into();
        let metrics = Arc::new(Metrics::new(self.metric_sources));
        let mut router = ops::routes(ops::Ops {
            checks: Arc::new(self.checks),
            metrics: Arc::clone(&metrics),
            openapi_json: Arc::clone(&openapi_json),
        })
        .merge(docs::routes(&openapi_json));
        if let Some(orders) = self.orders {
            router = router.merge(orders::routes(orders));
        }
        if let Some(operations) = self.sagas {
            router = router.merge(sagas::routes(operations));
        }
        if let Some(deliveries) = self.deliveries {
            router = router.merge(deliveries::routes(deliveries));
        }
        if let Some(rooms) = self.waiting_rooms {
            router = router.merge(waiting_room::routes(waiting_room::Rooms {
                rooms,
                shutdown: self.shutdown,
                streams: Arc::new(waiting_room::StreamSlots::new(self.config.max_room_streams)),
            }));
        }
        if let Some(authenticator) = self.authenticator {
            router = router.layer(axum::Extension(authenticator));
        }
        router = router.layer(axum::Extension(Arc::new(self.fair_use)));
        let router = router
            .fallback(|| async { ApiError::NoRoute })
            .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
            .layer(DefaultBodyLimit::max(self.config.body_limit))
            .layer(RequestBodyTimeoutLayer::new(self.config.body_timeout))
            .layer(axum::middleware::from_fn_with_state(
                self.config.request_timeout,
                limit_time,
            ))
            // Outside the timeout, so that requests that time out are counted too.
            .layer(axum::middleware::from_fn_with_state(
                metrics,
                metrics::track,
            ))
            .layer(
                ServiceBuilder::new()
                    .map_request(drop_invalid_request_id)
                    .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                    .layer(
                        TraceLayer::new_for_http()
                            // Server errors are logged where they happen, with their cause
                            // (`ApiError`); a readiness 503 during an outage is not an error.
                            .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG))
                            .make_span_with(|request: &Request<_>| {
                                let request_id = request
                                    .headers()
                                    .get("x-request-id")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default();
                                let span = tracing::info_span!("http",
                            otel.name = %format!("{} {}", request.method(), request.uri().path()),
                            otel.kind = "server", method = %request.method(), uri = %request.uri(),
                            request_id);
                                // A caller's trace goes on through this request (W3C Trace Context).
                                let traceparent = request
                                    .headers()
                                    .get("traceparent")
                                    .and_then(|v| v.to_str().ok());
                                ordership_application::trace::continue_from(&span, traceparent);
                                span
                            }),
                    )
                    .layer(PropagateRequestIdLayer::x_request_id()),
            );
        // Outermost, so that preflights are answered whatever route and method they name.
        if self.config.cors_origins.is_empty() {
            router
        } else {
            router.layer(cors(&self.config.cors_origins))
        }
    }
}
