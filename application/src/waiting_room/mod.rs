//! The flash-sale waiting rooms: buyers join a room's queue, the queue admits them at the room's
//! rate, and an admitted buyer gets a signed admission that lets them order the room's SKUs once.
//!
//! Rooms are configured in the order store (durable, and readable while the queue is down) and
//! cached here; the queue (tickets, heartbeats, admissions) is the [`WaitingRoomQueue`]'s. The
//! order gate ([`WaitingRoomService::gate`]) needs only the cache and the token's signature, so
//! orders for other SKUs never wait on the queue, and an admitted buyer can order while it is
//! down.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use ordership_domain::ports::{
    Admission, BoxError, Clock, OrderTransaction, QueueError, QueuePass, QueueRules, QueueStats,
    StoreError, TokenError, UnitOfWork, WaitingRoomQueue, WaitingRoomStore, WaitingRoomTokens,
};
use ordership_domain::waiting_room::{
    EntryStatus, Phase, RoomId, Ticket, WaitingRoom, estimated_wait,
};
use ordership_domain::{AdmissionRef, CustomerId, OrderLine, PlaceOrder, Sku};

use crate::shutdown::Shutdown;

/// How often each instance reloads the rooms from the store: a room changed through another
/// instance is seen here within this time.
pub const ROOM_REFRESH: Duration = Duration::from_secs(1);

/// Where a buyer stands, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Waiting: `queue_token` (in the answer to joining) puts the buyer back at `ticket` if the
    /// queue loses them.
    Waiting {
        ticket: Ticket,
        position: u64,
        waiting: u64,
        estimated_wait: Duration,
        /// When to ask again (also the `Retry-After`); well within the heartbeat timeout.
        poll_after: Duration,
        queue_token: Option<String>,
    },
    /// Admitted: `token` buys one order of the room's SKUs until the admission expires.
    Admitted {
        ticket: Ticket,
        admission: Admission,
        token: String,
    },
    /// Admitted, but the admission was not used in time. Leaving and joining again queues the
    /// buyer at the back.
    Expired { ticket: Ticket },
}

/// A room with its queue's figures (`None` while the queue cannot be reached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView {
    pub room: WaitingRoom,
    pub phase: Phase,
    pub queue: Option<QueueStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum WaitingRoomError {
    #[error("no such waiting room")]
    NotFound,
    /// The room is closed: its SKUs are sold without a queue.
    #[error("the waiting room is closed")]
    Closed,
    /// The buyer is not in the room (never joined, left, or dropped for silence).
    #[error("not in the waiting room")]
    NotInRoom,
    /// The buyer has ordered with an admission of this room already.
    #[error("already ordered in this sale")]
    AlreadyOrdered,
    /// The queue cannot be reached; retryable.
    #[error("the admission queue is unavailable")]
    QueueUnavailable(#[source] BoxError),
    #[error("storage is unavailable")]
    StoreUnavailable(#[source] StoreError),
    #[error("unexpected error")]
    Unexpected(#[source] BoxError),
}

impl From<StoreError> for WaitingRoomError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::StoreUnavailable(e),
            _ => Self::Unexpected(Box::new(e)),
        }
    }
}

/// Why the order gate refused an order for a gated SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    /// No admission token, one not signed by us, another buyer's, or another room's.
    #[error("{0}")]
    Required(&'static str),
    #[error("the admission has expired")]
    Expired,
    /// No admission, and none can be had now: the queue is down. Retryable.
    #[error("the waiting room is unavailable")]
    Unavailable,
    /// The rooms could not be read; retryable.
    #[error("the waiting rooms cannot be read")]
    RoomsUnavailable,
}

impl GateRefusal {
    /// A short, stable name (metrics label).
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Required(_) => "required",
            Self::Expired => "expired",
            Self::Unavailable | Self::RoomsUnavailable => "unavailable",
        }
    }
}

/// Counters of the waiting rooms, for metrics.
#[derive(Debug, Default)]
pub struct WaitingRoomCounters {
    pub joins: AtomicU64,
    pub admitted_on_joining: AtomicU64,
    pub admitted_by_tick: AtomicU64,
    pub refused_required: AtomicU64,
    pub refused_expired: AtomicU64,
    pub refused_unavailable: AtomicU64,
    pub queue_errors: AtomicU64,
}

