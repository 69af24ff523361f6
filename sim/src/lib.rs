//! A deterministic simulator of ordership: both services — their use cases, saga, relays,
//! consumers and sweeper, the real application code — on the in-memory adapters, one step at a
//! time on one thread, with time, ids, draws and faults all from **one seed**. After the faults
//! stop and the system quiesces, an oracle checks the guarantees (see [`oracle`]). A run prints
//! `trace hash: <hex>`, a hash of its whole schedule: the same seed replays the same run on any
//! machine (`ordership simulate --seed S`).
//!
//! The parts: [`time`] (the seed's dice, simulated time, skewable clocks, seeded ids),
//! [`faults`] (the store's decorator: crashes, refused and ambiguous commits), [`broker`] (a
//! Kafka-like log with consumer groups, and a publisher that fails as brokers do), [`world`]
//! (the two processes, built and rebuilt after a crash), [`sale`] (the flash sale: its waiting
//! room's queue with faults, its tokens, its invariants), [`driver`] (the schedule: which step
//! runs next), [`clients`] (HTTP clients that retry with their idempotency key and
//! double-click, operators who cancel), [`oracle`] (the invariants), [`batch`] (many seeds).

pub mod batch;
pub mod broker;
pub mod clients;
pub mod driver;
pub mod faults;
pub mod oracle;
pub mod sale;
pub mod steps;
pub mod time;
pub mod trace;
pub mod world;

pub use batch::{BatchReport, run_batch};
pub use driver::{Options, Report, run};
pub use ordership_domain::planted::Bug;
