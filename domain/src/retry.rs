//! What a transport does when a handler fails, decided in one place for every transport (the
//! in-process bus and the Kafka consumers): retry with exponential backoff without moving on,
//! or dead-letter the message and move on.
//!
//! - [`HandleError::Unavailable`]: the database is down, the message is fine. Retried for as
//!   long as it takes; dead-lettering would only throw good messages away during an outage.
//! - [`HandleError::Transient`]: retried, but at most [`RetryPolicy::max_attempts`] times in
//!   all; a message that keeps failing this way breaks an invariant, and holding its partition
//!   forever would stop every order behind it.
//! - [`HandleError::Permanent`]: dead-lettered at once.
//!
//! Waits are spread with full jitter ([`crate::jitter`]): each is drawn between nothing and its
//! exponential ceiling, so partitions that failed together do not retry together.

use std::time::Duration;

use crate::jitter::Jitter;
use crate::ports::{BoxError, HandleError};

/// Backoff and patience for failed handler calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The ceiling of the wait after the first failure; doubles with every further failure.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// Attempts a message may fail with [`HandleError::Transient`] before it is dead-lettered
    /// (at least 1).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            max_attempts: 10,
        }
    }
}

/// The failures of one message so far. Start with `Attempts::default()` for each message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// Every failure, whatever its kind: drives the backoff.
    pub failures: u32,
    /// Failures of kind [`HandleError::Transient`]: counted against `max_attempts`.
    pub transient: u32,
}

/// What to do with a message whose handler just failed.
#[derive(Debug)]
pub enum Verdict {
    /// Call the handler again with the same message after `after`, without moving on.
    Retry { after: Duration, error: BoxError },
    /// Park the message in the dead-letter queue with `reason`, and move on.
    DeadLetter { reason: String },
}

impl RetryPolicy {
    /// Judges a failure, counting it in `attempts`; a retry waits `jitter`'s share of the
    /// backoff's ceiling.
    #[must_use]
    pub fn judge(&self, attempts: &mut Attempts, error: HandleError, jitter: Jitter) -> Verdict {
        attempts.failures = attempts.failures.saturating_add(1);
        let after = self.backoff(attempts.failures, jitter);
        match error {
            HandleError::Unavailable(error) => Verdict::Retry { after, error },
            HandleError::Transient(error) => {
                attempts.transient = attempts.transient.saturating_add(1);
                if attempts.transient >= self.max_attempts.max(1) {
                    Verdict::DeadLetter {
                        reason: format!(
                            "failed attempt {} of {}: {}",
                            attempts.transient,
                            self.max_attempts.max(1),
                            error_chain(error.as_ref())
                        ),
                    }
                } else {
                    Verdict::Retry { after, error }
                }
            }
            HandleError::Permanent(reason) => Verdict::DeadLetter { reason },
        }
    }

    /// The wait after the `failures`-th failure: `jitter`'s share of the ceiling
    /// `initial_backoff · 2^(failures−1)`, capped at `max_backoff` (full jitter).
    #[must_use]
    pub fn backoff(&self, failures: u32, jitter: Jitter) -> Duration {
        jitter.of(self.ceiling(failures))
    }

    /// The longest wait after the `failures`-th failure.
    #[must_use]
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// An error and its causes, `outer: inner: innermost`.
#[must_use]
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::StoreError;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            max_attempts,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy(3);
        let waits: Vec<u128> = (1..=6).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 100, 100]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_millis(100));
        assert_eq!(p.backoff(3, Jitter::NONE), Duration::from_millis(40));
    }

    #[test]
    fn two_retries_of_one_schedule_wait_differently_within_the_ceiling() {
        use crate::jitter::SeededRandom;
        let p = policy(3);
        let random = SeededRandom::new(1);
        let schedule = || -> Vec<Duration> {
            let mut attempts = Attempts::default();
            (0..6)
                .map(|_| {
                    match p.judge(
                        &mut attempts,
                        StoreError::Unavailable("down".into()).into(),
                        random.jitter(),
                    ) {
                        Verdict::Retry { after, .. } => after,
                        Verdict::DeadLetter { .. } => panic!("an outage is retried"),
                    }
                })
                .collect()
        };
        let (first, second) = (schedule(), schedule());
        assert_ne!(first, second, "two consumers failing together retry apart");
        for (n, (a, b)) in first.iter().zip(&second).enumerate() {
            let ceiling = p.ceiling(u32::try_from(n).expect("small") + 1);
            assert!(
                *a <= ceiling && *b <= ceiling,
                "attempt {n}: {a:?}, {b:?} ≤ {ceiling:?}"
            );
        }
    }

    #[test]
    fn an_unavailable_dependency_is_retried_for_as_long_as_it_takes() {
        let p = policy(3);
        let mut attempts = Attempts::default();
        for _ in 0..1_000 {
            let down = StoreError::Unavailable("connection refused".into());
            assert!(matches!(
                p.judge(&mut attempts, down.into(), Jitter::NONE),
                Verdict::Retry { .. }
            ));
        }
        assert_eq!(attempts.transient, 0);
    }

    #[test]
    fn a_message_that_keeps_failing_is_dead_lettered_after_max_attempts() {
        let p = policy(3);
        let mut attempts = Attempts::default();
        let conflict = || HandleError::from(StoreError::Conflict);
        assert!(matches!(
            p.judge(&mut attempts, conflict(), Jitter::NONE),
            Verdict::Retry { .. }
        ));
        // An outage in between does not count against the message.
        let down = StoreError::Unavailable("down".into());
        assert!(matches!(
            p.judge(&mut attempts, down.into(), Jitter::NONE),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            p.judge(&mut attempts, conflict(), Jitter::NONE),
            Verdict::Retry { .. }
        ));
        match p.judge(&mut attempts, conflict(), Jitter::NONE) {
            Verdict::DeadLetter { reason } => assert_eq!(
                reason,
                "failed attempt 3 of 3: the record was changed concurrently"
            ),
            Verdict::Retry { .. } => panic!("the third transient failure dead-letters"),
        }
    }

    #[test]
    fn a_permanent_failure_is_dead_lettered_at_once() {
        let mut attempts = Attempts::default();
        match policy(3).judge(
            &mut attempts,
            HandleError::Permanent("unknown type".into()),
            Jitter::NONE,
        ) {
            Verdict::DeadLetter { reason } => assert_eq!(reason, "unknown type"),
            Verdict::Retry { .. } => panic!("permanent means no retry"),
        }
    }

    #[test]
    fn the_reason_names_the_whole_cause_chain() {
        let error = HandleError::Transient(Box::new(StoreError::Unexpected("disk full".into())));
        let mut attempts = Attempts::default();
        match policy(1).judge(&mut attempts, error, Jitter::NONE) {
            Verdict::DeadLetter { reason } => assert_eq!(
                reason,
                "failed attempt 1 of 1: unexpected store error: disk full"
            ),
            Verdict::Retry { .. } => panic!("max_attempts 1"),
        }
    }
}
