//! The waiting room in memory: the rooms' queues, for the embedded system (one process, so one
//! queue is shared by construction) and for tests — the same decisions as the Redis scripts, from
//! the domain, with time from the given clock — and the rooms' configuration.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use ordership_domain::CustomerId;
use ordership_domain::ports::{
    Clock, QueueError, QueueRules, QueueStats, StoreError, WaitingRoomQueue, WaitingRoomStore,
};
use ordership_domain::waiting_room::{
    EntryStatus, RoomId, Ticket, WaitingRoom, abandoned, admissions_now, admitted_on_joining,
};

#[derive(Debug, Clone, Copy)]
struct Entry {
    ticket: Ticket,
    last_seen_ms: u64,
    admitted_at_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct RoomQueue {
    last_ticket: u64,
    waiting: BTreeMap<Ticket, CustomerId>,
    entries: HashMap<CustomerId, Entry>,
    window: u64,
    admitted_in_window: u32,
    admitted: u64,
}

impl RoomQueue {
    /// Starts the window `now_ms` falls in, if it is a new one.
    fn roll(&mut self, rules: &QueueRules, now_ms: u64) {
        let window = rules.rate.window(now_ms);
        if window != self.window {
            self.window = window;
            self.admitted_in_window = 0;
        }
    }

    fn admit(&mut self, buyer: &CustomerId, now_ms: u64) {
        if let Some(entry) = self.entries.get_mut(buyer) {
            self.waiting.remove(&entry.ticket);
            entry.admitted_at_ms = Some(now_ms);
            self.admitted_in_window += 1;
            self.admitted += 1;
        }
    }

    fn drop_entry(&mut self, buyer: &CustomerId) -> bool {
        self.entries.remove(buyer).is_some_and(|entry| {
            self.waiting.remove(&entry.ticket);
            true
        })
    }

    fn status(&self, entry: &Entry) -> EntryStatus {
        match entry.admitted_at_ms {
            Some(admitted_at_ms) => EntryStatus::Admitted {
                ticket: entry.ticket,
                admitted_at_ms,
            },
            None => EntryStatus::Waiting {
                ticket: entry.ticket,
                position: self.waiting.range(..entry.ticket).count() as u64 + 1,
                waiting: self.waiting.len() as u64,
            },
        }
    }
}

/// Every room's queue, in this process.
#[derive(Clone)]
pub struct MemoryWaitingRoomQueue {
    rooms: Arc<Mutex<HashMap<RoomId, RoomQueue>>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryWaitingRoomQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryWaitingRoomQueue")
            .finish_non_exhaustive()
    }
}

impl MemoryWaitingRoomQueue {
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            rooms: Arc::default(),
            clock,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.now().timestamp_millis()).unwrap_or(0)
    }

    fn with_room<T>(&self, room: &RoomId, f: impl FnOnce(&mut RoomQueue, u64) -> T) -> T {
        let now_ms = self.now_ms();
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        f(rooms.entry(room.clone()).or_default(), now_ms)
    }
}

#[async_trait]
impl WaitingRoomQueue for MemoryWaitingRoomQueue {
    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn join(
        &self,
        room: &RoomId,
        buyer: &CustomerId,
        returning: Option<Ticket>,
        rules: &QueueRules,
    ) -> Result<EntryStatus, QueueError> {
        Ok(self.with_room(room, |q, now_ms| {
            q.roll(rules, now_ms);
            if let Some(entry) = q.entries.get_mut(buyer) {
                entry.last_seen_ms = now_ms;
                let entry = *entry;
                return q.status(&entry);
            }
            let ticket = match returning {
                // Back at the ticket the buyer holds; the counter moves past it.
                Some(ticket) if !q.waiting.contains_key(&ticket) => {
                    q.last_ticket = q.last_ticket.max(ticket.0);
                    ticket
                }
                _ => {
                    q.last_ticket += 1;
                    Ticket(q.last_ticket)
                }
            };
            let before = q.waiting.range(..ticket).count() as u64;
            q.entries.insert(
                buyer.clone(),
                Entry {
                    ticket,
                    last_seen_ms: now_ms,
                    admitted_at_ms: None,
                },
            );
            q.waiting.insert(ticket, buyer.clone());
            if admitted_on_joining(rules.admitting, &rules.rate, q.admitted_in_window, before) {
                q.admit(buyer, now_ms);
            }
            let entry = q.entries[buyer];
            q.status(&entry)
        }))
    }

    async fn status(
        &self,
        room: &RoomId,
        buyer: &CustomerId,
        rules: &QueueRules,
    ) -> Result<Option<EntryStatus>, QueueError> {
        Ok(self.with_room(room, |q, now_ms| {
            let entry = *q.entries.get(buyer)?;
            if entry.admitted_at_ms.is_none()
                && abandoned(entry.last_seen_ms, now_ms, rules.heartbeat_timeout)
            {
                q.drop_entry(buyer);
                return None;
            }
            if let Some(e) = q.entries.get_mut(buyer) {
                e.last_seen_ms = now_ms;
            }
            Some(q.status(&entry))
        }))
    }

    async fn leave(&self, room: &RoomId, buyer: &CustomerId) -> Result<bool, QueueError> {
        Ok(self.with_room(room, |q, _| q.drop_entry(buyer)))
    }

    async fn tick(
        &self,
        room: &RoomId,
        rules: &QueueRules,
    ) -> Result<Vec<(CustomerId, Ticket)>, QueueError> {
        Ok(self.with_room(room, |q, now_ms| {
            let mut admitted = Vec::new();
            if !rules.admitting {
                return admitted;
            }
            q.roll(rules, now_ms);
            while admissions_now(&rules.rate, q.admitted_in_window, q.waiting.len() as u64) > 0 {
                let Some((&ticket, buyer)) = q.waiting.first_key_value() else {
                    break;
                };
                let buyer = buyer.clone();
                let silent = q
                    .entries
                    .get(&buyer)
                    .is_none_or(|e| abandoned(e.last_seen_ms, now_ms, rules.heartbeat_timeout));
                if silent {
                    q.drop_entry(&buyer);
                    q.waiting.remove(&ticket);
                    continue;
                }
                q.admit(&buyer, now_ms);
                admitted.push((buyer, ticket));
            }
            admitted
        }))
    }

    async fn stats(&self, room: &RoomId, rules: &QueueRules) -> Result<QueueStats, QueueError> {
        Ok(self.with_room(room, |q, now_ms| {
            q.roll(rules, now_ms);
            QueueStats {
                waiting: q.waiting.len() as u64,
                admitted: q.admitted,
                admitted_in_window: q.admitted_in_window,
                last_ticket: q.last_ticket,
            }
        }))
    }
}

/// Rooms by id, in this process.
#[derive(Debug, Clone, Default)]
pub struct MemoryWaitingRoomStore(Arc<Mutex<BTreeMap<RoomId, WaitingRoom>>>);

impl MemoryWaitingRoomStore {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WaitingRoomStore for MemoryWaitingRoomStore {
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
