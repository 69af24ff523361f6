//! The outbox relay: moves committed outbox messages to the broker, in outbox order, at least
//! once. It claims a batch inside a transaction, publishes the whole batch, waits for the
//! broker's acknowledgement of every message, then marks the batch published and commits. A
//! crash anywhere before the commit leaves the batch unpublished in the outbox, to be sent again.
//! Several relays may run (one per service instance): each batch's transaction first takes the
//! outbox's relay lock, so only one publishes at a time and per-key order holds.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ordership_domain::Message;
use ordership_domain::ports::{
    Clock, MessagePublisher, OutboxFeed, OutboxSignal, PublishError, StoreError, Transaction,
    UnitOfWork,
};
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
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            poll_interval: Duration::from_millis(500),
            error_backoff: Duration::from_millis(200),
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

/// One relay over one service's outbox.
pub struct OutboxRelay<Tx: ?Sized> {
    uow: Arc<dyn UnitOfWork<Tx>>,
    publisher: Arc<dyn MessagePublisher>,
    signal: Arc<dyn OutboxSignal>,
    clock: Arc<dyn Clock>,
    config: RelayConfig,
    metrics: Arc<RelayMetrics>,
}

impl<Tx: ?Sized> std::fmt::Debug for OutboxRelay<Tx> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<Tx: ?Sized + Transaction> OutboxRelay<Tx> {
    #[must_use]
    pub fn new(
        uow: Arc<dyn UnitOfWork<Tx>>,
        publisher: Arc<dyn MessagePublisher>,
        signal: Arc<dyn OutboxSignal>,
        clock: Arc<dyn Clock>,
        config: RelayConfig,
    ) -> Self {
        Self {
            uow,
            publisher,
            signal,
            clock,
            config,
            metrics: Arc::default(),
        }
    }

    /// Records what the relay publishes, and how fast, in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<RelayMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Publishes one batch; returns how many messages were published.
    ///
    /// # Errors
    /// The store's or the publisher's failure; the batch then stays in the outbox.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        self.relay_batch().await.map(|relayed| relayed.messages)
    }

    async fn relay_batch(&self) -> Result<Relayed, RelayError> {
        let mut tx = self.uow.begin().await?;
        if !tx.outbox().try_lock_relay().await? {
            // Another relay is publishing this outbox; it keeps the per-key order.
            return Ok(Relayed::NOTHING);
        }
        let batch = tx
            .outbox()
            .claim_unpublished(self.config.batch_size)
            .await?;
        if batch.is_empty() {
            return Ok(Relayed::NOTHING);
        }
        let messages: Vec<_> = batch.iter().map(|e| e.message.clone()).collect();
        let started = std::time::Instant::now();
        let outcome = self
            .publisher
            .publish(&messages)
            .instrument(publish_span(&messages))
            .await;
        self.metrics.publish.observe(started.elapsed());
        let (published, refused) = match outcome {
            Ok(()) => (batch.len(), None),
            Err(PublishError::Refused { message_id, reason }) => {
                // What went out before the refused message stays published; the refused one is
                // parked with its reason, holding back only the later messages of its key.
                let sent = messages.iter().take_while(|m| m.id != message_id).count();
                tracing::error!(%message_id, %reason, "the broker refused an outbox message; parked");
                (sent, batch.get(sent).map(|e| (e.position, reason)))
            }
            Err(e) => return Err(e.into()),
        };
        let now = self.clock.now();
        observe_lag(&self.metrics, &messages[..published], now);
        let positions: Vec<i64> = batch.iter().take(published).map(|e| e.position).collect();
        tx.outbox().mark_published(&positions, now).await?;
        if let Some((position, reason)) = refused {
            tx.outbox().park(position, &reason, now).await?;
        }
        tx.commit().await?;
        Ok(Relayed {
            messages: published,
            // A full batch: there may be more right now.
            more: batch.len() >= self.config.batch_size as usize,
        })
    }

    /// Relays until `shutdown`: at once while batches come full, else on a commit signal or
    /// the poll interval.
    pub async fn run(&self, shutdown: Shutdown) {
        relay_loop(&self.config, self.signal.as_ref(), shutdown, || {
            self.relay_batch()
        })
        .await;
    }
}

