//! The order repository.

use super::StoreError;
use crate::ids::OrderId;
use crate::order::{CustomerId, Order, OrderStatus};
use crate::saga::FulfilmentSaga;
use crate::waiting_room::RoomId;

/// A page of orders, by ascending id (UUID v7: creation order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderQuery {
    /// Only this customer's orders.
    pub customer: Option<CustomerId>,
    pub status: Option<OrderStatus>,
    /// Only orders with an id greater than this (the cursor).
    pub after: Option<OrderId>,
    pub limit: u32,
}

/// What taking units of a room's stock for an order found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockTake {
    /// Taken: the order holds them from its commit on.
    Taken,
    /// Fewer units are left than asked for (`left`): nothing was taken.
    SoldOut { left: u32 },
    /// The room counts no stock: nothing to take.
    Uncounted,
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait OrderRepository: Send {
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn get(&mut self, id: OrderId) -> Result<Option<Order>, StoreError>;

    /// The order with its saga (if it has one), both as of one moment: a reader never sees an
    /// order beside a saga from another commit, even outside a read-only transaction.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn get_with_saga(
        &mut self,
        id: OrderId,
    ) -> Result<Option<(Order, Option<FulfilmentSaga>)>, StoreError>;

    /// # Errors
    /// MUST return [`StoreError::Duplicate`] if an order with this id exists, or, for an order
    /// placed with a waiting-room admission, if an order holds that admission or was placed by
    /// the same customer with an admission of the same room.
    async fn insert(&mut self, order: &Order) -> Result<(), StoreError>;

    /// Replaces the stored order if its version is still `expected_version`.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`] if the stored version differs or the order is gone.
    async fn update(&mut self, order: &Order, expected_version: u64) -> Result<(), StoreError>;

    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn list(&mut self, query: &OrderQuery) -> Result<Vec<Order>, StoreError>;

    /// Whether `customer` placed an order with an admission of `room`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn ordered_in_room(
        &mut self,
        room: &RoomId,
        customer: &CustomerId,
    ) -> Result<bool, StoreError>;

    /// Takes `units` of `room`'s stock for an order placed in this transaction, all or none.
    /// Concurrent takes of one room are serialised, and the units sold never exceed the units on
    /// sale, whatever commits or rolls back: no oversell.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn take_stock(&mut self, room: &RoomId, units: u32) -> Result<StockTake, StoreError>;

    /// Gives back `units` of `room`'s stock that an order held (it was cancelled in this
    /// transaction). A room that no longer counts stock, or no longer exists, takes nothing back.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn give_back_stock(&mut self, room: &RoomId, units: u32) -> Result<(), StoreError>;
}
