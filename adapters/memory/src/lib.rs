//! # ordership-memory
//!
//! Adapters that keep everything in memory: a [`MemoryStore`] that implements every storage
//! port of `ordership-domain` with the same guarantees as the Postgres adapter — one module per
//! port, named as in the Postgres adapter (`unit_of_work`, `orders`, `sagas`, `deliveries`,
//! `outbox`, `inbox`, `idempotency`) — an [`InProcessBus`] that carries messages with Kafka's
//! at-least-once, per-key-ordered semantics (and can redeliver on purpose) and runs the
//! application's consumer loop, and the system clock and id generator.
//!
//! This is the embedded default of the `ordership` binary and the fake that tests use.

mod bus;
mod changes;
mod clock;
mod dead_letters;
mod deliveries;
mod idempotency;
mod inbox;
mod orders;
mod outbox;
mod rate_limit;
mod sagas;
mod unit_of_work;
mod waiting_room;

pub use bus::{BusConfig, BusStats, DeadLetter, InProcessBus};
pub use changes::MemoryOrderChanges;
pub use clock::{ManualClock, SystemClock, UuidV7Ids};
pub use rate_limit::MemoryRateLimiter;
pub use unit_of_work::{MemoryStore, MemoryTransaction, RowCounts};
pub use waiting_room::MemoryWaitingRoomQueue;
