//! How messages travel between the services (the in-process bus or Kafka): publishing,
//! subscribing, and the transport's own metrics and health check.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_trait::async_trait;
use ordership_application::Shutdown;
use ordership_application::background::RepliesFlowing;
use ordership_application::{ConsumerStats, DeadLetterIndex};
use ordership_domain::RetryPolicy;
use ordership_domain::ports::{MessageHandler, MessagePublisher};
use ordership_http::HealthCheck;
use ordership_http::{ApiBuilder, Family, MetricSource};
use ordership_kafka::{
    Connection, ConsumerConfig, ConsumerHealth, KafkaPublisher, Namespace, consume,
};
use ordership_memory::InProcessBus;
use tokio::task::JoinHandle;

/// How messages travel between the services.
#[derive(Clone)]
pub enum Transport {
    /// In this process (embedded mode, or both services on PostgreSQL without Kafka).
    Bus(InProcessBus),
    /// Kafka: relays publish to it, consumer groups read from it.
    Kafka(KafkaTransport),
}

/// Kafka settings of a process.
#[derive(Clone)]
pub struct KafkaTransport {
    /// The cluster, and the settings passed through to librdkafka.
    pub connection: Connection,
    /// Prefix of the topics and consumer groups on the cluster.
    pub namespace: Namespace,
    /// Retries and dead-lettering of failed handler calls.
    pub retry: RetryPolicy,
    pub publisher: KafkaPublisher,
    pub stats: Arc<ConsumerStats>,
    /// UNSAFE, mutation tests only: store offsets before handling.
    pub store_offset_before_handling: bool,
    /// Static group membership: this instance's stable identity.
    pub instance_id: Option<String>,
    /// This process's consumers, by group, for their metrics.
    pub members: Members,
}

/// A process's Kafka consumers, each with its group.
pub(super) type Members = Arc<std::sync::Mutex<Vec<(String, Arc<ConsumerHealth>)>>>;

/// A counter family with one unlabelled sample.
fn counter(name: &'static str, help: &'static str, value: &AtomicU64) -> Family {
    Family::counter(name, help, vec![(Vec::new(), value.load(Relaxed) as f64)])
}

/// What a transport's consumers did (handling itself is measured per consumer).
fn consumer_families(s: &ConsumerStats) -> Vec<Family> {
    vec![
        counter(
            "ordership_consumer_retries_total",
            "Failed handler attempts the transport tried again.",
            &s.transient_failures,
        ),
        counter(
            "ordership_messages_dead_lettered_total",
            "Messages parked in a dead-letter queue.",
            &s.dead_lettered,
        ),
    ]
}

/// What the in-process bus did, as metrics.
struct BusMetrics(InProcessBus);

#[async_trait]
impl MetricSource for BusMetrics {
    async fn collect(&self) -> Vec<Family> {
        let s = self.0.stats();
        let mut families = consumer_families(self.0.consumer_stats());
        families.extend([
            counter(
                "ordership_messages_published_total",
                "Messages the relays published to the bus.",
                &s.published,
            ),
            counter(
                "ordership_messages_redelivered_total",
                "Messages the bus delivered a second time.",
                &s.redelivered,
            ),
        ]);
        families
    }
}

/// What the Kafka consumers did, as metrics.
struct ConsumerMetrics(KafkaTransport);

#[async_trait]
impl MetricSource for ConsumerMetrics {
    async fn collect(&self) -> Vec<Family> {
        let stats = &self.0.stats;
        let mut families = consumer_families(stats);
        families.push(counter(
            "ordership_consumer_partitions_revoked_total",
            "Partitions taken away from this process's consumers by rebalances.",
            &stats.partitions_revoked,
        ));
        families.push(counter(
            "ordership_consumers_rebuilt_total",
            "Kafka consumers built again after being out of their group too long.",
            &stats.consumers_rebuilt,
        ));
        let members = self
            .0
            .members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let by_group = |value: fn(&ConsumerHealth) -> u64| {
            members
                .iter()
                .map(|(group, health)| (vec![("group", group.clone())], value(health) as f64))
                .collect()
        };
        families.push(Family::gauge(
            "ordership_consumer_assigned_partitions",
            "Partitions each consumer group member of this process owns (0: a ready surplus member).",
            by_group(ConsumerHealth::assigned_partitions),
        ));
        families.push(Family::counter(
            "ordership_consumer_rebalances_total",
            "Rebalances (assignments or revocations) each consumer group member of this process went through.",
            by_group(ConsumerHealth::rebalances),
        ));
        families.push(Family::gauge(
            "ordership_consumer_lag_messages",
            "Messages not yet consumed, by consumer group, topic and partition this process consumes (the figure to scale consumers on: sum by group).",
            members
                .iter()
                .flat_map(|(group, health)| {
                    health
                        .partition_lags()
                        .into_iter()
                        .map(move |(topic, partition, lag)| {
                            (
                                vec![
                                    ("group", group.clone()),
                                    ("topic", topic),
                                    ("partition", partition.to_string()),
                                ],
                                lag as f64,
                            )
                        })
                })
                .collect(),
        ));
        families
    }
}

