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
use ordership_domain::ports::{
    BoxError, Clock, HandleOutcome, MessageHandler, RandomSource, Transaction, UnitOfWork,
};
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

/// Where the messages a consumer gives up on are indexed: the consuming service's store (its
/// dead letters), with the clock that dates them.
#[derive(Clone)]
pub struct DeadLetterIndex {
    pub store: Arc<dyn UnitOfWork<dyn Transaction>>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DeadLetterIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterIndex").finish_non_exhaustive()
    }
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
    index: Option<DeadLetterIndex>,
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
            index: None,
        }
    }

    /// Also records every message it dead-letters in `index`, after the transport parked it.
    #[must_use]
    pub fn with_dead_letter_index(mut self, index: Option<DeadLetterIndex>) -> Self {
        self.index = index;
        self
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
                    let dead = Some((message, attempts.failures));
                    return self.dead_letter(&reason, dead, stop, dead_letters).await;
                }
            }
        }
    }

    /// Parks the message (with the failures it took), then indexes it, retrying each until it
    /// is done (`true`) or `stop` is requested.
    async fn dead_letter(
        &self,
        reason: &str,
        message: Option<(&Message, u32)>,
        stop: &mut Shutdown,
        dead_letters: &dyn DeadLetterSink,
    ) -> bool {
        tracing::error!(group = %self.group, message_id = ?message.map(|(m, _)| m.id),
            message_type = ?message.map(|(m, _)| m.message_type.as_str()), reason,
            "message dead-lettered");
        if !self
            .until_done("the dead-letter queue", stop, || dead_letters.park(reason))
            .await
        {
            return false;
        }
        if let (Some(index), Some((message, attempts))) = (&self.index, message) {
            let record = || async move {
                let mut tx = index.store.begin().await?;
                let at = index.clock.now();
                tx.dead_letters()
                    .record(&self.group, message, reason, attempts, at)
                    .await?;
                tx.commit().await?;
                Ok::<(), BoxError>(())
            };
            if !self.until_done("the dead-letter index", stop, record).await {
                return false;
            }
        }
        self.stats.dead_lettered.fetch_add(1, Relaxed);
        true
    }

    /// Runs `attempt` until it succeeds (`true`), backing off between failures, or until `stop`
    /// is requested (`false`).
    async fn until_done<F, Fut>(&self, what: &str, stop: &mut Shutdown, mut attempt: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), BoxError>>,
    {
        let mut failures = 0;
        loop {
            match attempt().await {
                Ok(()) => return true,
                Err(e) => {
                    failures += 1;
                    let after = self.policy.backoff(failures, self.random.jitter());
                    tracing::warn!(group = %self.group, error = %error_chain(e.as_ref()),
                        retry_in_ms = after.as_millis(), "cannot write to {what}, retrying");
                    if stop.pause(after).await {
                        return false;
                    }
                }
            }
        }
    }
}
