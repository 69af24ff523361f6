//! The flash-sale waiting rooms: buyers join a room's queue, the queue admits them at the room's
//! rate, and an admitted buyer gets a signed admission that lets them order the room's SKUs once.
//!
//! Rooms are configured in the order store (durable, and readable while the queue is down) and
//! cached here; the queue (tickets, heartbeats, admissions) is the [`WaitingRoomQueue`]'s. The
//! order gate ([`WaitingRoomService::gate`]) needs only the cache and the token's signature, so
//! orders for other SKUs never wait on the queue, and an admitted buyer can order while it is
//! down.

mod buyers;
mod config;
mod gate;
mod ticker;

use config::Cache;
pub use gate::GateRefusal;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ordership_domain::SeededRandom;
use ordership_domain::ports::{
    Admission, BoxError, Clock, OrderTransaction, QueueError, QueueStats, StoreError, UnitOfWork,
    WaitingRoomQueue, WaitingRoomStore, WaitingRoomTokens,
};
use ordership_domain::waiting_room::{Phase, RoomId, Ticket, WaitingRoom, millis};

/// How often each instance reloads the rooms from the store: a room changed through another
/// instance is seen here within this time.
pub const ROOM_REFRESH: Duration = Duration::from_secs(1);

/// How long the queue of a closed or deleted room is kept, unless configured: long enough for
/// buyers and operators to look at what happened, short enough that Redis does not grow with
/// every sale.
pub const DEFAULT_KEY_TTL: Duration = Duration::from_secs(24 * 3600);

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
    /// Every unit of the sale is held by an order. The buyer keeps their place at `ticket`:
    /// units that cancelled orders give back reopen the queue in ticket order.
    SoldOut {
        ticket: Ticket,
        /// When to ask again (also the `Retry-After`).
        poll_after: Duration,
        queue_token: Option<String>,
    },
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
    /// A room's stock set below the units its orders hold: nothing was changed.
    #[error("the stock cannot be set below the units orders hold already")]
    StockBelowSold,
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

/// Counters of the waiting rooms, for metrics.
#[derive(Debug, Default)]
pub struct WaitingRoomCounters {
    pub joins: AtomicU64,
    pub admitted_on_joining: AtomicU64,
    pub admitted_by_tick: AtomicU64,
    pub refused_required: AtomicU64,
    pub refused_expired: AtomicU64,
    pub refused_price: AtomicU64,
    pub refused_unavailable: AtomicU64,
    pub queue_errors: AtomicU64,
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
    /// Seeds the queue's opening draws.
    random: SeededRandom,
    /// How long a closed or deleted room's queue is kept, in milliseconds.
    key_ttl_ms: AtomicU64,
    /// The closed rooms whose queues this instance has set to expire (once each per process;
    /// asking the queue again would not put it off anyway).
    expiring: Mutex<BTreeSet<RoomId>>,
    /// Counts the changes of the rooms waiting buyers would see
    /// ([`WaitingRoomService::room_changes`]).
    changes: tokio::sync::watch::Sender<u64>,
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
            random: SeededRandom::from_entropy(),
            key_ttl_ms: AtomicU64::new(millis(DEFAULT_KEY_TTL)),
            expiring: Mutex::default(),
            changes: tokio::sync::watch::Sender::new(0),
        }))
    }

    /// The same service, keeping a closed or deleted room's queue for `ttl` (at least a
    /// millisecond).
    #[must_use]
    pub fn with_key_ttl(self, ttl: Duration) -> Self {
        self.0
            .key_ttl_ms
            .store(millis(ttl).max(1), Ordering::Relaxed);
        self
    }

    /// The same service, drawing the queue's opening orders from `seed` (by default they are
    /// seeded per process): a test or a simulation replays them.
    #[must_use]
    pub fn with_draw_seed(self, seed: u64) -> Self {
        self.0.random.reseed(seed);
        self
    }

    fn key_ttl(&self) -> Duration {
        Duration::from_millis(self.0.key_ttl_ms.load(Ordering::Relaxed))
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
}
