//! HTTP tests: every endpoint through `Router::oneshot`, against the in-memory adapters with the
//! saga running over the in-process bus.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod app;
mod deliveries;
mod idempotency;
mod ops;
mod orders;
