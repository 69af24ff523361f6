//! Fulfilment sagas on `orders.sagas`: steps lock their row, sweepers claim overdue sagas with
//! `FOR UPDATE SKIP LOCKED`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::ports::{SagaRepository, StoreError};
use ordership_domain::{FulfilmentSaga, OrderId, SagaSnapshot, SagaState};
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
