//! Saga operations (operators only): list sagas by state and age, read one's history, retry a
//! failed one, force one to compensate.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use ordership_application::{SagaAction, SagaOperations};
use ordership_domain::ports::SagaQuery;
use ordership_domain::saga::{OperatorAction, SagaStepRecord, StepCause};
use ordership_domain::{FulfilmentSaga, OrderId, SagaState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::dto::{OrderResponse, SagaDto};
use crate::extract::{IdPath, JsonBody, QueryParams, page};
use crate::problem::{ApiError, FieldError, Problem};
use crate::responses::{NotJson, NotUuid, Unavailable};

pub(crate) fn routes(operations: SagaOperations) -> Router {
    Router::new()
        .route("/sagas", get(list_sagas))
        .route("/sagas/{id}", get(get_saga))
        .route("/sagas/{id}/retry", post(retry_saga))
        .route("/sagas/{id}/compensate", post(compensate_saga))
        .with_state(operations)
}

/// A saga in a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SagaSummary {
    pub order_id: uuid::Uuid,
    /// `awaiting_delivery`, `cancelling`, `completed`, `compensated` or `failed`.
    pub state: String,
    pub attempts: u32,
    /// When it stops waiting for its reply (only while waiting).
    pub deadline: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    /// When its last step happened.
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl From<&FulfilmentSaga> for SagaSummary {
    fn from(s: &FulfilmentSaga) -> Self {
        Self {
            order_id: *s.order_id().as_uuid(),
            state: s.state().as_str().to_owned(),
            attempts: s.attempts(),
            deadline: s.deadline(),
            failure_reason: s.failure_reason().map(str::to_owned),
            updated_at: s.updated_at(),
            version: s.version(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SagaPage {
    pub items: Vec<SagaSummary>,
    /// Pass as `after` for the next page; absent on the last one.
    pub next_cursor: Option<uuid::Uuid>,
}

/// One step of a saga.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaStep {
    /// The step's number: grows with every step of the order.
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// `placed`, `reply`, `deadline`, `customer_cancel`, `operator_retry` or
    /// `operator_force_compensation`.
    pub cause: String,
    /// The reply that caused it.
    pub message_id: Option<uuid::Uuid>,
    pub message_type: Option<String>,
    /// The operator who acted, and why.
    pub actor: Option<String>,
    pub reason: Option<String>,
    /// The messages the step sent.
    pub sent: Vec<uuid::Uuid>,
    /// The order's status after the step.
    pub order_status: String,
    pub cancellation_reason: Option<String>,
    /// The saga after the step.
    pub saga: SagaDto,
}

impl From<&SagaStepRecord> for SagaStep {
    fn from(s: &SagaStepRecord) -> Self {
        let (message_id, message_type) = match &s.cause {
            StepCause::Reply {
                message_id,
                message_type,
            } => (Some(*message_id.as_uuid()), Some(message_type.clone())),
            _ => (None, None),
        };
        let (actor, reason) = match &s.cause {
            StepCause::Operator { actor, reason, .. } => {
                (Some(actor.clone()), Some(reason.clone()))
            }
            _ => (None, None),
        };
        Self {
            seq: s.seq,
            at: s.at,
            cause: s.cause.kind().to_owned(),
            message_id,
            message_type,
            actor,
            reason,
            sent: s.sent.iter().map(|id| *id.as_uuid()).collect(),
            order_status: s.order_status.as_str().to_owned(),
            cancellation_reason: s.cancellation.as_ref().map(ToString::to_string),
            saga: SagaDto {
                state: s.saga_state.as_str().to_owned(),
                attempts: s.attempts,
                failure_reason: s.failure_reason.clone(),
            },
        }
    }
}

/// A saga with its order and every step it took.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaDetail {
    pub order: OrderResponse,
    /// Oldest first.
    pub history: Vec<SagaStep>,
}

/// Why an operator acts; recorded in the saga's history with who acted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SagaActionRequest {
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// A saga state, as the query parameter's schema says it (parsed by `SagaState::parse`).
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
#[expect(dead_code, reason = "a schema only: the value is parsed by the domain")]
pub(crate) enum SagaStateParam {
    AwaitingDelivery,
    Cancelling,
    Completed,
    Compensated,
    Failed,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SagaListParams {
    /// Only sagas in this state.
    #[param(value_type = Option<SagaStateParam>)]
    state: Option<String>,
    /// Only sagas whose last step is older than this: a whole number and a unit, `s`, `m`, `h`
    /// or `d` (`15m`).
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,9}[smhd]$")]
    older_than: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>, format = Uuid)]
    after: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

fn age(s: &str) -> Option<Duration> {
    let (n, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: u64 = n.parse().ok().filter(|_| (1..=9).contains(&n.len()))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * seconds))
}

/// Sagas by order id (creation order), a page at a time; operators only.
#[utoipa::path(
    get, path = "/sagas", tag = "sagas",
    security(("bearer" = ["admin"])),
    params(SagaListParams),
    responses(
        (status = 200, body = SagaPage),
        (status = 400, description = "A parameter the schema refuses, unknown or given twice", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list_sagas(
    caller: Caller,
    State(operations): State<SagaOperations>,
    QueryParams(params): QueryParams<SagaListParams>,
) -> Result<axum::Json<SagaPage>, ApiError> {
    caller.admin()?;
    let bad = |field: &str, message: &str| ApiError::BadParameter(FieldError::new(field, message));
    let state = params
        .state
        .as_deref()
        .map(|s| {
            SagaState::parse(s).map_err(|_| {
                bad(
                    "state",
                    "must be awaiting_delivery, cancelling, completed, compensated or failed",
                )
            })
        })
        .transpose()?;
    let updated_before = params
        .older_than
        .as_deref()
        .map(|s| {
            age(s)
                .and_then(|age| chrono::Duration::from_std(age).ok())
                .map(|age| Utc::now() - age)
                .ok_or_else(|| bad("older_than", "must be a whole number and s, m, h or d"))
        })
        .transpose()?;
    let (after, limit) = page(params.after.as_deref(), params.limit.as_deref())?;
    let query = SagaQuery {
        state,
        updated_before,
        after,
        limit,
    };
    let sagas = operations.list(&query).await?;
    let next_cursor = (sagas.len() == limit as usize)
        .then(|| sagas.last().map(|s| *s.order_id().as_uuid()))
        .flatten();
    Ok(axum::Json(SagaPage {
        items: sagas.iter().map(SagaSummary::from).collect(),
        next_cursor,
    }))
}

/// A saga, its order and its history (every step: when, why, who, what it sent); operators only.
#[utoipa::path(
    get, path = "/sagas/{id}", tag = "sagas",
    security(("bearer" = ["admin"])),
    params(("id" = uuid::Uuid, Path, description = "Order id (a saga's id is its order's)", format = Uuid)),
    responses(
        (status = 200, body = SagaDetail),
        (status = 400, response = NotUuid),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn get_saga(
    caller: Caller,
    State(operations): State<SagaOperations>,
    IdPath(id): IdPath,
) -> Result<axum::Json<SagaDetail>, ApiError> {
    caller.admin()?;
    let (view, steps) = operations.history(OrderId::from_uuid(id)).await?;
    Ok(axum::Json(SagaDetail {
        order: OrderResponse::from(&view),
        history: steps.iter().map(SagaStep::from).collect(),
    }))
}

async fn act(
    caller: &Caller,
    operations: &SagaOperations,
    id: uuid::Uuid,
    action: OperatorAction,
    body: SagaActionRequest,
) -> Result<axum::Json<OrderResponse>, ApiError> {
    caller.admin()?;
    let reason = body.reason.as_str();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::Validation(vec![FieldError::new(
            "reason",
            "must be 1 to 500 characters",
        )]));
    }
    let action = SagaAction {
        action,
        actor: caller.subject(),
        reason,
    };
    let view = operations.act(OrderId::from_uuid(id), action).await?;
    Ok(axum::Json(OrderResponse::from(&view)))
}

/// Retry a failed saga: its last command (`CancelDelivery`) is sent again, under the same
/// idempotency rules as every command, and the saga waits for the reply (`cancelling`). Recorded
/// in its history with who and why. 409 unless the saga is `failed`.
#[utoipa::path(
    post, path = "/sagas/{id}/retry", tag = "sagas",
    security(("bearer" = ["admin"])),
    params(("id" = uuid::Uuid, Path, description = "Order id", format = Uuid)),
    request_body(content = SagaActionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Retried: the order and its saga now", body = OrderResponse),
        (status = 400, description = "The id is not a UUID, or the body is not what the schema says", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The saga's state does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = NotJson),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn retry_saga(
    caller: Caller,
    State(operations): State<SagaOperations>,
    IdPath(id): IdPath,
    body: JsonBody<SagaActionRequest>,
) -> Result<axum::Json<OrderResponse>, ApiError> {
    act(&caller, &operations, id, OperatorAction::Retry, body.value).await
}

/// Force a saga to compensate: the order is cancelled (reason `operator_requested`) and its
/// delivery undone (`CancelDelivery`; the saga waits in `cancelling`). Recorded in its history
/// with who and why. 409 unless the saga is `awaiting_delivery` or `completed` and the parcel
/// has not left.
#[utoipa::path(
    post, path = "/sagas/{id}/compensate", tag = "sagas",
    security(("bearer" = ["admin"])),
    params(("id" = uuid::Uuid, Path, description = "Order id", format = Uuid)),
    request_body(content = SagaActionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Compensating: the order and its saga now", body = OrderResponse),
        (status = 400, description = "The id is not a UUID, or the body is not what the schema says", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The saga's or the order's state does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = NotJson),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn compensate_saga(
    caller: Caller,
    State(operations): State<SagaOperations>,
    IdPath(id): IdPath,
    body: JsonBody<SagaActionRequest>,
) -> Result<axum::Json<OrderResponse>, ApiError> {
    act(
        &caller,
        &operations,
        id,
        OperatorAction::ForceCompensation,
        body.value,
    )
    .await
}
