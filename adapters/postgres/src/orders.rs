//! The order service's repositories on `orders.*`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::ports::{
    Claim, IdempotencyRecord, IdempotencyStore, OrderQuery, OrderRepository, SagaRepository,
    StoreError, StoredResponse,
};
use ordership_domain::{
    CancellationReason, CustomerId, DeliveryId, FulfilmentSaga, Order, OrderId, OrderLine,
    OrderSnapshot, OrderStatus, SagaSnapshot, SagaState, parse_order_line,
};
use serde::Deserialize;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::{classify, corrupt};
use crate::tx::{PgOrderTx, count, updated_one};

macro_rules! select_orders {
    ($($rest:literal),*) => {
        concat!(
            "SELECT id, customer_id, lines, ship_recipient, ship_line1, ship_city, ship_postal_code, ",
            "ship_country, status, delivery_id, cancellation_kind, cancellation_detail, version, created_at, updated_at ",
            "FROM orders.orders ", $($rest),*
        )
    };
}

const GET_ORDER: &str = select_orders!("WHERE id = $1");
const LIST_ORDERS: &str = select_orders!("WHERE id > $1 ORDER BY id LIMIT $2");
const LIST_ORDERS_BY_STATUS: &str =
    select_orders!("WHERE status = $1 AND id > $2 ORDER BY id LIMIT $3");
const INSERT_ORDER: &str = "INSERT INTO orders.orders (id, customer_id, lines, total_amount, currency, ship_recipient, \
     ship_line1, ship_city, ship_postal_code, ship_country, status, delivery_id, cancellation_kind, \
     cancellation_detail, version, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";
const UPDATE_ORDER: &str = "UPDATE orders.orders SET status = $2, delivery_id = $3, cancellation_kind = $4, \
     cancellation_detail = $5, version = $6, updated_at = $7 WHERE id = $1 AND version = $8";

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

const CLAIM_KEY: &str = "INSERT INTO orders.idempotency_keys (scope, key, fingerprint, created_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
const GET_KEY: &str = "SELECT fingerprint, response_status, response_body, created_at \
     FROM orders.idempotency_keys WHERE scope = $1 AND key = $2";
const COMPLETE_KEY: &str = "UPDATE orders.idempotency_keys SET response_status = $3, response_body = $4 \
     WHERE scope = $1 AND key = $2";
const PURGE_KEYS: &str = "DELETE FROM orders.idempotency_keys WHERE created_at < $1";

/// An order line as stored in `orders.lines` (jsonb); validated again when read.
#[derive(Debug, Deserialize)]
struct LineRow {
    sku: String,
    quantity: i64,
    unit_price: MoneyRow,
}

#[derive(Debug, Deserialize)]
struct MoneyRow {
    amount: i64,
    currency: String,
}

pub(crate) fn version(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Unexpected(format!("version {v} out of range").into()))
}

fn order_from_row(row: &PgRow) -> Result<Order, StoreError> {
    let get_str = |c: &str| row.try_get::<String, _>(c).map_err(classify);
    let lines: serde_json::Value = row.try_get("lines").map_err(classify)?;
    let lines: Vec<LineRow> =
        serde_json::from_value(lines).map_err(|e| corrupt("order lines", e))?;
    let lines = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            parse_order_line(
                i,
                &l.sku,
                l.quantity,
                l.unit_price.amount,
                &l.unit_price.currency,
            )
        })
        .collect::<Result<Vec<OrderLine>, _>>()
        .map_err(|e| corrupt("order line", e))?;
    let address = crate::address_from_row(row)?;
    let status = OrderStatus::parse(&get_str("status")?).map_err(|e| corrupt("order status", e))?;
    let kind: Option<String> = row.try_get("cancellation_kind").map_err(classify)?;
    let detail: Option<String> = row.try_get("cancellation_detail").map_err(classify)?;
    let cancellation_reason = match kind {
        Some(kind) => Some(
            CancellationReason::from_parts(&kind, detail.as_deref())
                .ok_or_else(|| corrupt("cancellation reason", &kind))?,
        ),
        None => None,
    };
    let version: i64 = row.try_get("version").map_err(classify)?;
    Order::restore(OrderSnapshot {
        id: OrderId::from_uuid(row.try_get("id").map_err(classify)?),
        customer_id: CustomerId::parse(&get_str("customer_id")?)
            .map_err(|e| corrupt("customer id", e))?,
        lines,
        shipping_address: address,
        status,
        delivery_id: row
            .try_get::<Option<Uuid>, _>("delivery_id")
            .map_err(classify)?
            .map(DeliveryId::from_uuid),
        cancellation_reason,
        version: count(version, "order version")?,
        created_at: row.try_get("created_at").map_err(classify)?,
        updated_at: row.try_get("updated_at").map_err(classify)?,
    })
    .map_err(|e| corrupt("order", e))
}

