//! Fulfilment sagas on `orders.sagas`: steps lock their row, sweepers claim overdue sagas with
//! `FOR UPDATE SKIP LOCKED`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::ports::{SagaQuery, SagaRepository, StoreError};
use ordership_domain::saga::{OperatorAction, SagaStepRecord, StepCause};
use ordership_domain::{
    CancellationReason, FulfilmentSaga, MessageId, OrderId, OrderStatus, SagaSnapshot, SagaState,
};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::{corrupt, failed_in};
use crate::unit_of_work::{PgOrderTx, count, updated_one, version};

const GET_SAGA: &str = "SELECT order_id, state, attempts, deadline, failure_reason, version, updated_at \
     FROM orders.sagas WHERE order_id = $1";
const GET_SAGAS: &str = "SELECT order_id, state, attempts, deadline, failure_reason, version, updated_at \
     FROM orders.sagas WHERE order_id = ANY($1)";
const GET_SAGA_FOR_UPDATE: &str = "SELECT order_id, state, attempts, deadline, failure_reason, version, updated_at \
     FROM orders.sagas WHERE order_id = $1 FOR UPDATE";
const CLAIM_OVERDUE: &str = "SELECT order_id, state, attempts, deadline, failure_reason, version, updated_at \
     FROM orders.sagas WHERE deadline <= $1 ORDER BY deadline LIMIT $2 FOR UPDATE SKIP LOCKED";
const INSERT_SAGA: &str = "INSERT INTO orders.sagas (order_id, state, attempts, deadline, failure_reason, version, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const UPDATE_SAGA: &str = "UPDATE orders.sagas SET state = $2, attempts = $3, deadline = $4, failure_reason = $5, \
     version = $6, updated_at = $7 WHERE order_id = $1 AND version = $8";
const LIST_SAGAS: &str = "SELECT order_id, state, attempts, deadline, failure_reason, version, updated_at \
     FROM orders.sagas WHERE ($1::text IS NULL OR state = $1) AND ($2::timestamptz IS NULL OR updated_at < $2) \
     AND ($3::uuid IS NULL OR order_id > $3) ORDER BY order_id LIMIT $4";
/// A step is `$1`…`$15`; the statements that also write the saga row take its other columns
/// from `$16` on and reuse the step's state (`$10`), attempts (`$11`) and failure (`$12`).
macro_rules! insert_step {
    () => {
        "INSERT INTO orders.saga_history (order_id, seq, at, cause, message_id, message_type, \
         order_status, cancellation_kind, cancellation_detail, saga_state, attempts, failure_reason, sent, actor, note)"
    };
}
const RECORD_STEP: &str = concat!(
    insert_step!(),
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
);
/// One statement (one round trip) for the saga's first row and its first step.
const INSERT_SAGA_WITH_STEP: &str = concat!(
    "WITH saga AS (INSERT INTO orders.sagas (order_id, state, attempts, deadline, failure_reason, version, updated_at) \
     VALUES ($1, $10, $11, $16, $12, $17, $18) RETURNING order_id) ",
    insert_step!(),
    " SELECT order_id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 FROM saga"
);
/// One statement for the saga's new row and the step that made it; no step is written (and no
/// row counted) when the stored version is not the expected one.
const UPDATE_SAGA_WITH_STEP: &str = concat!(
    "WITH saga AS (UPDATE orders.sagas SET state = $10, attempts = $11, deadline = $16, failure_reason = $12, \
     version = $17, updated_at = $18 WHERE order_id = $1 AND version = $19 RETURNING order_id) ",
    insert_step!(),
    " SELECT order_id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 FROM saga"
);
const HISTORY: &str = "SELECT order_id, seq, at, cause, message_id, message_type, order_status, \
     cancellation_kind, cancellation_detail, saga_state, attempts, failure_reason, sent, actor, note \
     FROM orders.saga_history WHERE order_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
const COUNT_SAGAS: &str = "SELECT state, count(*) FROM orders.sagas GROUP BY state";

fn saga_from_row(row: &PgRow) -> Result<FulfilmentSaga, StoreError> {
    let state: String = row
        .try_get("state")
        .map_err(failed_in("sagas::saga_from_row"))?;
    let attempts: i32 = row
        .try_get("attempts")
        .map_err(failed_in("sagas::saga_from_row"))?;
    let version: i64 = row
        .try_get("version")
        .map_err(failed_in("sagas::saga_from_row"))?;
    Ok(FulfilmentSaga::restore(SagaSnapshot {
        order_id: OrderId::from_uuid(
            row.try_get("order_id")
                .map_err(failed_in("sagas::saga_from_row"))?,
        ),
        state: SagaState::parse(&state).map_err(|e| corrupt("saga state", e))?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("saga attempts", attempts))?,
        deadline: row
            .try_get("deadline")
            .map_err(failed_in("sagas::saga_from_row"))?,
        failure_reason: row
            .try_get("failure_reason")
            .map_err(failed_in("sagas::saga_from_row"))?,
        version: count(version, "saga version")?,
        updated_at: row
            .try_get("updated_at")
            .map_err(failed_in("sagas::saga_from_row"))?,
    }))
}

