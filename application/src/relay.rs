//! The outbox relay: moves committed outbox messages to the broker, in outbox order, at least
//! once. Inside a transaction it claims a batch, publishes the whole batch, waits for the
//! broker's acknowledgement of every message, and only then marks the batch published. While the
//! broker works on one batch, the database marks the batch before it and claims the next, so
//! neither waits for the other; a transaction carries up to `batches_per_transaction` full
//! batches and then commits. A crash anywhere before the commit leaves its batches unpublished in
//! the outbox, to be sent again. Several relays may run (one per service instance): each
//! transaction first takes the outbox's relay lock, so only one publishes at a time and per-key
//! order holds; within one relay a batch goes to the broker only after the one before it was
//! acknowledged.

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
    /// The polling relay commits after this many full batches (one transaction, one relay lock):
    /// more keeps the broker and the database busy at once for longer; fewer commits sooner.
    pub batches_per_transaction: u32,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            poll_interval: Duration::from_millis(500),
            error_backoff: Duration::from_millis(200),
            batches_per_transaction: 8,
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

    /// Publishes what one transaction carries (a batch, and while batches come full, up to
    /// `batches_per_transaction` of them); returns how many messages were published.
    ///
    /// # Errors
    /// The store's or the publisher's failure; what the broker did not acknowledge then stays in
    /// the outbox.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        self.relay_batch().await.map(|relayed| relayed.messages)
    }

    async fn relay_batch(&self) -> Result<Relayed, RelayError> {
        let mut tx = self.uow.begin().await?;
        if !tx.outbox().try_lock_relay().await? {
            // Another relay is publishing this outbox; it keeps the per-key order.
            return Ok(Relayed::NOTHING);
        }
        let limit = self.config.batch_size;
        let mut batch = tx.outbox().claim_unpublished(limit, &[]).await?;
        // Acknowledged by the broker, not yet marked.
        let mut acknowledged: Vec<i64> = Vec::new();
        let mut refused = None;
        let mut failure = None;
        let mut relayed = Relayed::NOTHING;
        for round in 1.. {
            if batch.is_empty() {
                break;
            }
            let full = batch.len() >= limit as usize;
            let go_on = full && round < self.config.batches_per_transaction;
            let in_flight: Vec<i64> = batch.iter().map(|e| e.position).collect();
            // Shared with the publishing task, not copied.
            let messages: Arc<[Message]> = batch.into_iter().map(|e| e.message).collect();
            // The broker takes this batch while the database marks the one before it and claims
            // the one after it (skipping this one's rows, which this transaction holds).
            let now = self.clock.now();
            let outbox = tx.outbox();
            let database = async {
                if !acknowledged.is_empty() {
                    outbox.mark_published(&acknowledged, now).await?;
                }
                if go_on {
                    outbox.claim_unpublished(limit, &in_flight).await
                } else {
                    Ok(Vec::new())
                }
            };
            // On a task of its own, so that encoding the batch and decoding the next one can
            // run on two cores.
            let publishing = {
                let (publisher, metrics) = (Arc::clone(&self.publisher), Arc::clone(&self.metrics));
                let messages = Arc::clone(&messages);
                tokio::spawn(
                    async move { publish(publisher.as_ref(), &metrics, &messages).await }
                        .in_current_span(),
                )
            };
            let published = async {
                publishing.await.unwrap_or_else(|e| {
                    Err(PublishError::Unavailable(
                        format!("the publishing task failed: {e}").into(),
                    ))
                })
            };
            let (outcome, next) = tokio::join!(published, database);
            let next = next?;
            acknowledged.clear();
            match outcome {
                Ok(()) => {
                    observe_lag(&self.metrics, &messages, self.clock.now());
                    acknowledged = in_flight;
                    relayed.messages += messages.len();
                }
                Err(PublishError::Refused { message_id, reason }) => {
                    // What went out before the refused message stays published; the refused one
                    // is parked with its reason, holding back only the later messages of its key
                    // (the next batch, claimed already, is not sent: it is claimed again).
                    let sent = messages.iter().take_while(|m| m.id != message_id).count();
                    tracing::error!(%message_id, %reason, "the broker refused an outbox message; parked");
                    observe_lag(&self.metrics, &messages[..sent], self.clock.now());
                    acknowledged = in_flight[..sent].to_vec();
                    relayed.messages += sent;
                    refused = in_flight.get(sent).map(|p| (*p, reason));
                    break;
                }
                Err(e) => {
                    // Commit what was acknowledged before; this batch comes again.
                    failure = Some(e);
                    break;
                }
            }
            if !go_on {
                // A full batch: there may be more right now.
                relayed.more = full;
                break;
            }
            batch = next;
        }
        let now = self.clock.now();
        if !acknowledged.is_empty() {
            tx.outbox().mark_published(&acknowledged, now).await?;
        }
        if let Some((position, reason)) = refused {
            tx.outbox().park(position, &reason, now).await?;
        }
        tx.commit().await?;
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(relayed),
        }
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
            match publish(self.publisher.as_ref(), &self.metrics, &pending).await {
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

/// Publishes one batch, timed, in a span of its own.
async fn publish(
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
