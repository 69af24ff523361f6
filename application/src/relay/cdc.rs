//! The CDC relay: the outbox read from the database's transaction log.

use std::sync::Arc;

use ordership_domain::ports::{
    Clock, MessagePublisher, OutboxFeed, OutboxSignal, PublishError, Transaction,
};

use super::{
    Core, OutboxRelay, RelayConfig, RelayError, Relayed, observe_lag, publish, relay_loop,
};
use crate::monitoring::RelayMetrics;
use crate::shutdown::Shutdown;

/// The relay in CDC mode: reads committed outbox messages from the database's transaction log
/// (an [`OutboxFeed`]), publishes a whole batch, and confirms its log position only after the
/// broker acknowledged all of it; a crash before the confirmation replays the batch. A message the
/// broker refuses for good is parked with its reason and the rest of the batch goes on (unlike
/// the polling relay, later messages of its key are not held back: the log has no rows to hold).
pub struct CdcRelay {
    feed: Arc<dyn OutboxFeed>,
    core: Core,
}

impl std::fmt::Debug for CdcRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdcRelay")
            .field("config", &self.core.config)
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
            core: Core::new(publisher, signal, clock, config),
        }
    }

    /// Records what the relay publishes, and how fast, in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<RelayMetrics>) -> Self {
        self.core.metrics = metrics;
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
        let batch = self.feed.peek(self.core.config.batch_size).await?;
        let Some(up_to) = batch.up_to else {
            return Ok(Relayed::NOTHING);
        };
        let (read, more) = (batch.messages.len(), batch.more);
        let mut pending = batch.messages;
        loop {
            match publish(self.core.publisher.as_ref(), &self.core.metrics, &pending).await {
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
        observe_lag(&self.core.metrics, &pending, self.core.clock.now());
        self.feed.confirm(&up_to).await?;
        Ok(Relayed {
            messages: read,
            more,
        })
    }

    /// Relays until `shutdown`, like [`OutboxRelay::run`]: at once while the feed stops at its
    /// limit.
    pub async fn run(&self, shutdown: Shutdown) {
        relay_loop(
            &self.core.config,
            self.core.signal.as_ref(),
            shutdown,
            || self.relay_batch(),
        )
        .await;
    }

    /// Relays until `shutdown` after `table` drained what the outbox table still holds: rows a
    /// polling relay left behind (before a switch to CDC mode) go first; from then on the log has
    /// every message.
    pub async fn run_after_draining<Tx: ?Sized + Transaction>(
        &self,
        table: &OutboxRelay<Tx>,
        shutdown: Shutdown,
    ) {
        if table.drain(shutdown.clone()).await {
            self.run(shutdown).await;
        }
    }
}
