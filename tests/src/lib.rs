//! Cross-crate tests of ordership. The library holds the **port contract suite**: checks that
//! every storage adapter must pass, written once against the port traits and instantiated for
//! each adapter (`contract/`). End-to-end tests live in `e2e/`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod contract;
