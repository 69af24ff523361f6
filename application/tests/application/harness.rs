//! A deterministic world: both services on in-memory stores, a manual clock, and message
//! delivery by hand through the real outbox relay, so a test decides which message arrives
//! when, twice, or never.

use std::sync::Arc;

use chrono::{Duration, Utc};

use ordership_application::{
    DeliveryService, FulfilmentOrchestrator, OrderService, OrderView, OutboxRelay, Outcome,
    RelayConfig,
};
use ordership_domain::ports::{
    DeliveryTransaction, HandleError, HandleOutcome, MessageHandler, OrderTransaction,
    StoredResponse,
};
use ordership_domain::{Delivery, DeliveryPolicy, Message, OrderId, SagaPolicy, topics};
use ordership_memory::{ManualClock, MemoryStore, UuidV7Ids};
use ordership_tests::fakes::FakePublisher;

pub(crate) struct World {
    pub(crate) clock: ManualClock,
    pub(crate) order_store: MemoryStore,
    pub(crate) delivery_store: MemoryStore,
    pub(crate) orders: OrderService,
    pub(crate) saga: FulfilmentOrchestrator,
    pub(crate) deliveries: DeliveryService,
    pub(crate) config: SagaPolicy,
    order_relay: OutboxRelay<dyn OrderTransaction>,
    delivery_relay: OutboxRelay<dyn DeliveryTransaction>,
    order_out: Arc<FakePublisher>,
    delivery_out: Arc<FakePublisher>,
    /// Every order event published, in order.
    pub(crate) order_events: Vec<Message>,
}

pub(crate) fn config() -> SagaPolicy {
    SagaPolicy {
        reply_timeout: std::time::Duration::from_secs(10),
        max_backoff: std::time::Duration::from_secs(60),
        max_schedule_attempts: 3,
        max_cancel_attempts: 3,
    }
}

pub(crate) use ordership_tests::fixtures::place_order as place;

/// Renders a view the way a driving adapter would; tests only need it to be deterministic.
pub(crate) fn render(view: &OrderView) -> StoredResponse {
    StoredResponse {
        status: 201,
        body: format!("{}:{}", view.order.id(), view.order.version()).into_bytes(),
    }
}

impl World {
    pub(crate) fn new() -> Self {
        Self::with_policy(DeliveryPolicy::default())
    }

    pub(crate) fn with_policy(policy: DeliveryPolicy) -> Self {
        let clock = ManualClock::new(Utc::now());
        let order_store = MemoryStore::new();
        let delivery_store = MemoryStore::new();
        let config = config();
        let order_out = Arc::new(FakePublisher::default());
        let delivery_out = Arc::new(FakePublisher::default());
        let relay_config = RelayConfig::default();
        Self {
            orders: OrderService::new(
                Arc::new(order_store.clone()),
                Arc::new(clock.clone()),
                Arc::new(UuidV7Ids),
                config.clone(),
            ),
            saga: FulfilmentOrchestrator::new(
                Arc::new(order_store.clone()),
                Arc::new(clock.clone()),
                Arc::new(UuidV7Ids),
                config.clone(),
            ),
            deliveries: DeliveryService::new(
                Arc::new(delivery_store.clone()),
                Arc::new(clock.clone()),
                Arc::new(UuidV7Ids),
                policy,
            ),
            order_relay: OutboxRelay::new(
                Arc::new(order_store.clone()),
                order_out.clone(),
                Arc::new(order_store.clone()),
                Arc::new(clock.clone()),
                relay_config.clone(),
            ),
            delivery_relay: OutboxRelay::new(
                Arc::new(delivery_store.clone()),
                delivery_out.clone(),
                Arc::new(delivery_store.clone()),
                Arc::new(clock.clone()),
                relay_config,
            ),
            clock,
            order_store,
            delivery_store,
            config,
            order_out,
            delivery_out,
            order_events: Vec::new(),
        }
    }

    pub(crate) async fn place(&self, country: &str) -> OrderId {
        match self
            .orders
            .place_order(place(country), None, None, &render)
            .await
        {
            Ok(Outcome::Done(view)) => view.order.id(),
            other => panic!("place_order: {other:?}"),
        }
    }

    /// Relays the order service's outbox; returns the commands for the delivery service
    /// (order events are kept in `order_events`).
    pub(crate) async fn commands(&mut self) -> Vec<Message> {
        self.order_relay.relay_once().await.expect("relay");
        let (events, commands): (Vec<_>, Vec<_>) = self
            .order_out
            .take()
            .into_iter()
            .partition(|m| m.topic == topics::ORDER_EVENTS);
        self.order_events.extend(events);
        commands
    }

    /// Relays the delivery service's outbox; returns its replies and events.
    pub(crate) async fn replies(&self) -> Vec<Message> {
        self.delivery_relay.relay_once().await.expect("relay");
        self.delivery_out.take()
    }

    pub(crate) async fn to_delivery(&self, messages: &[Message]) -> Vec<HandleOutcome> {
        deliver(&self.deliveries, messages).await
    }

    pub(crate) async fn to_saga(&self, messages: &[Message]) -> Vec<HandleOutcome> {
        deliver(&self.saga, messages).await
    }

    /// Delivers everything in both directions until nothing moves.
    pub(crate) async fn settle(&mut self) {
        loop {
            let commands = self.commands().await;
            self.to_delivery(&commands).await;
            let replies = self.replies().await;
            self.to_saga(&replies).await;
            if commands.is_empty() && replies.is_empty() {
                return;
            }
        }
    }

    pub(crate) async fn view(&self, id: OrderId) -> OrderView {
        self.orders
            .get_order(id, &ordership_application::OrderAccess::All)
            .await
            .expect("order")
    }

    pub(crate) async fn delivery_of(&self, id: OrderId) -> Option<Delivery> {
        self.deliveries.find_by_order(id).await.expect("delivery")
    }

    /// Moves the clock past every deadline and sweeps.
    pub(crate) async fn time_out(&self) -> ordership_application::SweepReport {
        self.clock.advance(Duration::seconds(
            i64::try_from(self.config.max_backoff.as_secs()).expect("secs") + 1,
        ));
        self.saga.sweep_overdue(100).await.expect("sweep")
    }
}

pub(crate) async fn deliver(
    handler: &dyn MessageHandler,
    messages: &[Message],
) -> Vec<HandleOutcome> {
    let mut outcomes = Vec::new();
    for m in messages {
        match handler.handle(m).await {
            Ok(o) => outcomes.push(o),
            Err(HandleError::Permanent(reason)) => panic!("{}: {reason}", m.message_type),
            Err(e) => panic!("{}: {e}", m.message_type),
        }
    }
    outcomes
}

pub(crate) fn of_type<'a>(messages: &'a [Message], message_type: &str) -> Vec<&'a Message> {
    messages
        .iter()
        .filter(|m| m.message_type == message_type)
        .collect()
}
