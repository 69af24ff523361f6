//! Reading an order: at once, or as a long poll (`Prefer: wait`) that answers when it changes.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ordership_application::{OrderUpdate, OrderView};
use ordership_domain::OrderId;

use super::Orders;
use crate::auth::Caller;
use crate::dto::OrderResponse;
use crate::extract::IdPath;
use crate::prefer::{PREFERENCE_APPLIED, preferred_wait, wait_applied};
use crate::problem::ApiError;
use crate::problem::Problem;
use crate::responses::{NotUuid, Unavailable};

/// An order's entity tag: the sequence number of its state, which grows with every step.
pub(super) fn etag(view: &OrderView) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", OrderUpdate::of_view(view).seq))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Whether `If-None-Match` names `tag` (or `*`); weak tags compare by their value.
fn none_match(headers: &HeaderMap, tag: &HeaderValue) -> Option<bool> {
    let value = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    let tag = tag.to_str().ok()?;
    Some(value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == tag
    }))
}

/// An order with the state of its saga.
///
/// With `Prefer: wait=N` (N ≤ 30 seconds) this is a long poll: the answer comes when the order
/// changes — from the state named by `If-None-Match` (its `ETag`), else from the state it is in
/// when the request arrives — or when the wait ends (then 304 if `If-None-Match` still matches,
/// else the order as it is). `Preference-Applied` says the wait was honoured. A change made by
/// any instance of the service ends the wait.
#[utoipa::path(
    get, path = "/orders/{id}", tag = "orders",
    security(("bearer" = ["orders"]), ("bearer" = ["admin"])),
    params(("id" = uuid::Uuid, Path, description = "Order id", format = Uuid),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: answer when the order changes, waiting at most N seconds (at most 30)"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of this order: with `Prefer: wait`, wait for a state other than this one")),
    responses(
        (status = 200, body = OrderResponse, headers(
            ("ETag" = String, description = "The state of the order; grows with every step"),
            ("Preference-Applied" = String, description = "`wait=N` when the wait was honoured"))),
        (status = 304, description = "With `If-None-Match` and `Prefer: wait`: still in that state when the wait ended", headers(
            ("ETag" = String, description = "The state of the order"))),
        (status = 400, response = NotUuid),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller follows as many orders as they may (`too-many-followed`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn get_order(
    caller: Caller,
    State(orders): State<Orders>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let access = caller.order_access()?;
    let id = OrderId::from_uuid(id);
    let Some(wait) = preferred_wait(&headers) else {
        let view = orders.service.get_order(id, &access).await?;
        return Ok(answer(&view, StatusCode::OK));
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut following = orders.updates.follow(id, &access, caller.subject())?;
    let mut view = following.view().await?;
    let start = etag(&view);
    if none_match(&headers, &start) == Some(false) {
        return Ok(waited(&view, StatusCode::OK, wait));
    }
    while following.changed_before(deadline).await {
        view = following.view().await?;
        if etag(&view) != start {
            return Ok(waited(&view, StatusCode::OK, wait));
        }
    }
    let unchanged = if none_match(&headers, &start) == Some(true) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    Ok(waited(&view, unchanged, wait))
}

/// The order with its `ETag` (no body for 304).
fn answer(view: &OrderView, status: StatusCode) -> Response {
    let mut response = if status == StatusCode::NOT_MODIFIED {
        status.into_response()
    } else {
        (status, axum::Json(OrderResponse::from(view))).into_response()
    };
    response.headers_mut().insert(header::ETAG, etag(view));
    response
}

fn waited(view: &OrderView, status: StatusCode, wait: std::time::Duration) -> Response {
    let mut response = answer(view, status);
    response
        .headers_mut()
        .insert(PREFERENCE_APPLIED, wait_applied(wait));
    response
}
