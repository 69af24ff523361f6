//! The waiting room's ports: its queue (who waits, in what order, who was let in), the tokens
//! that carry a buyer's place and admission, and the store of the rooms' configuration.
//!
//! The queue keeps its own clock (Redis `TIME` on Redis) and hands out tickets itself, so that
//! every service instance sees one order and one admission window. Room configuration is not
//! the queue's: callers pass what an operation needs as [`QueueRules`]. The configuration is kept
//! by the [`WaitingRoomStore`] (the order service's database): durable, so a queue that loses its
//! data never forgets a room, and readable without the queue, so the order gate works while the
//! queue is down.

use std::time::Duration;

use super::{BoxError, StoreError};
use crate::order::CustomerId;
#[cfg(doc)]
use crate::waiting_room::Holders;
use crate::waiting_room::{EntryStatus, Rate, RoomId, Ticket, WaitingRoom};

/// The queue could not answer.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue cannot be reached or timed out. Retryable; nothing changed, or the change is
    /// safe to ask for again (every operation is idempotent per buyer).
    #[error("the admission queue is unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else: a bug, corrupt data.
    #[error("unexpected admission queue error")]
    Unexpected(#[source] BoxError),
}

/// What the queue needs to know about a room for one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRules {
    pub rate: Rate,
    /// A waiting buyer silent for longer is dropped, never admitted.
    pub heartbeat_timeout: Duration,
    /// Whether the room lets buyers in now (open, within its times).
    pub admitting: bool,
    /// The seed of the opening draw: the first operation that finds the room admitting puts the
    /// buyers queued before it in a random order drawn from this
    /// ([`shuffle`](crate::waiting_room::shuffle)), once per room.
    pub draw_seed: u64,
    /// How long an admission may be used: a buyer who has not ordered by then holds it no more.
    pub admission_validity: Duration,
    /// The most buyers who may hold an unexpired admission they have not ordered with
    /// ([`WaitingRoom::holding_limit`]); `None`: no limit.
    pub holding_limit: Option<u32>,
}

/// A room's queue in numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub waiting: u64,
    /// Admitted since the room's queue began.
    pub admitted: u64,
    /// Admitted within the last interval of the room's rate (the sliding window).
    pub admitted_in_window: u32,
    /// The last ticket handed out (0: none yet).
    pub last_ticket: u64,
    /// Admitted buyers whose admission is unexpired and who have not ordered with it yet.
    pub holding: u32,
}

