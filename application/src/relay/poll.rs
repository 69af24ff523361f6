//! The polling relay. Inside a transaction it claims a batch, publishes the whole batch, waits
//! for the broker's acknowledgement of every message, and only then marks the batch published. While the
//! broker works on one batch, the database marks the batch before it and claims the next, so
//! neither waits for the other; a transaction carries up to `batches_per_transaction` full
//! batches and then commits. A crash anywhere before the commit leaves its batches unpublished in
//! the outbox, to be sent again. The outbox is split into shards by key (ADR 0028): each
//! transaction first takes the relay rights of the shards it relays (every shard, or those its
//! instance leases, or one of them while a backlog is drained in parallel: see `shards`), so of
//! several relays only one publishes a shard at a time and per-key order holds, while different
//! shards are published at once; within a shard a batch goes to the broker only after the one
//! before it was acknowledged.

use std::sync::Arc;

use ordership_domain::Message;
use ordership_domain::planted::{self, Bug};
use ordership_domain::ports::{
    Clock, MessagePublisher, OutboxSignal, PublishError, Transaction, UnitOfWork,
};
use ordership_domain::relay_shards::WantedShards;
use tracing::Instrument;

use super::{Core, RelayConfig, RelayError, Relayed, observe_lag, publish, relay_loop};
use crate::monitoring::RelayMetrics;
use crate::shutdown::Shutdown;

/// One relay over one service's outbox.
pub struct OutboxRelay<Tx: ?Sized> {
    uow: Arc<dyn UnitOfWork<Tx>>,
    pub(super) core: Core,
}

impl<Tx: ?Sized> std::fmt::Debug for OutboxRelay<Tx> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("config", &self.core.config)
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
            core: Core::new(publisher, signal, clock, config),
        }
    }

    /// Records what the relay publishes, and how fast, in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<RelayMetrics>) -> Self {
        self.core.metrics = metrics;
        self
    }

    /// Relays every shard of the outbox once, in one transaction (a batch, and while batches
    /// come full, up to `batches_per_transaction` of them); returns how many messages were
    /// published. A shard another relay is publishing is left to it.
    ///
    /// # Errors
    /// The store's or the publisher's failure; what the broker did not acknowledge then stays in
    /// the outbox.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        self.relay_shards(WantedShards::Every)
            .await
            .map(|relayed| relayed.messages)
    }

    /// Relays what one transaction carries of the `wanted` shards whose relay rights it gets.
    pub(crate) async fn relay_shards(&self, wanted: WantedShards) -> Result<Relayed, RelayError> {
        let mut tx = self.uow.begin().await?;
        // Shards another relay is publishing are left out: it keeps their per-key order.
        let shards = tx.outbox().try_lock_relay(wanted).await?;
        if shards.is_empty() {
            return Ok(Relayed::NOTHING);
        }
        let limit = self.core.config.batch_size;
        let mut batch = tx.outbox().claim_unpublished(&shards, limit, &[]).await?;
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
            let go_on = full && round < self.core.config.batches_per_transaction;
            let in_flight: Vec<i64> = batch.iter().map(|e| e.position).collect();
            // Shared with the publishing task, not copied.
            let messages: Arc<[Message]> = batch.into_iter().map(|e| e.message).collect();
            // The broker takes this batch while the database marks the one before it and claims
            // the one after it (skipping this one's rows, which this transaction holds).
            let now = self.core.clock.now();
            let outbox = tx.outbox();
            let database = async {
                if !acknowledged.is_empty() {
                    outbox.mark_published(&acknowledged, now).await?;
                }
                if go_on {
                    outbox.claim_unpublished(&shards, limit, &in_flight).await
                } else {
                    Ok(Vec::new())
                }
            };
            // On a task of its own, so that encoding the batch and decoding the next one can
            // run on two cores.
            let publishing = {
                let (publisher, metrics) = (
                    Arc::clone(&self.core.publisher),
                    Arc::clone(&self.core.metrics),
                );
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
                    observe_lag(&self.core.metrics, &messages, self.core.clock.now());
                    acknowledged = in_flight;
                    relayed.messages += messages.len();
                }
                Err(PublishError::Refused { message_id, reason }) => {
                    // What went out before the refused message stays published; the refused one
                    // is parked with its reason, holding back only the later messages of its key
                    // (the next batch, claimed already, is not sent: it is claimed again).
                    let sent = messages.iter().take_while(|m| m.id != message_id).count();
                    tracing::error!(%message_id, %reason, "the broker refused an outbox message; parked");
                    observe_lag(&self.core.metrics, &messages[..sent], self.core.clock.now());
                    acknowledged = in_flight[..sent].to_vec();
                    relayed.messages += sent;
                    refused = in_flight.get(sent).map(|p| (*p, reason));
                    break;
                }
                Err(e) => {
                    if planted::active(Bug::MarkBeforeAck) {
                        // Planted: the batch marked although the broker did not take it.
                        acknowledged = in_flight;
                    }
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
        let now = self.core.clock.now();
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

    /// Publishes what the outbox table holds now, until a round finds nothing; `false` if
    /// shut down meanwhile. Failures are retried after the error backoff.
    pub async fn drain(&self, mut shutdown: Shutdown) -> bool {
        loop {
            let relayed = tokio::select! {
                () = shutdown.requested() => return false,
                relayed = self.relay_once() => relayed,
            };
            match relayed {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "draining the outbox table failed, retrying");
                    tokio::select! {
                        () = shutdown.requested() => return false,
                        () = tokio::time::sleep(self.core.config.error_backoff) => {}
                    }
                }
            }
        }
    }

    /// Relays every shard until `shutdown`, as the only relay of this outbox (a relay shared
    /// with other instances runs [`OutboxRelay::run_sharded`]): at once while batches come
    /// full, else on a commit signal or the poll interval.
    pub async fn run(&self, shutdown: Shutdown) {
        relay_loop(
            &self.core.config,
            self.core.signal.as_ref(),
            shutdown,
            || self.relay_shards(WantedShards::Every),
        )
        .await;
    }
}
