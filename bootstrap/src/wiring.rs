//! Wires the application to a set of stores and a message bus: both services, their outbox
//! relays, the saga's deadline sweeper, retention, and the HTTP API. The same wiring runs on the
//! in-memory stores (embedded) and on PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use ordership_application::background::{
    purge_idempotency_keys, purge_outbox_and_inbox, run_every, run_sweeper,
};
use ordership_application::monitoring::{HandlerMetrics, Measured, RelayMetrics};
use ordership_application::{
    CdcRelay, DeliveryService, FulfilmentOrchestrator, MessageFactory, OrderService, OutboxRelay,
    RelayConfig, RetentionConfig, SagaConfig, Shutdown, ShutdownTrigger,
};
use ordership_domain::ports::{
    Clock, DeliveryTransaction, MessageHandler, MessagePublisher, OrderTransaction, OutboxFeed,
    OutboxSignal, Transaction, UnitOfWork,
};
use ordership_domain::{DeliveryPolicy, RetryPolicy, topics};
use ordership_http::{
    ApiBuilder, Family, HandlerLatency, HttpConfig, MetricSource, OutboxBacklog, RelayLatency,
    SagaStates, SlotLag, StoreCheck,
};
use ordership_kafka::{ConsumerConfig, ConsumerStats, KafkaPublisher, Namespace, consume};
use ordership_memory::{BusConfig, InProcessBus, SystemClock, UuidV7Ids};
use tokio::task::JoinHandle;

/// Everything the running system can be tuned with.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub saga: SagaConfig,
    pub policy: DeliveryPolicy,
    pub bus: BusConfig,
    pub relay: RelayConfig,
    pub sweep_interval: Duration,
    pub retention: RetentionConfig,
    pub http: HttpConfig,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            saga: SagaConfig::default(),
            policy: DeliveryPolicy::default(),
            bus: BusConfig::default(),
            relay: RelayConfig::default(),
            sweep_interval: Duration::from_secs(1),
            retention: RetentionConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// One service's store and the wake-up signal of its outbox.
pub struct Side<Tx: ?Sized> {
    pub store: Arc<dyn UnitOfWork<Tx>>,
    pub outbox: Arc<dyn OutboxSignal>,
    /// The outbox read from the transaction log: set, the CDC relay publishes; unset, the
    /// polling relay.
    pub feed: Option<Arc<dyn OutboxFeed>>,
}

impl<Tx: ?Sized> Clone for Side<Tx> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            outbox: Arc::clone(&self.outbox),
            feed: self.feed.clone(),
        }
    }
}

/// The services this process runs, with their stores.
#[derive(Clone)]
pub struct Stores {
    pub orders: Option<Side<dyn OrderTransaction>>,
    pub deliveries: Option<Side<dyn DeliveryTransaction>>,
}

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
    pub brokers: String,
    /// Prefix of the topics and consumer groups on the cluster.
    pub namespace: Namespace,
    /// Retries and dead-lettering of failed handler calls.
    pub retry: RetryPolicy,
    pub publisher: KafkaPublisher,
    pub stats: Arc<ConsumerStats>,
    /// UNSAFE, mutation tests only: store offsets before handling.
    pub store_offset_before_handling: bool,
}

/// A running system.
pub struct Running {
    /// The HTTP API of the services this process runs.
    pub router: Router,
    pub transport: Transport,
    pub orders: Option<OrderService>,
    pub deliveries: Option<DeliveryService>,
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
}

/// A counter family with one unlabelled sample.
fn counter(name: &'static str, help: &'static str, value: &AtomicU64) -> Family {
    Family::counter(name, help, vec![(Vec::new(), value.load(Relaxed) as f64)])
}

/// What the in-process bus did, as metrics (handling itself is measured per consumer).
struct BusMetrics(InProcessBus);

#[async_trait]
impl MetricSource for BusMetrics {
    async fn collect(&self) -> Vec<Family> {
        let s = self.0.stats();
        vec![
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
            counter(
                "ordership_consumer_retries_total",
                "Failed handler attempts the transport tried again.",
                &s.transient_failures,
            ),
            counter(
                "ordership_messages_dead_lettered_total",
                "Messages parked in the dead-letter queue.",
                &s.dead_lettered,
            ),
        ]
    }
}

/// What the Kafka consumers did, as metrics (handling itself is measured per consumer).
struct ConsumerMetrics(Arc<ConsumerStats>);

