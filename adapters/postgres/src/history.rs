//! The saga history's rows (`orders.saga_history`): the statements that write a step with the
//! saga's row, how a step is bound to them, and how a row is read back.

use ordership_domain::ports::StoreError;
use ordership_domain::saga::{OperatorAction, SagaStepRecord, StepCause};
use ordership_domain::{
    CancellationReason, FulfilmentSaga, MessageId, OrderId, OrderStatus, SagaState,
};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::{corrupt, failed_in};
use crate::unit_of_work::{count, version};

/// A step is `$1`…`$15`; the statements that also write the saga row take its other columns
/// from `$16` on and reuse the step's state (`$10`), attempts (`$11`) and failure (`$12`).
macro_rules! insert_step {
    () => {
        "INSERT INTO orders.saga_history (order_id, seq, at, cause, message_id, message_type, \
         order_status, cancellation_kind, cancellation_detail, saga_state, attempts, failure_reason, sent, actor, note)"
    };
}
pub(crate) use insert_step;
pub(crate) const RECORD_STEP: &str = concat!(
    insert_step!(),
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
);
/// One statement (one round trip) for the saga's first row and its first step.
pub(crate) const INSERT_SAGA_WITH_STEP: &str = concat!(
    "WITH saga AS (INSERT INTO orders.sagas (order_id, state, attempts, deadline, failure_reason, version, updated_at) \
     VALUES ($1, $10, $11, $16, $12, $17, $18) RETURNING order_id) ",
    insert_step!(),
    " SELECT order_id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 FROM saga"
);
/// One statement for the saga's new row and the step that made it; no step is written (and no
/// row counted) when the stored version is not the expected one.
pub(crate) const UPDATE_SAGA_WITH_STEP: &str = concat!(
    "WITH saga AS (UPDATE orders.sagas SET state = $10, attempts = $11, deadline = $16, failure_reason = $12, \
     version = $17, updated_at = $18 WHERE order_id = $1 AND version = $19 RETURNING order_id) ",
    insert_step!(),
    " SELECT order_id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 FROM saga"
);
pub(crate) const HISTORY: &str = "SELECT order_id, seq, at, cause, message_id, message_type, order_status, \
     cancellation_kind, cancellation_detail, saga_state, attempts, failure_reason, sent, actor, note \
     FROM orders.saga_history WHERE order_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
pub(crate) fn step_from_row(row: &PgRow) -> Result<SagaStepRecord, StoreError> {
    let get = failed_in("sagas::step_from_row");
    let cause: String = row.try_get("cause").map_err(&get)?;
    let message_id: Option<uuid::Uuid> = row.try_get("message_id").map_err(&get)?;
    let message_type: Option<String> = row.try_get("message_type").map_err(&get)?;
    let actor: Option<String> = row.try_get("actor").map_err(&get)?;
    let note: Option<String> = row.try_get("note").map_err(&get)?;
    let operator = |action| StepCause::Operator {
        action,
        actor: actor.clone().unwrap_or_default(),
        reason: note.clone().unwrap_or_default(),
    };
    let cause = match (cause.as_str(), message_id, message_type) {
        ("placed", ..) => StepCause::Placed,
        ("operator_retry", ..) => operator(OperatorAction::Retry),
        ("operator_force_compensation", ..) => operator(OperatorAction::ForceCompensation),
        ("deadline", ..) => StepCause::Deadline,
        ("customer_cancel", ..) => StepCause::CustomerCancel,
        ("reply", Some(id), Some(message_type)) => StepCause::Reply {
            message_id: MessageId::from_uuid(id),
            message_type,
        },
        (other, ..) => return Err(corrupt("saga step cause", other)),
    };
    let status: String = row.try_get("order_status").map_err(&get)?;
    let state: String = row.try_get("saga_state").map_err(&get)?;
    let kind: Option<String> = row.try_get("cancellation_kind").map_err(&get)?;
    let detail: Option<String> = row.try_get("cancellation_detail").map_err(&get)?;
    let seq: i64 = row.try_get("seq").map_err(&get)?;
    let attempts: i32 = row.try_get("attempts").map_err(&get)?;
    let sent: Vec<uuid::Uuid> = row.try_get("sent").map_err(&get)?;
    Ok(SagaStepRecord {
        order_id: OrderId::from_uuid(row.try_get("order_id").map_err(&get)?),
        seq: count(seq, "saga step seq")?,
        at: row.try_get("at").map_err(&get)?,
        cause,
        order_status: OrderStatus::parse(&status).map_err(|e| corrupt("order status", e))?,
        cancellation: kind
            .map(|kind| {
                CancellationReason::from_parts(&kind, detail.as_deref())
                    .ok_or_else(|| corrupt("cancellation kind", kind))
            })
            .transpose()?,
        saga_state: SagaState::parse(&state).map_err(|e| corrupt("saga state", e))?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("saga attempts", attempts))?,
        failure_reason: row.try_get("failure_reason").map_err(&get)?,
        sent: sent.into_iter().map(MessageId::from_uuid).collect(),
    })
}

pub(crate) type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds the step as `$1`…`$15`.
pub(crate) fn bind_step<'q>(
    query: Query<'q>,
    step: &'q SagaStepRecord,
) -> Result<Query<'q>, StoreError> {
    let (message_id, message_type) = match &step.cause {
        StepCause::Reply {
            message_id,
            message_type,
        } => (Some(*message_id.as_uuid()), Some(message_type.as_str())),
        _ => (None, None),
    };
    let (actor, note) = match &step.cause {
        StepCause::Operator { actor, reason, .. } => (Some(actor.as_str()), Some(reason.as_str())),
        _ => (None, None),
    };
    let sent: Vec<uuid::Uuid> = step.sent.iter().map(|id| *id.as_uuid()).collect();
    Ok(query
        .bind(step.order_id.as_uuid())
        .bind(version(step.seq)?)
        .bind(step.at)
        .bind(step.cause.kind())
        .bind(message_id)
        .bind(message_type)
        .bind(step.order_status.as_str())
        .bind(step.cancellation.as_ref().map(CancellationReason::kind))
        .bind(
            step.cancellation
                .as_ref()
                .and_then(CancellationReason::detail),
        )
        .bind(step.saga_state.as_str())
        .bind(
            i32::try_from(step.attempts)
                .map_err(|_| StoreError::Unexpected("saga attempts out of range".into()))?,
        )
        .bind(step.failure_reason.as_deref())
        .bind(sent)
        .bind(actor)
        .bind(note))
}

/// The combined statements write the saga's state, attempts and failure from its step: refuse a
/// step that is not of this saga as it is now.
pub(crate) fn same_saga(saga: &FulfilmentSaga, step: &SagaStepRecord) -> Result<(), StoreError> {
    if step.order_id == saga.order_id()
        && step.saga_state == saga.state()
        && step.attempts == saga.attempts()
        && step.failure_reason.as_deref() == saga.failure_reason()
    {
        Ok(())
    } else {
        Err(StoreError::Unexpected(
            "a saga step recorded with a saga it does not describe".into(),
        ))
    }
}
