//! How the fulfilment saga waits for replies and how often it asks again.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How the fulfilment saga waits and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaPolicy {
    /// How long to wait for the delivery service's first reply before sending again.
    pub reply_timeout: Duration,
    /// Waits double per attempt up to this.
    pub max_backoff: Duration,
    /// `ScheduleDelivery` sends before the saga gives up and compensates.
    pub max_schedule_attempts: u32,
    /// `CancelDelivery` sends before the saga is marked failed.
    pub max_cancel_attempts: u32,
}

impl Default for SagaPolicy {
    fn default() -> Self {
        Self {
            reply_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
            max_schedule_attempts: 5,
            max_cancel_attempts: 20,
        }
    }
}

impl SagaPolicy {
    /// When to give up waiting for the reply to attempt number `attempt` (1-based), sent `now`.
    #[must_use]
    pub fn deadline(&self, attempt: u32, now: DateTime<Utc>) -> DateTime<Utc> {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        let wait = self
            .reply_timeout
            .saturating_mul(factor)
            .min(self.max_backoff);
        now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_double_per_attempt_up_to_the_cap() {
        let policy = SagaPolicy {
            reply_timeout: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            ..SagaPolicy::default()
        };
        let now = Utc::now();
        let waits: Vec<i64> = (1..=5)
            .map(|a| (policy.deadline(a, now) - now).num_seconds())
            .collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
    }
}
