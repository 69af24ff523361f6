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
mod health;
mod metrics;
mod ops;
mod orders;
pub mod problem;
pub mod waiting_room;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use ordership_application::{DeliveryService, OrderService, Shutdown, WaitingRoomService};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

use crate::auth::Authenticator;

pub use docs::SCALAR_VERSION;
pub use extract::IDEMPOTENCY_KEY;
pub use health::{HealthCheck, StoreCheck, WaitingRoomCheck};
pub use metrics::{
    Family, HandlerLatency, Kind, MetricSource, Metrics, OutboxBacklog, RelayLatency, SagaStates,
    Samples, SlotLag, WaitingRoomFigures,
};
pub use orders::{ADMISSION_TOKEN, REPLAYED};
pub use problem::{ApiError, PROBLEM_JSON, Problem};
pub use waiting_room::QUEUE_TOKEN;

#[derive(OpenApi)]
#[openapi(
    info(title = "ordership", description = "Orders and deliveries kept consistent by an orchestrated saga, a transactional outbox and idempotent consumers."),
    paths(ops::live, ops::ready, ops::metrics),
    components(schemas(Problem, problem::FieldError)),
    tags((name = "orders", description = "The order service"),
        (name = "deliveries", description = "The delivery service"),
        (name = "operations", description = "Health and metrics")),
)]
struct BaseDoc;

#[derive(OpenApi)]
#[openapi(
    paths(
        orders::place_order,
        orders::get_order,
        orders::list_orders,
        orders::cancel_order
    ),
    components(schemas(orders::StatusParam))
)]
struct OrderDoc;

#[derive(OpenApi)]
#[openapi(paths(
    deliveries::get_delivery,
    deliveries::find_deliveries,
    deliveries::ship,
    deliveries::deliver
))]
struct DeliveryDoc;

#[derive(OpenApi)]
#[openapi(
    paths(
        waiting_room::join,
        waiting_room::my_entry,
        waiting_room::my_events,
        waiting_room::leave,
        waiting_room::get_room,
        waiting_room::put_room
    ),
    tags((name = "waiting rooms", description = "Flash-sale waiting rooms: buyers of a gated product queue, are admitted at the room's rate, and order with their admission token"))
)]
struct WaitingRoomDoc;

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// A request still running after this is answered with 503.
    pub request_timeout: Duration,
    /// Larger bodies are refused with 413.
    pub body_limit: usize,
    /// Web origins (`https://shop.example`) whose pages may call the API from a browser. Empty
    /// (the default): none, and browsers keep cross-origin pages from reading any answer.
    pub cors_origins: Vec<HeaderValue>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            body_limit: 64 * 1024,
            cors_origins: Vec::new(),
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
        ])
        .expose_headers([
            header::LOCATION,
            header::RETRY_AFTER,
            HeaderName::from_static(REPLAYED),
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(600))
}

/// The bearer scheme, and its 401 and 403 answers on every operation that needs a token.
fn document_security(doc: &mut utoipa::openapi::OpenApi) {
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT with `iss`, `aud`, `exp`, `sub` and a space-separated `scope`: \
                         `orders` (a customer, `sub` is the customer id), `courier`, `admin`. \
                         Each operation lists the scopes that may call it; any one is enough.",
                    ))
                    .build(),
            ),
        );
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    let unauthorized = problem(
        "No bearer token, or one not valid here (signature, expiry, issuer, audience, unknown key)",
    );
    let forbidden = problem("The token lacks the scope this operation needs");
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                let responses = &mut operation.responses.responses;
                responses.insert("401".into(), unauthorized.clone().into());
                responses.insert("403".into(), forbidden.clone().into());
            }
        }
    }
}

/// Assembles the API of the services this process runs.
#[derive(Default)]
pub struct ApiBuilder {
    orders: Option<OrderService>,
    deliveries: Option<DeliveryService>,
    waiting_rooms: Option<WaitingRoomService>,
    shutdown: Option<Shutdown>,
    checks: Vec<Arc<dyn HealthCheck>>,
    metric_sources: Vec<Arc<dyn MetricSource>>,
    authenticator: Option<Arc<Authenticator>>,
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

/// The document as JSON. utoipa 5.5 writes a link's `operationId` and `operationRef` in snake
/// case, which OpenAPI tools do not recognise; they are renamed here. The event stream's schema
/// is completed here too.
fn openapi_json(doc: &utoipa::openapi::OpenApi) -> String {
    let Ok(mut json) = serde_json::to_value(doc) else {
        return "{}".to_owned();
    };
    let links = json["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(serde_json::Value::as_object_mut);
    for link in links {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
        ] {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.to_owned(), value);
            }
        }
    }
    waiting_room::events::document_event_stream(&mut json);
    json.to_string()
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

    #[must_use]
    pub fn orders(mut self, orders: OrderService) -> Self {
        self.orders = Some(orders);
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
        let mut doc = BaseDoc::openapi();
        if self.orders.is_some() {
            doc.merge(OrderDoc::openapi());
        }
        if self.deliveries.is_some() {
            doc.merge(DeliveryDoc::openapi());
        }
        if self.waiting_rooms.is_some() {
            doc.merge(WaitingRoomDoc::openapi());
        }
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        document_security(&mut doc);
        doc
    }

    /// The router, with every layer.
    pub fn build(self) -> Router {
        let doc = self.openapi();
        let openapi_json: Arc<str> = openapi_json(&doc).into();
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
        if let Some(deliveries) = self.deliveries {
            router = router.merge(deliveries::routes(deliveries));
        }
        if let Some(rooms) = self.waiting_rooms {
            router = router.merge(waiting_room::routes(waiting_room::Rooms {
                rooms,
                shutdown: self.shutdown,
            }));
        }
        let timeout = self.config.request_timeout;
        if let Some(authenticator) = self.authenticator {
            router = router.layer(axum::Extension(authenticator));
        }
        let router = router
            .fallback(|| async { ApiError::NoRoute })
            .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
            .layer(axum::middleware::from_fn_with_state(
                metrics,
                metrics::track,
            ))
            .layer(DefaultBodyLimit::max(self.config.body_limit))
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
                    .layer(PropagateRequestIdLayer::x_request_id())
                    .layer(HandleErrorLayer::new(|error: tower::BoxError| async move {
                        if error.is::<tower::timeout::error::Elapsed>() {
                            ApiError::Timeout
                        } else {
                            ApiError::Internal(error)
                        }
                    }))
                    .layer(tower::timeout::TimeoutLayer::new(timeout)),
            );
        // Outermost, so that preflights are answered whatever route and method they name.
        if self.config.cors_origins.is_empty() {
            router
        } else {
            router.layer(cors(&self.config.cors_origins))
        }
    }
}
