//! The delivery service's endpoints.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use ordership_application::DeliveryService;
use ordership_domain::{DeliveryId, OrderId};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::dto::{DeliveryList, DeliveryResponse};
use crate::extract::{IdPath, QueryParams};
use crate::problem::{ApiError, FieldError, Problem};
use crate::responses::{NotUuid, Unavailable};

pub(crate) fn routes(deliveries: DeliveryService) -> Router {
    Router::new()
        .route("/deliveries", get(find_deliveries))
        .route("/deliveries/{id}", get(get_delivery))
        .route("/deliveries/{id}/ship", post(ship))
        .route("/deliveries/{id}/deliver", post(deliver))
        .with_state(deliveries)
}

/// A delivery.
#[utoipa::path(
    get, path = "/deliveries/{id}", tag = "deliveries",
    security(("bearer" = ["courier"]), ("bearer" = ["admin"])),
    params(("id" = uuid::Uuid, Path, description = "Delivery id", format = Uuid)),
    responses((status = 200, body = DeliveryResponse),
        (status = 400, response = NotUuid),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable))
)]
pub(crate) async fn get_delivery(
    caller: Caller,
    State(deliveries): State<DeliveryService>,
    IdPath(id): IdPath,
) -> Result<axum::Json<DeliveryResponse>, ApiError> {
    caller.courier()?;
    let delivery = deliveries.get(DeliveryId::from_uuid(id)).await?;
    Ok(axum::Json(DeliveryResponse::from(&delivery)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindParams {
    /// The order whose delivery to find.
    #[param(value_type = uuid::Uuid, format = Uuid)]
    order_id: String,
}

/// The delivery of an order (at most one).
#[utoipa::path(
    get, path = "/deliveries", tag = "deliveries",
    security(("bearer" = ["courier"]), ("bearer" = ["admin"])),
    params(FindParams),
    responses((status = 200, body = DeliveryList),
        (status = 400, description = "order_id missing, not a UUID, or an unknown parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable))
)]
pub(crate) async fn find_deliveries(
    caller: Caller,
    State(deliveries): State<DeliveryService>,
    QueryParams(params): QueryParams<FindParams>,
) -> Result<axum::Json<DeliveryList>, ApiError> {
    caller.courier()?;
    let order_id: OrderId = params
        .order_id
        .parse()
        .map_err(|_| ApiError::BadParameter(FieldError::new("order_id", "must be a UUID")))?;
    let found = deliveries.find_by_order(order_id).await?;
    Ok(axum::Json(DeliveryList {
        items: found.iter().map(DeliveryResponse::from).collect(),
    }))
}

/// The courier picked the parcel up (`scheduled → shipped`).
#[utoipa::path(
    post, path = "/deliveries/{id}/ship", tag = "deliveries",
    security(("bearer" = ["courier"]), ("bearer" = ["admin"])),
    params(("id" = uuid::Uuid, Path, description = "Delivery id", format = Uuid)),
    responses((status = 200, body = DeliveryResponse),
        (status = 400, response = NotUuid),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not scheduled", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable))
)]
pub(crate) async fn ship(
    caller: Caller,
    State(deliveries): State<DeliveryService>,
    IdPath(id): IdPath,
) -> Result<axum::Json<DeliveryResponse>, ApiError> {
    caller.courier()?;
    let delivery = deliveries.ship(DeliveryId::from_uuid(id)).await?;
    Ok(axum::Json(DeliveryResponse::from(&delivery)))
}

/// The parcel reached the recipient (`shipped → delivered`).
#[utoipa::path(
    post, path = "/deliveries/{id}/deliver", tag = "deliveries",
    security(("bearer" = ["courier"]), ("bearer" = ["admin"])),
    params(("id" = uuid::Uuid, Path, description = "Delivery id", format = Uuid)),
    responses((status = 200, body = DeliveryResponse),
        (status = 400, response = NotUuid),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not shipped", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable))
)]
pub(crate) async fn deliver(
    caller: Caller,
    State(deliveries): State<DeliveryService>,
    IdPath(id): IdPath,
) -> Result<axum::Json<DeliveryResponse>, ApiError> {
    caller.courier()?;
    let delivery = deliveries.deliver(DeliveryId::from_uuid(id)).await?;
    Ok(axum::Json(DeliveryResponse::from(&delivery)))
}
