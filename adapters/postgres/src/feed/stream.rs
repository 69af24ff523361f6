//! The reading side of the feed: the replication session, the transactions read on it, and what
//! was yielded to the relay and not yet confirmed.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ordership_domain::Message;
use ordership_domain::ports::{FeedBatch, FeedPosition, StoreError};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};

use super::pgoutput;
use crate::error::corrupt;
use crate::outbox::message_from_columns;

/// Reconnecting after a failure waits this long, doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The reading side of the feed: the replication session and what it read.
#[derive(Default)]
pub(super) struct Stream {
    /// The session holding the slot; `None` before the first read, after a failure, and while
    /// another reader holds the slot.
    pub(super) client: Option<ReplicationClient>,
    /// No connection attempt before this (standby, or backing off after a failure).
    pub(super) not_before: Option<Instant>,
    /// Consecutive failures, for the backoff.
    pub(super) failures: u32,
    /// Relations described on this session.
    pub(super) decoder: pgoutput::Decoder,
    /// Messages of the transaction being read, and whether one is open.
    pub(super) open: Vec<Message>,
    pub(super) in_transaction: bool,
    /// Whole transactions read but not yet yielded, and the end of the last one.
    pub(super) ready: Vec<Message>,
    pub(super) ready_up_to: Option<Lsn>,
    /// Yielded but not confirmed: yielded again until confirmed.
    pub(super) yielded: Option<FeedBatch>,
    /// Everything up to here reached the broker.
    pub(super) confirmed: Lsn,
}

impl Stream {
    /// Forgets the session and everything read on it: a new session streams again from the
    /// confirmed position.
    pub(super) fn reset(&mut self, retry_after: Duration) {
        *self = Self {
            not_before: Some(Instant::now() + retry_after),
            failures: self.failures,
            confirmed: self.confirmed,
            ..Self::default()
        };
    }

    /// A failure: reset, and back off longer each time.
    pub(super) fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << self.failures.min(8).saturating_sub(1))
            .min(MAX_BACKOFF);
        self.reset(backoff);
    }

    /// Takes one event of the stream into the buffers.
    pub(super) fn take(&mut self, event: ReplicationEvent, schema: &str) -> Result<(), StoreError> {
        match event {
            ReplicationEvent::Begin { .. } => self.in_transaction = true,
            ReplicationEvent::XLogData { data, .. } => match self
                .decoder
                .decode(&data)
                .map_err(|e| corrupt("pgoutput message", e))?
            {
                pgoutput::Change::Insert { table, values } if table == (schema, "outbox") => {
                    if let Some(message) = outbox_message(&values)? {
                        self.open.push(message);
                    }
                }
                pgoutput::Change::Insert { .. }
                | pgoutput::Change::Commit
                | pgoutput::Change::Other => {}
            },
            ReplicationEvent::Commit { end_lsn, .. } => {
                self.in_transaction = false;
                self.ready.append(&mut self.open);
                self.ready_up_to = Some(end_lsn);
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                // Nothing read is waiting for the broker: the slot may move past the log the
                // server has looked at (other tables, other databases), so it holds none of it.
                let idle =
                    !self.in_transaction && self.ready_up_to.is_none() && self.yielded.is_none();
                if idle && wal_end > self.confirmed {
                    self.confirmed = wal_end;
                    if let Some(client) = &self.client {
                        client.update_applied_lsn(wal_end);
                    }
                }
            }
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    /// The whole transactions read so far as a batch, to be yielded until confirmed.
    pub(super) fn yield_ready(&mut self, more: bool) -> FeedBatch {
        let batch = FeedBatch {
            messages: std::mem::take(&mut self.ready),
            up_to: self
                .ready_up_to
                .take()
                .map(|lsn| FeedPosition(lsn.to_string())),
            more,
        };
        if batch.up_to.is_some() {
            self.yielded = Some(batch.clone());
        }
        batch
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
