//! The all-in-one, in-memory wiring: both services with their own stores, the in-process bus
//! between them, both outbox relays, the saga's deadline sweeper and retention — the same
//! application code that runs on Postgres and Kafka, on the memory adapters.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use ordership_application::background::{
    purge_idempotency_keys, purge_outbox_and_inbox, run_every, run_sweeper,
};
use ordership_application::{
    DeliveryService, FulfilmentOrchestrator, MessageFactory, OrderService, OutboxRelay,
    RelayConfig, RetentionConfig, SagaConfig, ShutdownTrigger,
};
use ordership_domain::ports::{
    Clock, DeliveryTransaction, MessageHandler, OrderTransaction, Transaction,
};
use ordership_domain::{DeliveryPolicy, topics};
use ordership_http::{
    ApiBuilder, Family, HttpConfig, Kind, MetricSource, OutboxBacklog, SagaStates, StoreCheck,
};
use ordership_memory::{BusConfig, InProcessBus, MemoryStore, SystemClock, UuidV7Ids};
use tokio::task::JoinHandle;

/// Everything the embedded mode can be tuned with.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    pub saga: SagaConfig,
    pub policy: DeliveryPolicy,
    pub bus: BusConfig,
    pub relay: RelayConfig,
    pub sweep_interval: Duration,
    pub retention: RetentionConfig,
    pub http: HttpConfig,
}

impl Default for EmbeddedConfig {
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

/// A running embedded system. Dropping it without [`Embedded::shutdown`] leaves its tasks to the
/// runtime.
pub struct Embedded {
    /// The HTTP API of both services.
    pub router: Router,
    pub order_store: MemoryStore,
    pub delivery_store: MemoryStore,
    pub bus: InProcessBus,
    pub orders: OrderService,
    pub deliveries: DeliveryService,
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

/// The in-process bus's counters as metrics.
struct BusMetrics(InProcessBus);

#[async_trait]
impl MetricSource for BusMetrics {
    async fn collect(&self) -> Vec<Family> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.0.stats();
        let counter = |name, help, value: u64| Family {
            name,
            help,
            kind: Kind::Counter,
            samples: vec![(Vec::new(), value as f64)],
        };
        vec![
            counter(
                "ordership_messages_published_total",
                "Messages the relays published.",
                s.published.load(Relaxed),
            ),
            counter(
                "ordership_messages_handled_total",
                "Messages consumers handled (including duplicates).",
                s.handled.load(Relaxed),
            ),
            counter(
                "ordership_messages_redelivered_total",
                "Messages the bus delivered a second time.",
                s.redelivered.load(Relaxed),
            ),
            counter(
                "ordership_inbox_duplicates_discarded_total",
                "Duplicates the inbox acknowledged without effect.",
                s.duplicates_discarded.load(Relaxed),
            ),
            counter(
                "ordership_consumer_transient_failures_total",
                "Handler attempts that failed transiently and were retried.",
                s.transient_failures.load(Relaxed),
            ),
            counter(
                "ordership_messages_dead_lettered_total",
                "Messages parked in the dead-letter queue.",
                s.dead_lettered.load(Relaxed),
            ),
        ]
    }
}

fn relay<Tx: ?Sized + Transaction + 'static>(
    store: &MemoryStore,
    bus: &InProcessBus,
    clock: &Arc<dyn Clock>,
    config: &RelayConfig,
) -> OutboxRelay<Tx>
where
    MemoryStore: ordership_domain::ports::UnitOfWork<Tx>,
{
    OutboxRelay::new(
        Arc::new(store.clone()),
        Arc::new(bus.clone()),
        Arc::new(store.clone()),
        Arc::clone(clock),
        config.clone(),
    )
}

impl Embedded {
    /// Wires and starts everything. Must be called inside a Tokio runtime.
    #[must_use]
    pub fn start(config: &EmbeddedConfig) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ids = Arc::new(UuidV7Ids);
        let order_store = MemoryStore::new();
        let delivery_store = MemoryStore::new();
        let bus = InProcessBus::new(config.bus.clone());
        let factory = |source: &str| MessageFactory::new(source, Arc::clone(&clock), ids.clone());

