//! Per-caller quotas on Redis: one key per policy and caller, updated by one script, so every
//! instance of the service draws from the same bucket.

use std::time::Duration;

use async_trait::async_trait;
use ordership_domain::ports::{RateLimiter, RateLimiterUnavailable};
use ordership_domain::rate_limit::{RateDecision, RateLimitPolicy};
use redis::Script;
use redis::aio::ConnectionLike;

/// The buckets of every policy, on one Redis deployment (standalone or Cluster: one key each).
pub struct RedisRateLimiter<C> {
    connection: C,
    script: Script,
}

impl<C> std::fmt::Debug for RedisRateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter").finish_non_exhaustive()
    }
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> RedisRateLimiter<C> {
    #[must_use]
    pub fn new(connection: C) -> Self {
        Self {
            connection,
            script: Script::new(include_str!("lua/rate_limit.lua")),
        }
    }
}

/// The bucket's key; its hash tag is the whole name, so it lives in one slot.
fn key(policy: &RateLimitPolicy, caller: &str) -> String {
    format!("{{rl:{}:{caller}}}", policy.name())
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[async_trait]
impl<C: ConnectionLike + Clone + Send + Sync + 'static> RateLimiter for RedisRateLimiter<C> {
    async fn take(
        &self,
        policy: &RateLimitPolicy,
        caller: &str,
    ) -> Result<RateDecision, RateLimiterUnavailable> {
        let mut connection = self.connection.clone();
        let (allowed, remaining, reset, retry_after): (i64, i64, i64, i64) = self
            .script
            .key(key(policy, caller))
            .arg(policy.interval_ms())
            .arg(policy.window_ms())
            .arg(policy.quota())
            .invoke_async(&mut connection)
            .await
            .map_err(|e| RateLimiterUnavailable(Box::new(e)))?;
        Ok(RateDecision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset: millis(reset),
            retry_after: (allowed != 1).then(|| millis(retry_after)),
        })
    }
}
