//! The order service's endpoints: placing and cancelling here, reading in [`read`], following
//! in [`events`].

pub(crate) mod events;
pub(crate) mod read;

use axum::Router;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ordership_application::{
    OrderAccess, OrderService, OrderUpdate, OrderUpdates, OrderView, Outcome,
};
use ordership_domain::ports::{OrderQuery, StoredResponse};
use ordership_domain::{OrderId, OrderStatus};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::dto::{OrderPage, OrderResponse, PlaceOrderRequest};
use crate::extract::{IdPath, JsonBody, QueryParams, idempotency, page};
use crate::fair_use::{FairUse, Quota, with_fields};
use crate::prefer::{PREFERENCE_APPLIED, preferred_wait, wait_applied};
use crate::problem::{ApiError, FieldError, Problem};
use crate::responses::{NotJson, RateLimited, Unavailable};

/// The order endpoints' state: the use cases, and the followers of orders.
#[derive(Clone)]
pub(crate) struct Orders {
    pub(crate) service: OrderService,
    pub(crate) updates: OrderUpdates,
}

pub(crate) fn routes(orders: Orders) -> Router {
    Router::new()
        .route("/orders", post(place_order).get(list_orders))
        .route("/orders/{id}", get(read::get_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/orders/{id}/events", get(events::order_events))
        .with_state(orders)
}

/// The response header that marks a replayed response.
pub const REPLAYED: &str = "idempotent-replayed";

/// The request header that carries a waiting room's admission token.
pub const ADMISSION_TOKEN: &str = "admission-token";

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

/// Place an order and start its fulfilment saga.
///
/// With an `Idempotency-Key`, a retry of the same request returns the first response byte for
/// byte (with `Idempotent-Replayed: true`) and creates nothing; the same key with a different
/// body is refused with 422. A product sold through a waiting room needs the buyer's admission
/// token in `Admission-Token`; one admission buys one order.
///
/// With `Prefer: wait=N` (N ≤ 30 seconds) the answer waits until the order's saga has ended
/// (confirmed, cancelled or failed) and shows it so, with `Preference-Applied`; if it has not
/// ended within N seconds, the order is shown as placed and `Preference-Applied` is absent. A
/// replayed response is the one stored when the order was placed.
#[utoipa::path(
    post, path = "/orders", tag = "orders",
    security(("bearer" = ["orders"])),
    request_body(content = PlaceOrderRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Client-chosen key, 1–255 visible ASCII characters; retries with the same key and body are answered from the first response", min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$"),
        ("Admission-Token" = Option<String>, Header, description = "The buyer's admission token from a waiting room; needed when the order holds a product the room gates"),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: answer once the order's saga has ended, waiting at most N seconds (at most 30)")),
    responses(
        (status = 201, description = "Order placed (or the first response, replayed)", body = OrderResponse,
            headers(("Location" = String, description = "URL of the order"),
                ("Preference-Applied" = String, description = "`wait=N` when the answer shows the order settled")),
            links(
                ("GetOrder" = (operation_id = "get_order", parameters(("id" = "$response.body#/id")), description = "The order just placed")),
                ("CancelOrder" = (operation_id = "cancel_order", parameters(("id" = "$response.body#/id")), description = "Cancel the order just placed")),
            )),
        (status = 400, description = "Malformed: not JSON, a field the schema refuses, an unknown field, a bad Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A product of the order is sold through a waiting room and the admission token is missing, not valid, another buyer's (`admission-required`) or expired (`admission-expired`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The admission token has bought its order already (`admission-used`), or the sale's stock has fewer units left than the order's lines of its products (`sold-out`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than allowed", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = NotJson),
        (status = 422, description = "A business rule refuses it (lines in several currencies, a total too large), or the key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = RateLimited),
        (status = 503, description = "Storage unavailable, request timed out, a product's waiting room unavailable and no admission token sent, or the service is catching up and sheds new orders (`overloaded`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn place_order(
    caller: Caller,
    State(Orders {
        service: orders,
        updates,
    }): State<Orders>,
    Extension(fair_use): Extension<Arc<FairUse>>,
    headers: HeaderMap,
    body: JsonBody<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    let customer = caller.customer()?;
    fair_use.admit_new_order()?;
    let quota = fair_use.take(Quota::Orders, customer.as_str()).await?;
    let mut response = place(&caller, customer, (&orders, &updates), &headers, body).await?;
    with_fields(response.headers_mut(), quota);
    Ok(response)
}

async fn place(
    caller: &Caller,
    customer: ordership_domain::CustomerId,
    (orders, updates): (&OrderService, &OrderUpdates),
    headers: &HeaderMap,
    body: JsonBody<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    // Keys are the caller's own: another customer's key never replays someone else's order.
    let scope = format!("POST /orders by {}", caller.subject());
    let key = idempotency(headers, &scope, || body.canonical())?;
    // Validation first: nothing is stored for an invalid request, not even its key.
    let command = body.value.into_command(customer)?;
    let admission = headers
        .get(ADMISSION_TOKEN)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::AdmissionRequired("the admission token is not valid"))
        })
        .transpose()?;
    match orders
        .place_order(command, admission, key.as_ref(), &created)
        .await?
    {
        Outcome::Done(view) => match preferred_wait(headers) {
            Some(wait) => settled(updates, *view, wait, caller.subject()).await,
            None => Ok(send(created(&view), false)),
        },
        Outcome::Replayed(stored) => Ok(send(stored, true)),
    }
}

/// The answer to an order placed with `Prefer: wait`: the order once settled within `wait`
/// (`Preference-Applied`), else as placed. Placing succeeded: a wait that cannot be had (too
/// many followers, a store failure while waiting) answers the order as placed.
async fn settled(
    updates: &OrderUpdates,
    placed: OrderView,
    wait: std::time::Duration,
    caller: &str,
) -> Result<Response, ApiError> {
    let id = placed.order.id();
    let view = match updates.follow(id, &OrderAccess::All, caller) {
        Ok(mut following) => following.settled_within(wait).await.ok(),
        Err(e) => {
            tracing::debug!(order_id = %id, error = %e, "placed without waiting");
            None
        }
    };
    match view.filter(|v| OrderUpdate::of_view(v).settled()) {
        Some(view) => {
            let mut response = send(created(&view), false);
            response
                .headers_mut()
                .insert(PREFERENCE_APPLIED, wait_applied(wait));
            Ok(response)
        }
        None => Ok(send(created(&placed), false)),
    }
}

/// An order status, as the query parameter's schema says it (parsed by `OrderStatus::parse`).
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
#[expect(dead_code, reason = "a schema only: the value is parsed by the domain")]
pub(crate) enum StatusParam {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// Only orders in this status.
    #[param(value_type = Option<StatusParam>)]
    status: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>, format = Uuid)]
    after: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

