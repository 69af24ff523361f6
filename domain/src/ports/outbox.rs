//! The transactional outbox: appended in the effect's transaction, claimed and marked by the
//! relay (polling mode), or read as a change feed of the transaction log (CDC mode).

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::message::{Message, OutboxEntry};
use crate::relay_shards::{Shards, WantedShards};

/// Backlog figures of an outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Waiting to be published (parked messages not included).
    pub pending: u64,
    pub oldest_pending_at: Option<DateTime<Utc>>,
    /// Refused by the broker for good and set aside (see [`Outbox::park`]).
    pub parked: u64,
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait Outbox: Send {
    /// Adds a message; it becomes visible to the relay only when the transaction commits.
    /// Call it after writing the aggregate, so per-aggregate outbox order is commit order.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] if a message with this id exists.
    async fn append(&mut self, message: &Message) -> Result<(), StoreError>;

    /// Adds `messages` in this order, as [`append`](Self::append) of each would; a store may
    /// write them all in one statement.
    ///
    /// # Errors
    /// As [`append`](Self::append); then none of them is added once the transaction ends.
    async fn append_all(&mut self, messages: &[Message]) -> Result<(), StoreError> {
        for message in messages {
            self.append(message).await?;
        }
        Ok(())
    }

    /// Takes the relay rights of the `wanted` shards of this outbox that no other transaction
    /// holds, until the transaction ends, so that of several relays only one publishes a shard at
    /// a time and one key's messages (all in one shard) never leave out of order. Returns the
    /// shards held, with the outbox's shard count as it is then (a store reads it after taking
    /// the rights, so a concurrent resharding is seen); shards another relay holds, and indexes
    /// the outbox no longer has, are left out.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn try_lock_relay(&mut self, wanted: WantedShards) -> Result<Shards, StoreError>;

    /// Locks and returns up to `limit` unpublished messages of `shards` (held by this
    /// transaction) in position order, skipping rows other transactions hold, parked messages,
    /// the later messages of a parked key, and the positions in `skip` (claimed earlier in this
    /// transaction and still on their way to the broker). A message committed late with a lower
    /// position than one already published MUST still be returned (no high-water mark).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn claim_unpublished(
        &mut self,
        shards: &Shards,
        limit: u32,
        skip: &[i64],
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Sets a claimed message aside with the reason the broker refused it for good. A parked
    /// message is not claimed again, and neither are the later messages of its key (their order
    /// depends on it) until it is dealt with; other keys flow on.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn park(
        &mut self,
        position: i64,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Marks claimed messages as published (after the broker acknowledged them).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn mark_published(
        &mut self,
        positions: &[i64],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn stats(&mut self) -> Result<OutboxStats, StoreError>;

    /// Deletes messages published before `before`; returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn purge_published(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Parked messages (see [`Outbox::park`]) in position order, at most `limit`, with their
    /// reasons: what an operator looks at.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn parked(&mut self, limit: u32) -> Result<Vec<ParkedMessage>, StoreError>;

    /// Deletes the parked messages at `positions`: an operator gave up on them, and the later
    /// messages of their keys flow on. Positions that are not parked are left alone. Returns how
    /// many were deleted.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn purge_parked(&mut self, positions: &[i64]) -> Result<u64, StoreError>;

    /// Sends the parked messages at `positions` again (the cause was fixed): they are relayed
    /// as if just committed, still before the later messages of their keys wherever the relay
    /// holds those back. Positions that are not parked are left alone. Returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn redrive_parked(&mut self, positions: &[i64]) -> Result<u64, StoreError>;
}

/// A message the broker refused for good, set aside with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedMessage {
    pub entry: OutboxEntry,
    pub reason: String,
}

/// A position in a change feed; opaque to the application (a WAL position in PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPosition(pub String);

/// What a change feed yielded.
#[derive(Debug, Default, Clone)]
pub struct FeedBatch {
    /// Committed outbox messages, in commit order.
    pub messages: Vec<Message>,
    /// Confirming this position acknowledges the whole batch; `None` when nothing was read.
    pub up_to: Option<FeedPosition>,
    /// The feed stopped at its limit: more may be waiting already, so read again at once.
    pub more: bool,
}

/// The outbox as a change feed read from the database's transaction log (the CDC relay mode):
/// every committed append, in commit order, yielded again and again until confirmed.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait OutboxFeed: Send + Sync {
    /// Whole transactions after the last confirmed position, stopping after about
    /// `max_messages`. An empty batch when another reader holds the feed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; [`StoreError::Unexpected`] if the feed is broken.
    async fn peek(&self, max_messages: u32) -> Result<FeedBatch, StoreError>;

    /// Everything up to `position` reached the broker: it is never yielded again.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`]; the batch then comes again.
    async fn confirm(&self, position: &FeedPosition) -> Result<(), StoreError>;

    /// Sets aside, with its reason, a message the broker refuses for good.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`].
    async fn park(&self, message: &Message, reason: &str) -> Result<(), StoreError>;

    /// How far the confirmed position trails the log, in bytes.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`].
    async fn lag_bytes(&self) -> Result<u64, StoreError>;
}

/// Wakes the outbox relay when new messages were committed (Postgres: `LISTEN/NOTIFY`), so it
/// need not poll fast. Relays still poll at an interval: a lost wake-up only delays.
#[async_trait::async_trait]
pub trait OutboxSignal: Send + Sync {
    /// Returns when messages may have been committed since the last call, saying whose.
    async fn committed(&self) -> Committed;
}

/// Whose messages a wake-up of [`OutboxSignal`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Messages with these key hashes (see [`Shards::hold`]): only their shards need to look.
    Keys(Vec<u32>),
    /// Not known (too many keys, or wake-ups may have been missed): every shard looks.
    Any,
}

impl Committed {
    /// Whether the relay of `shards` should look.
    #[must_use]
    pub fn concerns(&self, shards: &Shards) -> bool {
        match self {
            Self::Keys(hashes) => hashes.iter().any(|h| shards.hold(*h)),
            Self::Any => true,
        }
    }
}

/// The leases by which relay instances share an outbox's shards (see
/// [`crate::relay_shards`]). Leases decide who tries to publish a shard; the relay right of
/// [`Outbox::try_lock_relay`] decides who does.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait RelayLeases: Send + Sync {
    /// Says `owner` is alive for `term`, then applies
    /// [`plan_leases`](crate::relay_shards::plan_leases) to the shards' leases as they are and
    /// the instances alive now: leases what it holds for another `term` and gives up what it
    /// releases, atomically with respect to other instances renewing. Returns the shards
    /// `owner` now leases, with how many shards the outbox has.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn renew(&self, owner: &str, term: std::time::Duration) -> Result<Shards, StoreError>;

    /// Gives up every lease of `owner` and says it is gone (at shutdown): the others take its
    /// shards at their next renewal instead of after the leases expire.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn release(&self, owner: &str) -> Result<(), StoreError>;
}
