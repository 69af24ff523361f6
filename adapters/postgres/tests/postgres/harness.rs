use std::sync::Arc;

use ordership_application::{DeliveryService, FulfilmentOrchestrator, OrderService, OrderView};
use ordership_domain::ports::StoredResponse;
use ordership_domain::{DeliveryPolicy, Message};
use ordership_memory::{SystemClock, UuidV7Ids};
use ordership_postgres::{PgDeliveryStore, PgOrderStore};
use sqlx::PgPool;

pub(crate) fn clock() -> Arc<SystemClock> {
    Arc::new(SystemClock)
}

pub(crate) fn ids() -> Arc<UuidV7Ids> {
    Arc::new(UuidV7Ids)
}

pub(crate) struct Services {
    pub(crate) pool: PgPool,
    pub(crate) orders: OrderService,
    pub(crate) saga: FulfilmentOrchestrator,
    pub(crate) deliveries: DeliveryService,
}

pub(crate) fn services(pool: &PgPool, policy: DeliveryPolicy) -> Services {
    let order_store = Arc::new(PgOrderStore::new(pool.clone()));
    Services {
        pool: pool.clone(),
        orders: OrderService::new(
            order_store.clone(),
            clock(),
            ids(),
            ordership_domain::SagaPolicy::default(),
        ),
        saga: FulfilmentOrchestrator::new(
            order_store,
            clock(),
            ids(),
            ordership_domain::SagaPolicy::default(),
        ),
        deliveries: DeliveryService::new(
            Arc::new(PgDeliveryStore::new(pool.clone())),
            clock(),
            ids(),
            policy,
        ),
    }
}

pub(crate) use ordership_tests::fixtures::place_order as place;

impl Services {
    /// Places an order to `country` (no key, no admission); its id.
    pub(crate) async fn place(&self, country: &str) -> ordership_domain::OrderId {
        match self
            .orders
            .place_order(place(country), None, None, &render)
            .await
            .expect("placed")
        {
            ordership_application::Outcome::Done(view) => view.order.id(),
            ordership_application::Outcome::Replayed(_) => panic!("a new order was replayed"),
        }
    }
}

/// The delivery service's reply that `order`'s delivery is scheduled, as it would send it.
pub(crate) fn scheduled(order: ordership_domain::OrderId, delivery: uuid::Uuid) -> Message {
    let payload = ordership_application::messages::DeliveryScheduledV1 {
        order_id: *order.as_uuid(),
        delivery_id: delivery,
        eta: chrono::Utc::now(),
    };
    envelope()
        .wrap(
            ordership_domain::topics::DELIVERY_EVENTS,
            ordership_application::messages::types::DELIVERY_SCHEDULED,
            order,
            &payload,
        )
        .expect("message")
}

pub(crate) fn render(view: &OrderView) -> StoredResponse {
    StoredResponse {
        status: 201,
        body: view.order.id().to_string().into_bytes(),
    }
}

/// Counts rows of a table (test inspection only).
pub(crate) async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("count")
}

/// An outbox message about a new order; every attribute set, the time at the database's
/// precision, so it survives a round trip unchanged.
pub(crate) fn message(n: u32) -> Message {
    let order = ordership_domain::OrderId::from_uuid(uuid::Uuid::now_v7());
    Message {
        id: ordership_domain::MessageId::from_uuid(uuid::Uuid::now_v7()),
        topic: ordership_domain::topics::ORDER_EVENTS.to_owned(),
        key: order.to_string(),
        message_type: "ordership.test.v1".to_owned(),
        source: "/test".to_owned(),
        payload: serde_json::json!({ "n": n, "text": "naïve \"quoted\" \\ line\nbreak" }),
        correlation_id: *order.as_uuid(),
        causation_id: Some(ordership_domain::MessageId::from_uuid(uuid::Uuid::now_v7())),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
        occurred_at: chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6),
    }
}

pub(crate) use ordership_tests::fixtures::envelope;

pub(crate) use ordership_tests::fakes::FakePublisher;

/// A wake-up of the order service's outbox signal, awaited on a task of its own, returned once its
/// `LISTEN` is registered on the server (so a commit after this is seen).
pub(crate) async fn listening_to_the_outbox(
    pool: &PgPool,
) -> tokio::task::JoinHandle<ordership_domain::ports::Committed> {
    use ordership_domain::ports::OutboxSignal as _;
    let signal = ordership_postgres::PgOutboxSignal::new(pool.clone(), &ordership_postgres::ORDERS);
    let waiting = tokio::spawn(async move { signal.committed().await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' \
             AND datname = current_database()",
        )
        .fetch_one(pool)
        .await
        .expect("query");
        if listening > 0 {
            return waiting;
        }
        assert!(std::time::Instant::now() < deadline, "LISTEN never started");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