fn saga_from_row(row: &PgRow) -> Result<FulfilmentSaga, StoreError> {
    let state: String = row.try_get("state").map_err(classify)?;
    let attempts: i32 = row.try_get("attempts").map_err(classify)?;
    let version: i64 = row.try_get("version").map_err(classify)?;
    Ok(FulfilmentSaga::restore(SagaSnapshot {
        order_id: OrderId::from_uuid(row.try_get("order_id").map_err(classify)?),
        state: SagaState::parse(&state).map_err(|e| corrupt("saga state", e))?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("saga attempts", attempts))?,
        deadline: row.try_get("deadline").map_err(classify)?,
        failure_reason: row.try_get("failure_reason").map_err(classify)?,
        version: count(version, "saga version")?,
        updated_at: row.try_get("updated_at").map_err(classify)?,
    }))
}

#[async_trait]
impl OrderRepository for PgOrderTx {
    async fn get(&mut self, id: OrderId) -> Result<Option<Order>, StoreError> {
        let row = sqlx::query(GET_ORDER)
            .bind(id.as_uuid())
            .fetch_optional(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed(e))?;
        row.as_ref().map(order_from_row).transpose()
    }

    async fn insert(&mut self, order: &Order) -> Result<(), StoreError> {
        let lines =
            serde_json::to_value(order.lines()).map_err(|e| StoreError::Unexpected(Box::new(e)))?;
        let a = order.shipping_address();
        let reason = order.cancellation_reason();
        sqlx::query(INSERT_ORDER)
            .bind(order.id().as_uuid())
            .bind(order.customer_id().as_str())
            .bind(lines)
            .bind(order.total().amount())
            .bind(order.total().currency().as_str())
            .bind(a.recipient())
            .bind(a.line1())
            .bind(a.city())
            .bind(a.postal_code())
            .bind(a.country().as_str())
            .bind(order.status().as_str())
            .bind(order.delivery_id().map(|d| *d.as_uuid()))
            .bind(reason.map(CancellationReason::kind))
            .bind(reason.and_then(CancellationReason::detail))
            .bind(version(order.version())?)
            .bind(order.created_at())
            .bind(order.updated_at())
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed(e))?;
        Ok(())
    }

    async fn update(&mut self, order: &Order, expected_version: u64) -> Result<(), StoreError> {
        let reason = order.cancellation_reason();
        let done = sqlx::query(UPDATE_ORDER)
            .bind(order.id().as_uuid())
            .bind(order.status().as_str())
            .bind(order.delivery_id().map(|d| *d.as_uuid()))
            .bind(reason.map(CancellationReason::kind))
            .bind(reason.and_then(CancellationReason::detail))
            .bind(version(order.version())?)
            .bind(order.updated_at())
            .bind(version(expected_version)?)
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed(e))?;
        updated_one(&done)
    }

    async fn list(&mut self, query: &OrderQuery) -> Result<Vec<Order>, StoreError> {
        let after = query.after.map_or(Uuid::nil(), |id| *id.as_uuid());
        let limit = i64::from(query.limit);
        let rows = match query.status {
            Some(status) => sqlx::query(LIST_ORDERS_BY_STATUS)
                .bind(status.as_str())
                .bind(after)
                .bind(limit),
            None => sqlx::query(LIST_ORDERS).bind(after).bind(limit),
        }
        .fetch_all(&mut *self.0.tx)
        .await
        .map_err(|e| self.0.failed(e))?;
        rows.iter().map(order_from_row).collect()
    }
}

