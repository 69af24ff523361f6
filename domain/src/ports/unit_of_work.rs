//! Transactions: the unit of work that opens them and the port sets each service's transaction offers.

use super::{
    DeadLetters, DeliveryRepository, IdempotencyStore, Inbox, OrderRepository, Outbox,
    SagaRepository, StoreError,
};
use crate::ids::OrderId;
use crate::order::Order;
use crate::saga::{FulfilmentSaga, SagaStepRecord};

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

    /// A unit of work for exactly **one read** (one port call that reads, such as
    /// [`OrderRepository::get_with_saga`]): what it returns is one committed state, and a
    /// store may serve it without opening a transaction. Never write through it, and never
    /// make a second call: the two reads could see different commits.
    /// The default is [`UnitOfWork::begin_read_only`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if no connection can be had now.
    async fn begin_single_read(&self) -> Result<Box<Tx>, StoreError> {
        self.begin_read_only().await
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
///
/// Its two provided methods are the calls a saga step makes on both an order and its saga; a
/// store may make each in one round trip (the defaults call the repositories one by one).
#[async_trait::async_trait]
pub trait OrderTransaction: Transaction {
    fn orders(&mut self) -> &mut dyn OrderRepository;
    fn sagas(&mut self) -> &mut dyn SagaRepository;
    fn idempotency_keys(&mut self) -> &mut dyn IdempotencyStore;

    /// Locks the order's saga for a step, then reads the order as it is once the lock is held
    /// (after any step that held it committed): `None` unless both exist.
    ///
    /// # Errors
    /// As [`SagaRepository::get_for_update`] and [`OrderRepository::get`].
    async fn lock_saga_with_order(
        &mut self,
        order_id: OrderId,
    ) -> Result<Option<(FulfilmentSaga, Order)>, StoreError> {
        let Some(saga) = self.sagas().get_for_update(order_id).await? else {
            return Ok(None);
        };
        Ok(self
            .orders()
            .get(order_id)
            .await?
            .map(|order| (saga, order)))
    }

    /// Writes a step that changed both the order and its saga: the order, the saga and the
    /// step's history row, each against the version it was loaded with.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if either stored version is not the expected one (the
    /// transaction must then be dropped); otherwise as [`OrderRepository::update`] and
    /// [`SagaRepository::update_with_step`].
    async fn update_order_and_saga_with_step(
        &mut self,
        order: &Order,
        expected_order_version: u64,
        saga: &FulfilmentSaga,
        expected_saga_version: u64,
        step: &SagaStepRecord,
    ) -> Result<(), StoreError> {
        self.orders().update(order, expected_order_version).await?;
        self.sagas()
            .update_with_step(saga, expected_saga_version, step)
            .await
    }
}

/// The delivery service's transaction.
pub trait DeliveryTransaction: Transaction {
    fn deliveries(&mut self) -> &mut dyn DeliveryRepository;
}