fn step_from_row(row: &PgRow) -> Result<SagaStepRecord, StoreError> {
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

#[async_trait]
impl SagaRepository for PgOrderTx {
    async fn get(&mut self, order_id: OrderId) -> Result<Option<FulfilmentSaga>, StoreError> {
        let row = sqlx::query(GET_SAGA)
            .bind(order_id.as_uuid())
            .fetch_optional(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("sagas::get", e))?;
        row.as_ref().map(saga_from_row).transpose()
    }

    async fn get_many(&mut self, order_ids: &[OrderId]) -> Result<Vec<FulfilmentSaga>, StoreError> {
        let ids: Vec<uuid::Uuid> = order_ids.iter().map(|id| *id.as_uuid()).collect();
        let rows = sqlx::query(GET_SAGAS)
            .bind(ids)
            .fetch_all(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("sagas::get_many", e))?;
        rows.iter().map(saga_from_row).collect()
    }

    async fn get_for_update(
        &mut self,
        order_id: OrderId,
    ) -> Result<Option<FulfilmentSaga>, StoreError> {
        let row = sqlx::query(GET_SAGA_FOR_UPDATE)
            .bind(order_id.as_uuid())
            .fetch_optional(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("sagas::get_for_update", e))?;
        row.as_ref().map(saga_from_row).transpose()
    }

    async fn insert(&mut self, saga: &FulfilmentSaga) -> Result<(), StoreError> {
        sqlx::query(INSERT_SAGA)
            .bind(saga.order_id().as_uuid())
            .bind(saga.state().as_str())
            .bind(attempts(saga)?)
            .bind(saga.deadline())
            .bind(saga.failure_reason())
            .bind(version(saga.version())?)
            .bind(saga.updated_at())
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("sagas::insert", e))?;
        Ok(())
    }

    async fn update(
        &mut self,
        saga: &FulfilmentSaga,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(UPDATE_SAGA)
            .bind(saga.order_id().as_uuid())
            .bind(saga.state().as_str())
            .bind(attempts(saga)?)
            .bind(saga.deadline())
            .bind(saga.failure_reason())
            .bind(version(saga.version())?)
            .bind(saga.updated_at())
            .bind(version(expected_version)?)
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("sagas::update", e))?;
        updated_one(&done)
    }

    async fn claim_overdue(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FulfilmentSaga>, StoreError> {
        let rows = sqlx::query(CLAIM_OVERDUE)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("sagas::claim_overdue", e))?;
        rows.iter().map(saga_from_row).collect()
    }

    async fn list(&mut self, query: &SagaQuery) -> Result<Vec<FulfilmentSaga>, StoreError> {
        let rows = sqlx::query(LIST_SAGAS)
            .bind(query.state.map(SagaState::as_str))
            .bind(query.updated_before)
            .bind(query.after.map(|id| *id.as_uuid()))
            .bind(i64::from(query.limit))
            .fetch_all(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("sagas::list", e))?;
        rows.iter().map(saga_from_row).collect()
    }

    async fn record_step(&mut self, step: &SagaStepRecord) -> Result<(), StoreError> {
        bind_step(sqlx::query(RECORD_STEP), step)?
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("sagas::record_step", e))?;
        Ok(())
    }

    async fn insert_with_step(
        &mut self,
        saga: &FulfilmentSaga,
        step: &SagaStepRecord,
    ) -> Result<(), StoreError> {
        same_saga(saga, step)?;
        bind_step(sqlx::query(INSERT_SAGA_WITH_STEP), step)?
            .bind(saga.deadline())
            .bind(version(saga.version())?)
            .bind(saga.updated_at())
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("sagas::insert_with_step", e))?;
        Ok(())
    }

    async fn update_with_step(
        &mut self,
        saga: &FulfilmentSaga,
        expected_version: u64,
        step: &SagaStepRecord,
    ) -> Result<(), StoreError> {
        same_saga(saga, step)?;
        let done = bind_step(sqlx::query(UPDATE_SAGA_WITH_STEP), step)?
            .bind(saga.deadline())
            .bind(version(saga.version())?)
            .bind(saga.updated_at())
            .bind(version(expected_version)?)
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("sagas::update_with_step", e))?;
        updated_one(&done)
    }

    async fn history(
        &mut self,
        order_id: OrderId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<SagaStepRecord>, StoreError> {
        let rows = sqlx::query(HISTORY)
            .bind(order_id.as_uuid())
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("sagas::history", e))?;
        rows.iter().map(step_from_row).collect()
    }

    async fn count_by_state(&mut self) -> Result<Vec<(SagaState, u64)>, StoreError> {
        let rows = sqlx::query(COUNT_SAGAS)
            .fetch_all(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("sagas::count_by_state", e))?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get(0).map_err(failed_in("sagas::count_by_state"))?;
                let n: i64 = row.try_get(1).map_err(failed_in("sagas::count_by_state"))?;
                Ok((
                    SagaState::parse(&state).map_err(|e| corrupt("saga state", e))?,
                    count(n, "saga count")?,
                ))
            })
            .collect()
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds the step as `$1`…`$15`.
fn bind_step<'q>(query: Query<'q>, step: &'q SagaStepRecord) -> Result<Query<'q>, StoreError> {
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
fn same_saga(saga: &FulfilmentSaga, step: &SagaStepRecord) -> Result<(), StoreError> {
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

fn attempts(saga: &FulfilmentSaga) -> Result<i32, StoreError> {
    i32::try_from(saga.attempts())
        .map_err(|_| StoreError::Unexpected("saga attempts out of range".into()))
}
