//! Starts the messaging of one service: its consumers, measured, and its outbox relay (polling,
//! the shards this instance leases; or CDC, after draining what the table still holds).

use std::sync::Arc;

use ordership_application::background::RepliesFlowing;
use ordership_application::monitoring::{HandlerMetrics, Measured, RelayMetrics};
use ordership_application::{
    CdcRelay, DeadLetterIndex, OutboxRelay, RelayConfig, Shutdown, relay_instance_name,
};
use ordership_domain::ports::{Clock, MessageHandler, MessagePublisher, Transaction, UnitOfWork};
use ordership_http::{
    HandlerLatency, HealthCheck, MetricSource, OutboxBacklog, RelayLatency, SlotLag,
};
use tokio::task::JoinHandle;

use super::{Side, Transport};

/// Starts the messaging of the services: their consumers, measured, and their outbox relays.
pub(super) struct Launcher<'a> {
    pub(super) transport: &'a Transport,
    pub(super) publisher: Arc<dyn MessagePublisher>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) relay: RelayConfig,
    pub(super) shutdown: Shutdown,
    pub(super) tasks: Vec<JoinHandle<()>>,
    /// Readiness checks of the consumers (Kafka's: a live group member).
    pub(super) checks: Vec<Arc<dyn HealthCheck>>,
}

impl Launcher<'_> {
    /// Delivers `topic` to `handler` as consumer group `group`, indexing what it dead-letters
    /// in `dead_letters` (the consuming service's store); returns the handler's metrics and
    /// whether messages reach it now.
    pub(super) fn consumer(
        &mut self,
        (topic, group): (&str, &'static str),
        handler: Arc<dyn MessageHandler>,
        dead_letters: Arc<dyn UnitOfWork<dyn Transaction>>,
    ) -> (Arc<dyn MetricSource>, RepliesFlowing) {
        let metrics = Arc::new(HandlerMetrics::default());
        let measured = Arc::new(Measured::new(handler, Arc::clone(&metrics)));
        let index = DeadLetterIndex {
            store: dead_letters,
            clock: Arc::clone(&self.clock),
        };
        let subscription =
            self.transport
                .subscribe((topic, group), measured, index, &self.shutdown);
        self.tasks.extend(subscription.task);
        self.checks.extend(subscription.check);
        let latency = Arc::new(HandlerLatency {
            consumer: group,
            metrics,
        });
        (latency, subscription.flowing)
    }

    /// Relays `side`'s outbox; returns the relay's and the outbox's metrics.
    pub(super) fn relay<Tx: ?Sized + Transaction + 'static>(
        &mut self,
        service: &'static str,
        side: &Side<Tx>,
    ) -> Vec<Arc<dyn MetricSource>> {
        let metrics = Arc::new(RelayMetrics::default());
        let poll = Arc::new(
            OutboxRelay::new(
                side.store.clone(),
                Arc::clone(&self.publisher),
                side.outbox.clone(),
                Arc::clone(&self.clock),
                self.relay.clone(),
            )
            .with_metrics(Arc::clone(&metrics)),
        );
        let mut sources: Vec<Arc<dyn MetricSource>> = vec![
            Arc::new(RelayLatency {
                service,
                metrics: Arc::clone(&metrics),
            }),
            Arc::new(OutboxBacklog {
                service,
                uow: side.store.clone(),
                clock: Arc::clone(&self.clock),
            }),
        ];
        let shutdown = self.shutdown.clone();
        let task = match &side.feed {
            None => tokio::spawn(poll.run_sharded(
                Arc::clone(&side.leases),
                relay_instance_name(service),
                shutdown,
            )),
            Some(feed) => {
                sources.push(Arc::new(SlotLag {
                    service,
                    feed: Arc::clone(feed),
                }));
                let cdc = CdcRelay::new(
                    Arc::clone(feed),
                    Arc::clone(&self.publisher),
                    side.outbox.clone(),
                    Arc::clone(&self.clock),
                    self.relay.clone(),
                )
                .with_metrics(metrics);
                tokio::spawn(async move { cdc.run_after_draining(&poll, shutdown).await })
            }
        };
        self.tasks.push(task);
        sources
    }
}
