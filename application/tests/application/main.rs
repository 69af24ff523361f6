//! Application tests: the saga, the use cases and the relay against the in-memory adapters, and
//! mockall mocks where the calls or an injected failure matter.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod dead_letters;
mod harness;
mod jitter;
mod mocks;
mod orders;
mod saga;
mod stock;