/// Orders, oldest first, a page at a time.
#[utoipa::path(
    get, path = "/orders", tag = "orders",
    security(("bearer" = ["orders"]), ("bearer" = ["admin"])),
    params(ListParams),
    responses(
        (status = 200, body = OrderPage),
        (status = 400, description = "A parameter the schema refuses, unknown or given twice", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list_orders(
    caller: Caller,
    State(Orders {
        service: orders, ..
    }): State<Orders>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<axum::Json<OrderPage>, ApiError> {
    let access = caller.order_access()?;
    let bad = |field: &str, message: &str| ApiError::BadParameter(FieldError::new(field, message));
    let status = params
        .status
        .as_deref()
        .map(|s| {
            OrderStatus::parse(s).map_err(|_| {
                bad(
                    "status",
                    "must be pending, confirmed, shipped, delivered or cancelled",
                )
            })
        })
        .transpose()?;
    let (after, limit) = page(params.after.as_deref(), params.limit.as_deref())?;
    let views = orders
        .list_orders(
            &access,
            OrderQuery {
                customer: None,
                status,
                after,
                limit,
            },
        )
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
    security(("bearer" = ["orders"]), ("bearer" = ["admin"])),
    params(("id" = uuid::Uuid, Path, description = "Order id", format = Uuid),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional, as for placing an order", min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 200, description = "Cancelled", body = OrderResponse),
        (status = 202, description = "Cancellation in progress", body = OrderResponse),
        (status = 400, description = "The id is not a UUID, or a bad Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already shipped", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The key was used with another request", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn cancel_order(
    caller: Caller,
    State(Orders {
        service: orders, ..
    }): State<Orders>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let access = caller.order_access()?;
    let id = OrderId::from_uuid(id);
    let scope = format!("POST /orders/{id}/cancel by {}", caller.subject());
    let key = idempotency(&headers, &scope, String::new)?;
    match orders
        .cancel_order(id, &access, key.as_ref(), &cancelled)
        .await?
    {
        Outcome::Done(view) => Ok(send(cancelled(&view), false)),
        Outcome::Replayed(stored) => Ok(send(stored, true)),
    }
}
