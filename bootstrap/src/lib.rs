//! # ordership (bootstrap)
//!
//! The outermost ring of the hexagon: reads the configuration, picks the adapters, wires them to
//! the application, and runs the subcommands of the `ordership` binary. No business logic lives
//! here; `anyhow` is used only here.
//!
//! Where to look: [`run`] (which module runs each subcommand), [`wiring`] (the composition root:
//! one module per adapter technology), [`commands`] and [`load`] (the other subcommands).

pub mod cli;
pub mod commands;
pub mod load;
pub mod run;
pub mod server;
pub mod wiring;
