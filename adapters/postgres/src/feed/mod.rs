//! The outbox as a change feed (the CDC relay mode, the Debezium way): a logical replication slot
//! with the `pgoutput` plugin streams the outbox's inserts from the write-ahead log, through the
//! schema's publication, over a replication connection (`pgwire-replication`). The slot's
//! confirmed position advances only when the relay confirms a batch the broker acknowledged, so a
//! crash replays from there. Rows may be deleted in the very transaction that inserted them (the
//! CDC-mode outbox does): the log still has the insert.
//!
//! The replication connection holds the slot: while it lives, no other reader gets it, so of
//! several instances one streams and the others stand by, trying again every second, until the
//! holder's connection ends (the server frees the slot when its session ends, also when the process
//! dies). A slot this schema created and recorded, but that the server no longer has, was lost
//! together with the messages committed since: opening the feed then fails loudly instead of
//! starting afresh.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use ordership_domain::Message;
use ordership_domain::ports::{FeedBatch, FeedPosition, OutboxFeed, StoreError};
use pgwire_replication::{Lsn, PgWireError, ReplicationClient, ReplicationConfig};
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::error::{classify, corrupt, failed_in};
use crate::outbox::bind_message;
use crate::schema::Schema;

mod connection;
mod pgoutput;
mod stream;

use stream::Stream;

const CURRENT_DATABASE: &str = "SELECT current_database()";
const SLOT_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)";
const CREATE_SLOT: &str = "SELECT pg_create_logical_replication_slot($1, 'pgoutput')";
const SLOT_CREATION_TIMEOUT: &str = "SET LOCAL statement_timeout = '2min'";
const DROP_SLOT: &str = "SELECT pg_drop_replication_slot($1)";
const LAG: &str = "SELECT COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint \
     FROM pg_replication_slots WHERE slot_name = $1";
/// SQLSTATE `object_in_use`: another session reads the slot.
const OBJECT_IN_USE: &str = "55006";
/// SQLSTATE `duplicate_object`: the slot exists already.
const DUPLICATE_OBJECT: &str = "42710";

/// How long a read waits for the first whole transaction when none is buffered. Commits also
/// wake the relay (`NOTIFY`), and the log reaches the stream a moment after.
const FIRST_TRANSACTION_WAIT: Duration = Duration::from_millis(50);
/// How often the confirmed position is reported to the server (the crate's standby status
/// updates): at most this much is sent again after a crash.
const STATUS_INTERVAL: Duration = Duration::from_millis(250);
/// A standby tries to take the slot over this often.
const STANDBY_RETRY: Duration = Duration::from_secs(1);
/// How long connecting and starting the stream may take.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One schema's outbox, streamed from the log.
pub struct PgOutboxFeed {
    pool: PgPool,
    schema: &'static Schema,
    slot: String,
    replication: ReplicationConfig,
    stream: Mutex<Stream>,
}

impl std::fmt::Debug for PgOutboxFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOutboxFeed")
            .field("schema", &self.schema.name)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

/// Whether the server refused the session because another one holds the slot.
fn slot_in_use(error: &PgWireError) -> bool {
    matches!(error, PgWireError::Server(text) if text.contains(OBJECT_IN_USE))
}

