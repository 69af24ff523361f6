//! The world of a run: the two processes (order service, delivery service), each with its own
//! durable store, its clock and its fault state, and the broker between them. A process's
//! services are made again when it restarts: nothing of a dead process's memory survives.

use std::sync::Arc;
use std::time::Duration;

use ordership_application::consumer::{ConsumerLoop, ConsumerStats};
use ordership_application::deliveries::DeliveryService;
use ordership_application::orders::OrderService;
use ordership_application::relay::{OutboxRelay, RelayConfig};
use ordership_application::saga::FulfilmentOrchestrator;
use ordership_application::waiting_room::WaitingRoomService;
use ordership_domain::ports::{
    Clock, DeliveryTransaction, IdGenerator, MessageHandler, OrderTransaction, Transaction,
    UnitOfWork, WaitingRoomStore,
};
use ordership_domain::{DeliveryPolicy, RetryPolicy, SagaPolicy, topics};
use ordership_memory::MemoryStore;

use crate::broker::{Broker, Publisher};
use crate::faults::{FaultyStore, Process, Shared};
use crate::sale::{Queue, Tokens};
use crate::time::{ProcessClock, SeededIds};

/// The saga's timing in a run: short, so that deadlines fire within a run's few simulated
/// minutes, and with few attempts, so that giving up and compensating happen too.
#[must_use]
pub fn saga_policy() -> SagaPolicy {
    SagaPolicy {
        reply_timeout: Duration::from_secs(2),
        max_backoff: Duration::from_secs(20),
        max_schedule_attempts: 3,
        max_cancel_attempts: 6,
    }
}

fn relay_config() -> RelayConfig {
    RelayConfig {
        batch_size: 8,
        batches_per_transaction: 2,
        ..RelayConfig::default()
    }
}

/// Served countries with a daily capacity small enough that some orders are rejected.
fn delivery_policy() -> DeliveryPolicy {
    let served = ["KR", "JP", "DE"]
        .into_iter()
        .filter_map(|c| ordership_domain::CountryCode::parse(c).ok());
    DeliveryPolicy::new(served, Some(20))
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_secs(1),
        max_attempts: 10,
    }
}

/// What a process is made of besides its services: its store (which outlives it), its clock,
/// its fault state, and when it comes back after a crash.
#[derive(Debug)]
pub struct Host {
    pub process: Arc<Process>,
    pub clock: Arc<ProcessClock>,
    pub store: MemoryStore,
    pub faulty: Arc<FaultyStore>,
    pub publisher: Arc<Publisher>,
    ids: Arc<SeededIds>,
    /// Down until this time of the world (microseconds).
    pub down_until: Option<i64>,
}

impl Host {
    fn new(name: &'static str, shared: &Shared, broker: &Arc<Broker>) -> Self {
        let process = Arc::new(Process::new(name, shared.clone()));
        let clock = Arc::new(ProcessClock::new(Arc::clone(&shared.world)));
        let store = MemoryStore::new();
        Self {
            faulty: Arc::new(FaultyStore::new(store.clone(), Arc::clone(&process))),
            publisher: Arc::new(Publisher {
                broker: Arc::clone(broker),
                process: Arc::clone(&process),
            }),
            ids: Arc::new(SeededIds::new(Arc::clone(&clock), Arc::clone(&shared.dice))),
            process,
            clock,
            store,
            down_until: None,
        }
    }

    /// The same host, up again, for the services of a new life.
    fn reborn(&self) -> Self {
        self.process.restarted();
        Self {
            process: Arc::clone(&self.process),
            clock: Arc::clone(&self.clock),
            store: self.store.clone(),
            faulty: Arc::clone(&self.faulty),
            publisher: Arc::clone(&self.publisher),
            ids: Arc::clone(&self.ids),
            down_until: None,
        }
    }

    /// The outbox relay of this host's store.
    fn relay<Tx: ?Sized + Transaction>(&self, uow: Arc<dyn UnitOfWork<Tx>>) -> OutboxRelay<Tx> {
        OutboxRelay::new(
            uow,
            Arc::clone(&self.publisher) as _,
            Arc::new(self.store.clone()),
            self.clock(),
            relay_config(),
        )
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock) as Arc<dyn Clock>
    }

    fn ids(&self) -> Arc<dyn IdGenerator> {
        Arc::clone(&self.ids) as Arc<dyn IdGenerator>
    }

    fn consumer(
        &self,
        group: &str,
        handler: Arc<dyn MessageHandler>,
        shared: &Shared,
    ) -> ConsumerLoop {
        ConsumerLoop::new(
            group,
            handler,
            retry_policy(),
            Arc::new(ConsumerStats::default()),
        )
        .with_random(Arc::clone(&shared.dice) as _)
    }
}

/// The order service: its host and the services a process of it runs.
pub struct OrderSide {
    pub host: Host,
    pub orders: OrderService,
    /// The waiting rooms, on the sale's queue (which outlives the process, as Redis does);
    /// `None` in a run without the sale.
    pub rooms: Option<WaitingRoomService>,
    queue: Option<Arc<Queue>>,
    pub saga: FulfilmentOrchestrator,
    pub relay: OutboxRelay<dyn OrderTransaction>,
    pub replies: ConsumerLoop,
}

