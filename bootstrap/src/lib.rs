//! # ordership (bootstrap)
//!
//! The outermost ring of the hexagon: reads the configuration, picks the adapters, wires them to
//! the application, and runs the subcommands of the `ordership` binary. No business logic lives
//! here; `anyhow` is used only here.

pub mod cli;
pub mod embedded;
pub mod load;
pub mod run;
pub mod server;
pub mod telemetry;
pub mod wiring;
