//! PostgreSQL-specific behaviour, against a real server, one fresh database per test: what the
//! shared contract suite cannot show because it needs concurrency or the server's own semantics.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod cdc;
mod concurrency;
mod errors;
mod followers;
mod harness;
mod operations;
mod outbox;
mod shards;
