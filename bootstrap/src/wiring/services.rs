//! Wires the application to a set of stores and a message bus: both services, their outbox
//! relays, the saga's deadline sweeper, retention, and the HTTP API. The same wiring runs on the
//! in-memory stores (embedded) and on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use ordership_application::background::{
    purge_idempotency_keys, purge_outbox_and_inbox, run_every, run_sweeper,
};
use ordership_application::shedding::sample;
use ordership_application::{
    DeliveryService, FulfilmentOrchestrator, LoadShedder, OrderService, OrderUpdates, OrderWatches,
    SagaOperations, ShutdownTrigger, WaitingRoomService,
};
use ordership_domain::ports::{Clock, IdGenerator, RateLimiter};
use ordership_domain::topics;
use ordership_http::{
    ApiBuilder, FairUse, HealthCheck, SagaStates, StoreCheck, WaitingRoomCheck, WaitingRoomFigures,
};
use ordership_memory::{
    InProcessBus, MemoryRateLimiter, MemoryWaitingRoomQueue, SystemClock, UuidV7Ids,
};
use tokio::task::JoinHandle;

use super::relays::Launcher;
use super::{Stores, SystemConfig, Transport};

/// A running system.
pub struct Running {
    /// The HTTP API of the services this process runs.
    pub router: Router,
    pub transport: Transport,
    pub orders: Option<OrderService>,
    pub deliveries: Option<DeliveryService>,
    pub waiting_rooms: Option<WaitingRoomService>,
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
}

/// Readers that follow orders, woken by the store's announcements of changed orders.
fn follow_orders(
    config: &SystemConfig,
    stores: &Stores,
    side: &super::Side<dyn ordership_domain::ports::OrderTransaction>,
    launch: &mut Launcher<'_>,
) -> OrderUpdates {
    let watches = OrderWatches::new(config.followers);
    if let Some(feed) = &stores.order_changes {
        let (watches, feed, shutdown) =
            (watches.clone(), Arc::clone(feed), launch.shutdown.clone());
        launch.tasks.push(tokio::spawn(
            async move { watches.run(feed, shutdown).await },
        ));
    }
    OrderUpdates::new(side.store.clone(), watches).with_shutdown(launch.shutdown.clone())
}

/// The order API's quotas and load shedding, as configured; the shedder samples the order
/// service's outbox and its reply consumer's lag every second.
fn fair_use(
    config: &SystemConfig,
    side: &super::Side<dyn ordership_domain::ports::OrderTransaction>,
    launch: &mut Launcher<'_>,
) -> FairUse {
    let settings = &config.fair_use;
    let limiter = settings.limiter.clone().unwrap_or_else(|| {
        Arc::new(MemoryRateLimiter::new(Arc::clone(&launch.clock))) as Arc<dyn RateLimiter>
    });
    let mut fair_use = FairUse::default().with_limiter(limiter);
    if let Some(policy) = &settings.orders {
        fair_use = fair_use.limit_orders(policy.clone());
    }
    if let Some(policy) = &settings.joins {
        fair_use = fair_use.limit_joins(policy.clone());
    }
    if let Some(policy) = &settings.joins_per_address {
        fair_use = fair_use.limit_joins_per_address(policy.clone());
    }
    if settings.trust_forwarded_for {
        fair_use = fair_use.trust_forwarded_for();
    }
    if let Some(shedder) = &settings.shedder {
        fair_use = fair_use.shed_with(Arc::clone(shedder));
    } else if settings.shed.any() {
        let shedder = Arc::new(LoadShedder::new(settings.shed));
        let (store, transport, s) = (
            side.store.clone(),
            launch.transport.clone(),
            Arc::clone(&shedder),
        );
        launch.tasks.push(tokio::spawn(run_every(
            "load shedding",
            Duration::from_secs(1),
            launch.shutdown.clone(),
            move || {
                let (store, transport, shedder) = (store.clone(), transport.clone(), s.clone());
                async move {
                    sample(&shedder, store.as_ref(), || {
                        transport.consumer_lag(ordership_application::saga::CONSUMER)
                    })
                    .await
                }
            },
        )));
        fair_use = fair_use.shed_with(shedder);
    }
    fair_use
}

