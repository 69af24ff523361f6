//! The unit of work on one `sqlx::Transaction`, and the outbox and inbox every service has.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::ports::{
    DeliveryRepository, DeliveryTransaction, IdempotencyStore, Inbox, OrderRepository,
    OrderTransaction, Outbox, OutboxStats, SagaRepository, StoreError, Transaction, UnitOfWork,
};
use ordership_domain::{Message, MessageId, OutboxEntry};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, Row};
use uuid::Uuid;

use crate::error::{classify, corrupt};
use crate::schema::{DELIVERY, ORDERS, Schema};

/// One open transaction on one service's schema.
pub struct PgTx {
    pub(crate) tx: sqlx::Transaction<'static, Postgres>,
    schema: &'static Schema,
    /// A statement failed: PostgreSQL has aborted the transaction, and a `COMMIT` would silently
    /// roll back. Commit refuses instead.
    aborted: bool,
    /// How outbox messages are stored.
    outbox: OutboxMode,
}

/// How the outbox is relayed, which decides how messages are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutboxMode {
    /// Rows stay until the polling relay marks them published (retention purges them later).
    #[default]
    Poll,
    /// Rows are inserted and deleted in the same transaction: the CDC relay reads the insert from
    /// the transaction log, and the table does not grow.
    Cdc,
}

impl PgTx {
    /// Classifies a failed statement and remembers that the transaction is now aborted.
    pub(crate) fn failed(&mut self, error: sqlx::Error) -> StoreError {
        self.aborted = true;
        classify(error)
    }

    async fn commit(self) -> Result<(), StoreError> {
        if self.aborted {
            // Dropping rolls back.
            return Err(StoreError::Unexpected(
                "commit of a transaction in which a statement failed; it was rolled back".into(),
            ));
        }
        self.tx.commit().await.map_err(classify)
    }
}

impl std::fmt::Debug for PgTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTx")
            .field("schema", &self.schema.name)
            .finish_non_exhaustive()
    }
}

/// A transaction of the order service.
#[derive(Debug)]
pub struct PgOrderTx(pub(crate) PgTx);

/// A transaction of the delivery service.
#[derive(Debug)]
pub struct PgDeliveryTx(pub(crate) PgTx);

async fn begin(
    pool: &PgPool,
    schema: &'static Schema,
    outbox: OutboxMode,
) -> Result<PgTx, StoreError> {
    let tx = pool.begin().await.map_err(classify)?;
    Ok(PgTx {
        tx,
        schema,
        aborted: false,
        outbox,
    })
}

/// One snapshot for every statement: under READ COMMITTED two reads could see different commits
/// (an order already confirmed beside its saga still waiting).
async fn begin_read_only(pool: &PgPool, schema: &'static Schema) -> Result<PgTx, StoreError> {
    let tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(classify)?;
    Ok(PgTx {
        tx,
        schema,
        aborted: false,
        outbox: OutboxMode::Poll,
    })
}

macro_rules! store {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: PgPool,
            outbox: OutboxMode,
        }

        impl $name {
            #[must_use]
            pub const fn new(pool: PgPool) -> Self {
                Self {
                    pool,
                    outbox: OutboxMode::Poll,
                }
            }

            /// Stores outbox messages for the given relay mode.
            #[must_use]
            pub const fn with_outbox_mode(mut self, outbox: OutboxMode) -> Self {
                self.outbox = outbox;
                self
            }

            #[must_use]
            pub const fn pool(&self) -> &PgPool {
                &self.pool
            }
        }
    };
}
store!(
    /// The order service's store: its pool, used through the unit-of-work port.
    PgOrderStore
);
store!(
    /// The delivery service's store.
    PgDeliveryStore
);

#[async_trait]
impl UnitOfWork<dyn OrderTransaction> for PgOrderStore {
    async fn begin(&self) -> Result<Box<dyn OrderTransaction>, StoreError> {
        Ok(Box::new(PgOrderTx(
            begin(&self.pool, &ORDERS, self.outbox).await?,
        )))
    }
    async fn begin_read_only(&self) -> Result<Box<dyn OrderTransaction>, StoreError> {
        Ok(Box::new(PgOrderTx(
            begin_read_only(&self.pool, &ORDERS).await?,
        )))
    }
}

#[async_trait]
impl UnitOfWork<dyn Transaction> for PgOrderStore {
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        Ok(Box::new(PgOrderTx(
            begin(&self.pool, &ORDERS, self.outbox).await?,
        )))
    }
}

#[async_trait]
impl UnitOfWork<dyn DeliveryTransaction> for PgDeliveryStore {
    async fn begin(&self) -> Result<Box<dyn DeliveryTransaction>, StoreError> {
        Ok(Box::new(PgDeliveryTx(
            begin(&self.pool, &DELIVERY, self.outbox).await?,
        )))
    }
    async fn begin_read_only(&self) -> Result<Box<dyn DeliveryTransaction>, StoreError> {
        Ok(Box::new(PgDeliveryTx(
            begin_read_only(&self.pool, &DELIVERY).await?,
        )))
    }
}

#[async_trait]
impl UnitOfWork<dyn Transaction> for PgDeliveryStore {
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        Ok(Box::new(PgDeliveryTx(
            begin(&self.pool, &DELIVERY, self.outbox).await?,
        )))
    }
}

macro_rules! transaction {
    ($tx:ty) => {
        #[async_trait]
        impl Transaction for $tx {
            fn outbox(&mut self) -> &mut dyn Outbox {
                &mut self.0
            }
            fn inbox(&mut self) -> &mut dyn Inbox {
                &mut self.0
            }
            async fn commit(self: Box<Self>) -> Result<(), StoreError> {
                self.0.commit().await
            }
        }
    };
}
transaction!(PgOrderTx);
transaction!(PgDeliveryTx);

