//! # ordership-application
//!
//! The use cases around the domain: placing, reading and cancelling orders
//! ([`OrderService`]), the I/O of the orchestrated fulfilment saga — load, lock, let the domain
//! decide, save one step, encode ([`FulfilmentOrchestrator`]) — the delivery service
//! ([`DeliveryService`]), the wire contracts of the messages ([`messages`]), the one consumer
//! loop every transport runs ([`ConsumerLoop`]), the outbox relays and the retention jobs.
//!
//! Everything here speaks only to the ports of `ordership-domain`: transactions through the
//! unit-of-work port, the broker through the publisher port. No adapter type is visible, so the
//! same code runs on the in-memory adapters and on Postgres + Kafka.

pub mod background;
pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod deliveries;
mod error;
mod idempotency;
pub mod messages;
pub mod monitoring;
pub mod operations;
pub mod orders;
pub mod outbox;
pub mod relay;
pub mod saga;
pub mod shedding;
pub mod shutdown;
mod stamp;
pub mod trace;
pub mod updates;
pub mod waiting_room;

pub use config::RetentionConfig;
pub use consumer::{ConsumerLoop, ConsumerStats, DeadLetterIndex, DeadLetterSink};
pub use deliveries::{DeliveryCommandError, DeliveryService, GetDeliveryError};
pub use idempotency::IdempotentRequest;
pub use operations::{SagaAction, SagaActionError, SagaOperations};
pub use orders::{
    CancelOrderError, GetOrderError, OrderAccess, OrderService, OrderView, Outcome,
    PlaceOrderError, Render,
};
pub use relay::{CdcRelay, OutboxRelay, RelayConfig, RelayError, relay_instance_name};
pub use saga::{FulfilmentOrchestrator, SweepReport};
pub use shedding::{LoadShedder, Pressure, ShedReason, ShedThresholds};
pub use shutdown::{Shutdown, ShutdownTrigger};
pub use updates::{Following, OrderUpdate, OrderUpdates, OrderWatches, WatchLimits, WatchRefused};
pub use waiting_room::{Entry, GateRefusal, RoomView, WaitingRoomError, WaitingRoomService};