        let order_uow: Arc<dyn ordership_domain::ports::UnitOfWork<dyn OrderTransaction>> =
            Arc::new(order_store.clone());
        let delivery_uow: Arc<dyn ordership_domain::ports::UnitOfWork<dyn DeliveryTransaction>> =
            Arc::new(delivery_store.clone());
        let orders = OrderService::new(
            order_uow.clone(),
            factory("/ordership/order-service"),
            config.saga.clone(),
        );
        let saga = FulfilmentOrchestrator::new(
            order_uow.clone(),
            factory("/ordership/order-service"),
            config.saga.clone(),
        );
        let deliveries = DeliveryService::new(
            delivery_uow.clone(),
            factory("/ordership/delivery-service"),
            config.policy.clone(),
        );

        // Consumers first, so the relays never publish into a topic nobody listens to.
        let delivery_handler: Arc<dyn MessageHandler> = Arc::new(deliveries.clone());
        let saga_handler: Arc<dyn MessageHandler> = Arc::new(saga.clone());
        bus.subscribe(
            topics::DELIVERY_COMMANDS,
            ordership_application::deliveries::CONSUMER,
            &delivery_handler,
        );
        bus.subscribe(
            topics::DELIVERY_EVENTS,
            ordership_application::saga::CONSUMER,
            &saga_handler,
        );

        let (trigger, shutdown) = ShutdownTrigger::new();
        let order_relay = relay::<dyn OrderTransaction>(&order_store, &bus, &clock, &config.relay);
        let delivery_relay =
            relay::<dyn DeliveryTransaction>(&delivery_store, &bus, &clock, &config.relay);
        let mut tasks = vec![
            tokio::spawn({
                let shutdown = shutdown.clone();
                async move { order_relay.run(shutdown).await }
            }),
            tokio::spawn({
                let shutdown = shutdown.clone();
                async move { delivery_relay.run(shutdown).await }
            }),
            tokio::spawn(run_sweeper(
                saga,
                config.sweep_interval,
                100,
                shutdown.clone(),
            )),
        ];
        let retention = config.retention.clone();
        let (o, d, c) = (order_uow.clone(), delivery_uow.clone(), Arc::clone(&clock));
        tasks.push(tokio::spawn(run_every(
            "retention",
            Duration::from_secs(60),
            shutdown,
            move || {
                let (o, d, c, retention) = (o.clone(), d.clone(), c.clone(), retention.clone());
                async move {
                    purge_outbox_and_inbox(o.as_ref(), c.as_ref(), &retention).await?;
                    purge_outbox_and_inbox(d.as_ref(), c.as_ref(), &retention).await?;
                    purge_idempotency_keys(o.as_ref(), c.as_ref(), &retention).await?;
                    Ok(())
                }
            },
        )));

        let router = ApiBuilder::new(config.http.clone())
            .orders(orders.clone())
            .deliveries(deliveries.clone())
            .check(Arc::new(StoreCheck::new("order-store", order_uow.clone())))
            .check(Arc::new(StoreCheck::new(
                "delivery-store",
                delivery_uow.clone(),
            )))
            .metric_source(Arc::new(SagaStates(order_uow.clone())))
            .metric_source(Arc::new(OutboxBacklog {
                service: "order",
                uow: order_uow,
                clock: Arc::clone(&clock),
            }))
            .metric_source(Arc::new(OutboxBacklog {
                service: "delivery",
                uow: delivery_uow,
                clock,
            }))
            .metric_source(Arc::new(BusMetrics(bus.clone())))
            .build();

        Self {
            router,
            order_store,
            delivery_store,
            bus,
            orders,
            deliveries,
            trigger,
            tasks,
        }
    }

    /// Stops the background loops, then lets the bus's consumers finish what they were given.
    pub async fn shutdown(self) {
        self.trigger.trigger();
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "background task ended abnormally");
            }
        }
        self.bus.close().await;
    }
}