/// What one round of a relay did.
#[derive(Debug, Clone, Copy)]
struct Relayed {
    messages: usize,
    /// More may be waiting already: go again at once rather than wait for a signal.
    more: bool,
}

impl Relayed {
    const NOTHING: Self = Self {
        messages: 0,
        more: false,
    };
}

/// Runs `relay_once` until `shutdown`: at once while batches come full, else on a commit signal
/// or the poll interval.
async fn relay_loop<F: Future<Output = Result<Relayed, RelayError>>>(
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
            () = signal.committed() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

fn observe_lag(metrics: &RelayMetrics, messages: &[Message], now: DateTime<Utc>) {
    for message in messages {
        let lag = (now - message.occurred_at).to_std().unwrap_or_default();
        metrics.lag.observe(lag);
    }
    metrics
        .published
        .fetch_add(messages.len() as u64, std::sync::atomic::Ordering::Relaxed);
}

/// The relay in CDC mode: reads committed outbox messages from the database's transaction log
/// (an [`OutboxFeed`]), publishes a whole batch, and confirms its log position only after the
/// broker acknowledged all of it; a crash before the confirmation replays the batch. A message the
/// broker refuses for good is parked with its reason and the rest of the batch goes on (unlike
/// the polling relay, later messages of its key are not held back: the log has no rows to hold).
pub struct CdcRelay {
    feed: Arc<dyn OutboxFeed>,
    publisher: Arc<dyn MessagePublisher>,
    signal: Arc<dyn OutboxSignal>,
    clock: Arc<dyn Clock>,
    config: RelayConfig,
    metrics: Arc<RelayMetrics>,
}

impl std::fmt::Debug for CdcRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdcRelay")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl CdcRelay {
    #[must_use]
    pub fn new(
        feed: Arc<dyn OutboxFeed>,
        publisher: Arc<dyn MessagePublisher>,
        signal: Arc<dyn OutboxSignal>,
        clock: Arc<dyn Clock>,
        config: RelayConfig,
    ) -> Self {
        Self {
            feed,
            publisher,
            signal,
            clock,
            config,
            metrics: Arc::default(),
        }
    }

    /// Records what the relay publishes, and how fast, in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<RelayMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Publishes one batch from the feed; returns how many messages it read.
    ///
    /// # Errors
    /// The feed's or the publisher's failure; the batch then comes again.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        self.relay_batch().await.map(|relayed| relayed.messages)
    }

    async fn relay_batch(&self) -> Result<Relayed, RelayError> {
        let batch = self.feed.peek(self.config.batch_size).await?;
        let Some(up_to) = batch.up_to else {
            return Ok(Relayed::NOTHING);
        };
        let (read, more) = (batch.messages.len(), batch.more);
        let mut pending = batch.messages;
        loop {
            let started = std::time::Instant::now();
            let outcome = self
                .publisher
                .publish(&pending)
                .instrument(publish_span(&pending))
                .await;
            self.metrics.publish.observe(started.elapsed());
            match outcome {
                Ok(()) => break,
                Err(PublishError::Refused { message_id, reason }) => {
                    tracing::error!(%message_id, %reason, "the broker refused an outbox message; parked");
                    let Some(index) = pending.iter().position(|m| m.id == message_id) else {
                        return Err(PublishError::Refused { message_id, reason }.into());
                    };
                    let refused = pending.remove(index);
                    self.feed.park(&refused, &reason).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        observe_lag(&self.metrics, &pending, self.clock.now());
        self.feed.confirm(&up_to).await?;
        Ok(Relayed {
            messages: read,
            more,
        })
    }

    /// Relays until `shutdown`, like [`OutboxRelay::run`]: at once while the feed stops at its
    /// limit.
    pub async fn run(&self, shutdown: Shutdown) {
        relay_loop(&self.config, self.signal.as_ref(), shutdown, || {
            self.relay_batch()
        })
        .await;
    }
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