/// Wires and starts the services `stores` holds, on `transport`. Must be called inside a Tokio
/// runtime.
#[must_use]
pub fn start(config: &SystemConfig, stores: &Stores, transport: Transport) -> Running {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ids: Arc<dyn IdGenerator> = Arc::new(UuidV7Ids);
    let (trigger, shutdown) = ShutdownTrigger::new();
    let mut launch = Launcher {
        transport: &transport,
        publisher: transport.publisher(),
        clock: Arc::clone(&clock),
        relay: config.relay.clone(),
        shutdown: shutdown.clone(),
        tasks: Vec::new(),
        checks: Vec::new(),
    };
    let mut api = ApiBuilder::new(config.http.clone())
        .authenticator(Arc::clone(&config.authenticator))
        .shutdown(shutdown.clone());
    let mut orders = None;
    let mut waiting_rooms = None;
    let mut deliveries = None;
    // Readiness lists the order store first, then the delivery store, then the rest.
    let mut checks: Vec<Arc<dyn HealthCheck>> = Vec::new();

    // Consumers first, so the relays never publish into a topic nobody listens to.
    if let Some(side) = &stores.deliveries {
        let service = DeliveryService::new(
            side.store.clone(),
            Arc::clone(&clock),
            Arc::clone(&ids),
            config.policy.clone(),
        );
        let (handling, _) = launch.consumer(
            (
                topics::DELIVERY_COMMANDS,
                ordership_application::deliveries::CONSUMER,
            ),
            Arc::new(service.clone()),
            side.transactions.clone(),
        );
        api = api
            .metric_source(handling)
            .metric_sources(launch.relay("delivery", side))
            .deliveries(service.clone());
        checks.push(Arc::new(StoreCheck::new(
            "delivery-store",
            side.store.clone(),
        )));
        deliveries = Some(service);
    }
    if let Some(side) = &stores.orders {
        let mut service = OrderService::new(
            side.store.clone(),
            Arc::clone(&clock),
            Arc::clone(&ids),
            config.saga.clone(),
        );
        // The rooms' store is the order store's own: orders take a room's stock in their
        // transactions.
        if let Some(room_store) = &stores.waiting_rooms {
            let rooms =
                WaitingRoomService::new(
                    config.waiting_rooms.queue.clone().unwrap_or_else(|| {
                        Arc::new(MemoryWaitingRoomQueue::new(Arc::clone(&clock)))
                    }),
                    Arc::clone(room_store),
                    Arc::clone(&config.waiting_rooms.tokens),
                    side.store.clone(),
                    Arc::clone(&clock),
                )
                .with_key_ttl(config.waiting_rooms.key_ttl);
            service = service.with_waiting_rooms(rooms.clone());
            launch
                .tasks
                .push(tokio::spawn(rooms.clone().run_ticker(shutdown.clone())));
            launch
                .checks
                .push(Arc::new(WaitingRoomCheck(rooms.clone())));
            api = api
                .waiting_rooms(rooms.clone())
                .metric_source(Arc::new(WaitingRoomFigures(rooms.clone())));
            waiting_rooms = Some(rooms);
        }
        let saga = FulfilmentOrchestrator::new(
            side.store.clone(),
            Arc::clone(&clock),
            Arc::clone(&ids),
            config.saga.clone(),
        );
        let (handling, replies_flowing) = launch.consumer(
            (
                topics::DELIVERY_EVENTS,
                ordership_application::saga::CONSUMER,
            ),
            Arc::new(saga.clone()),
            side.transactions.clone(),
        );
        api = api
            .metric_source(handling)
            .metric_sources(launch.relay("order", side))
            .fair_use(fair_use(config, side, &mut launch))
            .orders(
                service.clone(),
                follow_orders(config, stores, side, &mut launch),
            )
            .sagas(SagaOperations::new(
                side.store.clone(),
                Arc::clone(&clock),
                Arc::clone(&ids),
                config.saga.clone(),
            ))
            .metric_source(Arc::new(SagaStates(side.store.clone())));
        launch.tasks.push(tokio::spawn(run_sweeper(
            saga,
            config.sweep_interval,
            100,
            replies_flowing,
            shutdown.clone(),
        )));
        checks.insert(
            0,
            Arc::new(StoreCheck::new("order-store", side.store.clone())),
        );
        orders = Some(service);
    }
    checks.append(&mut launch.checks);
    checks.extend(config.extra_checks.iter().cloned());
    for check in checks {
        api = api.check(check);
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
        config.retention.interval,
        shutdown.clone(),
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

    if !config.retention.outbox_vacuum.is_zero() {
        let (o, d) = (
            stores.orders.clone().map(|s| s.store),
            stores.deliveries.clone().map(|s| s.store),
        );
        tasks.push(tokio::spawn(run_every(
            "outbox upkeep",
            config.retention.outbox_vacuum,
            shutdown,
            move || {
                let (o, d) = (o.clone(), d.clone());
                async move {
                    if let Some(o) = &o {
                        o.upkeep().await?;
                    }
                    if let Some(d) = &d {
                        d.upkeep().await?;
                    }
                    Ok(())
                }
            },
        )));
    }
    api = transport.instrument(api);
    Running {
        router: api.build(),
        transport,
        orders,
        deliveries,
        waiting_rooms,
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
