//! The ports: what the application needs from the outside world, as traits.
//!
//! Storage ports are reached through a [`UnitOfWork`]: `begin` opens a transaction, the
//! repositories, outbox, inbox and idempotency keys are used inside it, and nothing of it is
//! visible to anyone until [`Transaction::commit`]. Dropping a transaction without committing
//! rolls it back. Every adapter MUST give these guarantees; the shared contract tests check them.
//!
//! Each method documents the error variant an adapter MUST return in each case (`# Errors`).

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::address::CountryCode;
use crate::delivery::Delivery;
use crate::ids::{DeliveryId, MessageId, OrderId};
use crate::message::{Message, OutboxEntry};
use crate::order::{Order, OrderStatus};
use crate::saga::{FulfilmentSaga, SagaState};

/// Any error from a technology underneath a port.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every storage port.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Optimistic concurrency: the row's version is not the one the caller read. Retryable.
    #[error("the record was changed concurrently")]
    Conflict,
    /// A record with the same identity (or unique key) exists already.
    #[error("a record with this identity already exists")]
    Duplicate,
    /// The store cannot be reached or timed out. Retryable; nothing was committed.
    #[error("the store is unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else: a bug, corrupt data, a broken invariant.
    #[error("unexpected store error")]
    Unexpected(#[source] BoxError),
}

impl StoreError {
    /// Whether trying the whole unit of work again may succeed.
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict | Self::Unavailable(_))
    }
}

/// Opens transactions. `Tx` is the set of ports the transaction offers: `dyn OrderTransaction`
/// for the order service, `dyn DeliveryTransaction` for the delivery service.
#[async_trait::async_trait]
pub trait UnitOfWork<Tx: ?Sized + Send>: Send + Sync {
    /// # Errors
    /// [`StoreError::Unavailable`] if no transaction can be opened now.
    async fn begin(&self) -> Result<Box<Tx>, StoreError>;

    /// A transaction for reading only, in which every read sees the same committed state (one
    /// snapshot), so that, say, an order and its saga are never shown from two different moments.
    /// The default is [`UnitOfWork::begin`], right for stores whose transactions are serializable.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if no transaction can be opened now.
    async fn begin_read_only(&self) -> Result<Box<Tx>, StoreError> {
        self.begin().await
    }
}

/// What every transaction offers: the service's outbox and inbox, and commit.
///
/// After any error from one of its ports the transaction is unusable: drop it (it rolls back).
/// An adapter MAY fail every later call; [`Transaction::commit`] MUST then fail rather than
/// commit part of the work.
#[async_trait::async_trait]
pub trait Transaction: Send {
    fn outbox(&mut self) -> &mut dyn Outbox;
    fn inbox(&mut self) -> &mut dyn Inbox;