/// Ready when the Kafka cluster answers a metadata request.
struct KafkaCheck(KafkaPublisher);

#[async_trait]
impl ordership_http::HealthCheck for KafkaCheck {
    fn name(&self) -> &str {
        "kafka"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.reachable(Duration::from_secs(2)).await.map_err(|e| {
            tracing::warn!(error = %e, "the Kafka cluster does not answer");
            "unreachable".to_owned()
        })
    }
}

/// Ready while a Kafka consumer polls and is a member of its group.
struct ConsumerCheck {
    name: String,
    health: Arc<ConsumerHealth>,
}

#[async_trait]
impl HealthCheck for ConsumerCheck {
    fn name(&self) -> &str {
        &self.name
    }
    async fn check(&self) -> Result<(), String> {
        self.health.check().map_err(str::to_owned)
    }
}

/// A subscription: the task that consumes, the check that tells whether it is live, and whether
/// messages reach the handler now.
pub(super) struct Subscription {
    pub(super) task: Option<JoinHandle<()>>,
    pub(super) check: Option<Arc<dyn HealthCheck>>,
    pub(super) flowing: RepliesFlowing,
}

/// How long a consumer back in its group is given to take in what waited for it before the
/// saga's deadlines are judged again.
const SETTLE_AFTER_JOIN: Duration = Duration::from_secs(3);

impl Transport {
    /// Adds the transport's metrics and, for Kafka, its health check to the API.
    pub(super) fn instrument(&self, api: ApiBuilder) -> ApiBuilder {
        match self {
            Self::Bus(bus) => api.metric_source(Arc::new(BusMetrics(bus.clone()))),
            Self::Kafka(kafka) => api
                .metric_source(Arc::new(ConsumerMetrics(kafka.clone())))
                .check(Arc::new(KafkaCheck(kafka.publisher.clone()))),
        }
    }

    /// Messages consumer group `group` of this process has not read yet, every partition it
    /// owns summed; `None` on the in-process bus, which has no such figure.
    pub(super) fn consumer_lag(&self, group: &str) -> Option<u64> {
        match self {
            Self::Bus(_) => None,
            Self::Kafka(kafka) => Some(
                kafka
                    .members
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                    .filter(|(g, _)| g == group)
                    .flat_map(|(_, health)| health.partition_lags())
                    .map(|(_, _, lag)| lag)
                    .sum(),
            ),
        }
    }

    pub(super) fn publisher(&self) -> Arc<dyn MessagePublisher> {
        match self {
            Self::Bus(bus) => Arc::new(bus.clone()),
            Self::Kafka(kafka) => Arc::new(kafka.publisher.clone()),
        }
    }

    /// Delivers `topic` to `handler` as consumer group `group`.
    pub(super) fn subscribe(
        &self,
        (topic, group): (&str, &str),
        handler: Arc<dyn MessageHandler>,
        index: DeadLetterIndex,
        shutdown: &Shutdown,
    ) -> Subscription {
        match self {
            Self::Bus(bus) => {
                bus.subscribe_indexed(topic, group, &handler, Some(&index));
                Subscription {
                    task: None,
                    check: None,
                    flowing: Arc::new(|| true),
                }
            }
            Self::Kafka(kafka) => {
                let health = Arc::new(ConsumerHealth::default());
                kafka
                    .members
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((group.to_owned(), Arc::clone(&health)));
                let check = Arc::new(ConsumerCheck {
                    name: format!("kafka-consumer:{group}"),
                    health: Arc::clone(&health),
                });
                let flowing: RepliesFlowing = {
                    let health = Arc::clone(&health);
                    Arc::new(move || health.in_group_for(SETTLE_AFTER_JOIN))
                };
                let config = ConsumerConfig {
                    health,
                    instance_id: kafka.instance_id.clone(),
                    namespace: kafka.namespace.clone(),
                    retry: kafka.retry.clone(),
                    store_offset_before_handling: kafka.store_offset_before_handling,
                    dead_letter_index: Some(index),
                    ..ConsumerConfig::on(kafka.connection.clone(), group, &[topic])
                };
                let (stats, mut shutdown) = (Arc::clone(&kafka.stats), shutdown.clone());
                let task = tokio::spawn(async move {
                    if let Err(e) =
                        consume(
                            config,
                            handler,
                            stats,
                            async move { shutdown.requested().await },
                        )
                        .await
                    {
                        tracing::error!(error = %e, "the consumer could not start");
                    }
                });
                Subscription {
                    task: Some(task),
                    check: Some(check),
                    flowing,
                }
            }
        }
    }
}
