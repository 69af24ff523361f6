//! Figures for metrics: read from the stores at scrape time (sagas by state, outbox backlog), or
//! recorded as things happen (relay and handler latency histograms).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ordership_domain::ports::{
    HandleError, HandleOutcome, MessageHandler, OrderTransaction, OutboxStats, StoreError,
    Transaction, UnitOfWork,
};
use ordership_domain::{Message, SagaState};

/// How many sagas are in each state; every state is listed, with zero where there are none.
///
/// # Errors
/// The store's failure.
pub async fn saga_counts(
    uow: &dyn UnitOfWork<dyn OrderTransaction>,
) -> Result<Vec<(SagaState, u64)>, StoreError> {
    let mut tx = uow.begin_read_only().await?;
    let counted = tx.sagas().count_by_state().await?;
    Ok(SagaState::ALL
        .into_iter()
        .map(|state| {
            let n = counted
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            (state, n)
        })
        .collect())
}

/// The outbox backlog of one service.
///
/// # Errors
/// The store's failure.
pub async fn outbox_stats<Tx: ?Sized + Transaction>(
    uow: &dyn UnitOfWork<Tx>,
) -> Result<OutboxStats, StoreError> {
    uow.begin_read_only().await?.outbox().stats().await
}

/// Upper bounds of the latency buckets, in seconds: 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A latency histogram with the bounds of [`LATENCY_BUCKETS`], recorded without locks.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one counts those above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// A histogram read at one moment, in Prometheus's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations ≤ bound)`, cumulative, one per bound.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let index = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    #[must_use]
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        let count = cumulative + self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// What an outbox relay did.
#[derive(Debug, Default)]
pub struct RelayMetrics {
    /// Messages the broker acknowledged.
    pub published: AtomicU64,
    /// Per message: from its creation (in the transaction of its cause) to the broker's
    /// acknowledgement.
    pub lag: Histogram,
    /// Per batch: the broker round trip, from the first send to the last acknowledgement.
    pub publish: Histogram,
    /// Outbox shards this instance leases and relays now (polling relay).
    pub shards_leased: AtomicU64,
}

/// Handling latency and outcomes of one consumer, whatever the transport.
#[derive(Debug, Default)]
pub struct HandlerMetrics {
    /// Every call of the handler, failed ones included.
    pub latency: Histogram,
    /// Calls that applied an effect or were acknowledged without one.
    pub handled: AtomicU64,
    /// Messages the inbox had seen already: acknowledged without effect.
    pub duplicates_discarded: AtomicU64,
    /// Calls that failed (the transport retries or dead-letters them).
    pub failed: AtomicU64,
}

/// A [`MessageHandler`] that times and counts the calls of the one it wraps.
pub struct Measured {
    inner: Arc<dyn MessageHandler>,
    metrics: Arc<HandlerMetrics>,
}

impl Measured {
    #[must_use]
    pub fn new(inner: Arc<dyn MessageHandler>, metrics: Arc<HandlerMetrics>) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait::async_trait]
impl MessageHandler for Measured {
    async fn handle(&self, message: &Message) -> Result<HandleOutcome, HandleError> {
        let started = Instant::now();
        let result = self.inner.handle(message).await;
        self.metrics.latency.observe(started.elapsed());
        let counter = match &result {
            Ok(HandleOutcome::Duplicate) => {
                self.metrics
                    .duplicates_discarded
                    .fetch_add(1, Ordering::Relaxed);
                &self.metrics.handled
            }
            Ok(HandleOutcome::Applied | HandleOutcome::Ignored) => &self.metrics.handled,
            Err(_) => &self.metrics.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_cumulative_and_counts_what_lies_above_every_bound() {
        let h = Histogram::default();
        for ms in [0, 3, 3, 40, 20_000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        let at = |bound: f64| s.buckets.iter().find(|b| b.0 == bound).map(|b| b.1);
        assert_eq!(at(0.001), Some(1));
        assert_eq!(at(0.005), Some(3));
        assert_eq!(at(0.05), Some(4));
        assert_eq!(at(10.0), Some(4));
        assert_eq!(s.count, 5);
        assert!((s.sum_seconds - 20.046).abs() < 1e-9);
    }
}
