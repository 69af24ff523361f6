//! # ordership-redis
//!
//! The waiting room's queue on Redis, standalone or Redis Cluster. Each operation of the
//! [`WaitingRoomQueue`](ordership_domain::ports::WaitingRoomQueue) port is one Lua script, so it
//! is atomic; every key of a room carries the room's hash tag (`{wr:<room>}`), so each script
//! touches one cluster slot. Tickets come from
//! the room's counter (`INCR`), time from Redis `TIME`, and the admission rate is enforced inside
//! the tick script — any number of service instances may tick one room. Scripts are sent by hash
//! and loaded again on `NOSCRIPT` (after a restart or a failover).
//!
//! Per-caller quotas ([`RedisRateLimiter`]) share the connection: one key per policy and caller,
//! one script per request, Redis's clock.

mod connection;
mod healing;
mod rate_limit;
mod replication;
mod waiting_room;

pub use connection::{Redis, TIMEOUT, Tls, connect, connect_cluster};
pub use healing::HEAL_AFTER;
pub use rate_limit::RedisRateLimiter;
pub use replication::{Durability, Replicated};
pub use waiting_room::RedisWaitingRoomQueue;
