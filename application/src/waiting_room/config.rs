//! The rooms' configuration: read from the store, cached, refreshed every [`ROOM_REFRESH`], and
//! shown with the queue's figures.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use chrono::{DateTime, Utc};
use ordership_domain::CustomerId;
use ordership_domain::ports::{QueueRules, StoreError};
use ordership_domain::waiting_room::{RoomId, WaitingRoom};

use super::{ROOM_REFRESH, RoomView, WaitingRoomError, WaitingRoomService};

/// The rooms as last read from the store, by id.
#[derive(Debug)]
pub(super) struct Cache {
    pub(super) rooms: Arc<BTreeMap<RoomId, WaitingRoom>>,
    /// By the service's clock (a clock set back makes the cache stale).
    pub(super) read_at: DateTime<Utc>,
    /// Read again at the next look, whatever its age.
    pub(super) stale: bool,
}

/// What a room change means to waiting buyers: the rooms' configuration and whether each is sold
/// out, not how many units are sold (which changes with every order).
fn what_buyers_see(rooms: &BTreeMap<RoomId, WaitingRoom>) -> Vec<(WaitingRoom, bool)> {
    rooms
        .values()
        .map(|room| (room.clone().with_stock(None), room.sold_out()))
        .collect()
}

impl WaitingRoomService {
    /// Changes with every change of the rooms that waiting buyers would see (a room configured,
    /// deleted, sold out or back on sale), as this instance reads them: event streams ask the
    /// queue again at once.
    #[must_use]
    pub fn room_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.changes.subscribe()
    }

    /// What the queue needs to know about `room` at `now` for one operation.
    pub(super) fn rules(&self, room: &WaitingRoom, now: DateTime<Utc>) -> QueueRules {
        QueueRules {
            rate: *room.rate(),
            heartbeat_timeout: room.heartbeat_timeout(),
            // A sold-out room keeps its queue but lets nobody in until units come back.
            admitting: room.admits(now) && !room.sold_out(),
            draw_seed: self.0.random.next_u64(),
            admission_validity: room.admission_validity(),
            holding_limit: room.holding_limit(),
        }
    }

    /// The cached rooms, read again from the store when older than [`ROOM_REFRESH`]. A store
    /// that cannot be read leaves the last known rooms in place; with none known, it fails.
    pub(super) async fn rooms(&self) -> Result<Arc<BTreeMap<RoomId, WaitingRoom>>, StoreError> {
        let now = self.0.clock.now();
        let cached = {
            let cache = self.0.cache.read().unwrap_or_else(PoisonError::into_inner);
            cache.as_ref().map(|c| {
                let age = (now - c.read_at).to_std();
                let fresh = !c.stale && age.is_ok_and(|age| age < ROOM_REFRESH);
                (Arc::clone(&c.rooms), fresh)
            })
        };
        match cached {
            Some((rooms, true)) => Ok(rooms),
            Some((rooms, false)) => {
                if self.0.reloading.swap(true, Ordering::AcqRel) {
                    return Ok(rooms);
                }
                let fresh = self.reload().await;
                self.0.reloading.store(false, Ordering::Release);
                Ok(fresh.unwrap_or(rooms))
            }
            None => self.reload().await,
        }
    }

    /// `buyer` holds their admission of `room` no more (they ordered with it, or were told the
    /// sale is sold out): it stops counting against the room's holding limit, and this
    /// instance reads the room's stock again at its next look. A queue that cannot be told
    /// counts the admission until it expires (admissions pause longer, never more buyers in).
    pub(crate) async fn release(&self, room: &RoomId, buyer: &CustomerId) {
        self.stock_changed();
        if let Err(e) = self.observe(self.0.queue.release(room, buyer).await) {
            tracing::warn!(room = %room, error = %e, "the queue was not told an admission is used");
        }
    }

    /// Makes the next look at the rooms read them again (their stock changed here).
    fn stock_changed(&self) {
        if let Some(cache) = self
            .0
            .cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            cache.stale = true;
        }
    }

    async fn reload(&self) -> Result<Arc<BTreeMap<RoomId, WaitingRoom>>, StoreError> {
        let rooms = self.0.store.all().await.inspect_err(|e| {
            tracing::warn!(error = %e, "waiting rooms could not be read; keeping the last known");
        })?;
        let rooms: Arc<BTreeMap<_, _>> = Arc::new(
            rooms
                .into_iter()
                .map(|room| (room.id().clone(), room))
                .collect(),
        );
        let previous = self
            .0
            .cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(Cache {
                rooms: Arc::clone(&rooms),
                read_at: self.0.clock.now(),
                stale: false,
            });
        if previous.is_none_or(|p| what_buyers_see(&p.rooms) != what_buyers_see(&rooms)) {
            self.0.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(rooms)
    }

    /// A room's configuration, without asking the queue.
    ///
    /// # Errors
    /// `NotFound`, or the store's failure.
    pub async fn room(&self, id: &RoomId) -> Result<WaitingRoom, WaitingRoomError> {
        self.rooms()
            .await?
            .get(id)
            .cloned()
            .ok_or(WaitingRoomError::NotFound)
    }

    /// Creates a room or changes it; every instance sees the change within [`ROOM_REFRESH`].
    ///
    /// # Errors
    /// The store's failure.
    pub async fn put(&self, room: WaitingRoom) -> Result<(), WaitingRoomError> {
        self.0.store.put(&room).await.map_err(|e| match e {
            StoreError::Conflict => WaitingRoomError::StockBelowSold,
            e => e.into(),
        })?;
        // Read back at once here, so this instance answers with the new configuration.
        self.reload().await?;
        tracing::info!(room = %room.id(), state = room.state().as_str(), "waiting room configured");
        Ok(())
    }

    /// Deletes a room: its queue is set to expire after the key TTL first (so a queue that
    /// cannot be reached leaves the room in place, to be deleted again), then the room and its
    /// stock go. Orders placed through it keep their admissions.
    ///
    /// # Errors
    /// `NotFound`, `QueueUnavailable`, or the store's failure.
    pub async fn delete(&self, id: &RoomId) -> Result<(), WaitingRoomError> {
        self.room(id).await?;
        self.observe(self.0.queue.expire(id, self.key_ttl()).await)?;
        if !self.0.store.delete(id).await? {
            return Err(WaitingRoomError::NotFound);
        }
        self.reload().await?;
        tracing::info!(room = %id, "waiting room deleted");
        Ok(())
    }

    /// A room with its queue's figures; the figures are left out while the queue is down.
    ///
    /// # Errors
    /// `NotFound`, or the store's failure.
    pub async fn view(&self, id: &RoomId) -> Result<RoomView, WaitingRoomError> {
        let room = self.room(id).await?;
        Ok(self.view_of(room, self.0.clock.now()).await)
    }

    /// Every room with its queue's figures (left out while the queue is down).
    ///
    /// # Errors
    /// The store's failure.
    pub async fn views(&self) -> Result<Vec<RoomView>, WaitingRoomError> {
        let rooms = self.rooms().await?;
        let now = self.0.clock.now();
        let mut views = Vec::with_capacity(rooms.len());
        for room in rooms.values() {
            views.push(self.view_of(room.clone(), now).await);
        }
        Ok(views)
    }

    async fn view_of(&self, room: WaitingRoom, now: DateTime<Utc>) -> RoomView {
        let queue = self
            .observe(self.0.queue.stats(room.id(), &self.rules(&room, now)).await)
            .ok();
        RoomView {
            phase: room.phase(now),
            room,
            queue,
        }
    }
}