#[async_trait]
impl MetricSource for ConsumerMetrics {
    async fn collect(&self) -> Vec<Family> {
        let s = &self.0;
        vec![
            counter(
                "ordership_consumer_retries_total",
                "Failed handler attempts the transport tried again.",
                &s.transient_failures,
            ),
            counter(
                "ordership_messages_dead_lettered_total",
                "Messages parked in a dead-letter topic.",
                &s.dead_lettered,
            ),
            counter(
                "ordership_consumer_partitions_revoked_total",
                "Partitions taken away from this process's consumers by rebalances.",
                &s.partitions_revoked,
            ),
        ]
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
        self.0.reachable(Duration::from_secs(2)).await
    }
}

impl Transport {
    fn publisher(&self) -> Arc<dyn MessagePublisher> {
        match self {
            Self::Bus(bus) => Arc::new(bus.clone()),
            Self::Kafka(kafka) => Arc::new(kafka.publisher.clone()),
        }
    }

    /// Delivers `topic` to `handler` as consumer group `group`.
    fn subscribe(
        &self,
        topic: &str,
        group: &str,
        handler: Arc<dyn MessageHandler>,
        shutdown: &Shutdown,
    ) -> Option<JoinHandle<()>> {
        match self {
            Self::Bus(bus) => {
                bus.subscribe(topic, group, &handler);
                None
            }
            Self::Kafka(kafka) => {
                let config = ConsumerConfig {
                    namespace: kafka.namespace.clone(),
                    retry: kafka.retry.clone(),
                    store_offset_before_handling: kafka.store_offset_before_handling,
                    ..ConsumerConfig::new(&kafka.brokers, group, &[topic])
                };
                let (stats, mut shutdown) = (Arc::clone(&kafka.stats), shutdown.clone());
                Some(tokio::spawn(async move {
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
                }))
            }
        }
    }
}

/// Starts the messaging of the services: their consumers, measured, and their outbox relays.
struct Launcher<'a> {
    transport: &'a Transport,
    publisher: Arc<dyn MessagePublisher>,
    clock: Arc<dyn Clock>,
    relay: RelayConfig,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

impl Launcher<'_> {
    /// Delivers `topic` to `handler` as consumer group `group`; returns the handler's metrics.
    fn consumer(
        &mut self,
        topic: &str,
        group: &'static str,
        handler: Arc<dyn MessageHandler>,
    ) -> Arc<dyn MetricSource> {
        let metrics = Arc::new(HandlerMetrics::default());
        let measured = Arc::new(Measured::new(handler, Arc::clone(&metrics)));
        self.tasks.extend(
            self.transport
                .subscribe(topic, group, measured, &self.shutdown),
        );
        Arc::new(HandlerLatency {
            consumer: group,
            metrics,
        })
    }

    /// Relays `side`'s outbox; returns the relay's and the outbox's metrics.
    fn relay<Tx: ?Sized + Transaction + 'static>(
        &mut self,
        service: &'static str,
        side: &Side<Tx>,
    ) -> Vec<Arc<dyn MetricSource>> {
        let metrics = Arc::new(RelayMetrics::default());
        let poll = OutboxRelay::new(
            side.store.clone(),
            Arc::clone(&self.publisher),
            side.outbox.clone(),
            Arc::clone(&self.clock),
            self.relay.clone(),
        )
        .with_metrics(Arc::clone(&metrics));
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
            None => tokio::spawn(async move { poll.run(shutdown).await }),
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
                tokio::spawn(async move {
                    // Rows a polling relay left behind go first; from here on the log has them.
                    if drain(&poll, shutdown.clone()).await {
                        cdc.run(shutdown).await;
                    }
                })
            }
        };
        self.tasks.push(task);
        sources
    }
}