/// One queue per room, shared by every service instance.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait WaitingRoomQueue: Send + Sync {
    /// Whether the queue answers (health checks).
    ///
    /// # Errors
    /// MUST return [`QueueError::Unavailable`] when the queue cannot be reached.
    async fn ping(&self) -> Result<(), QueueError>;

    /// Puts `buyer` in `room`'s queue, or finds them there: one entry per buyer and room, so
    /// joining again changes nothing. A buyer is admitted at once when the room admits, nobody
    /// waits before them and the last interval's admissions leave room
    /// ([`admitted_on_joining`](crate::waiting_room::admitted_on_joining)); otherwise they wait.
    /// `returning` is the ticket of the buyer's queue token: a buyer the queue does not know
    /// (it lost its data) is put back at that ticket, and the ticket counter moves past it so
    /// that new tickets never collide with it. Joining counts as a heartbeat.
    ///
    /// # Errors
    /// MUST return [`QueueError::Unavailable`] when the queue cannot be reached.
    async fn join(
        &self,
        room: &RoomId,
        buyer: &CustomerId,
        returning: Option<Ticket>,
        rules: &QueueRules,
    ) -> Result<EntryStatus, QueueError>;

    /// Where `buyer` stands; counts as a heartbeat. `None` when the buyer is not in the room
    /// (never joined, left, or dropped for silence).
    ///
    /// # Errors
    /// MUST return [`QueueError::Unavailable`] when the queue cannot be reached.
    async fn status(
        &self,
        room: &RoomId,
        buyer: &CustomerId,
        rules: &QueueRules,
    ) -> Result<Option<EntryStatus>, QueueError>;

    /// `buyer` holds their admission no more: they ordered with it, or were told the sale is
    /// sold out. It stops counting against the room's holding limit ([`Holders`]). Idempotent.
    ///
    /// # Errors
    /// MUST return [`QueueError::Unavailable`] when the queue cannot be reached.
    async fn release(&self, room: &RoomId, buyer: &CustomerId) -> Result<(), QueueError>;

    /// Takes `buyer` out of the queue (waiting or admitted); whether they were in it.
    ///
    /// # Errors
    /// MUST return [`QueueError::Unavailable`] when the queue cannot be reached.
    async fn leave(&self, room: &RoomId, buyer: &CustomerId) -> Result<bool, QueueError>;

    /// Admits the next waiting buyers in ticket order, at most what the rate leaves after the
    /// last interval's admissions on the queue's clock and what the holding limit leaves
    /// ([`admissions_now`](crate::waiting_room::admissions_now)), dropping
    /// the abandoned ones on the way; returns who was admitted. Nothing while the room does not
    /// admit. Any number of callers may tick one room at once: the rate holds across all of
    /// them.
    ///
    /// # Errors
    /// MUST return [`QueueError::Unavailable`] when the queue cannot be reached.
    async fn tick(
        &self,
        room: &RoomId,
        rules: &QueueRules,
    ) -> Result<Vec<(CustomerId, Ticket)>, QueueError>;

    /// The room's queue in numbers.
    ///
    /// # Errors
    /// MUST return [`QueueError::Unavailable`] when the queue cannot be reached.
    async fn stats(&self, room: &RoomId, rules: &QueueRules) -> Result<QueueStats, QueueError>;

    /// Lets the room's queue be forgotten `after` from now (a closed or deleted room), unless it
    /// is set to be already: asking again does not put it off. Joining the room or ticking it
    /// while it admits keeps it again.
    ///
    /// # Errors
    /// MUST return [`QueueError::Unavailable`] when the queue cannot be reached.
    async fn expire(&self, room: &RoomId, after: std::time::Duration) -> Result<(), QueueError>;
}

/// An admission: `buyer` may place one order for `room`'s SKUs until `expires_at`. `id` is
/// stored with that order, under a unique constraint: one admission, one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub room: RoomId,
    pub buyer: CustomerId,
    pub id: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// A buyer's place in a room's queue, held by the buyer: with it, a buyer the queue lost is put
/// back at the same ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePass {
    pub room: RoomId,
    pub buyer: CustomerId,
    pub ticket: Ticket,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not signed by this deployment's key, not of this kind, or malformed.
    #[error("the token is not valid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

/// Signs and checks the tokens a waiting room hands to buyers, with one key every service
/// instance shares (so any instance honours what another issued).
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait WaitingRoomTokens: Send + Sync {
    /// # Errors
    /// Signing failed.
    fn sign_admission(&self, admission: &Admission) -> Result<String, BoxError>;

    /// The admission a token stands for, if it is one of ours and not expired at `now`.
    ///
    /// # Errors
    /// [`TokenError`].
    fn verify_admission(
        &self,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Admission, TokenError>;

    /// # Errors
    /// Signing failed.
    fn sign_queue_pass(&self, pass: &QueuePass) -> Result<String, BoxError>;

    /// # Errors
    /// [`TokenError::Invalid`] for anything but a queue pass of ours.
    fn verify_queue_pass(&self, token: &str) -> Result<QueuePass, TokenError>;
}

/// Where waiting rooms' configuration is kept.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait WaitingRoomStore: Send + Sync {
    /// Creates the room, or replaces its configuration. Its stock's total is the units on sale
    /// (its `sold` is ignored: the store counts it); a room that stops counting stock keeps its
    /// count of units sold, so counting again later starts from it.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`] when the stock's total is below the units already
    /// sold (nothing is changed then); otherwise [`StoreError::Unavailable`] /
    /// [`StoreError::Unexpected`] only.
    async fn put(&self, room: &WaitingRoom) -> Result<(), StoreError>;

    /// The room with its stock as counted now.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn get(&self, id: &RoomId) -> Result<Option<WaitingRoom>, StoreError>;

    /// Deletes the room with its stock; whether it was there. Orders placed through it keep
    /// their admissions.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn delete(&self, id: &RoomId) -> Result<bool, StoreError>;

    /// Every room, by id, with its stock as counted now (the services cache them).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn all(&self) -> Result<Vec<WaitingRoom>, StoreError>;
}
