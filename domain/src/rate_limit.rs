//! Fair use: a quota of requests per caller and window, kept as a token bucket.
//!
//! The bucket is stored as one instant, the *theoretical arrival time* of the generic cell rate
//! algorithm (GCRA): the moment at which the bucket would be full again if nothing more were
//! taken. Taking a token moves it one emission interval (`window / quota`) later; a take that
//! would move it more than a window past now is refused. That is a token bucket of `quota` tokens
//! refilled one per interval, in one number instead of two, so a shared store (Redis) can keep it
//! in one key and update it in one atomic step. The arithmetic lives here once; the Redis script
//! does the same in Lua.

use std::time::Duration;

/// A quota: at most `quota` requests per `window`, in a burst or spread out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitPolicy {
    name: String,
    quota: u32,
    window: Duration,
}

/// Why a policy cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPolicy {
    #[error("a rate limit needs a quota of at least 1")]
    NoQuota,
    #[error("a rate limit's window is between 1 ms and 1 day, and at least 1 ms per request")]
    BadWindow,
    #[error("a rate limit's name is 1–32 characters a-z, 0-9 and '-'")]
    BadName,
}

impl RateLimitPolicy {
    /// # Errors
    /// [`InvalidPolicy`] for a zero quota, a window outside 1 ms–1 day or shorter than 1 ms per
    /// request, or a name that is not a short lower-case token (it names the policy in headers).
    pub fn new(name: &str, quota: u32, window: Duration) -> Result<Self, InvalidPolicy> {
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(InvalidPolicy::BadName);
        }
        if quota == 0 {
            return Err(InvalidPolicy::NoQuota);
        }
        let millis = window.as_millis();
        if millis < u128::from(quota) || millis > 86_400_000 {
            return Err(InvalidPolicy::BadWindow);
        }
        Ok(Self {
            name: name.to_owned(),
            quota,
            window,
        })
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    #[must_use]
    pub const fn quota(&self) -> u32 {
        self.quota
    }

    #[must_use]
    pub const fn window(&self) -> Duration {
        self.window
    }

    /// The window in milliseconds.
    #[must_use]
    pub fn window_ms(&self) -> i64 {
        // At most a day: fits.
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }

    /// One token's worth of time, in milliseconds (at least 1).
    #[must_use]
    pub fn interval_ms(&self) -> i64 {
        (self.window_ms() / i64::from(self.quota)).max(1)
    }

    /// Takes one token from a bucket whose theoretical arrival time is `stored` (`None`: a
    /// bucket never used, or forgotten because it was full), at `now_ms`: the decision and the
    /// instant to store (unchanged when refused).
    #[must_use]
    pub fn take(&self, stored: Option<i64>, now_ms: i64) -> (RateDecision, i64) {
        let (interval, window) = (self.interval_ms(), self.window_ms());
        let tat = stored.unwrap_or(now_ms).max(now_ms);
        let next = tat + interval;
        if next - now_ms > window {
            let decision = RateDecision {
                allowed: false,
                remaining: 0,
                reset: millis(tat - now_ms),
                retry_after: Some(millis(next - now_ms - window)),
            };
            return (decision, tat);
        }
        let remaining = u32::try_from((window - (next - now_ms)) / interval).unwrap_or(0);
        let decision = RateDecision {
            allowed: true,
            remaining: remaining.min(self.quota - 1),
            reset: millis(next - now_ms),
            retry_after: None,
        };
        (decision, next)
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The answer to one request against a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Requests still allowed right now after this one.
    pub remaining: u32,
    /// Until the whole quota is available again.
    pub reset: Duration,
    /// For a refused request: until one more is allowed.
    pub retry_after: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(quota: u32, window_ms: u64) -> RateLimitPolicy {
        RateLimitPolicy::new("orders", quota, Duration::from_millis(window_ms)).expect("policy")
    }

    #[test]
    fn a_fresh_bucket_allows_the_quota_at_once_then_refuses_for_one_interval() {
        let p = policy(3, 60_000);
        let mut stored = None;
        let mut remaining = Vec::new();
        for _ in 0..3 {
            let (d, tat) = p.take(stored, 1_000);
            assert!(d.allowed);
            remaining.push(d.remaining);
            stored = Some(tat);
        }
        assert_eq!(remaining, [2, 1, 0]);
        let (refused, tat) = p.take(stored, 1_000);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Some(Duration::from_secs(20)));
        assert_eq!(refused.reset, Duration::from_secs(60));
        assert_eq!(Some(tat), stored, "a refusal takes nothing");
        // One interval later, one more.
        let (d, _) = p.take(stored, 21_000);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn the_bucket_refills_one_token_per_interval_up_to_the_quota() {
        let p = policy(4, 4_000);
        let (_, tat) = p.take(None, 0);
        // Long after: full again, never more than the quota.
        let (d, _) = p.take(Some(tat), 1_000_000);
        assert_eq!(d.remaining, 3);
        let mut stored = Some(tat);
        let mut allowed = 1;
        // A steady caller at twice the rate gets the rate.
        for now in (0..40_000).step_by(500) {
            let (d, tat) = p.take(stored, now);
            stored = Some(tat);
            allowed += u32::from(d.allowed);
        }
        assert!((40..=44).contains(&allowed), "{allowed}");
    }

    #[test]
    fn bad_policies_are_refused() {
        assert_eq!(
            RateLimitPolicy::new("orders", 0, Duration::from_secs(1)),
            Err(InvalidPolicy::NoQuota)
        );
        assert_eq!(
            RateLimitPolicy::new("orders", 10, Duration::from_millis(5)),
            Err(InvalidPolicy::BadWindow)
        );
        assert_eq!(
            RateLimitPolicy::new("Orders!", 1, Duration::from_secs(1)),
            Err(InvalidPolicy::BadName)
        );
    }
}
