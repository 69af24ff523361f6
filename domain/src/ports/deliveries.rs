//! The delivery repository.

use chrono::NaiveDate;

use super::StoreError;
use crate::address::CountryCode;
use crate::delivery::Delivery;
use crate::ids::{DeliveryId, OrderId};

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
