//! The application's figures as metric families, computed at scrape time from the stores and the
//! monitors (sagas by state, outbox backlog, relay and handler latency, CDC slot lag), so they
//! are true after a restart too.

use std::sync::Arc;

use async_trait::async_trait;
use ordership_application::monitoring::{HandlerMetrics, RelayMetrics};
use std::sync::atomic::Ordering;

use super::{Family, MetricSource};

/// `ordership_sagas{state}`: sagas by state, from the order store.
pub struct SagaStates(
    pub Arc<dyn ordership_domain::ports::UnitOfWork<dyn ordership_domain::ports::OrderTransaction>>,
);

#[async_trait]
impl MetricSource for SagaStates {
    async fn collect(&self) -> Vec<Family> {
        match ordership_application::monitoring::saga_counts(self.0.as_ref()).await {
            Ok(counts) => vec![Family::gauge(
                "ordership_sagas",
                "Fulfilment sagas by state (completed/compensated/failed are outcomes).",
                counts
                    .into_iter()
                    .map(|(state, n)| (vec![("state", state.as_str().to_owned())], n as f64))
                    .collect(),
            )],
            Err(e) => {
                tracing::warn!(error = %e, "cannot read saga counts for metrics");
                Vec::new()
            }
        }
    }
}

/// `ordership_outbox_pending{service}` and the age of the oldest pending message.
pub struct OutboxBacklog<Tx: ?Sized> {
    pub service: &'static str,
    pub uow: Arc<dyn ordership_domain::ports::UnitOfWork<Tx>>,
    pub clock: Arc<dyn ordership_domain::ports::Clock>,
}

#[async_trait]
impl<Tx: ?Sized + ordership_domain::ports::Transaction + 'static> MetricSource
    for OutboxBacklog<Tx>
{
    async fn collect(&self) -> Vec<Family> {
        match ordership_application::monitoring::outbox_stats(self.uow.as_ref()).await {
            Ok(stats) => {
                let label = || vec![("service", self.service.to_owned())];
                let age = stats.oldest_pending_at.map_or(0.0, |at| {
                    (self.clock.now() - at).num_milliseconds().max(0) as f64 / 1000.0
                });
                vec![
                    Family::gauge(
                        "ordership_outbox_pending",
                        "Outbox messages not yet published.",
                        vec![(label(), stats.pending as f64)],
                    ),
                    Family::gauge(
                        "ordership_outbox_parked",
                        "Outbox messages the broker refused for good, set aside with their reason.",
                        vec![(label(), stats.parked as f64)],
                    ),
                    Family::gauge(
                        "ordership_outbox_oldest_pending_age_seconds",
                        "Age of the oldest unpublished outbox message.",
                        vec![(label(), age)],
                    ),
                ]
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read outbox stats for metrics");
                Vec::new()
            }
        }
    }
}

/// What an outbox relay published, and how fast.
pub struct RelayLatency {
    pub service: &'static str,
    pub metrics: Arc<RelayMetrics>,
}

#[async_trait]
impl MetricSource for RelayLatency {
    async fn collect(&self) -> Vec<Family> {
        let label = || vec![("service", self.service.to_owned())];
        vec![
            Family::counter(
                "ordership_relay_published_total",
                "Outbox messages the broker acknowledged.",
                vec![(
                    label(),
                    self.metrics.published.load(Ordering::Relaxed) as f64,
                )],
            ),
            Family::histogram(
                "ordership_relay_lag_seconds",
                "From a message's creation to the broker's acknowledgement.",
                vec![(label(), self.metrics.lag.snapshot())],
            ),
            Family::histogram(
                "ordership_relay_publish_seconds",
                "Broker round trip of one outbox batch, first send to last acknowledgement.",
                vec![(label(), self.metrics.publish.snapshot())],
            ),
            Family::gauge(
                "ordership_relay_shards_leased",
                "Outbox shards this instance leases and relays (polling relay).",
                vec![(
                    label(),
                    self.metrics.shards_leased.load(Ordering::Relaxed) as f64,
                )],
            ),
        ]
    }
}

/// How long one consumer's handler takes, and what it did.
pub struct HandlerLatency {
    pub consumer: &'static str,
    pub metrics: Arc<HandlerMetrics>,
}

