//! Operational endpoints: health, metrics and the OpenAPI document (its reference page is `docs`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::dto::{CheckResult, HealthResponse};
use crate::health::HealthCheck;
use crate::metrics::Metrics;

#[derive(Clone)]
pub(crate) struct Ops {
    pub(crate) checks: Arc<Vec<Arc<dyn HealthCheck>>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) openapi_json: Arc<str>,
}

pub(crate) fn routes(ops: Ops) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .with_state(ops)
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, body = HealthResponse)))]
pub(crate) async fn live() -> axum::Json<HealthResponse> {
    axum::Json(HealthResponse {
        status: "ok".into(),
        checks: Vec::new(),
    })
}

/// The process can serve: its database and broker are reachable. Checks marked not required
/// (the waiting rooms' queue) are reported without making the process unready.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
pub(crate) async fn ready(State(ops): State<Ops>) -> (StatusCode, axum::Json<HealthResponse>) {
    let mut checks = Vec::with_capacity(ops.checks.len());
    for check in ops.checks.iter() {
        let result = check.check().await;
        checks.push(CheckResult {
            name: check.name().to_owned(),
            ok: result.is_ok(),
            required: check.required(),
            error: result.err(),
        });
    }
    let ok = checks.iter().all(|c| c.ok || !c.required);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = HealthResponse {
        status: if ok { "ok" } else { "unavailable" }.into(),
        checks,
    };
    (status, axum::Json(body))
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)))]
pub(crate) async fn metrics(State(ops): State<Ops>) -> Response {
    let mut response = ops.metrics.render().await.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn openapi(State(ops): State<Ops>) -> Response {
    let mut response = ops.openapi_json.to_string().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