    /// Makes every write of this transaction visible at once, or none of them.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if a concurrent transaction won (serialization failure);
    /// [`StoreError::Unavailable`] if the outcome is that nothing was committed.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// The order service's transaction: orders, sagas and idempotency keys besides outbox and inbox.
pub trait OrderTransaction: Transaction {
    fn orders(&mut self) -> &mut dyn OrderRepository;
    fn sagas(&mut self) -> &mut dyn SagaRepository;
    fn idempotency_keys(&mut self) -> &mut dyn IdempotencyStore;
}

/// The delivery service's transaction.
pub trait DeliveryTransaction: Transaction {
    fn deliveries(&mut self) -> &mut dyn DeliveryRepository;
}

/// A page of orders, by ascending id (UUID v7: creation order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderQuery {
    pub status: Option<OrderStatus>,
    /// Only orders with an id greater than this (the cursor).
    pub after: Option<OrderId>,
    pub limit: u32,
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait OrderRepository: Send {
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn get(&mut self, id: OrderId) -> Result<Option<Order>, StoreError>;

    /// # Errors
    /// MUST return [`StoreError::Duplicate`] if an order with this id exists.
    async fn insert(&mut self, order: &Order) -> Result<(), StoreError>;

    /// Replaces the stored order if its version is still `expected_version`.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`] if the stored version differs or the order is gone.
    async fn update(&mut self, order: &Order, expected_version: u64) -> Result<(), StoreError>;

    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn list(&mut self, query: &OrderQuery) -> Result<Vec<Order>, StoreError>;
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait SagaRepository: Send {
    /// Reads the saga without locking it (for queries).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn get(&mut self, order_id: OrderId) -> Result<Option<FulfilmentSaga>, StoreError>;

    /// Reads the sagas of several orders at once, without locking them (for lists); orders
    /// without a saga are left out, in no particular order.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn get_many(&mut self, order_ids: &[OrderId]) -> Result<Vec<FulfilmentSaga>, StoreError>;

    /// Reads the saga and locks it until the transaction ends, so two replies for one order
    /// are handled one after the other.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn get_for_update(
        &mut self,
        order_id: OrderId,
    ) -> Result<Option<FulfilmentSaga>, StoreError>;

    /// # Errors
    /// MUST return [`StoreError::Duplicate`] if a saga for this order exists.
    async fn insert(&mut self, saga: &FulfilmentSaga) -> Result<(), StoreError>;

    /// # Errors
    /// MUST return [`StoreError::Conflict`] if the stored version is not `expected_version`.
    async fn update(
        &mut self,
        saga: &FulfilmentSaga,
        expected_version: u64,
    ) -> Result<(), StoreError>;

    /// Locks and returns up to `limit` sagas whose deadline is before `now`, skipping sagas that
    /// another transaction holds (so several sweepers can run at once).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn claim_overdue(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FulfilmentSaga>, StoreError>;

    /// How many sagas are in each state (states with none may be left out).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn count_by_state(&mut self) -> Result<Vec<(SagaState, u64)>, StoreError>;
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait DeliveryRepository: Send {
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn get(&mut self, id: DeliveryId) -> Result<Option<Delivery>, StoreError>;

    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn get_by_order(&mut self, order_id: OrderId) -> Result<Option<Delivery>, StoreError>;

    /// # Errors
    /// MUST return [`StoreError::Duplicate`] if a delivery with this id, or any delivery for the
    /// same order, exists (at most one delivery per order).
    async fn insert(&mut self, delivery: &Delivery) -> Result<(), StoreError>;

    /// # Errors
    /// MUST return [`StoreError::Conflict`] if the stored version is not `expected_version`.
    async fn update(
        &mut self,
        delivery: &Delivery,
        expected_version: u64,
    ) -> Result<(), StoreError>;

    /// Live (not cancelled) deliveries to `country` created on `day` (UTC). Concurrent
    /// transactions that count the same country and day MUST be serialized until they end, so
    /// two schedulers cannot both take the last slot of a day's capacity.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn count_live_on(
        &mut self,
        country: CountryCode,
        day: NaiveDate,
    ) -> Result<u64, StoreError>;
}

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

    /// Takes this outbox's relay right until the transaction ends, so that of several relays
    /// only one publishes at a time and one key's messages never leave out of order. Returns
    /// `false` when another relay holds it (this one should try again later).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn try_lock_relay(&mut self) -> Result<bool, StoreError>;

