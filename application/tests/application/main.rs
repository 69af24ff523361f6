//! Application tests: the saga, the use cases and the relay against the in-memory adapters, and
//! mockall mocks where the calls or an injected failure matter.

mod harness;
mod mocks;
mod orders;
mod saga;
