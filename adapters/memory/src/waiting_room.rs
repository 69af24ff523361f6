//! The waiting room in memory: the rooms' queues, for the embedded system (one process, so one
//! queue is shared by construction) and for tests — the same decisions as the Redis scripts, from
//! the domain, with time from the given clock — and the rooms' configuration.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use ordership_domain::CustomerId;
use ordership_domain::ports::{
    Clock, QueueError, QueueRules, QueueStats, StoreError, WaitingRoomQueue, WaitingRoomStore,
};
use ordership_domain::waiting_room::{
    EntryStatus, Holders, RoomId, Stock, Ticket, WaitingRoom, abandoned, admissions_now,
    admitted_on_joining, millis, shuffle,
};

use crate::MemoryStore;
use crate::unit_of_work::Rooms;

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
    /// When the admissions of the last interval were made, oldest first (the sliding window).
    recent: VecDeque<u64>,
    /// The admitted buyers who have not ordered yet, with when they were admitted.
    holding: HashMap<CustomerId, u64>,
    admitted: u64,
    /// When the queue is forgotten (a closed or deleted room), as Redis expires its keys.
    expires_at_ms: Option<u64>,
    /// Whether the opening draw was made.
    drawn: bool,
}

impl RoomQueue {
    /// How many admissions of the last interval count against the rate at `now_ms`; older ones
    /// are forgotten.
    fn recent(&mut self, rules: &QueueRules, now_ms: u64) -> u32 {
        while self
            .recent
            .front()
            .is_some_and(|&at| !rules.rate.still_counts(at, now_ms))
        {
            self.recent.pop_front();
        }
        if ordership_domain::planted::active(ordership_domain::planted::Bug::RateWindowForgotten) {
            return 0;
        }
        u32::try_from(self.recent.len()).unwrap_or(u32::MAX)
    }

    /// Who holds an admission at `now_ms` and how many may; expired admissions are forgotten.
    fn holders(&mut self, rules: &QueueRules, now_ms: u64) -> Holders {
        let validity = millis(rules.admission_validity);
        self.holding
            .retain(|_, &mut at| now_ms.saturating_sub(at) < validity);
        Holders {
            holding: u32::try_from(self.holding.len()).unwrap_or(u32::MAX),
            limit: rules.holding_limit,
        }
    }

    /// The opening draw, once: the buyers queued before the room first admits get their tickets
    /// in a random order, as the Redis scripts draw it.
    fn draw_once(&mut self, seed: u64) {
        if std::mem::replace(&mut self.drawn, true) {
            return;
        }
        let tickets: Vec<Ticket> = self.waiting.keys().copied().collect();
        let mut buyers: Vec<CustomerId> = self.waiting.values().cloned().collect();
        shuffle(&mut buyers, seed);
        for (ticket, buyer) in tickets.into_iter().zip(buyers) {
            if let Some(entry) = self.entries.get_mut(&buyer) {
                entry.ticket = ticket;
            }
            self.waiting.insert(ticket, buyer);
        }
    }

    fn admit(&mut self, buyer: &CustomerId, now_ms: u64) {
        if let Some(entry) = self.entries.get_mut(buyer) {
            self.waiting.remove(&entry.ticket);
            entry.admitted_at_ms = Some(now_ms);
            self.recent.push_back(now_ms);
            self.holding.insert(buyer.clone(), now_ms);
            self.admitted += 1;
        }
    }

    fn drop_entry(&mut self, buyer: &CustomerId) -> bool {
        self.holding.remove(buyer);
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
        let queue = rooms.entry(room.clone()).or_default();
        if queue.expires_at_ms.is_some_and(|at| at <= now_ms) {
            *queue = RoomQueue::default();
        }
        f(queue, now_ms)
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
            q.expires_at_ms = None;
            if rules.admitting {
                // The queue lost its data while open: those coming back keep their tickets.
                q.drawn |= returning.is_some();
                q.draw_once(rules.draw_seed);
            }
            let recent = q.recent(rules, now_ms);
            let holders = q.holders(rules, now_ms);
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
            if admitted_on_joining(rules.admitting, &rules.rate, recent, before, holders) {
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

    async fn release(&self, room: &RoomId, buyer: &CustomerId) -> Result<(), QueueError> {
        self.with_room(room, |q, _| q.holding.remove(buyer));
        Ok(())
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
            q.expires_at_ms = None;
            q.draw_once(rules.draw_seed);
            loop {
                let recent = q.recent(rules, now_ms);
                let holders = q.holders(rules, now_ms);
                if admissions_now(&rules.rate, recent, q.waiting.len() as u64, holders) == 0 {
                    break;
                }
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

    async fn expire(&self, room: &RoomId, after: std::time::Duration) -> Result<(), QueueError> {
        self.with_room(room, |q, now_ms| {
            q.expires_at_ms
                .get_or_insert(now_ms.saturating_add(millis(after)));
        });
        Ok(())
    }

    async fn stats(&self, room: &RoomId, rules: &QueueRules) -> Result<QueueStats, QueueError> {
        Ok(self.with_room(room, |q, now_ms| {
            let recent = q.recent(rules, now_ms);
            QueueStats {
                waiting: q.waiting.len() as u64,
                admitted: q.admitted,
                admitted_in_window: recent,
                last_ticket: q.last_ticket,
                holding: q.holders(rules, now_ms).holding,
            }
        }))
    }
}

/// The rooms' configuration lives with the orders, as in PostgreSQL, so an order takes its
/// room's stock in its own transaction.
#[async_trait]
impl WaitingRoomStore for MemoryStore {
    async fn put(&self, room: &WaitingRoom) -> Result<(), StoreError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stock) = room.stock() {
            if rooms
                .stock
                .get(room.id())
                .is_some_and(|row| row.sold > stock.total())
            {
                return Err(StoreError::Conflict);
            }
            rooms.stock.entry(room.id().clone()).or_default().total = Some(stock.total());
        } else if let Some(row) = rooms.stock.get_mut(room.id()) {
            row.total = None;
        }
        rooms
            .config
            .insert(room.id().clone(), room.clone().with_stock(None));
        Ok(())
    }

    async fn get(&self, id: &RoomId) -> Result<Option<WaitingRoom>, StoreError> {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(rooms.config.get(id).map(|room| with_stock(&rooms, room)))
    }

    async fn delete(&self, id: &RoomId) -> Result<bool, StoreError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms.stock.remove(id);
        Ok(rooms.config.remove(id).is_some())
    }

    async fn all(&self) -> Result<Vec<WaitingRoom>, StoreError> {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(rooms
            .config
            .values()
            .map(|room| with_stock(&rooms, room))
            .collect())
    }
}

fn with_stock(rooms: &Rooms, room: &WaitingRoom) -> WaitingRoom {
    let stock = rooms.stock.get(room.id()).and_then(|row| {
        row.total
            .and_then(|total| Stock::counted(total, row.sold).ok())
    });
    room.clone().with_stock(stock)
}
