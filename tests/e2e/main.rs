//! End-to-end tests: the whole system in one process (the embedded wiring) and the real
//! `ordership` binary over TCP. Each checks the invariants
//! listed in `docs/design.md` (*Tests*).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod binary;
mod broker_restart;
mod browser;
mod churn;
mod crash;
mod embedded;
mod invariants;
mod kafka;
mod kafka_crash;
mod load;
mod pg_restart;
mod prometheus;
mod scale_out;
mod static_membership;
mod stock;
mod tansu;
mod tls;
mod traces;
mod waiting_room;