#[async_trait]
impl MetricSource for HandlerLatency {
    async fn collect(&self) -> Vec<Family> {
        let label = || vec![("consumer", self.consumer.to_owned())];
        let count =
            |n: &std::sync::atomic::AtomicU64| vec![(label(), n.load(Ordering::Relaxed) as f64)];
        vec![
            Family::histogram(
                "ordership_consumer_handle_seconds",
                "Time to handle one message (one attempt, in its own transaction).",
                vec![(label(), self.metrics.latency.snapshot())],
            ),
            Family::counter(
                "ordership_messages_handled_total",
                "Messages consumers handled, duplicates included.",
                count(&self.metrics.handled),
            ),
            Family::counter(
                "ordership_inbox_duplicates_discarded_total",
                "Duplicates the inbox acknowledged without effect.",
                count(&self.metrics.duplicates_discarded),
            ),
            Family::counter(
                "ordership_consumer_failures_total",
                "Handler attempts that failed (retried or dead-lettered by the transport).",
                count(&self.metrics.failed),
            ),
        ]
    }
}

/// `ordership_cdc_slot_lag_bytes{service}`: how far the CDC relay's replication slot trails the
/// write-ahead log (the log the server must keep for it).
pub struct SlotLag {
    pub service: &'static str,
    pub feed: Arc<dyn ordership_domain::ports::OutboxFeed>,
}

#[async_trait]
impl MetricSource for SlotLag {
    async fn collect(&self) -> Vec<Family> {
        match self.feed.lag_bytes().await {
            Ok(lag) => vec![Family::gauge(
                "ordership_cdc_slot_lag_bytes",
                "Write-ahead log the CDC relay's replication slot has not confirmed yet.",
                vec![(vec![("service", self.service.to_owned())], lag as f64)],
            )],
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the replication slot's lag");
                Vec::new()
            }
        }
    }
}

/// The waiting rooms: per room, who waits and how many were admitted (from the queue, shared by
/// every instance); per process, joins, admissions, the gate's refusals by reason, queue errors
/// and whether the queue answers.
pub struct WaitingRoomFigures(pub ordership_application::WaitingRoomService);

#[async_trait]
impl MetricSource for WaitingRoomFigures {
    async fn collect(&self) -> Vec<Family> {
        let c = self.0.counters();
        let n = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed) as f64;
        let mut families = vec![
            Family::counter(
                "ordership_waiting_room_joins_total",
                "Joins answered by this instance.",
                vec![(Vec::new(), n(&c.joins))],
            ),
            Family::counter(
                "ordership_waiting_room_admissions_total",
                "Buyers admitted by this instance: on joining (nobody waiting) or by its ticks.",
                vec![
                    (
                        vec![("how", "on_joining".to_owned())],
                        n(&c.admitted_on_joining),
                    ),
                    (vec![("how", "by_tick".to_owned())], n(&c.admitted_by_tick)),
                ],
            ),
            Family::counter(
                "ordership_waiting_room_gate_refusals_total",
                "Orders for gated products refused by this instance, by reason.",
                vec![
                    (
                        vec![("reason", "required".to_owned())],
                        n(&c.refused_required),
                    ),
                    (
                        vec![("reason", "expired".to_owned())],
                        n(&c.refused_expired),
                    ),
                    (vec![("reason", "price".to_owned())], n(&c.refused_price)),
                    (
                        vec![("reason", "unavailable".to_owned())],
                        n(&c.refused_unavailable),
                    ),
                ],
            ),
            Family::counter(
                "ordership_waiting_room_queue_errors_total",
                "Failed calls to the waiting rooms' queue (Redis).",
                vec![(Vec::new(), n(&c.queue_errors))],
            ),
            Family::gauge(
                "ordership_waiting_room_queue_up",
                "1 while the waiting rooms' queue (Redis) answers.",
                vec![(Vec::new(), if self.0.queue_up() { 1.0 } else { 0.0 })],
            ),
        ];
        match self.0.views().await {
            Ok(views) => {
                let room = |v: &ordership_application::RoomView| {
                    vec![("room", v.room.id().as_str().to_owned())]
                };
                let queued = || views.iter().filter_map(|v| Some((room(v), v.queue?)));
                families.push(Family::gauge(
                    "ordership_waiting_room_waiting",
                    "Buyers waiting, by room.",
                    queued().map(|(l, q)| (l, q.waiting as f64)).collect(),
                ));
                families.push(Family::counter(
                    "ordership_waiting_room_admitted_total",
                    "Buyers admitted since the room's queue began, by room (all instances).",
                    queued().map(|(l, q)| (l, q.admitted as f64)).collect(),
                ));
                families.push(Family::gauge(
                    "ordership_waiting_room_rate_per_second",
                    "The configured admission rate, by room.",
                    views
                        .iter()
                        .map(|v| {
                            let rate = v.room.rate();
                            (
                                room(v),
                                f64::from(rate.admissions()) / rate.interval().as_secs_f64(),
                            )
                        })
                        .collect(),
                ));
            }
            Err(e) => tracing::warn!(error = %e, "cannot read waiting rooms for metrics"),
        }
        families
    }
}
