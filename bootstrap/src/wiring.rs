//! Wires the application to a set of stores and a message bus: both services, their outbox
//! relays, the saga's deadline sweeper, retention, and the HTTP API. The same wiring runs on the
//! in-memory stores (embedded) and on PostgreSQL.

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
    Clock, DeliveryTransaction, MessageHandler, OrderTransaction, OutboxSignal, UnitOfWork,
};
use ordership_domain::{DeliveryPolicy, topics};
use ordership_http::{
    ApiBuilder, Family, HttpConfig, Kind, MetricSource, OutboxBacklog, SagaStates, StoreCheck,
};
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

/// The two services' stores and the wake-up signals of their outboxes.
#[derive(Clone)]
pub struct Stores {
    pub orders: Arc<dyn UnitOfWork<dyn OrderTransaction>>,
    pub order_outbox: Arc<dyn OutboxSignal>,
    pub deliveries: Arc<dyn UnitOfWork<dyn DeliveryTransaction>>,
    pub delivery_outbox: Arc<dyn OutboxSignal>,
}

/// A running system.
pub struct Running {
    /// The HTTP API of both services.
    pub router: Router,
    pub bus: InProcessBus,
    pub orders: OrderService,
    pub deliveries: DeliveryService,
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
}

/// The in-process bus's counters as metrics.
struct BusMetrics(InProcessBus);

#[async_trait]
impl MetricSource for BusMetrics {
    async fn collect(&self) -> Vec<Family> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.0.stats();
        let counter = |name, help, value: &std::sync::atomic::AtomicU64| Family {
            name,
            help,
            kind: Kind::Counter,
            samples: vec![(Vec::new(), value.load(Relaxed) as f64)],
        };
        vec![
            counter(
                "ordership_messages_published_total",
                "Messages the relays published.",
                &s.published,
            ),
            counter(
                "ordership_messages_handled_total",
                "Messages consumers handled (including duplicates).",
                &s.handled,
            ),
            counter(
                "ordership_messages_redelivered_total",
                "Messages the bus delivered a second time.",
                &s.redelivered,
            ),
            counter(
                "ordership_inbox_duplicates_discarded_total",
                "Duplicates the inbox acknowledged without effect.",
                &s.duplicates_discarded,
            ),
            counter(
                "ordership_consumer_transient_failures_total",
                "Handler attempts that failed transiently and were retried.",
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

/// Wires and starts everything on `stores`. Must be called inside a Tokio runtime.
#[must_use]
pub fn start(config: &SystemConfig, stores: Stores) -> Running {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ids = Arc::new(UuidV7Ids);
    let bus = InProcessBus::new(config.bus.clone());
    let factory = |source: &str| MessageFactory::new(source, Arc::clone(&clock), ids.clone());

    let orders = OrderService::new(
        stores.orders.clone(),
        factory("/ordership/order-service"),
        config.saga.clone(),
    );
    let saga = FulfilmentOrchestrator::new(
        stores.orders.clone(),
        factory("/ordership/order-service"),
        config.saga.clone(),
    );
    let deliveries = DeliveryService::new(
        stores.deliveries.clone(),
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
    let order_relay: OutboxRelay<dyn OrderTransaction> = OutboxRelay::new(
        stores.orders.clone(),
        Arc::new(bus.clone()),
        stores.order_outbox.clone(),
        Arc::clone(&clock),
        config.relay.clone(),
    );
    let delivery_relay: OutboxRelay<dyn DeliveryTransaction> = OutboxRelay::new(
        stores.deliveries.clone(),
        Arc::new(bus.clone()),
        stores.delivery_outbox.clone(),
        Arc::clone(&clock),
        config.relay.clone(),
    );
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
    let (o, d, c) = (
        stores.orders.clone(),
        stores.deliveries.clone(),
        Arc::clone(&clock),
    );
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
        .check(Arc::new(StoreCheck::new(
            "order-store",
            stores.orders.clone(),
        )))
        .check(Arc::new(StoreCheck::new(
            "delivery-store",
            stores.deliveries.clone(),
        )))
        .metric_source(Arc::new(SagaStates(stores.orders.clone())))
        .metric_source(Arc::new(OutboxBacklog {
            service: "order",
            uow: stores.orders,
            clock: Arc::clone(&clock),
        }))
        .metric_source(Arc::new(OutboxBacklog {
            service: "delivery",
            uow: stores.deliveries,
            clock,
        }))
        .metric_source(Arc::new(BusMetrics(bus.clone())))
        .build();

    Running {
        router,
        bus,
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
        self.bus.close().await;
    }
}
