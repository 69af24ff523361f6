//! Transactions: the unit of work that opens them and the port sets each service's transaction offers.

use super::{
    DeadLetters, DeliveryRepository, IdempotencyStore, Inbox, OrderRepository, Outbox,
    SagaRepository, StoreError,
};

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

    /// Gives back the room that rows which left the service's outbox (published, or written and
    /// removed at once in CDC mode) still take, so that a relay's claim costs what is waiting,
    /// however much was published before. Runs outside any transaction, every few seconds; it
    /// does not rely on the store's own background cleaning, which may be off or far behind.
    /// The default does nothing: right for stores that free a removed row at once.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn upkeep(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What every transaction offers: the service's outbox, inbox and dead letters, and commit.
///
/// After any error from one of its ports the transaction is unusable: drop it (it rolls back).
/// An adapter MAY fail every later call; [`Transaction::commit`] MUST then fail rather than
/// commit part of the work.
#[async_trait::async_trait]
pub trait Transaction: Send {
    fn outbox(&mut self) -> &mut dyn Outbox;
    fn inbox(&mut self) -> &mut dyn Inbox;
    fn dead_letters(&mut self) -> &mut dyn DeadLetters;

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
