//! Where the buckets of per-caller quotas are kept: in the process, or shared by every instance.

use async_trait::async_trait;

use crate::rate_limit::{RateDecision, RateLimitPolicy};

/// Takes tokens from per-caller buckets ([`crate::rate_limit`]).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one token of `policy` for `caller` now.
    ///
    /// # Errors
    /// The store of the buckets cannot be reached.
    async fn take(
        &self,
        policy: &RateLimitPolicy,
        caller: &str,
    ) -> Result<RateDecision, RateLimiterUnavailable>;
}

/// The buckets' store failed; the caller decides whether to let the request through.
#[derive(Debug, thiserror::Error)]
#[error("the rate limiter's store is unavailable: {0}")]
pub struct RateLimiterUnavailable(#[source] pub Box<dyn std::error::Error + Send + Sync>);
