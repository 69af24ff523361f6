//! The embedded system in this process, driven through its HTTP router.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ordership::wiring::Embedded;
use ordership::wiring::SystemConfig;
use ordership_application::{RelayConfig, RetentionConfig};
use ordership_domain::ports::MessageHandler;
use ordership_domain::{Order, SagaState, topics};
use ordership_memory::{BusConfig, RowCounts};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::invariants::{EventRecorder, assert_invariants};

const SERVED: [&str; 6] = ["KR", "JP", "US", "DE", "GB", "FR"];
const UNSERVED: [&str; 3] = ["BR", "CN", "ZA"];

fn order_body(i: usize) -> (Value, bool) {
    let served = i % 4 != 3;
    let country = if served {
        SERVED[i % SERVED.len()]
    } else {
        UNSERVED[i % UNSERVED.len()]
    };
    let body = json!({
        "lines": [{ "sku": "ABC-123", "quantity": 1 + i % 5, "unit_price": { "amount": 1250, "currency": "KRW" } }],
        "shipping_address": { "recipient": "Kim", "line1": "1 Sejong-daero", "city": "Seoul",
                              "postal_code": "04524", "country": country }
    });
    (body, served)
}

async fn place(system: &Embedded, body: &Value, key: usize) -> Value {
    let request = Request::post("/orders")
        .header("content-type", "application/json")
        .header(
            "authorization",
            format!("Bearer {}", crate::binary::token()),
        )
        .header("idempotency-key", format!("k-{key}"))
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = system
        .app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::CREATED);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("json")
}

