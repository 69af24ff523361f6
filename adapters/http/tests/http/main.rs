//! HTTP tests: every endpoint through `Router::oneshot`, against both services on the in-memory
//! adapters with the saga running over the in-process bus — wired by the binary's composition
//! root (`ordership::wiring`), so what is tested is what runs.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod app;
mod auth;
mod deliveries;
mod fair_use;
mod follow;
mod idempotency;
mod ops;
mod orders;
mod sagas;
mod waiting_room;
