//! Tunables of the background jobs. (How the saga waits is the domain's `SagaPolicy`.)

use std::time::Duration;

/// How long finished records are kept.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Published outbox messages.
    pub outbox: Duration,
    /// Inbox entries: longer than any redelivery can come late.
    pub inbox: Duration,
    /// Idempotency keys: at least 24 hours.
    pub idempotency_keys: Duration,
    /// How often the retention job runs.
    pub interval: Duration,
    /// How often each outbox's upkeep ([`UnitOfWork::upkeep`]) runs; zero: never (the store's
    /// own background cleaning is trusted).
    ///
    /// [`UnitOfWork::upkeep`]: ordership_domain::ports::UnitOfWork::upkeep
    pub outbox_vacuum: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            outbox: Duration::from_secs(3600),
            inbox: Duration::from_secs(7 * 24 * 3600),
            idempotency_keys: Duration::from_secs(24 * 3600),
            interval: Duration::from_secs(60),
            outbox_vacuum: Duration::from_secs(5),
        }
    }
}