/// Waits until no saga waits for a reply any more; returns the orders as read together with
/// their sagas.
async fn wait_until_settled(system: &Embedded, count: usize) -> Vec<Order> {
    let deadline = Instant::now() + Duration::from_secs(60);
    'poll: loop {
        assert!(Instant::now() < deadline, "orders did not settle in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let ids: Vec<_> = system
            .order_store
            .orders()
            .await
            .iter()
            .map(Order::id)
            .collect();
        if ids.len() < count {
            continue;
        }
        let mut settled = Vec::with_capacity(ids.len());
        for id in ids {
            let view = system
                .app
                .orders
                .as_ref()
                .expect("order service")
                .get_order(id, &ordership_application::OrderAccess::All)
                .await
                .expect("order");
            if view.saga.expect("saga").state().is_waiting() {
                continue 'poll;
            }
            settled.push(view.order);
        }
        return settled;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_orders_reach_the_expected_terminal_state_despite_redelivery() {
    let config = SystemConfig {
        bus: BusConfig {
            redelivery_probability: 0.2,
            ..BusConfig::default()
        },
        relay: RelayConfig {
            poll_interval: Duration::from_millis(20),
            ..RelayConfig::default()
        },
        authenticator: Arc::new(crate::binary::dev_key().authenticator()),
        ..SystemConfig::default()
    };
    let system = Arc::new(Embedded::start(&config));
    let recorder = Arc::new(EventRecorder::default());
    let handler: Arc<dyn MessageHandler> = recorder.clone();
    system.app.bus().expect("in-process bus").subscribe(
        topics::ORDER_EVENTS,
        "test-recorder",
        &handler,
    );

    const ORDERS: usize = 1000;
    let mut expected = std::collections::HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(50));
    for i in 0..ORDERS {
        let (body, served) = order_body(i);
        let system = system.clone();
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        tasks.spawn(async move {
            let _permit = permit;
            (
                place(&system, &body, i).await["id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
                served,
            )
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (id, served) = done.expect("task");
        expected.insert(id, served);
    }

    let orders = wait_until_settled(&system, ORDERS).await;
    let deliveries = system.delivery_store.deliveries().await;
    assert_invariants(&orders, &deliveries, &|o| expected[&o.id().to_string()]);
    for order in orders.iter().filter(|o| !expected[&o.id().to_string()]) {
        let saga = system
            .app
            .orders
            .as_ref()
            .expect("order service")
            .get_order(order.id(), &ordership_application::OrderAccess::All)
            .await
            .expect("order")
            .saga
            .expect("saga");
        assert_eq!(saga.state(), SagaState::Compensated);
        assert!(order.cancellation_reason().is_some());
    }

    // Every committed outbox message reached the bus.
    for store in [&system.order_store, &system.delivery_store] {
        assert!(
            store
                .outbox_messages()
                .await
                .iter()
                .all(|(_, published)| *published)
        );
    }
    // Redeliveries happened, and the inboxes discarded them.
    let bus = system.app.bus().expect("in-process bus");
    assert!(bus.stats().redelivered.load(Relaxed) > 0);
    assert!(
        bus.consumer_stats().duplicates_discarded.load(Relaxed) > 0,
        "duplicates were delivered and discarded"
    );
    assert!(
        system
            .app
            .bus()
            .expect("in-process bus")
            .dead_letters()
            .is_empty(),
        "{:?}",
        system.app.bus().expect("in-process bus").dead_letters()
    );
    // Order events: every order's, in order, despite redelivery (the recorder saw duplicates).
    let recorder_done = Instant::now() + Duration::from_secs(10);
    while let Err(problem) = recorder.check_in_order(&orders) {
        assert!(Instant::now() < recorder_done, "order events: {problem}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recorder.duplicates() > 0);

    Arc::into_inner(system)
        .expect("sole owner")
        .app
        .shutdown()
        .await;
}

/// Polls `done` on the order and delivery stores' row counts until it holds.
async fn wait_for_rows(
    system: &Embedded,
    what: &str,
    done: impl Fn(RowCounts, RowCounts) -> bool,
) -> (RowCounts, RowCounts) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = (
            system.order_store.row_counts().await,
            system.delivery_store.row_counts().await,
        );
        if done(rows.0, rows.1) {
            return rows;
        }
        assert!(Instant::now() < deadline, "{what}: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_what_is_older_than_its_window_and_keeps_what_is_newer() {
    let window = Duration::from_secs(2);
    let config = SystemConfig {
        retention: RetentionConfig {
            outbox: window,
            inbox: window,
            idempotency_keys: window,
            interval: Duration::from_millis(50),
            ..RetentionConfig::default()
        },
        relay: RelayConfig {
            poll_interval: Duration::from_millis(20),
            ..RelayConfig::default()
        },
        authenticator: Arc::new(crate::binary::dev_key().authenticator()),
        ..SystemConfig::default()
    };
    let system = Embedded::start(&config);
    for i in 0..5 {
        place(&system, &order_body(i * 4).0, i * 4).await;
    }
    wait_until_settled(&system, 5).await;
    let (orders, deliveries) = wait_for_rows(&system, "the first orders' rows", |o, d| {
        o.outbox > 0 && o.inbox > 0 && o.idempotency_keys == 5 && d.outbox > 0 && d.inbox > 0
    })
    .await;
    assert!(
        orders.outbox >= 10,
        "OrderPlaced, ScheduleDelivery, OrderConfirmed per order"
    );
    // Past the window every one of them goes, in both services.
    wait_for_rows(&system, "rows past retention", |o, d| {
        o == RowCounts::default() && d == RowCounts::default()
    })
    .await;
    assert!(deliveries.outbox >= 5);

    // Newer rows stay while they are inside the window.
    place(&system, &order_body(100).0, 100).await;
    wait_until_settled(&system, 6).await;
    let (orders, deliveries) = wait_for_rows(&system, "the new order's rows", |o, d| {
        o.outbox >= 3 && o.inbox >= 1 && d.inbox >= 1
    })
    .await;
    assert_eq!(orders.idempotency_keys, 1, "only the new order's key");
    assert!(deliveries.outbox >= 1);
    system.app.shutdown().await;
}
