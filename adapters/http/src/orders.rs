//! The order service's endpoints.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ordership_application::{OrderService, OrderView, Outcome};
use ordership_domain::ports::{OrderQuery, StoredResponse};
use ordership_domain::{OrderId, OrderStatus};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::dto::{OrderPage, OrderResponse, PlaceOrderRequest};
use crate::extract::{JsonBody, idempotency};
use crate::problem::{ApiError, FieldError, Problem};

pub(crate) fn routes(orders: OrderService) -> Router {
    Router::new()
        .route("/orders", post(place_order).get(list_orders))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .with_state(orders)
}

/// The response header that marks a replayed response.
pub const REPLAYED: &str = "idempotent-replayed";

fn json(status: u16, view: &OrderView) -> StoredResponse {
    // Serializing these plain structs cannot fail; an empty object would still be valid JSON.
    let body = serde_json::to_vec(&OrderResponse::from(view)).unwrap_or_else(|_| b"{}".to_vec());
    StoredResponse { status, body }
}

fn created(view: &OrderView) -> StoredResponse {
    json(201, view)
}

/// 200 once the order is cancelled; 202 while the saga is still cancelling its delivery.
fn cancelled(view: &OrderView) -> StoredResponse {
    let status = if view.order.status() == OrderStatus::Cancelled {
        200
    } else {
        202
    };
    json(status, view)
}

/// Sends a stored response as is, with a `Location` for a created order.
fn send(stored: StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let location = (status == StatusCode::CREATED)
        .then(|| serde_json::from_slice::<serde_json::Value>(&stored.body).ok())
        .flatten()
        .and_then(|v| {
            v.get("id")
                .and_then(|id| id.as_str())
                .map(|id| format!("/orders/{id}"))
        })
        .and_then(|l| HeaderValue::from_str(&l).ok());
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(location) = location {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert(REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

fn parse_id(id: &str) -> Result<OrderId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound("order"))
}

/// Place an order and start its fulfilment saga.
///
/// With an `Idempotency-Key`, a retry of the same request returns the first response byte for
/// byte (with `Idempotent-Replayed: true`) and creates nothing; the same key with a different
/// body is refused with 422.
#[utoipa::path(
    post, path = "/orders", tag = "orders",
    request_body = PlaceOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Client-chosen key, 1–255 visible ASCII characters; retries with the same key and body are answered from the first response")),
    responses(
        (status = 201, description = "Order placed", body = OrderResponse,
            headers(("Location" = String, description = "URL of the order"))),
        (status = 400, description = "Malformed body or header", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The first request with this key is still being processed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or the key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn place_order(
    State(orders): State<OrderService>,
    headers: HeaderMap,
    body: JsonBody<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency(&headers, "POST /orders", &body.canonical)?;
    // Validation first: nothing is stored for an invalid request, not even its key.
    let command = body.value.into_command()?;
    match orders.place_order(command, key.as_ref(), &created).await? {
        Outcome::Done(view) => Ok(send(created(&view), false)),
        Outcome::Replayed(stored) => Ok(send(stored, true)),
    }
}

/// An order with the state of its saga.
#[utoipa::path(
    get, path = "/orders/{id}", tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderResponse),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_order(
    State(orders): State<OrderService>,
    Path(id): Path<String>,
) -> Result<axum::Json<OrderResponse>, ApiError> {
    let view = orders.get_order(parse_id(&id)?).await?;
    Ok(axum::Json(OrderResponse::from(&view)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only orders in this status.
    status: Option<String>,
    /// The `next_cursor` of the previous page.
    after: Option<String>,
    /// Page size, 1–200 (default 50).
    limit: Option<u32>,
}

/// Orders, oldest first, a page at a time.
#[utoipa::path(
    get, path = "/orders", tag = "orders",
    params(ListParams),
    responses(
        (status = 200, body = OrderPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_orders(
    State(orders): State<OrderService>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<OrderPage>, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(OrderStatus::parse)
        .transpose()
        .map_err(|e| ApiError::BadParameter(e.into()))?;
    let after = params
        .after
        .as_deref()
        .map(str::parse::<OrderId>)
        .transpose()
        .map_err(|_| {
            ApiError::BadParameter(FieldError::new(
                "after",
                "must be a cursor from a previous page",
            ))
        })?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadParameter(FieldError::new(
            "limit",
            "must be between 1 and 200",
        )));
    }
    let views = orders
        .list_orders(&OrderQuery {
            status,
            after,
            limit,
        })
        .await?;
    let next_cursor = (views.len() == limit as usize)
        .then(|| views.last().map(|v| *v.order.id().as_uuid()))
        .flatten();
    Ok(axum::Json(OrderPage {
        items: views.iter().map(OrderResponse::from).collect(),
        next_cursor,
    }))
}

/// Cancel an order.
///
/// A pending order is cancelled at once (200). A confirmed order stays confirmed while its
/// delivery is being cancelled (202, saga `cancelling`) and becomes cancelled shortly after.
/// Asking again changes nothing. Once shipped, an order can no longer be cancelled (409).
#[utoipa::path(
    post, path = "/orders/{id}/cancel", tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "Order id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional, as for placing an order")),
    responses(
        (status = 200, description = "Cancelled", body = OrderResponse),
        (status = 202, description = "Cancellation in progress", body = OrderResponse),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already shipped", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn cancel_order(
    State(orders): State<OrderService>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let key = idempotency(&headers, &format!("POST /orders/{id}/cancel"), "")?;
    match orders.cancel_order(id, key.as_ref(), &cancelled).await? {
        Outcome::Done(view) => Ok(send(cancelled(&view), false)),
        Outcome::Replayed(stored) => Ok(send(stored, true)),
    }
}
