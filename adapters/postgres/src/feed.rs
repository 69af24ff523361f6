//! The outbox as a change feed (the CDC relay mode, the Debezium way): a logical replication slot
//! with the `pgoutput` plugin reads the outbox's inserts from the write-ahead log, through the
//! schema's publication. The slot's confirmed position advances only when the relay confirms a
//! batch the broker acknowledged, so a crash replays from there. Rows may be deleted in the very
//! transaction that inserted them (the CDC-mode outbox does): the log still has the insert.
//!
//! The slot is read with `pg_logical_slot_peek_binary_changes` over an ordinary connection and
//! advanced with `pg_replication_slot_advance`, so no replication-protocol client is needed. A slot
//! this schema created and recorded, but that the server no longer has, was lost together with the
//! messages committed since: opening the feed then fails loudly instead of starting afresh.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::Message;
use ordership_domain::ports::{FeedBatch, FeedPosition, OutboxFeed, StoreError};
use sqlx::{PgPool, Row};

use crate::error::{classify, corrupt};
use crate::outbox::{bind_message, message_from_columns};
use crate::pgoutput;
use crate::schema::Schema;

const CURRENT_DATABASE: &str = "SELECT current_database()";
const SLOT_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)";
const CREATE_SLOT: &str = "SELECT pg_create_logical_replication_slot($1, 'pgoutput')";
const DROP_SLOT: &str = "SELECT pg_drop_replication_slot($1)";
const PEEK: &str = "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, \
     'proto_version', '1', 'publication_names', $3)";
const ADVANCE: &str = "SELECT pg_replication_slot_advance($1, $2::pg_lsn)";
const LAG: &str = "SELECT COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint \
     FROM pg_replication_slots WHERE slot_name = $1";
/// SQLSTATE `object_in_use`: another session reads the slot.
const OBJECT_IN_USE: &str = "55006";
/// SQLSTATE `duplicate_object`: the slot exists already.
const DUPLICATE_OBJECT: &str = "42710";

/// One schema's outbox, read from the log.
#[derive(Debug, Clone)]
pub struct PgOutboxFeed {
    pool: PgPool,
    schema: &'static Schema,
    slot: String,
}

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

/// `ordership_<database>_<schema>`, within the 63 characters and the alphabet slots allow.
fn slot_name(database: &str, schema: &str) -> String {
    let clean: String = database
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let suffix = format!("_{schema}");
    let mut name = format!("ordership_{clean}");
    name.truncate(63 - suffix.len());
    name + &suffix
}

impl PgOutboxFeed {
    /// Opens the feed of `schema` (migrated), creating its replication slot on first use.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] if the slot this schema recorded is gone (messages may have been
    /// lost with it: drop the `cdc_slot` row only once that is dealt with), or `wal_level` is not
    /// `logical`; [`StoreError::Unavailable`] if the database cannot be reached.
    pub async fn open(pool: PgPool, schema: &'static Schema) -> Result<Self, StoreError> {
        let database: String = sqlx::query_scalar(CURRENT_DATABASE)
            .fetch_one(&pool)
            .await
            .map_err(classify)?;
        let slot = slot_name(&database, schema.name);
        let exists: bool = sqlx::query_scalar(SLOT_EXISTS)
            .bind(&slot)
            .fetch_one(&pool)
            .await
            .map_err(classify)?;
        let recorded: bool = sqlx::query_scalar(schema.sql.cdc.slot_recorded)
            .bind(&slot)
            .fetch_one(&pool)
            .await
            .map_err(classify)?;
        if !exists {
            if recorded {
                return Err(StoreError::Unexpected(
                    format!(
                        "replication slot {slot} was lost: outbox messages committed since it \
                         disappeared may never reach the broker. Recover them, then delete the row \
                         from {}.cdc_slot to start a new slot",
                        schema.name
                    )
                    .into(),
                ));
            }
            match sqlx::query(CREATE_SLOT).bind(&slot).execute(&pool).await {
                Ok(_) => tracing::info!(%slot, "replication slot created"),
                // Another instance created it a moment ago.
                Err(e) if sqlstate(&e).as_deref() == Some(DUPLICATE_OBJECT) => {}
                Err(e) => return Err(classify(e)),
            }
        }
        sqlx::query(schema.sql.cdc.record_slot)
            .bind(&slot)
            .execute(&pool)
            .await
            .map_err(classify)?;
        Ok(Self { pool, schema, slot })
    }

