//! The one consumer loop every transport runs — the in-process bus and the Kafka consumer alike:
//! hand a message to its handler; on failure let the domain's [`RetryPolicy`] judge; back off
//! and try again without moving on, or park the message in the transport's dead-letter queue and
//! move on. An outage is retried for as long as it takes and never dead-lettered; a message that
//! keeps failing otherwise is dead-lettered after `max_attempts` (ADR 0008).
//!
//! The transport decides what "acknowledge" means (store the offset, answer the publisher) and
//! does it only when [`ConsumerLoop::process`] returns `true`. When the loop is told to stop while
//! a message keeps failing, it returns `false`: the message stays unacknowledged, to be delivered
//! again to whoever consumes next.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use async_trait::async_trait;
use ordership_domain::ports::{BoxError, HandleOutcome, MessageHandler, RandomSource};
use ordership_domain::retry::error_chain;
use ordership_domain::{Attempts, Message, RetryPolicy, SeededRandom, Verdict};

use tracing::Instrument;

use crate::shutdown::Shutdown;

/// What a transport's consumers did, for metrics.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Messages handled (applied, duplicate or ignored).
    pub handled: AtomicU64,
    /// Duplicates the handlers' inboxes discarded.
    pub duplicates_discarded: AtomicU64,
    /// Failed handler attempts that were tried again.
    pub transient_failures: AtomicU64,
    /// Messages parked in a dead-letter queue.
    pub dead_lettered: AtomicU64,
    /// Partitions taken away by rebalances (transports with consumer groups).
    pub partitions_revoked: AtomicU64,
    /// Consumer clients built again after losing their group for good.
    pub consumers_rebuilt: AtomicU64,
}

/// Where a transport parks the message in hand when it cannot be handled.
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Parks the message with `reason`.
    ///
    /// # Errors
    /// The queue cannot take it now; the loop tries again with backoff.
    async fn park(&self, reason: &str) -> Result<(), BoxError>;
}

/// One consumer group's loop: its handler, how failures are judged, and its counters.
#[derive(Clone)]
pub struct ConsumerLoop {
    group: String,
    handler: Arc<dyn MessageHandler>,
    policy: RetryPolicy,
    /// Spreads the retry waits (full jitter).
    random: Arc<dyn RandomSource>,
    stats: Arc<ConsumerStats>,
}

impl std::fmt::Debug for ConsumerLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerLoop")
            .field("group", &self.group)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ConsumerLoop {
    #[must_use]
    pub fn new(
        group: &str,
        handler: Arc<dyn MessageHandler>,
        policy: RetryPolicy,
        stats: Arc<ConsumerStats>,
    ) -> Self {
        Self {
            group: group.to_owned(),
            handler,
            policy,
            random: Arc::new(SeededRandom::from_entropy()),
            stats,
        }
    }

    /// Draws the jitter of retry waits from `random` (the default is seeded per process).
    #[must_use]
    pub fn with_random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = random;
        self
    }

    #[must_use]
    pub fn group(&self) -> &str {
        &self.group
    }

    #[must_use]
    pub const fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Handles a received message until it is handled or dead-lettered (`true`: acknowledge
    /// it), or `stop` is requested while it keeps failing (`false`: leave it unacknowledged).
    /// `Err(reason)` is a message the transport could not even decode: dead-lettered at once.
    pub async fn process(
        &self,
        received: Result<&Message, &str>,
        stop: &mut Shutdown,
        dead_letters: &dyn DeadLetterSink,
    ) -> bool {
        let message = match received {
            Ok(message) => message,
            Err(reason) => return self.dead_letter(reason, None, stop, dead_letters).await,
        };
        // One span per message, a child of the span that wrote it (its stored traceparent).
        let span = tracing::info_span!("consume",
            otel.name = %format!("consume {}", message.message_type), otel.kind = "consumer",
            group = %self.group, message_id = %message.id, topic = %message.topic);
        crate::trace::continue_from(&span, message.traceparent.as_deref());
        self.handle(message, stop, dead_letters)
            .instrument(span)
            .await
    }

    async fn handle(
        &self,
        message: &Message,
        stop: &mut Shutdown,
        dead_letters: &dyn DeadLetterSink,
    ) -> bool {
        let mut attempts = Attempts::default();
        loop {
            let error = match self.handler.handle(message).await {
                Ok(outcome) => {
                    self.stats.handled.fetch_add(1, Relaxed);
                    if outcome == HandleOutcome::Duplicate {
                        self.stats.duplicates_discarded.fetch_add(1, Relaxed);
                    }
                    return true;
                }
                Err(error) => error,
            };
            match self
                .policy
                .judge(&mut attempts, error, self.random.jitter())
            {
                Verdict::Retry { after, error } => {
                    self.stats.transient_failures.fetch_add(1, Relaxed);
                    tracing::warn!(group = %self.group, message_id = %message.id,
                        error = %error_chain(error.as_ref()), retry_in_ms = after.as_millis(),
                        "handler failed, retrying");
                    if stop.pause(after).await {
                        return false;
                    }
                }
                Verdict::DeadLetter { reason } => {
                    return self
                        .dead_letter(&reason, Some(message), stop, dead_letters)
                        .await;
                }
            }
        }
    }

    /// Parks the message, retrying until the queue has it (`true`) or `stop` is requested.
    async fn dead_letter(
        &self,
        reason: &str,
        message: Option<&Message>,
        stop: &mut Shutdown,
        dead_letters: &dyn DeadLetterSink,
    ) -> bool {
        tracing::error!(group = %self.group, message_id = ?message.map(|m| m.id),
            message_type = ?message.map(|m| m.message_type.as_str()), reason,
            "message dead-lettered");
        let mut failures = 0;
        loop {
            match dead_letters.park(reason).await {
                Ok(()) => {
                    self.stats.dead_lettered.fetch_add(1, Relaxed);
                    return true;
                }
                Err(e) => {
                    failures += 1;
                    let after = self.policy.backoff(failures, self.random.jitter());
                    tracing::warn!(group = %self.group, error = %error_chain(e.as_ref()),
                        retry_in_ms = after.as_millis(),
                        "cannot write to the dead-letter queue, retrying");
                    if stop.pause(after).await {
                        return false;
                    }
                }
            }
        }
    }
}
