//! How the fulfilment saga waits for replies and how often it asks again.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::jitter::Jitter;

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
    /// The wait is at least `reply_timeout` (the delivery service always gets that long); what
    /// the exponential backoff adds above it, up to `reply_timeout · 2^(attempt−1)` capped at
    /// `max_backoff`, is `jitter`'s share, so sagas that timed out together (after an outage, say)
    /// are not sent again together.
    #[must_use]
    pub fn deadline(&self, attempt: u32, now: DateTime<Utc>, jitter: Jitter) -> DateTime<Utc> {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        let ceiling = self
            .reply_timeout
            .saturating_mul(factor)
            .min(self.max_backoff)
            .max(self.reply_timeout);
        let wait = self.reply_timeout + jitter.of(ceiling - self.reply_timeout);
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
            .map(|a| (policy.deadline(a, now, Jitter::NONE) - now).num_seconds())
            .collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
    }

    #[test]
    fn a_re_send_waits_at_least_the_reply_timeout_and_its_draw_of_the_rest() {
        let policy = SagaPolicy {
            reply_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
            ..SagaPolicy::default()
        };
        let now = Utc::now();
        let wait = |attempt, draw| {
            (policy.deadline(attempt, now, Jitter::new(draw)) - now)
                .to_std()
                .expect("ahead")
        };
        // The first wait is the reply timeout, whatever the draw.
        assert_eq!(wait(1, 0.0), Duration::from_secs(10));
        assert_eq!(wait(1, 0.9), Duration::from_secs(10));
        // The third attempt's ceiling is 40 s: 10 s always, and the draw's share of 30 s.
        assert_eq!(wait(3, 0.0), Duration::from_secs(10));
        assert_eq!(wait(3, 0.5), Duration::from_secs(25));
        assert_ne!(wait(3, 0.2), wait(3, 0.7), "two draws, two deadlines");
    }
}