fn unavailable(error: PgWireError) -> StoreError {
    StoreError::Unavailable(Box::new(error))
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
            .map_err(failed_in("feed::open"))?;
        let slot = slot_name(&database, schema.name);
        let exists: bool = sqlx::query_scalar(SLOT_EXISTS)
            .bind(&slot)
            .fetch_one(&pool)
            .await
            .map_err(failed_in("feed::open"))?;
        let recorded: bool = sqlx::query_scalar(schema.sql.cdc.slot_recorded)
            .bind(&slot)
            .fetch_one(&pool)
            .await
            .map_err(failed_in("feed::open"))?;
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
            // Making a logical slot waits for every transaction running on the server (in any
            // database) to end; that may take longer than the pool's statement timeout.
            let mut tx = pool.begin().await.map_err(failed_in("feed::open"))?;
            sqlx::query(SLOT_CREATION_TIMEOUT)
                .execute(&mut *tx)
                .await
                .map_err(failed_in("feed::open"))?;
            match sqlx::query(CREATE_SLOT).bind(&slot).execute(&mut *tx).await {
                Ok(_) => {
                    tx.commit().await.map_err(failed_in("feed::open"))?;
                    tracing::info!(%slot, "replication slot created");
                }
                // Another instance created it a moment ago.
                Err(e) if sqlstate(&e).as_deref() == Some(DUPLICATE_OBJECT) => {}
                Err(e) => return Err(classify("feed::open", e)),
            }
        }
        sqlx::query(schema.sql.cdc.record_slot)
            .bind(&slot)
            .execute(&pool)
            .await
            .map_err(failed_in("feed::open"))?;
        let options = pool.connect_options();
        let host = match options.get_socket() {
            // A Unix socket: the directory, as the replication client expects it.
            Some(dir) => dir.to_string_lossy().into_owned(),
            None => options.get_host().to_owned(),
        };
        let mut replication = ReplicationConfig::new(
            host,
            options.get_username(),
            std::env::var("PGPASSWORD").unwrap_or_default(),
            database,
            slot.clone(),
            schema.sql.cdc.publication,
        );
        replication.port = options.get_port();
        replication.status_interval = STATUS_INTERVAL;
        replication.application_name = Some(format!("ordership-relay-{}", schema.name));
        Ok(Self {
            pool,
            schema,
            slot,
            replication,
            stream: Mutex::default(),
        })
    }

    /// Takes the replication connection's password (a pool's password is not readable back
    /// from it; else `PGPASSWORD`) and TLS settings (`sslmode`, `sslrootcert`, `sslcert`,
    /// `sslkey`, or their `PG*` variables) from the database URL the pool was made from.
    #[must_use]
    pub fn connecting_as(mut self, database_url: &str) -> Self {
        if let Some(password) = connection::password(database_url) {
            self.replication.password = password;
        }
        self.replication.tls = connection::tls(
            &self.pool.connect_options(),
            database_url,
            &self.replication.host,
        );
        self
    }

    /// The replication slot's name.
    #[must_use]
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// Ends the replication session (reporting the confirmed position), drops the slot and
    /// forgets it (tests, and taking CDC mode out of service).
    ///
    /// # Errors
    /// The database's failure.
    pub async fn drop_slot(&self) -> Result<(), StoreError> {
        let session = self.stream.lock().await.client.take();
        if let Some(mut client) = session {
            let _ = client.shutdown().await;
        }
        // The server frees the slot a moment after the session ended.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match sqlx::query(DROP_SLOT)
                .bind(&self.slot)
                .execute(&self.pool)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e)
                    if sqlstate(&e).as_deref() == Some(OBJECT_IN_USE)
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(classify("feed::drop_slot", e)),
            }
        }
    }

    /// Starts a replication session from the confirmed position. `Ok(false)`: another reader
    /// holds the slot (this one stands by).
    async fn connect(&self, stream: &mut Stream) -> Result<bool, StoreError> {
        let mut config = self.replication.clone();
        config.start_lsn = stream.confirmed;
        let started = async {
            let mut client = ReplicationClient::connect(config).await?;
            client.wait_started().await.map(|()| client)
        };
        match tokio::time::timeout(START_TIMEOUT, started).await {
            Ok(Ok(client)) => {
                if stream.failures > 0 || stream.not_before.is_some() {
                    tracing::info!(slot = %self.slot, "CDC relay: streaming the slot");
                }
                *stream = Stream {
                    client: Some(client),
                    confirmed: stream.confirmed,
                    ..Stream::default()
                };
                Ok(true)
            }
            Ok(Err(e)) if slot_in_use(&e) => {
                tracing::debug!(slot = %self.slot, "CDC relay: another reader holds the slot; standing by");
                stream.failures = 0;
                stream.reset(STANDBY_RETRY);
                Ok(false)
            }
            Ok(Err(e)) => {
                stream.failed();
                Err(unavailable(e))
            }
            Err(_) => {
                stream.failed();
                Err(StoreError::Unavailable(
                    format!("starting replication on slot {} timed out", self.slot).into(),
                ))
            }
        }
    }
}

#[async_trait]
impl OutboxFeed for PgOutboxFeed {
    async fn peek(&self, max_messages: u32) -> Result<FeedBatch, StoreError> {
        let mut stream = self.stream.lock().await;
        if let Some(batch) = &stream.yielded {
            return Ok(batch.clone());
        }
        if stream.client.is_none() {
            if stream.not_before.is_some_and(|t| Instant::now() < t) {
                return Ok(FeedBatch::default());
            }
            if !self.connect(&mut stream).await? {
                return Ok(FeedBatch::default());
            }
        }
        let limit = usize::try_from(max_messages).unwrap_or(usize::MAX).max(1);
        let first = tokio::time::Instant::now() + FIRST_TRANSACTION_WAIT;
        loop {
            if stream.ready.len() >= limit {
                return Ok(stream.yield_ready(true));
            }
            // Wait a little for the first transaction; after it, take only what has arrived.
            let deadline = if stream.ready_up_to.is_none() {
                first
            } else {
                tokio::time::Instant::now()
            };
            let Some(client) = stream.client.as_mut() else {
                return Ok(FeedBatch::default());
            };
            let event = match tokio::time::timeout_at(deadline, client.recv()).await {
                Err(_) => return Ok(stream.yield_ready(false)),
                Ok(Ok(Some(event))) => event,
                Ok(Ok(None)) => {
                    // The session ended (the server shut down): start again from the
                    // confirmed position.
                    stream.failed();
                    return Err(StoreError::Unavailable(
                        format!("the replication session on slot {} ended", self.slot).into(),
                    ));
                }
                Ok(Err(e)) => {
                    stream.failed();
                    return Err(unavailable(e));
                }
            };
            if let Err(e) = stream.take(event, self.schema.name) {
                stream.failed();
                return Err(e);
            }
        }
    }

    async fn confirm(&self, position: &FeedPosition) -> Result<(), StoreError> {
        let lsn = Lsn::parse(&position.0).map_err(|e| corrupt("feed position", e))?;
        let mut stream = self.stream.lock().await;
        if stream
            .yielded
            .as_ref()
            .is_some_and(|b| b.up_to.as_ref() == Some(position))
        {
            stream.yielded = None;
        }
        if lsn > stream.confirmed {
            stream.confirmed = lsn;
            stream.failures = 0;
            if let Some(client) = &stream.client {
                client.update_applied_lsn(lsn);
            }
        }
        Ok(())
    }

    async fn park(&self, message: &Message, reason: &str) -> Result<(), StoreError> {
        bind_message(self.schema.sql.cdc.park, message)?
            .bind(Utc::now())
            .bind(reason)
            .execute(&self.pool)
            .await
            .map_err(failed_in("feed::park"))?;
        Ok(())
    }

    async fn lag_bytes(&self) -> Result<u64, StoreError> {
        let lag: Option<i64> = sqlx::query_scalar(LAG)
            .bind(&self.slot)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed_in("feed::lag_bytes"))?;
        let lag = lag.ok_or_else(|| {
            StoreError::Unexpected(format!("replication slot {} is gone", self.slot).into())
        })?;
        Ok(u64::try_from(lag).unwrap_or_default())
    }
}
