//! Time and identity: what the services ask instead of the system clock and a random source.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The time. A port so that tests can move it.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// Where the jitter of retry waits comes from ([`crate::jitter`]): a port, so that tests and a
/// deterministic simulation choose the draws ([`crate::jitter::SeededRandom`] with a seed).
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait RandomSource: Send + Sync {
    /// The next draw.
    fn jitter(&self) -> crate::jitter::Jitter;
}

impl RandomSource for crate::jitter::SeededRandom {
    fn jitter(&self) -> crate::jitter::Jitter {
        Self::jitter(self)
    }
}

/// New unique ids (UUID v7 in production: time-ordered, so indexes stay compact).
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait IdGenerator: Send + Sync {
    fn new_id(&self) -> Uuid;
}
