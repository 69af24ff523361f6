//! The outbox relays: they move committed outbox messages to the broker, in outbox order, at
//! least once. Two read the outbox — [`OutboxRelay`] polls the table, shard by shard, with the
//! shards shared among instances (`shards`), [`CdcRelay`] streams the database's transaction
//! log — and share the rest here: the loop that runs a relay until
//! shutdown (at once while batches come full, else on a commit signal or the poll interval), the
//! timed, traced publish of one batch, and the relay lag.

mod cdc;
mod poll;
mod shards;

pub use cdc::CdcRelay;
pub use poll::OutboxRelay;
pub use shards::relay_instance_name;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ordership_domain::Message;
use ordership_domain::ports::{Clock, MessagePublisher, OutboxSignal, PublishError, StoreError};
use tracing::Instrument;

use crate::monitoring::RelayMetrics;
use crate::shutdown::Shutdown;

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub batch_size: u32,
    /// Poll this often even without a wake-up (a wake-up can be lost).
    pub poll_interval: Duration,
    /// Wait after a failure before trying again.
    pub error_backoff: Duration,
    /// The polling relay commits after this many full batches (one transaction, one relay lock):
    /// more keeps the broker and the database busy at once for longer; fewer commits sooner.
    pub batches_per_transaction: u32,
    /// How long an instance's lease on outbox shards lasts (renewed every third of it): the
    /// shards of an instance that died are taken over within about this long.
    pub lease_term: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            poll_interval: Duration::from_millis(500),
            error_backoff: Duration::from_millis(200),
            batches_per_transaction: 8,
            lease_term: Duration::from_secs(6),
        }
    }
}

/// What both relays publish with: the broker, the commit signal they wait on, the clock, their
/// tuning and their figures.
pub(crate) struct Core {
    pub(crate) publisher: Arc<dyn MessagePublisher>,
    pub(crate) signal: Arc<dyn OutboxSignal>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: RelayConfig,
    pub(crate) metrics: Arc<RelayMetrics>,
}

impl Core {
    fn new(
        publisher: Arc<dyn MessagePublisher>,
        signal: Arc<dyn OutboxSignal>,
        clock: Arc<dyn Clock>,
        config: RelayConfig,
    ) -> Self {
        Self {
            publisher,
            signal,
            clock,
            config,
            metrics: Arc::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// What one round of a relay did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Relayed {
    pub(crate) messages: usize,
    /// More may be waiting already: go again at once rather than wait for a signal.
    pub(crate) more: bool,
}

impl Relayed {
    pub(crate) const NOTHING: Self = Self {
        messages: 0,
        more: false,
    };
}

/// Runs `relay_once` until `shutdown`: at once while batches come full, else on a commit signal
/// or the poll interval.
pub(crate) async fn relay_loop<F: Future<Output = Result<Relayed, RelayError>>>(
    config: &RelayConfig,
    signal: &dyn OutboxSignal,
    mut shutdown: Shutdown,
    mut relay_once: impl FnMut() -> F,
) {
    loop {
        // On shutdown the batch in flight is abandoned: nothing is confirmed, so the messages
        // are sent again after the next start (at least once, never lost).
        let relayed = tokio::select! {
            () = shutdown.requested() => return,
            relayed = relay_once() => relayed,
        };
        let wait = match relayed {
            Ok(relayed) if relayed.more => continue,
            Ok(_) => config.poll_interval,
            Err(e) => {
                tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "outbox relay failed, retrying");
                config.error_backoff
            }
        };
        tokio::select! {
            () = shutdown.requested() => return,
            _ = signal.committed() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

pub(crate) fn observe_lag(metrics: &RelayMetrics, messages: &[Message], now: DateTime<Utc>) {
    for message in messages {
        let lag = (now - message.occurred_at).to_std().unwrap_or_default();
        metrics.lag.observe(lag);
    }
    metrics
        .published
        .fetch_add(messages.len() as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Publishes one batch, timed, in a span of its own.
pub(crate) async fn publish(
    publisher: &dyn MessagePublisher,
    metrics: &RelayMetrics,
    messages: &[Message],
) -> Result<(), PublishError> {
    let started = std::time::Instant::now();
    let outcome = publisher
        .publish(messages)
        .instrument(publish_span(messages))
        .await;
    metrics.publish.observe(started.elapsed());
    outcome
}

/// The publish of one batch: a span linked to the context of every message in it, since one
/// batch carries many traces.
fn publish_span(batch: &[Message]) -> tracing::Span {
    let span = tracing::info_span!(
        "relay.publish",
        otel.kind = "producer",
        messages = batch.len()
    );
    for message in batch {
        crate::trace::link(&span, message.traceparent.as_deref());
    }
    span
}
