//! The outbox of every service's schema: appended in the effect's transaction (and, in CDC
//! mode, deleted in it again), claimed under the relay lock, parked, marked and purged.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::ports::{Outbox, OutboxStats, ParkedMessage, StoreError};
use ordership_domain::relay_shards::{Shards, WantedShards};
use ordership_domain::{Message, MessageId, OutboxEntry};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Row};
use uuid::Uuid;

use crate::error::{corrupt, failed_in};
use crate::unit_of_work::{OutboxMode, PgTx, count};

/// What the `headers` column holds besides the payload.
#[derive(Debug, Serialize, Deserialize)]
struct Headers {
    source: String,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    traceparent: Option<String>,
}

#[async_trait]
impl Outbox for PgTx {
    async fn append(&mut self, message: &Message) -> Result<(), StoreError> {
        self.append_all(std::slice::from_ref(message)).await
    }

    async fn append_all(&mut self, messages: &[Message]) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        match self.outbox {
            OutboxMode::Poll => {
                bind_messages(self.schema.sql.append, messages)?
                    .execute(&mut *self.tx)
                    .await
                    .map_err(|e| self.failed("outbox::append", e))?;
            }
            OutboxMode::Cdc => {
                let ids: Vec<i64> = bind_messages(self.schema.sql.cdc.append_returning, messages)?
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(|e| self.failed("outbox::append", e))?
                    .iter()
                    .map(|row| row.try_get(0).map_err(failed_in("outbox::append")))
                    .collect::<Result<_, _>>()?;
                sqlx::query(self.schema.sql.cdc.delete_appended)
                    .bind(ids)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(|e| self.failed("outbox::append", e))?;
            }
        }
        Ok(())
    }

    async fn try_lock_relay(&mut self, wanted: WantedShards) -> Result<Shards, StoreError> {
        let as_sql = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        let query = match &wanted {
            WantedShards::Every => sqlx::query(self.schema.relay.lock_every),
            WantedShards::Only(indexes) => sqlx::query(self.schema.relay.lock_only)
                .bind(indexes.iter().copied().map(as_sql).collect::<Vec<i32>>()),
        };
        let rows = query
            .fetch_all(&mut *self.tx)
            .await
            .map_err(|e| self.failed("outbox::try_lock_relay", e))?;
        let mut held = Shards::default();
        for row in &rows {
            let index: i32 = row
                .try_get(0)
                .map_err(failed_in("outbox::try_lock_relay"))?;
            // NULL: another relay holds it.
            let count: Option<i32> = row
                .try_get(1)
                .map_err(failed_in("outbox::try_lock_relay"))?;
            if let (Ok(index), Some(Ok(count))) = (u32::try_from(index), count.map(u32::try_from)) {
                held.count = count;
                if index < count {
                    held.indexes.push(index);
                }
            }
        }
        held.indexes.sort_unstable();
        Ok(held)
    }

    async fn claim_unpublished(
        &mut self,
        shards: &Shards,
        limit: u32,
        skip: &[i64],
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let as_sql = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        // Every shard is the whole outbox: one shard of one.
        let (count, indexes) =
            if !shards.is_empty() && shards.indexes.len() == shards.count as usize {
                (1, vec![0])
            } else {
                (shards.count, shards.indexes.clone())
            };
        let one = match indexes.as_slice() {
            [index] => Some(as_sql(*index)),
            _ => None,
        };
        let sql = if one.is_some() {
            self.schema.sql.claim
        } else {
            self.schema.sql.claim_in
        };
        let query = sqlx::query(sql)
            .bind(i64::from(limit))
            .bind(skip)
            .bind(as_sql(count));
        let rows = match one {
            Some(index) => query.bind(index),
            None => query.bind(indexes.iter().copied().map(as_sql).collect::<Vec<i32>>()),
        }
        .fetch_all(&mut *self.tx)
        .await
        .map_err(|e| self.failed("outbox::claim_unpublished", e))?;
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
            .map_err(|e| self.failed("outbox::mark_published", e))?;
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
            .map_err(|e| self.failed("outbox::park", e))?;
        Ok(())
    }

    async fn stats(&mut self) -> Result<OutboxStats, StoreError> {
        let row = sqlx::query(self.schema.sql.stats)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(|e| self.failed("outbox::stats", e))?;
        Ok(OutboxStats {
            pending: count(
                row.try_get(0).map_err(failed_in("outbox::stats"))?,
                "outbox count",
            )?,
            oldest_pending_at: row.try_get(1).map_err(failed_in("outbox::stats"))?,
            parked: count(
                row.try_get(2).map_err(failed_in("outbox::stats"))?,
                "parked count",
            )?,
        })
    }

    async fn purge_published(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(self.schema.sql.purge)
            .bind(before)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.failed("outbox::purge_published", e))?;
        Ok(done.rows_affected())
    }

    async fn parked(&mut self, limit: u32) -> Result<Vec<ParkedMessage>, StoreError> {
        let rows = sqlx::query(self.schema.sql.parked)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(|e| self.failed("outbox::parked", e))?;
        rows.iter()
            .map(|row| {
                Ok(ParkedMessage {
                    entry: outbox_entry(row)?,
                    reason: row
                        .try_get::<Option<String>, _>("parked_reason")
                        .map_err(failed_in("outbox::parked"))?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn purge_parked(&mut self, positions: &[i64]) -> Result<u64, StoreError> {
        let done = sqlx::query(self.schema.sql.purge_parked)
            .bind(positions)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.failed("outbox::purge_parked", e))?;
        Ok(done.rows_affected())
    }

    async fn redrive_parked(&mut self, positions: &[i64]) -> Result<u64, StoreError> {
        match self.outbox {
            // The polling relay claims the row again, in its place.
            OutboxMode::Poll => {
                let done = sqlx::query(self.schema.sql.unpark)
                    .bind(positions)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(|e| self.failed("outbox::redrive_parked", e))?;
                Ok(done.rows_affected())
            }
            // The CDC relay reads inserts from the log: the message is written again.
            OutboxMode::Cdc => {
                let rows = sqlx::query(self.schema.sql.purge_parked)
                    .bind(positions)
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(|e| self.failed("outbox::redrive_parked", e))?;
                let messages = rows
                    .iter()
                    .map(|row| outbox_entry(row).map(|e| e.message))
                    .collect::<Result<Vec<_>, _>>()?;
                self.append_all(&messages).await?;
                Ok(messages.len() as u64)
            }
        }
    }
}

/// An outbox statement with the seven columns of `messages` bound as arrays `$1`…`$7`, in the
/// order of [`bind_message`].
fn bind_messages<'q>(
    sql: &'static str,
    messages: &[Message],
) -> Result<sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>, StoreError> {
    let n = messages.len();
    let (mut ids, mut topics, mut keys, mut types) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut payloads, mut headers, mut created) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for message in messages {
        ids.push(*message.id.as_uuid());
        topics.push(message.topic.clone());
        keys.push(message.key.clone());
        types.push(message.message_type.clone());
        payloads.push(message.payload.clone());
        headers.push(headers_of(message)?);
        created.push(message.occurred_at);
    }
    Ok(sqlx::query(sql)
        .bind(ids)
        .bind(topics)
        .bind(keys)
        .bind(types)
        .bind(payloads)
        .bind(headers)
        .bind(created))
}

/// The `headers` column of a message.
fn headers_of(message: &Message) -> Result<serde_json::Value, StoreError> {
    let headers = Headers {
        source: message.source.clone(),
        correlation_id: message.correlation_id,
        causation_id: message.causation_id.map(|c| *c.as_uuid()),
        traceparent: message.traceparent.clone(),
    };
    serde_json::to_value(&headers).map_err(|e| StoreError::Unexpected(Box::new(e)))
}

/// An outbox statement with a message's seven columns bound as `$1`…`$7`: message id, topic,
/// key, type, payload, headers (source, correlation, causation, traceparent), creation time.
pub(crate) fn bind_message<'q>(
    sql: &'static str,
    message: &'q Message,
) -> Result<sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>, StoreError> {
    let headers = headers_of(message)?;
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
    let created_at: DateTime<Utc> = row
        .try_get("created_at")
        .map_err(failed_in("outbox::outbox_entry"))?;
    let message = message_from_columns(
        row.try_get("message_id")
            .map_err(failed_in("outbox::outbox_entry"))?,
        row.try_get("topic")
            .map_err(failed_in("outbox::outbox_entry"))?,
        row.try_get("key")
            .map_err(failed_in("outbox::outbox_entry"))?,
        row.try_get("message_type")
            .map_err(failed_in("outbox::outbox_entry"))?,
        row.try_get("payload")
            .map_err(failed_in("outbox::outbox_entry"))?,
        row.try_get("headers")
            .map_err(failed_in("outbox::outbox_entry"))?,
        created_at,
    )?;
    Ok(OutboxEntry {
        position: row
            .try_get("id")
            .map_err(failed_in("outbox::outbox_entry"))?,
        message,
        created_at,
    })
}
