//! The subcommands other than serving, one module each (`ordership load` is in [`crate::load`]).

pub mod bench_order;
pub mod bench_publish;
pub mod dev_broker;
pub mod dlq;
pub mod migrate;
pub mod outbox;
pub mod room;
pub mod saga;
pub mod simulate;
pub mod token;