    /// Locks and returns up to `limit` unpublished messages in position order, skipping rows
    /// other transactions hold, parked messages and the later messages of a parked key. A message committed late with a lower position than one already
    /// published MUST still be returned (no high-water mark).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn claim_unpublished(&mut self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError>;

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
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait Inbox: Send {
    /// Records that `consumer` handled `message_id`, in the same transaction as the effect.
    /// Returns `false` if it was recorded before: the message is a duplicate and the caller MUST
    /// NOT apply its effect again. Implementations insert-or-ignore; they never
    /// select-then-insert.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn record(
        &mut self,
        consumer: &str,
        message_id: MessageId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Forgets entries recorded before `before`; returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn purge(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// A response to replay byte for byte. Opaque to the application: the driving adapter that made
/// it (HTTP) knows what `status` and `body` mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What was stored under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Digest of the request that first used the key.
    pub fingerprint: String,
    /// `None` while the first request is still being processed.
    pub response: Option<StoredResponse>,
    pub created_at: DateTime<Utc>,
}

/// The outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new; this transaction owns it.
    Claimed,
    /// The key was used before.
    Existing(IdempotencyRecord),
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait IdempotencyStore: Send {
    /// Claims `key` in `scope` for a request with `fingerprint`. A concurrent claim of the same
    /// key MUST wait for (or fail against) this one, never both succeed: the database decides,
    /// not a process-local lock.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn claim(
        &mut self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        at: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;

    /// Stores the response of the request that claimed `key`.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] if the key was not claimed.
    async fn complete(
        &mut self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;

    /// Forgets keys created before `before`; returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn purge(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Why a batch was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The broker cannot be reached now; publish the batch again later.
    #[error("the message broker is unavailable")]
    Unavailable(#[source] BoxError),
    /// The broker refused this message for good (too large, say). Messages before it in the
    /// batch were published.
    #[error("message {message_id} was refused: {reason}")]
    Refused {
        message_id: MessageId,
        reason: String,
    },
}

/// Sends messages to the broker (driven port of the outbox relay).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait MessagePublisher: Send + Sync {
    /// Publishes the batch and returns once the broker acknowledged every message, keeping the
    /// batch's order per key.
    ///
    /// # Errors
    /// [`PublishError::Unavailable`] if any message may not have been acknowledged;
    /// [`PublishError::Refused`] for a message the broker will never accept.
    async fn publish(&self, batch: &[Message]) -> Result<(), PublishError>;
}

/// What handling a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleOutcome {
    /// The effect was applied and committed.
    Applied,
    /// The inbox had it: acknowledged without effect.
    Duplicate,
    /// Stale or irrelevant (a reply to a saga step that is over): acknowledged without effect.
    Ignored,
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

/// Why a message was not handled. The transport decides what follows through a
/// [`crate::retry::RetryPolicy`], the same for every transport.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// A dependency is down (the database): the message is fine, so it is tried again, with
    /// backoff, for as long as it takes, without moving on. Never dead-lettered.
    #[error("a dependency is unavailable")]
    Unavailable(#[source] BoxError),
    /// This attempt failed and another may succeed (a version conflict, a race). Tried again with
    /// backoff a bounded number of times; a message that keeps failing breaks an invariant and
    /// is dead-lettered.
    #[error("transient failure")]
    Transient(#[source] BoxError),
    /// Will never succeed: undecodable, unknown type. Dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
}

impl From<StoreError> for HandleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable(Box::new(e)),
            StoreError::Conflict | StoreError::Duplicate | StoreError::Unexpected(_) => {
                Self::Transient(Box::new(e))
            }
        }
    }
}

/// A consumer of messages (driving port): what a transport calls for each message it receives.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait MessageHandler: Send + Sync {
    /// # Errors
    /// [`HandleError::Unavailable`] or [`HandleError::Transient`] to be called again with the
    /// same message later; [`HandleError::Permanent`] to have it dead-lettered.
    async fn handle(&self, message: &Message) -> Result<HandleOutcome, HandleError>;
}

/// The time. A port so that tests can move it.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// New unique ids (UUID v7 in production: time-ordered, so indexes stay compact).
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait IdGenerator: Send + Sync {
    fn new_id(&self) -> Uuid;
}

/// Wakes the outbox relay when new messages were committed (Postgres: `LISTEN/NOTIFY`), so it
/// need not poll fast. Relays still poll at an interval: a lost wake-up only delays.
#[async_trait::async_trait]
pub trait OutboxSignal: Send + Sync {
    /// Returns when messages may have been committed since the last call.
    async fn committed(&self);
}
