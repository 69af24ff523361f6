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
use crate::schema::Schema;
use crate::tx::{bind_message, message_from_columns};

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
        let mut batch = FeedBatch::default();
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

/// The parts of the `pgoutput` logical replication protocol (version 1) the feed needs: relation
/// descriptions, inserts with their values in text form, commits.
mod pgoutput {
    use std::collections::HashMap;

    /// What one message of the stream means to the feed.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) enum Change<'a> {
        /// A row inserted into `table` (schema, name), with its columns' text values.
        Insert {
            table: (&'a str, &'a str),
            values: Vec<(String, Option<String>)>,
        },
        /// The end of a transaction.
        Commit,
        /// Anything else (begin, relation, type, origin, updates, deletes…).
        Other,
    }

    struct Relation {
        schema: String,
        name: String,
        columns: Vec<String>,
    }

    /// Decodes a stream's messages in order, remembering the relations it described.
    #[derive(Default)]
    pub(super) struct Decoder {
        relations: HashMap<u32, Relation>,
    }

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if self.0.len() < n {
                return Err(format!(
                    "truncated: wanted {n} bytes, {} left",
                    self.0.len()
                ));
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn u8(&mut self) -> Result<u8, String> {
            Ok(self.take(1)?[0])
        }
        fn i16(&mut self) -> Result<i16, String> {
            let b = self.take(2)?;
            Ok(i16::from_be_bytes([b[0], b[1]]))
        }
        fn u32(&mut self) -> Result<u32, String> {
            let b = self.take(4)?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        fn i32(&mut self) -> Result<i32, String> {
            let b = self.take(4)?;
            Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        fn cstring(&mut self) -> Result<String, String> {
            let end = self
                .0
                .iter()
                .position(|b| *b == 0)
                .ok_or("unterminated string")?;
            let text = String::from_utf8(self.take(end)?.to_vec()).map_err(|e| e.to_string())?;
            self.take(1)?;
            Ok(text)
        }
    }

    impl Decoder {
        pub(super) fn decode(&mut self, data: &[u8]) -> Result<Change<'_>, String> {
            let mut r = Reader(data);
            match r.u8()? {
                b'R' => {
                    let id = r.u32()?;
                    let schema = r.cstring()?;
                    let name = r.cstring()?;
                    let _replica_identity = r.u8()?;
                    let count = r.i16()?;
                    let mut columns = Vec::new();
                    for _ in 0..count {
                        let _flags = r.u8()?;
                        columns.push(r.cstring()?);
                        let _type = r.u32()?;
                        let _modifier = r.i32()?;
                    }
                    self.relations.insert(
                        id,
                        Relation {
                            schema,
                            name,
                            columns,
                        },
                    );
                    Ok(Change::Other)
                }
                b'I' => {
                    let id = r.u32()?;
                    if r.u8()? != b'N' {
                        return Err("insert without a new tuple".into());
                    }
                    let relation = self
                        .relations
                        .get(&id)
                        .ok_or_else(|| format!("insert into undescribed relation {id}"))?;
                    let count = usize::try_from(r.i16()?).map_err(|e| e.to_string())?;
                    let mut values = Vec::with_capacity(count);
                    for column in relation.columns.iter().take(count) {
                        let value = match r.u8()? {
                            b'n' | b'u' => None,
                            b't' => {
                                let len = usize::try_from(r.i32()?).map_err(|e| e.to_string())?;
                                Some(
                                    String::from_utf8(r.take(len)?.to_vec())
                                        .map_err(|e| e.to_string())?,
                                )
                            }
                            other => return Err(format!("unknown column kind {other}")),
                        };
                        values.push((column.clone(), value));
                    }
                    Ok(Change::Insert {
                        table: (relation.schema.as_str(), relation.name.as_str()),
                        values,
                    })
                }
                b'C' => Ok(Change::Commit),
                _ => Ok(Change::Other),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn relation() -> Vec<u8> {
            let mut m = vec![b'R'];
            m.extend(16_385_u32.to_be_bytes());
            m.extend(b"orders\0outbox\0");
            m.push(b'd');
            m.extend(2_i16.to_be_bytes());
            for name in ["id", "topic"] {
                m.push(0);
                m.extend(name.as_bytes());
                m.push(0);
                m.extend(25_u32.to_be_bytes());
                m.extend((-1_i32).to_be_bytes());
            }
            m
        }

        fn insert(relation: u32, topic: Option<&str>) -> Vec<u8> {
            let mut m = vec![b'I'];
            m.extend(relation.to_be_bytes());
            m.push(b'N');
            m.extend(2_i16.to_be_bytes());
            m.push(b't');
            m.extend(1_i32.to_be_bytes());
            m.push(b'7');
            match topic {
                Some(t) => {
                    m.push(b't');
                    m.extend(i32::try_from(t.len()).expect("short").to_be_bytes());
                    m.extend(t.as_bytes());
                }
                None => m.push(b'n'),
            }
            m
        }

        #[test]
        fn an_insert_is_read_with_the_columns_its_relation_described() {
            let mut d = Decoder::default();
            assert_eq!(d.decode(&relation()), Ok(Change::Other));
            assert_eq!(
                d.decode(&insert(16_385, Some("ordership.order.events"))),
                Ok(Change::Insert {
                    table: ("orders", "outbox"),
                    values: vec![
                        ("id".into(), Some("7".into())),
                        ("topic".into(), Some("ordership.order.events".into())),
                    ],
                })
            );
            assert_eq!(
                d.decode(&insert(16_385, None)),
                Ok(Change::Insert {
                    table: ("orders", "outbox"),
                    values: vec![("id".into(), Some("7".into())), ("topic".into(), None)],
                })
            );
            assert_eq!(d.decode(b"C\0"), Ok(Change::Commit));
        }

        #[test]
        fn broken_input_is_an_error_not_a_panic() {
            let mut d = Decoder::default();
            assert!(d.decode(&insert(16_385, Some("x"))).is_err(), "undescribed");
            let r = relation();
            for cut in 1..r.len() {
                assert!(
                    Decoder::default().decode(&r[..cut]).is_err(),
                    "cut at {cut}"
                );
            }
            d.decode(&r).expect("relation");
            let i = insert(16_385, Some("topic"));
            for cut in 1..i.len() {
                assert!(d.decode(&i[..cut]).is_err(), "cut at {cut}");
            }
        }
    }
}
