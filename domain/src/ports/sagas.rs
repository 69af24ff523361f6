//! The fulfilment saga repository: saga rows, locked per step, and claims of overdue sagas.

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::ids::OrderId;
use crate::saga::{FulfilmentSaga, SagaState, SagaStepRecord};

/// A page of sagas, by ascending order id (UUID v7: creation order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaQuery {
    pub state: Option<SagaState>,
    /// Only sagas whose last step is older than this.
    pub updated_before: Option<DateTime<Utc>>,
    /// Only sagas of orders with an id greater than this (the cursor).
    pub after: Option<OrderId>,
    pub limit: u32,
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

    /// Inserts a new saga and the step that started it, as [`SagaRepository::insert`] then
    /// [`SagaRepository::record_step`] do (an adapter may do both at once).
    ///
    /// # Errors
    /// As those two.
    async fn insert_with_step(
        &mut self,
        saga: &FulfilmentSaga,
        step: &SagaStepRecord,
    ) -> Result<(), StoreError> {
        self.insert(saga).await?;
        self.record_step(step).await
    }

    /// Updates the saga and records the step that changed it, as [`SagaRepository::update`]
    /// then [`SagaRepository::record_step`] do (an adapter may do both at once).
    ///
    /// # Errors
    /// As those two: [`StoreError::Conflict`] if the stored version is not `expected_version`.
    async fn update_with_step(
        &mut self,
        saga: &FulfilmentSaga,
        expected_version: u64,
        step: &SagaStepRecord,
    ) -> Result<(), StoreError> {
        self.update(saga, expected_version).await?;
        self.record_step(step).await
    }

    /// A page of sagas, without locking them.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn list(&mut self, query: &SagaQuery) -> Result<Vec<FulfilmentSaga>, StoreError>;

    /// Adds a step to the saga's history (in the step's transaction).
    ///
    /// # Errors
    /// MUST return [`StoreError::Duplicate`] if the order has a step with this `seq`.
    async fn record_step(&mut self, step: &SagaStepRecord) -> Result<(), StoreError>;

    /// Up to `limit` steps of an order's saga with a `seq` above `after`, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn history(
        &mut self,
        order_id: OrderId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<SagaStepRecord>, StoreError>;

    /// How many sagas are in each state (states with none may be left out).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn count_by_state(&mut self) -> Result<Vec<(SagaState, u64)>, StoreError>;
}
