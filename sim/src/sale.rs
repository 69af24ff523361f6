//! The flash sale: one waiting room in front of one SKU, with a stock smaller than its buyers.
//! The order service runs the real [`WaitingRoomService`] (join, status, tick, the order gate,
//! the stock taken in the order's transaction and given back by a cancellation); the queue is
//! the memory adapter's copy of the Redis scripts' decisions (the same domain functions, with the
//! queue's own clock, as Redis keeps `TIME`), shared by every life of the order service as Redis
//! outlives it. The queue's calls can fail (unavailable), and each admission it makes is
//! recorded for the oracle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use ordership_domain::ports::{
    Admission, BoxError, Clock, QueueError, QueuePass, QueueRules, QueueStats, TokenError,
    WaitingRoomQueue, WaitingRoomStore, WaitingRoomTokens,
};
use ordership_domain::waiting_room::{
    EntryStatus, Rate, RoomId, RoomState, Stock, Ticket, WaitingRoom,
};
use ordership_domain::{CustomerId, OrderStatus, Sku};
use ordership_memory::{MemoryStore, MemoryWaitingRoomQueue};

use crate::faults::Process;

/// The sale's room and the SKU it gates.
pub const ROOM: &str = "flash";
pub const SKU: &str = "HOT-1";
/// Admissions per interval: the rate the oracle holds every window to.
const ADMISSIONS: u32 = 2;
const INTERVAL: Duration = Duration::from_secs(1);

/// The room as an operator configures it: two buyers a second, `units` on sale.
///
/// # Errors
/// The configuration is invalid (a bug of the simulator).
pub fn room(units: u32) -> Result<WaitingRoom, String> {
    let id = RoomId::parse(ROOM).map_err(|e| e.to_string())?;
    let sku = Sku::parse(SKU).map_err(|e| e.to_string())?;
    let rate = Rate::new(ADMISSIONS, INTERVAL).map_err(|e| e.to_string())?;
    WaitingRoom::new(
        id,
        BTreeSet::from([sku]),
        rate,
        Duration::from_secs(60),
        Duration::from_secs(20),
        RoomState::Open,
        None,
        None,
    )
    .map(|room| room.with_stock(Some(Stock::of(units))))
    .map_err(|e| e.to_string())
}

#[must_use]
pub fn room_id() -> Option<RoomId> {
    RoomId::parse(ROOM).ok()
}

/// The queue (Redis in production) with its faults, recording every admission it makes.
pub struct Queue {
    inner: MemoryWaitingRoomQueue,
    clock: Arc<dyn Clock>,
    process: Arc<Process>,
    /// Every admission: the buyer and its time by the queue's clock (ms).
    admissions: Mutex<BTreeSet<(String, u64)>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl Queue {
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>, process: Arc<Process>) -> Self {
        Self {
            inner: MemoryWaitingRoomQueue::new(Arc::clone(&clock)),
            clock,
            process,
            admissions: Mutex::default(),
        }
    }

    /// Every admission the queue made, by buyer and time (ms).
    #[must_use]
    pub fn admissions(&self) -> BTreeSet<(String, u64)> {
        self.admissions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reachable(&self, call: &str) -> Result<(), QueueError> {
        if self.process.strikes(self.process.rates().queue_unavailable) {
            self.process.fault(format_args!("unavailable at {call}"));
            return Err(QueueError::Unavailable("simulated: no connection".into()));
        }
        Ok(())
    }

    fn admitted(&self, buyer: &CustomerId, at_ms: u64) {
        self.admissions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((buyer.as_str().to_owned(), at_ms));
    }

    fn seen(&self, buyer: &CustomerId, status: &EntryStatus) {
        if let EntryStatus::Admitted { admitted_at_ms, .. } = status {
            self.admitted(buyer, *admitted_at_ms);
        }
    }
}

#[async_trait]
impl WaitingRoomQueue for Queue {
    async fn ping(&self) -> Result<(), QueueError> {
        self.reachable("ping")
    }

    async fn join(
        &self,
        room: &RoomId,
        buyer: &CustomerId,
        returning: Option<Ticket>,
        rules: &QueueRules,
    ) -> Result<EntryStatus, QueueError> {
        self.reachable("join")?;
        let status = self.inner.join(room, buyer, returning, rules).await?;
        self.seen(buyer, &status);
        Ok(status)
    }

    async fn status(
        &self,
        room: &RoomId,
        buyer: &CustomerId,
        rules: &QueueRules,
    ) -> Result<Option<EntryStatus>, QueueError> {
        self.reachable("status")?;
        let status = self.inner.status(room, buyer, rules).await?;
        if let Some(status) = &status {
            self.seen(buyer, status);
        }
        Ok(status)
    }

    async fn release(&self, room: &RoomId, buyer: &CustomerId) -> Result<(), QueueError> {
        self.reachable("release")?;
        self.inner.release(room, buyer).await
    }

    async fn leave(&self, room: &RoomId, buyer: &CustomerId) -> Result<bool, QueueError> {
        self.reachable("leave")?;
        self.inner.leave(room, buyer).await
    }

    async fn tick(
        &self,
        room: &RoomId,
        rules: &QueueRules,
    ) -> Result<Vec<(CustomerId, Ticket)>, QueueError> {
        self.reachable("tick")?;
        let admitted = self.inner.tick(room, rules).await?;
        let now_ms = u64::try_from(self.clock.now().timestamp_millis()).unwrap_or_default();
        for (buyer, _) in &admitted {
            self.admitted(buyer, now_ms);
        }
        Ok(admitted)
    }