impl OrderTransaction for PgOrderTx {
    fn orders(&mut self) -> &mut dyn OrderRepository {
        self
    }
    fn sagas(&mut self) -> &mut dyn SagaRepository {
        self
    }
    fn idempotency_keys(&mut self) -> &mut dyn IdempotencyStore {
        self
    }
}

impl DeliveryTransaction for PgDeliveryTx {
    fn deliveries(&mut self) -> &mut dyn DeliveryRepository {
        self
    }
}

/// What the `headers` column holds besides the payload.
#[derive(Debug, Serialize, Deserialize)]
struct Headers {
    source: String,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    traceparent: Option<String>,
}

/// An optimistic update touched its row, or the version had moved on (or the row is gone).
pub(crate) fn updated_one(done: &sqlx::postgres::PgQueryResult) -> Result<(), StoreError> {
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict)
    }
}

pub(crate) fn count(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt(what, n))
}

#[async_trait]
impl Outbox for PgTx {
    async fn append(&mut self, message: &Message) -> Result<(), StoreError> {
        match self.outbox {
            OutboxMode::Poll => {
                bind_message(self.schema.sql.append, message)?
                    .execute(&mut *self.tx)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
            OutboxMode::Cdc => {
                let row = bind_message(self.schema.sql.cdc.append_returning, message)?
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(|e| self.failed(e))?;
                let id: i64 = row.try_get(0).map_err(classify)?;
                sqlx::query(self.schema.sql.cdc.delete_appended)
                    .bind(id)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
        }
        Ok(())
    }

    async fn try_lock_relay(&mut self) -> Result<bool, StoreError> {
        let row = sqlx::query(self.schema.sql.lock_relay)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(|e| self.failed(e))?;
        row.try_get(0).map_err(classify)
    }

    async fn claim_unpublished(&mut self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = sqlx::query(self.schema.sql.claim)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(|e| self.failed(e))?;
        rows.iter().map(outbox_entry).collect()
    }

    async fn mark_published(
        &mut self,
        positions: &[i64],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(self.schema.sql.mark)
            .bind(at)
            .bind(positions)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn park(
        &mut self,
        position: i64,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(self.schema.sql.park)
            .bind(position)
            .bind(at)
            .bind(reason)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn stats(&mut self) -> Result<OutboxStats, StoreError> {
        let row = sqlx::query(self.schema.sql.stats)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(OutboxStats {
            pending: count(row.try_get(0).map_err(classify)?, "outbox count")?,
            oldest_pending_at: row.try_get(1).map_err(classify)?,
            parked: count(row.try_get(2).map_err(classify)?, "parked count")?,
        })
    }

    async fn purge_published(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(self.schema.sql.purge)
            .bind(before)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(done.rows_affected())
    }
}

/// An outbox statement with a message's seven columns bound as `$1`…`$7`: message id, topic,
/// key, type, payload, headers (source, correlation, causation, traceparent), creation time.
pub(crate) fn bind_message<'q>(
    sql: &'static str,
    message: &'q Message,
) -> Result<sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>, StoreError> {
    let headers = Headers {
        source: message.source.clone(),
        correlation_id: message.correlation_id,
        causation_id: message.causation_id.map(|c| *c.as_uuid()),
        traceparent: message.traceparent.clone(),
    };
    let headers =
        serde_json::to_value(&headers).map_err(|e| StoreError::Unexpected(Box::new(e)))?;
    Ok(sqlx::query(sql)
        .bind(message.id.as_uuid())
        .bind(&message.topic)
        .bind(&message.key)
        .bind(&message.message_type)
        .bind(&message.payload)
        .bind(headers)
        .bind(message.occurred_at))
}

/// A message from an outbox row's values, however they were read.
pub(crate) fn message_from_columns(
    message_id: Uuid,
    topic: String,
    key: String,
    message_type: String,
    payload: serde_json::Value,
    headers: serde_json::Value,
    created_at: DateTime<Utc>,
) -> Result<Message, StoreError> {
    let headers: Headers =
        serde_json::from_value(headers).map_err(|e| corrupt("outbox headers", e))?;
    Ok(Message {
        id: MessageId::from_uuid(message_id),
        topic,
        key,
        message_type,
        source: headers.source,
        payload,
        correlation_id: headers.correlation_id,
        causation_id: headers.causation_id.map(MessageId::from_uuid),
        traceparent: headers.traceparent,
        occurred_at: created_at,
    })
}

fn outbox_entry(row: &sqlx::postgres::PgRow) -> Result<OutboxEntry, StoreError> {
    let created_at: DateTime<Utc> = row.try_get("created_at").map_err(classify)?;
    let message = message_from_columns(
        row.try_get("message_id").map_err(classify)?,
        row.try_get("topic").map_err(classify)?,
        row.try_get("key").map_err(classify)?,
        row.try_get("message_type").map_err(classify)?,
        row.try_get("payload").map_err(classify)?,
        row.try_get("headers").map_err(classify)?,
        created_at,
    )?;
    Ok(OutboxEntry {
        position: row.try_get("id").map_err(classify)?,
        message,
        created_at,
    })
}

#[async_trait]
impl Inbox for PgTx {
    async fn record(
        &mut self,
        consumer: &str,
        message_id: MessageId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(self.schema.sql.inbox_record)
            .bind(consumer)
            .bind(message_id.as_uuid())
            .bind(at)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(self.schema.sql.inbox_purge)
            .bind(before)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(done.rows_affected())
    }
}
