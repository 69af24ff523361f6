//! Fulfilment sagas on `orders.sagas`: steps lock their row, sweepers claim overdue sagas with
//! `FOR UPDATE SKIP LOCKED`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::ports::{SagaQuery, SagaRepository, StoreError};
use ordership_domain::saga::SagaStepRecord;
use ordership_domain::{FulfilmentSaga, OrderId, SagaSnapshot, SagaState};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::{corrupt, failed_in};
use crate::history::{
    HISTORY, INSERT_SAGA_WITH_STEP, RECORD_STEP, UPDATE_SAGA_WITH_STEP, bind_step, same_saga,
    step_from_row,
};
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
const COUNT_SAGAS: &str = "SELECT state, count(*) FROM orders.sagas GROUP BY state";

/// The names of a saga's columns in a row: its own table's, or prefixed where a query joins
/// it to its order.
pub(crate) struct SagaColumns {
    order_id: &'static str,
    state: &'static str,
    attempts: &'static str,
    deadline: &'static str,
    failure_reason: &'static str,
    version: &'static str,
    updated_at: &'static str,
}

/// A row of `orders.sagas`.
const OWN: SagaColumns = SagaColumns {
    order_id: "order_id",
    state: "state",
    attempts: "attempts",
    deadline: "deadline",
    failure_reason: "failure_reason",
    version: "version",
    updated_at: "updated_at",
};

/// The saga's columns of a query that joins `orders.sagas s` to its order, named as [`JOINED`]
/// reads them.
macro_rules! joined_saga_columns {
    () => {
        "s.order_id AS saga_order_id, s.state AS saga_state, s.attempts AS saga_attempts, \
         s.deadline AS saga_deadline, s.failure_reason AS saga_failure_reason, \
         s.version AS saga_version, s.updated_at AS saga_updated_at"
    };
}
pub(crate) use joined_saga_columns;

/// The saga beside its order's columns (`saga_…`; all null for an order without a saga).
pub(crate) const JOINED: SagaColumns = SagaColumns {
    order_id: "saga_order_id",
    state: "saga_state",
    attempts: "saga_attempts",
    deadline: "saga_deadline",
    failure_reason: "saga_failure_reason",
    version: "saga_version",
    updated_at: "saga_updated_at",
};

impl SagaColumns {
    /// The saga in `row`, if the row has one.
    pub(crate) fn saga_from(&self, row: &PgRow) -> Result<Option<FulfilmentSaga>, StoreError> {
        let get = failed_in("sagas::saga_from_row");
        let Some(order_id) = row
            .try_get::<Option<uuid::Uuid>, _>(self.order_id)
            .map_err(&get)?
        else {
            return Ok(None);
        };
        let state: String = row.try_get(self.state).map_err(&get)?;
        let attempts: i32 = row.try_get(self.attempts).map_err(&get)?;
        let version: i64 = row.try_get(self.version).map_err(&get)?;
        Ok(Some(FulfilmentSaga::restore(SagaSnapshot {
            order_id: OrderId::from_uuid(order_id),
            state: SagaState::parse(&state).map_err(|e| corrupt("saga state", e))?,
            attempts: u32::try_from(attempts).map_err(|_| corrupt("saga attempts", attempts))?,
            deadline: row.try_get(self.deadline).map_err(&get)?,
            failure_reason: row.try_get(self.failure_reason).map_err(&get)?,
            version: count(version, "saga version")?,
            updated_at: row.try_get(self.updated_at).map_err(&get)?,
        })))
    }
}

fn saga_from_row(row: &PgRow) -> Result<FulfilmentSaga, StoreError> {
    OWN.saga_from(row)?
        .ok_or_else(|| corrupt("saga", "a row of orders.sagas without its order id"))
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

fn attempts(saga: &FulfilmentSaga) -> Result<i32, StoreError> {
    i32::try_from(saga.attempts())
        .map_err(|_| StoreError::Unexpected("saga attempts out of range".into()))
}