    async fn stats(&self, room: &RoomId, rules: &QueueRules) -> Result<QueueStats, QueueError> {
        self.reachable("stats")?;
        self.inner.stats(room, rules).await
    }

    async fn expire(&self, room: &RoomId, after: Duration) -> Result<(), QueueError> {
        self.reachable("expire")?;
        self.inner.expire(room, after).await
    }
}

/// Tokens in plain text: the simulator's clients never forge one, so no signature is needed;
/// their contents and expiry are checked as the signed ones' are.
#[derive(Debug, Default)]
pub struct Tokens;

fn time_of(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

impl WaitingRoomTokens for Tokens {
    fn sign_admission(&self, a: &Admission) -> Result<String, BoxError> {
        Ok(format!(
            "admission|{}|{}|{}|{}",
            a.room,
            a.buyer.as_str(),
            a.id,
            a.expires_at.timestamp_millis()
        ))
    }

    fn verify_admission(&self, token: &str, now: DateTime<Utc>) -> Result<Admission, TokenError> {
        let parts: Vec<&str> = token.split('|').collect();
        let ["admission", room, buyer, id, expires] = parts[..] else {
            return Err(TokenError::Invalid);
        };
        let expires_at = expires
            .parse()
            .ok()
            .and_then(time_of)
            .ok_or(TokenError::Invalid)?;
        if now >= expires_at {
            return Err(TokenError::Expired);
        }
        Ok(Admission {
            room: RoomId::parse(room).map_err(|_| TokenError::Invalid)?,
            buyer: CustomerId::parse(buyer).map_err(|_| TokenError::Invalid)?,
            id: id.to_owned(),
            expires_at,
        })
    }

    fn sign_queue_pass(&self, pass: &QueuePass) -> Result<String, BoxError> {
        Ok(format!(
            "pass|{}|{}|{}",
            pass.room,
            pass.buyer.as_str(),
            pass.ticket.0
        ))
    }

    fn verify_queue_pass(&self, token: &str) -> Result<QueuePass, TokenError> {
        let parts: Vec<&str> = token.split('|').collect();
        let ["pass", room, buyer, ticket] = parts[..] else {
            return Err(TokenError::Invalid);
        };
        Ok(QueuePass {
            room: RoomId::parse(room).map_err(|_| TokenError::Invalid)?,
            buyer: CustomerId::parse(buyer).map_err(|_| TokenError::Invalid)?,
            ticket: Ticket(ticket.parse().map_err(|_| TokenError::Invalid)?),
        })
    }
}

/// The sale's guarantees: no window of the rate's interval holds more admissions than the
/// rate; every order of the SKU was bought with an admission the queue made to its buyer, and
/// each admission bought one order at most; the stock is never oversold and counts exactly the
/// units of the orders that hold them.
pub async fn check(queue: &Queue, store: &MemoryStore, found: &mut Vec<String>) {
    let admissions = queue.admissions();
    let mut times: Vec<u64> = admissions.iter().map(|(_, at)| *at).collect();
    times.sort_unstable();
    let interval = u64::try_from(INTERVAL.as_millis()).unwrap_or(u64::MAX);
    for (i, start) in times.iter().enumerate() {
        let within = times[i..]
            .iter()
            .take_while(|t| **t < start + interval)
            .count();
        if within > ADMISSIONS as usize {
            found.push(format!(
                "waiting room: {within} admissions within {interval} ms from {start} (rate {ADMISSIONS})"
            ));
            break;
        }
    }
    let Some(room) = room_id() else {
        found.push("waiting room: the room's id does not parse".to_owned());
        return;
    };
    let mut by_admission: BTreeMap<String, u32> = BTreeMap::new();
    let mut holding = 0_u32;
    for order in store.orders().await {
        let gated = order.lines().iter().any(|l| l.sku().as_str() == SKU);
        let Some(admission) = order.admission() else {
            if gated {
                found.push(format!(
                    "waiting room: order {} bought {SKU} without an admission",
                    order.id()
                ));
            }
            continue;
        };
        *by_admission.entry(admission.id.clone()).or_default() += 1;
        let at = admission
            .id
            .rsplit('-')
            .next()
            .and_then(|ms| ms.parse().ok());
        let made = at
            .is_some_and(|at| admissions.contains(&(order.customer_id().as_str().to_owned(), at)));
        if !made {
            found.push(format!(
                "waiting room: order {} used admission {} the queue never made to {}",
                order.id(),
                admission.id,
                order.customer_id().as_str()
            ));
        }
        if order.status() != OrderStatus::Cancelled {
            holding += admission.units;
        }
    }
    for (admission, n) in by_admission {
        if n > 1 {
            found.push(format!(
                "waiting room: admission {admission} bought {n} orders"
            ));
        }
    }
    match store.get(&room).await {
        Ok(Some(room)) => match room.stock() {
            Some(stock) if stock.sold() > stock.total() || holding > stock.total() => {
                found.push(format!(
                    "stock: oversold, {} counted and {holding} held of {}",
                    stock.sold(),
                    stock.total()
                ));
            }
            Some(stock) if stock.sold() != holding => found.push(format!(
                "stock: {} units counted sold, orders hold {holding}",
                stock.sold()
            )),
            Some(_) => {}
            None => found.push("stock: the room counts no stock".to_owned()),
        },
        Ok(None) => found.push("waiting room: the room is gone".to_owned()),
        Err(e) => found.push(format!("waiting room: the room cannot be read: {e}")),
    }
}