/// The rooms as last read from the store, by id.
#[derive(Debug)]
struct Cache {
    rooms: Arc<BTreeMap<RoomId, WaitingRoom>>,
    read_at: Instant,
}

struct Inner {
    queue: Arc<dyn WaitingRoomQueue>,
    store: Arc<dyn WaitingRoomStore>,
    tokens: Arc<dyn WaitingRoomTokens>,
    orders: Arc<dyn UnitOfWork<dyn OrderTransaction>>,
    clock: Arc<dyn Clock>,
    cache: RwLock<Option<Cache>>,
    /// A reload is under way: others use the rooms they have meanwhile.
    reloading: AtomicBool,
    /// Whether the queue's last operation succeeded.
    queue_up: AtomicBool,
    counters: WaitingRoomCounters,
}

/// The waiting rooms' use cases, shared by every handler of one process.
#[derive(Clone)]
pub struct WaitingRoomService(Arc<Inner>);

impl std::fmt::Debug for WaitingRoomService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitingRoomService")
            .field("queue_up", &self.queue_up())
            .finish_non_exhaustive()
    }
}

fn rules(room: &WaitingRoom, now: DateTime<Utc>) -> QueueRules {
    QueueRules {
        rate: *room.rate(),
        heartbeat_timeout: room.heartbeat_timeout(),
        admitting: room.admits(now),
    }
}

/// When a waiting buyer should ask again: a quarter of their expected wait, at least a second,
/// and never so late that silence would drop them.
fn poll_after(room: &WaitingRoom, wait: Duration) -> Duration {
    let latest = (room.heartbeat_timeout() / 3).max(Duration::from_secs(1));
    (wait / 4).clamp(Duration::from_secs(1), latest)
}

/// Which tokens an answer carries: an admitted buyer always gets their admission token.
#[derive(Debug, Clone, Copy)]
enum Signed {
    WithQueueToken,
    AdmissionOnly,
}

fn time_of(ms: u64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(i64::try_from(ms).ok()?).single()
}

impl WaitingRoomService {
    #[must_use]
    pub fn new(
        queue: Arc<dyn WaitingRoomQueue>,
        store: Arc<dyn WaitingRoomStore>,
        tokens: Arc<dyn WaitingRoomTokens>,
        orders: Arc<dyn UnitOfWork<dyn OrderTransaction>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self(Arc::new(Inner {
            queue,
            store,
            tokens,
            orders,
            clock,
            cache: RwLock::new(None),
            reloading: AtomicBool::new(false),
            queue_up: AtomicBool::new(true),
            counters: WaitingRoomCounters::default(),
        }))
    }

    /// Whether the queue answered the last time it was asked.
    #[must_use]
    pub fn queue_up(&self) -> bool {
        self.0.queue_up.load(Ordering::Relaxed)
    }

    #[must_use]
    pub fn counters(&self) -> &WaitingRoomCounters {
        &self.0.counters
    }

    /// Asks the queue whether it answers (readiness reports it; it never fails readiness:
    /// orders for other products need no queue).
    ///
    /// # Errors
    /// `QueueUnavailable` or `Unexpected`.
    pub async fn probe(&self) -> Result<(), WaitingRoomError> {
        self.observe(self.0.queue.ping().await)
    }

    /// Notes how a queue call went, so health, metrics and the gate know.
    fn observe<T>(&self, result: Result<T, QueueError>) -> Result<T, WaitingRoomError> {
        match result {
            Ok(value) => {
                if !self.0.queue_up.swap(true, Ordering::Relaxed) {
                    tracing::info!("the admission queue answers again");
                }
                Ok(value)
            }
            Err(e) => {
                self.0.counters.queue_errors.fetch_add(1, Ordering::Relaxed);
                match e {
                    QueueError::Unavailable(e) => {
                        if self.0.queue_up.swap(false, Ordering::Relaxed) {
                            tracing::warn!(error = %e, "the admission queue is unavailable");
                        }
                        Err(WaitingRoomError::QueueUnavailable(e))
                    }
                    QueueError::Unexpected(e) => Err(WaitingRoomError::Unexpected(e)),
                }
            }
        }
    }