/// Publishes what the outbox table still holds; `false` if shut down meanwhile.
async fn drain<Tx: ?Sized + Transaction>(relay: &OutboxRelay<Tx>, mut shutdown: Shutdown) -> bool {
    loop {
        let relayed = tokio::select! {
            () = shutdown.requested() => return false,
            relayed = relay.relay_once() => relayed,
        };
        match relayed {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "draining the outbox table failed, retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Wires and starts the services `stores` holds, on `transport`. Must be called inside a Tokio
/// runtime.
#[must_use]
pub fn start(config: &SystemConfig, stores: &Stores, transport: Transport) -> Running {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ids = Arc::new(UuidV7Ids);
    let factory = |source: &str| MessageFactory::new(source, Arc::clone(&clock), ids.clone());
    let (trigger, shutdown) = ShutdownTrigger::new();
    let mut launch = Launcher {
        transport: &transport,
        publisher: transport.publisher(),
        clock: Arc::clone(&clock),
        relay: config.relay.clone(),
        shutdown: shutdown.clone(),
        tasks: Vec::new(),
    };
    let mut api = ApiBuilder::new(config.http.clone());
    let mut orders = None;
    let mut deliveries = None;

    // Consumers first, so the relays never publish into a topic nobody listens to.
    if let Some(side) = &stores.deliveries {
        let service = DeliveryService::new(
            side.store.clone(),
            factory("/ordership/delivery-service"),
            config.policy.clone(),
        );
        api = api
            .metric_source(launch.consumer(
                topics::DELIVERY_COMMANDS,
                ordership_application::deliveries::CONSUMER,
                Arc::new(service.clone()),
            ))
            .metric_sources(launch.relay("delivery", side))
            .deliveries(service.clone())
            .check(Arc::new(StoreCheck::new(
                "delivery-store",
                side.store.clone(),
            )));
        deliveries = Some(service);
    }
    if let Some(side) = &stores.orders {
        let service = OrderService::new(
            side.store.clone(),
            factory("/ordership/order-service"),
            config.saga.clone(),
        );
        let saga = FulfilmentOrchestrator::new(
            side.store.clone(),
            factory("/ordership/order-service"),
            config.saga.clone(),
        );
        api = api
            .metric_source(launch.consumer(
                topics::DELIVERY_EVENTS,
                ordership_application::saga::CONSUMER,
                Arc::new(saga.clone()),
            ))
            .metric_sources(launch.relay("order", side))
            .orders(service.clone())
            .check(Arc::new(StoreCheck::new("order-store", side.store.clone())))
            .metric_source(Arc::new(SagaStates(side.store.clone())));
        launch.tasks.push(tokio::spawn(run_sweeper(
            saga,
            config.sweep_interval,
            100,
            shutdown.clone(),
        )));
        orders = Some(service);
    }
    let mut tasks = launch.tasks;

    let retention = config.retention.clone();
    let (o, d, c) = (
        stores.orders.clone().map(|s| s.store),
        stores.deliveries.clone().map(|s| s.store),
        Arc::clone(&clock),
    );
    tasks.push(tokio::spawn(run_every(
        "retention",
        Duration::from_secs(60),
        shutdown,
        move || {
            let (o, d, c, retention) = (o.clone(), d.clone(), c.clone(), retention.clone());
            async move {
                if let Some(o) = &o {
                    purge_outbox_and_inbox(o.as_ref(), c.as_ref(), &retention).await?;
                    purge_idempotency_keys(o.as_ref(), c.as_ref(), &retention).await?;
                }
                if let Some(d) = &d {
                    purge_outbox_and_inbox(d.as_ref(), c.as_ref(), &retention).await?;
                }
                Ok(())
            }
        },
    )));

    api = match &transport {
        Transport::Bus(bus) => api.metric_source(Arc::new(BusMetrics(bus.clone()))),
        Transport::Kafka(kafka) => api
            .metric_source(Arc::new(ConsumerMetrics(Arc::clone(&kafka.stats))))
            .check(Arc::new(KafkaCheck(kafka.publisher.clone()))),
    };
    Running {
        router: api.build(),
        transport,
        orders,
        deliveries,
        trigger,
        tasks,
    }
}

impl Running {
    /// Stops the background loops, then lets the bus's consumers finish what they were given.
    pub async fn shutdown(self) {
        self.trigger.trigger();
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "background task ended abnormally");
            }
        }
        match &self.transport {
            Transport::Bus(bus) => bus.close().await,
            Transport::Kafka(kafka) => {
                if let Err(e) = kafka.publisher.flush(Duration::from_secs(2)) {
                    tracing::warn!(error = %e, "unflushed messages stay in the outbox");
                }
            }
        }
    }

    /// The in-process bus, when that is the transport.
    #[must_use]
    pub fn bus(&self) -> Option<&InProcessBus> {
        match &self.transport {
            Transport::Bus(bus) => Some(bus),
            Transport::Kafka(_) => None,
        }
    }
}
