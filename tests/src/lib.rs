//! Cross-crate tests of ordership. The library holds what every test suite shares: the
//! **storage contract** (`contract/`, checks every storage adapter must pass, written once
//! against the port traits), the **transport contract** (`transport`, the same for the
//! in-process bus and Kafka), the **waiting-room queue contract** (`waiting_room`, for every waiting-room
//! queue), the **fakes** (one hand-written fake per port) and the **fixtures** the suites use. The binaries `contract`
//! (both contracts on every adapter) and `e2e` (whole processes) live beside it.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod contract;
pub mod fakes;
pub mod fixtures;
pub mod rooms;
pub mod transport;
pub mod waiting_room;