#[async_trait]
impl SagaRepository for PgOrderTx {
    async fn get(&mut self, order_id: OrderId) -> Result<Option<FulfilmentSaga>, StoreError> {
        let row = sqlx::query(GET_SAGA)
            .bind(order_id.as_uuid())
            .fetch_optional(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed(e))?;
        row.as_ref().map(saga_from_row).transpose()
    }

    async fn get_many(&mut self, order_ids: &[OrderId]) -> Result<Vec<FulfilmentSaga>, StoreError> {
        let ids: Vec<uuid::Uuid> = order_ids.iter().map(|id| *id.as_uuid()).collect();
        let rows = sqlx::query(GET_SAGAS)
            .bind(ids)
            .fetch_all(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed(e))?;
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
            .map_err(|e| self.0.failed(e))?;
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
            .map_err(|e| self.0.failed(e))?;
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
            .map_err(|e| self.0.failed(e))?;
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
            .map_err(|e| self.0.failed(e))?;
        rows.iter().map(saga_from_row).collect()
    }

    async fn count_by_state(&mut self) -> Result<Vec<(SagaState, u64)>, StoreError> {
        let rows = sqlx::query(COUNT_SAGAS)
            .fetch_all(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed(e))?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get(0).map_err(classify)?;
                let n: i64 = row.try_get(1).map_err(classify)?;
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

#[async_trait]
impl IdempotencyStore for PgOrderTx {
    async fn claim(
        &mut self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        at: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        // A concurrent claim of the same key blocks on the primary key until the first
        // transaction ends; then it conflicts (and reads the stored response) or, if the first
        // rolled back, succeeds. The database decides, never a process-local lock.
        let inserted = sqlx::query(CLAIM_KEY)
            .bind(scope)
            .bind(key)
            .bind(fingerprint)
            .bind(at)
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed(e))?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Claimed);
        }
        let row = sqlx::query(GET_KEY)
            .bind(scope)
            .bind(key)
            .fetch_optional(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed(e))?
            // Purged between the two statements: the caller may simply retry.
            .ok_or(StoreError::Conflict)?;
        let status: Option<i16> = row.try_get("response_status").map_err(classify)?;
        let body: Option<Vec<u8>> = row.try_get("response_body").map_err(classify)?;
        let response = match (status, body) {
            (Some(status), Some(body)) => Some(StoredResponse {
                status: u16::try_from(status).map_err(|_| corrupt("response status", status))?,
                body,
            }),
            _ => None,
        };
        Ok(Claim::Existing(IdempotencyRecord {
            fingerprint: row.try_get("fingerprint").map_err(classify)?,
            response,
            created_at: row.try_get("created_at").map_err(classify)?,
        }))
    }

    async fn complete(
        &mut self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let status = i16::try_from(response.status).map_err(|_| {
            StoreError::Unexpected(format!("status {} out of range", response.status).into())
        })?;
        let done = sqlx::query(COMPLETE_KEY)
            .bind(scope)
            .bind(key)
            .bind(status)
            .bind(&response.body)
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed(e))?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Unexpected(
                "idempotency key was not claimed".into(),
            ))
        }
    }

    async fn purge(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(PURGE_KEYS)
            .bind(before)
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed(e))?;
        Ok(done.rows_affected())
    }
}
