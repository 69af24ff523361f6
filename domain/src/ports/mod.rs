//! The ports: what the application needs from the outside world, as traits.
//!
//! Storage ports are reached through a [`UnitOfWork`]: `begin` opens a transaction, the
//! repositories, outbox, inbox and idempotency keys are used inside it, and nothing of it is
//! visible to anyone until [`Transaction::commit`]. Dropping a transaction without committing
//! rolls it back. Every adapter MUST give these guarantees; the shared contract tests check them.
//!
//! Each method documents the error variant an adapter MUST return in each case (`# Errors`).

mod changes;
mod clock;
mod dead_letters;
mod deliveries;
mod idempotency;
mod inbox;
mod messaging;
mod orders;
mod outbox;
mod rate_limit;
mod sagas;
mod unit_of_work;
mod waiting_room;

pub use changes::{OrderChangeFeed, OrderChanges};
pub use clock::{Clock, IdGenerator, RandomSource};
pub use dead_letters::{DeadLetter, DeadLetterQuery, DeadLetterSelection, DeadLetters};
pub use deliveries::DeliveryRepository;
pub use idempotency::{Claim, IdempotencyRecord, IdempotencyStore, StoredResponse};
pub use inbox::Inbox;
pub use messaging::{HandleError, HandleOutcome, MessageHandler, MessagePublisher, PublishError};
pub use orders::{OrderQuery, OrderRepository, StockTake};
pub use outbox::{
    Committed, FeedBatch, FeedPosition, Outbox, OutboxFeed, OutboxSignal, OutboxStats,
    ParkedMessage, RelayLeases,
};
pub use rate_limit::{RateLimiter, RateLimiterUnavailable};
pub use sagas::{SagaQuery, SagaRepository};
pub use unit_of_work::{DeliveryTransaction, OrderTransaction, Transaction, UnitOfWork};
pub use waiting_room::{
    Admission, QueueError, QueuePass, QueueRules, QueueStats, TokenError, WaitingRoomQueue,
    WaitingRoomStore, WaitingRoomTokens,
};

#[cfg(feature = "mocks")]
pub use changes::MockOrderChangeFeed;
#[cfg(feature = "mocks")]
pub use clock::{MockClock, MockIdGenerator, MockRandomSource};
#[cfg(feature = "mocks")]
pub use deliveries::MockDeliveryRepository;
#[cfg(feature = "mocks")]
pub use idempotency::MockIdempotencyStore;
#[cfg(feature = "mocks")]
pub use inbox::MockInbox;
#[cfg(feature = "mocks")]
pub use messaging::{MockMessageHandler, MockMessagePublisher};
#[cfg(feature = "mocks")]
pub use orders::MockOrderRepository;
#[cfg(feature = "mocks")]
pub use outbox::{MockOutbox, MockOutboxFeed, MockRelayLeases};
#[cfg(feature = "mocks")]
pub use rate_limit::MockRateLimiter;
#[cfg(feature = "mocks")]
pub use sagas::MockSagaRepository;
#[cfg(feature = "mocks")]
pub use waiting_room::{MockWaitingRoomQueue, MockWaitingRoomStore, MockWaitingRoomTokens};

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
