//! Where waiting rooms' configuration is kept (the order service's database): durable, so a
//! queue that loses its data never forgets a room, and readable without the queue, so the order
//! gate works while the queue is down.

use super::StoreError;
use crate::admission::{RoomId, WaitingRoom};

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait WaitingRoomStore: Send + Sync {
    /// Creates the room, or replaces its configuration.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn put(&self, room: &WaitingRoom) -> Result<(), StoreError>;

    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn get(&self, id: &RoomId) -> Result<Option<WaitingRoom>, StoreError>;

    /// Every room, by id (the services cache them).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn all(&self) -> Result<Vec<WaitingRoom>, StoreError>;
}