    /// The cached rooms, read again from the store when older than [`ROOM_REFRESH`]. A store
    /// that cannot be read leaves the last known rooms in place; with none known, it fails.
    async fn rooms(&self) -> Result<Arc<BTreeMap<RoomId, WaitingRoom>>, StoreError> {
        let cached = {
            let cache = self.0.cache.read().unwrap_or_else(PoisonError::into_inner);
            cache
                .as_ref()
                .map(|c| (Arc::clone(&c.rooms), c.read_at.elapsed() < ROOM_REFRESH))
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
        *self.0.cache.write().unwrap_or_else(PoisonError::into_inner) = Some(Cache {
            rooms: Arc::clone(&rooms),
            read_at: Instant::now(),
        });
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
        self.0.store.put(&room).await?;
        // Read back at once here, so this instance answers with the new configuration.
        self.reload().await?;
        tracing::info!(room = %room.id(), state = room.state().as_str(), "waiting room configured");
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
            .observe(self.0.queue.stats(room.id(), &rules(&room, now)).await)
            .ok();
        RoomView {
            phase: room.phase(now),
            room,
            queue,
        }
    }

    /// Puts `buyer` in the room's queue, or finds them there; admitted at once when nobody has
    /// to wait. `queue_token` (from an earlier answer) puts a buyer the queue lost back at their
    /// ticket.
    ///
    /// # Errors
    /// `NotFound`, `Closed`, `AlreadyOrdered`, `QueueUnavailable`, or the
    /// store's failure.
    #[tracing::instrument(name = "waiting_room.join", skip_all, fields(room = %id))]
    pub async fn join(
        &self,
        id: &RoomId,
        buyer: &CustomerId,
        queue_token: Option<&str>,
    ) -> Result<Entry, WaitingRoomError> {
        let room = self.room(id).await?;
        let now = self.0.clock.now();
        if room.phase(now) == Phase::Closed {
            return Err(WaitingRoomError::Closed);
        }
        // A token that is not this buyer's for this room (forged, another buyer's, signed with a
        // key since rotated) counts for nothing: the buyer joins as anyone would.
        let returning = queue_token.and_then(|token| {
            let pass = self.0.tokens.verify_queue_pass(token).ok();
            let pass = pass.filter(|pass| &pass.room == id && &pass.buyer == buyer);
            if pass.is_none() {
                tracing::debug!(room = %id, "a queue token that is not this buyer's was ignored");
            }
            pass.map(|pass| pass.ticket)
        });
        // Once per buyer and room, even when the queue forgot them: the orders remember.
        if self
            .0
            .orders
            .begin_read_only()
            .await?
            .orders()
            .ordered_in_room(id, buyer)
            .await?
        {
            return Err(WaitingRoomError::AlreadyOrdered);
        }
        let status = self.observe(
            self.0
                .queue
                .join(id, buyer, returning, &rules(&room, now))
                .await,
        )?;
        self.0.counters.joins.fetch_add(1, Ordering::Relaxed);
        if matches!(status, EntryStatus::Admitted { .. }) && returning.is_none() {
            self.0
                .counters
                .admitted_on_joining
                .fetch_add(1, Ordering::Relaxed);
        }
        self.entry(&room, buyer, status, now, Signed::WithQueueToken)
    }

    /// Where `buyer` stands; a heartbeat. No queue token: the buyer has it from joining, and
    /// status calls are the hot path of a waiting room.
    ///
    /// # Errors
    /// `NotFound`, `NotInRoom`, `QueueUnavailable`, or the store's failure.
    pub async fn status(&self, id: &RoomId, buyer: &CustomerId) -> Result<Entry, WaitingRoomError> {
        let room = self.room(id).await?;
        let now = self.0.clock.now();
        let status = self
            .observe(self.0.queue.status(id, buyer, &rules(&room, now)).await)?
            .ok_or(WaitingRoomError::NotInRoom)?;
        self.entry(&room, buyer, status, now, Signed::AdmissionOnly)
    }

    /// Takes `buyer` out of the room.
    ///
    /// # Errors
    /// `NotFound`, `NotInRoom`, `QueueUnavailable`, or the store's failure.
    pub async fn leave(&self, id: &RoomId, buyer: &CustomerId) -> Result<(), WaitingRoomError> {
        self.room(id).await?;
        if self.observe(self.0.queue.leave(id, buyer).await)? {
            Ok(())
        } else {
            Err(WaitingRoomError::NotInRoom)
        }
    }

    fn entry(
        &self,
        room: &WaitingRoom,
        buyer: &CustomerId,
        status: EntryStatus,
        now: DateTime<Utc>,
        signed: Signed,
    ) -> Result<Entry, WaitingRoomError> {
        let unexpected = |e: BoxError| WaitingRoomError::Unexpected(e);
        match status {
            EntryStatus::Waiting {
                ticket,
                position,
                waiting,
            } => {
                let queue_token = match signed {
                    Signed::WithQueueToken => {
                        let pass = QueuePass {
                            room: room.id().clone(),
                            buyer: buyer.clone(),
                            ticket,
                        };
                        Some(self.0.tokens.sign_queue_pass(&pass).map_err(unexpected)?)
                    }
                    Signed::AdmissionOnly => None,
                };
                let wait = estimated_wait(room.rate(), position);
                Ok(Entry::Waiting {
                    ticket,
                    position,
                    waiting,
                    estimated_wait: wait,
                    poll_after: poll_after(room, wait),
                    queue_token,
                })
            }
            EntryStatus::Admitted {
                ticket,
                admitted_at_ms,
            } => {
                let admitted_at = time_of(admitted_at_ms).ok_or_else(|| {
                    WaitingRoomError::Unexpected(
                        format!("admission time {admitted_at_ms} ms is out of range").into(),
                    )
                })?;
                let validity = chrono::Duration::from_std(room.admission_validity())
                    .map_err(|e| unexpected(Box::new(e)))?;
                let expires_at = admitted_at + validity;
                if now >= expires_at {
                    return Ok(Entry::Expired { ticket });
                }
                let admission = Admission {
                    room: room.id().clone(),
                    buyer: buyer.clone(),
                    // The same for every answer about this admission.
                    id: format!("{}-{}-{admitted_at_ms}", room.id(), ticket.0),
                    expires_at,
                };
                let token = self
                    .0
                    .tokens
                    .sign_admission(&admission)
                    .map_err(unexpected)?;
                Ok(Entry::Admitted {
                    ticket,
                    admission,
                    token,
                })
            }
        }
    }

    /// The order gate: whether `command` may be placed, and with which admission. An order with
    /// no SKU of a gating room passes as is. One with gated SKUs needs an admission token of
    /// the same customer, of a room that gates every one of them (one sale per order).
    ///
    /// # Errors
    /// [`GateRefusal`].
    pub async fn gate(
        &self,
        command: &PlaceOrder,
        token: Option<&str>,
    ) -> Result<Option<AdmissionRef>, GateRefusal> {
        let rooms = self
            .rooms()
            .await
            .map_err(|_| self.refused(GateRefusal::RoomsUnavailable))?;
        let now = self.0.clock.now();
        let gated: Vec<&Sku> = command
            .lines()
            .iter()
            .map(OrderLine::sku)
            .filter(|sku| rooms.values().any(|room| room.gates(sku, now)))
            .collect();
        if gated.is_empty() {
            return Ok(None);
        }
        let Some(token) = token else {
            return Err(self.refused(if self.queue_up() {
                GateRefusal::Required("this product is sold through a waiting room: join it first")
            } else {
                GateRefusal::Unavailable
            }));
        };
        let admission = match self.0.tokens.verify_admission(token, now) {
            Ok(admission) => admission,
            Err(TokenError::Expired) => return Err(self.refused(GateRefusal::Expired)),
            Err(TokenError::Invalid) => {
                return Err(self.refused(GateRefusal::Required("the admission token is not valid")));
            }
        };
        if &admission.buyer != command.customer_id() {
            return Err(self.refused(GateRefusal::Required(
                "the admission token was issued to another buyer",
            )));
        }
        let covers = rooms
            .get(&admission.room)
            .is_some_and(|room| gated.iter().all(|sku| room.gates(sku, now)));
        if !covers {
            return Err(self.refused(GateRefusal::Required(
                "the admission token is not for the waiting room of these products \
                 (order the products of different flash sales separately)",
            )));
        }
        Ok(Some(AdmissionRef {
            room: admission.room,
            id: admission.id,
        }))
    }

    fn refused(&self, refusal: GateRefusal) -> GateRefusal {
        let c = &self.0.counters;
        match refusal {
            GateRefusal::Required(_) => &c.refused_required,
            GateRefusal::Expired => &c.refused_expired,
            GateRefusal::Unavailable | GateRefusal::RoomsUnavailable => &c.refused_unavailable,
        }
        .fetch_add(1, Ordering::Relaxed);
        refusal
    }

    /// One round of admissions: every admitting room's queue is ticked once. Any number of
    /// instances may do this at once; the queue keeps each room to its rate.
    ///
    /// # Errors
    /// The first failure; the other rooms are still ticked.
    pub async fn tick(&self) -> Result<usize, WaitingRoomError> {
        let rooms = self.rooms().await?;
        self.tick_rooms(&rooms, self.0.clock.now()).await
    }

    async fn tick_rooms(
        &self,
        rooms: &BTreeMap<RoomId, WaitingRoom>,
        now: DateTime<Utc>,
    ) -> Result<usize, WaitingRoomError> {
        let mut admitted = 0;
        let mut first_error = None;
        for room in rooms.values().filter(|room| room.admits(now)) {
            match self.observe(self.0.queue.tick(room.id(), &rules(room, now)).await) {
                Ok(buyers) => admitted += buyers.len(),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.0
            .counters
            .admitted_by_tick
            .fetch_add(admitted as u64, Ordering::Relaxed);
        first_error.map_or(Ok(admitted), Err)
    }

    /// Ticks until `shutdown`, one round every [`tick_period`]. Failures are logged (once per
    /// outage, by the queue's state) and the loop goes on.
    pub async fn run_ticker(self, mut shutdown: Shutdown) {
        loop {
            let now = self.0.clock.now();
            let period = match self.rooms().await {
                Ok(rooms) => {
                    if let Err(e) = self.tick_rooms(&rooms, now).await
                        && !matches!(e, WaitingRoomError::QueueUnavailable(_))
                    {
                        tracing::warn!(error = %e, "waiting-room tick failed");
                    }
                    tick_period(&rooms, now)
                }
                // Logged where the rooms are read.
                Err(_) => MAX_TICK_PERIOD,
            };
            tokio::select! {
                () = shutdown.requested() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    }
}

const MAX_TICK_PERIOD: Duration = Duration::from_secs(1);

/// How long to wait between ticks: a tenth of the shortest admitting interval, between 50 ms
/// and 1 s, so a window's admissions go out early in the window.
fn tick_period(rooms: &BTreeMap<RoomId, WaitingRoom>, now: DateTime<Utc>) -> Duration {
    rooms
        .values()
        .filter(|room| room.admits(now))
        .map(|room| room.rate().interval() / 10)
        .min()
        .unwrap_or(MAX_TICK_PERIOD)
        .clamp(Duration::from_millis(50), MAX_TICK_PERIOD)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ordership_domain::waiting_room::{Rate, RoomState};

    use super::*;

    fn room(heartbeat: Duration) -> WaitingRoom {
        WaitingRoom::new(
            RoomId::parse("sale").expect("room"),
            BTreeSet::from([Sku::parse("HOT-1").expect("sku")]),
            Rate::default(),
            WaitingRoom::DEFAULT_ADMISSION_VALIDITY,
            heartbeat,
            RoomState::Open,
            None,
            None,
        )
        .expect("room")
    }

    #[test]
    fn buyers_ask_again_at_a_quarter_of_their_wait_within_the_heartbeat() {
        let patient = room(Duration::from_secs(30));
        assert_eq!(
            poll_after(&patient, Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            poll_after(&patient, Duration::from_secs(20)),
            Duration::from_secs(5)
        );
        assert_eq!(
            poll_after(&patient, Duration::from_secs(3_600)),
            Duration::from_secs(10),
            "a third of the heartbeat timeout at most"
        );
        let impatient = room(Duration::from_secs(1));
        assert_eq!(
            poll_after(&impatient, Duration::from_secs(60)),
            Duration::from_secs(1)
        );
    }
}