    /// The replication slot's name.
    #[must_use]
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// Drops the slot and forgets it (tests, and taking CDC mode out of service).
    ///
    /// # Errors
    /// The database's failure.
    pub async fn drop_slot(self) -> Result<(), StoreError> {
        sqlx::query(DROP_SLOT)
            .bind(&self.slot)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

#[async_trait]
impl OutboxFeed for PgOutboxFeed {
    async fn peek(&self, max_messages: u32) -> Result<FeedBatch, StoreError> {
        let rows = match sqlx::query(PEEK)
            .bind(&self.slot)
            .bind(i32::try_from(max_messages).unwrap_or(i32::MAX))
            .bind(self.schema.sql.cdc.publication)
            .fetch_all(&self.pool)
            .await
        {
            Ok(rows) => rows,
            // Another relay reads the slot now; it keeps the order.
            Err(e) if sqlstate(&e).as_deref() == Some(OBJECT_IN_USE) => {
                return Ok(FeedBatch::default());
            }
            Err(e) => return Err(classify(e)),
        };
        let mut decoder = pgoutput::Decoder::default();
        // The limit counts the log's changes (begin, relation, insert, commit), not messages:
        // a read that reached it stopped early, whatever number of messages it holds.
        let mut batch = FeedBatch {
            more: rows.len() >= usize::try_from(max_messages).unwrap_or(usize::MAX),
            ..FeedBatch::default()
        };
        let mut in_transaction = Vec::new();
        for row in &rows {
            let lsn: String = row.try_get(0).map_err(classify)?;
            let data: Vec<u8> = row.try_get(1).map_err(classify)?;
            match decoder
                .decode(&data)
                .map_err(|e| corrupt("pgoutput message", e))?
            {
                pgoutput::Change::Insert { table, values }
                    if table == (self.schema.name, "outbox") =>
                {
                    if let Some(message) = outbox_message(&values)? {
                        in_transaction.push(message);
                    }
                }
                pgoutput::Change::Commit => {
                    batch.messages.append(&mut in_transaction);
                    batch.up_to = Some(FeedPosition(lsn));
                }
                pgoutput::Change::Other => {}
                pgoutput::Change::Insert { .. } => {}
            }
        }
        Ok(batch)
    }

    async fn confirm(&self, position: &FeedPosition) -> Result<(), StoreError> {
        sqlx::query(ADVANCE)
            .bind(&self.slot)
            .bind(&position.0)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn park(&self, message: &Message, reason: &str) -> Result<(), StoreError> {
        bind_message(self.schema.sql.cdc.park, message)?
            .bind(Utc::now())
            .bind(reason)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn lag_bytes(&self) -> Result<u64, StoreError> {
        let lag: Option<i64> = sqlx::query_scalar(LAG)
            .bind(&self.slot)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let lag = lag.ok_or_else(|| {
            StoreError::Unexpected(format!("replication slot {} is gone", self.slot).into())
        })?;
        Ok(u64::try_from(lag).unwrap_or_default())
    }
}

/// The message of an outbox insert; `None` for a parked row (written by `park`, not to be sent).
fn outbox_message(values: &[(String, Option<String>)]) -> Result<Option<Message>, StoreError> {
    let get = |name: &str| -> Option<&str> {
        values
            .iter()
            .find(|(column, _)| column == name)
            .and_then(|(_, v)| v.as_deref())
    };
    if get("parked_at").is_some() {
        return Ok(None);
    }
    let text = |name: &'static str| get(name).ok_or_else(|| corrupt("outbox insert", name));
    let json = |name: &'static str| -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(text(name)?).map_err(|e| corrupt("outbox insert json", e))
    };
    let message_id = uuid::Uuid::parse_str(text("message_id")?)
        .map_err(|e| corrupt("outbox insert message_id", e))?;
    let created_at = DateTime::parse_from_str(text("created_at")?, "%Y-%m-%d %H:%M:%S%.f%#z")
        .map_err(|e| corrupt("outbox insert created_at", e))?
        .with_timezone(&Utc);
    message_from_columns(
        message_id,
        text("topic")?.to_owned(),
        text("key")?.to_owned(),
        text("message_type")?.to_owned(),
        json("payload")?,
        json("headers")?,
        created_at,
    )
    .map(Some)
}