/// The delivery service: its host and the services a process of it runs.
pub struct DeliverySide {
    pub host: Host,
    pub relay: OutboxRelay<dyn DeliveryTransaction>,
    pub commands: ConsumerLoop,
}

impl OrderSide {
    /// The order service as a process starts it, on `host`'s store.
    fn start(host: Host, queue: Option<Arc<Queue>>, shared: &Shared) -> Self {
        let uow = Arc::clone(&host.faulty) as Arc<dyn UnitOfWork<dyn OrderTransaction>>;
        let rooms = queue.as_ref().map(|queue| {
            WaitingRoomService::new(
                Arc::clone(queue) as _,
                Arc::new(host.store.clone()),
                Arc::new(Tokens),
                Arc::clone(&uow),
                host.clock(),
            )
            .with_draw_seed(shared.dice.next_u64())
        });
        let orders = OrderService::new(Arc::clone(&uow), host.clock(), host.ids(), saga_policy());
        let orders = match &rooms {
            Some(rooms) => orders.with_waiting_rooms(rooms.clone()),
            None => orders,
        };
        let saga =
            FulfilmentOrchestrator::new(Arc::clone(&uow), host.clock(), host.ids(), saga_policy())
                .with_random(Arc::clone(&shared.dice) as _);
        let relay = host.relay(uow);
        let replies = host.consumer(
            ordership_application::saga::CONSUMER,
            Arc::new(saga.clone()),
            shared,
        );
        Self {
            host,
            orders,
            rooms,
            queue,
            saga,
            relay,
            replies,
        }
    }

    /// A new life after a crash: the same store, new services.
    pub fn restart(&mut self, shared: &Shared) {
        *self = Self::start(self.host.reborn(), self.queue.clone(), shared);
    }
}

impl DeliverySide {
    fn start(host: Host, shared: &Shared) -> Self {
        let uow = Arc::clone(&host.faulty) as Arc<dyn UnitOfWork<dyn DeliveryTransaction>>;
        let service = DeliveryService::new(
            Arc::clone(&uow),
            host.clock(),
            host.ids(),
            delivery_policy(),
        );
        let relay = host.relay(uow);
        let commands = host.consumer(
            ordership_application::deliveries::CONSUMER,
            Arc::new(service),
            shared,
        );
        Self {
            host,
            relay,
            commands,
        }
    }

    /// A new life after a crash: the same store, new services.
    pub fn restart(&mut self, shared: &Shared) {
        *self = Self::start(self.host.reborn(), shared);
    }
}

/// Both processes and the broker.
pub struct World {
    pub shared: Shared,
    pub broker: Arc<Broker>,
    /// The flash sale's queue, with a clock of its own that never jumps (Redis `TIME`).
    pub queue: Arc<Queue>,
    /// The queue's fault state ("redis").
    pub redis: Arc<Process>,
    pub order: OrderSide,
    pub delivery: DeliverySide,
}

impl World {
    #[must_use]
    pub fn new(shared: Shared, sale: bool) -> Self {
        let broker = Arc::new(Broker::new(shared.clone()));
        broker.subscribe(
            ordership_application::deliveries::CONSUMER,
            topics::DELIVERY_COMMANDS,
        );
        broker.subscribe(
            ordership_application::saga::CONSUMER,
            topics::DELIVERY_EVENTS,
        );
        let redis = Arc::new(Process::new("redis", shared.clone()));
        let queue = Arc::new(Queue::new(
            Arc::new(ProcessClock::new(Arc::clone(&shared.world))),
            Arc::clone(&redis),
        ));
        let order = OrderSide::start(
            Host::new("order-service", &shared, &broker),
            sale.then(|| Arc::clone(&queue)),
            &shared,
        );
        let delivery =
            DeliverySide::start(Host::new("delivery-service", &shared, &broker), &shared);
        Self {
            shared,
            broker,
            queue,
            redis,
            order,
            delivery,
        }
    }

    /// Turns the faults of both processes and the queue on or off.
    pub fn set_faults(&self, on: bool) {
        self.order.host.process.set_faults(on);
        self.delivery.host.process.set_faults(on);
        self.redis.set_faults(on);
    }
}

impl World {
    /// Opens the sale before the clients come: a fifth of the run's orders in stock, for a third
    /// of them buying, so the sale sells out and cancelled orders reopen it.
    ///
    /// # Errors
    /// The room could not be configured.
    pub async fn open_sale(&self, orders: usize) -> Result<(), String> {
        let units = u32::try_from(orders / 5).unwrap_or(u32::MAX).max(1);
        self.order
            .host
            .store
            .put(&crate::sale::room(units)?)
            .await
            .map_err(|e| e.to_string())
    }

    /// Whether every unit of the sale is held by an order now.
    pub async fn sold_out(&self) -> bool {
        let Some(id) = crate::sale::room_id() else {
            return false;
        };
        self.order
            .host
            .store
            .get(&id)
            .await
            .ok()
            .flatten()
            .is_some_and(|room| room.sold_out())
    }
}
