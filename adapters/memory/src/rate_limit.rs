//! Per-caller quotas kept in this process: right for one instance; instances that share a
//! Redis share its buckets instead (`ordership-redis`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use ordership_domain::ports::{Clock, RateLimiter, RateLimiterUnavailable};
use ordership_domain::rate_limit::{RateDecision, RateLimitPolicy};

/// Buckets above this many are swept of the full ones (those a fresh bucket would equal), so
/// memory follows the callers active within a window, not every caller ever seen.
const SWEEP_ABOVE: usize = 4_096;

/// Token buckets in a map, by policy and caller.
pub struct MemoryRateLimiter {
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<(String, String), i64>>,
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter").finish_non_exhaustive()
    }
}

impl MemoryRateLimiter {
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            buckets: Mutex::default(),
        }
    }

    /// Buckets held now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn take(
        &self,
        policy: &RateLimitPolicy,
        caller: &str,
    ) -> Result<RateDecision, RateLimiterUnavailable> {
        let now = self.clock.now().timestamp_millis();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= SWEEP_ABOVE {
            buckets.retain(|_, tat| *tat > now);
        }
        let key = (policy.name().to_owned(), caller.to_owned());
        let (decision, tat) = policy.take(buckets.get(&key).copied(), now);
        buckets.insert(key, tat);
        Ok(decision)
    }
}
