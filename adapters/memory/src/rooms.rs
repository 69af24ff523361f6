//! Waiting rooms' configuration in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use ordership_domain::admission::{RoomId, WaitingRoom};
use ordership_domain::ports::{StoreError, WaitingRoomStore};

/// Rooms by id, in this process.
#[derive(Debug, Clone, Default)]
pub struct MemoryWaitingRooms(Arc<Mutex<BTreeMap<RoomId, WaitingRoom>>>);

impl MemoryWaitingRooms {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WaitingRoomStore for MemoryWaitingRooms {
    async fn put(&self, room: &WaitingRoom) -> Result<(), StoreError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(room.id().clone(), room.clone());
        Ok(())
    }

    async fn get(&self, id: &RoomId) -> Result<Option<WaitingRoom>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned())
    }

    async fn all(&self) -> Result<Vec<WaitingRoom>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect())
    }
}
