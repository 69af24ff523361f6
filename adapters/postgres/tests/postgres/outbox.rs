use std::sync::Arc;
use std::time::Duration;

use ordership_application::{OutboxRelay, RelayConfig};
use ordership_domain::ports::{OrderTransaction, OutboxSignal, UnitOfWork};
use ordership_domain::{Message, MessageId, OrderId, topics};
use ordership_memory::SystemClock;
use ordership_postgres::testing::fresh_database;
use ordership_postgres::{ORDERS, PgOrderStore, PgOutboxSignal};

use crate::harness::Captured;

fn message(n: u32) -> Message {
    let order = OrderId::from_uuid(uuid::Uuid::now_v7());
    Message {
        id: MessageId::from_uuid(uuid::Uuid::now_v7()),
        topic: topics::ORDER_EVENTS.to_owned(),
        key: order.to_string(),
        message_type: "ordership.test.v1".to_owned(),
        source: "/test".to_owned(),
        payload: serde_json::json!({ "n": n }),
        correlation_id: *order.as_uuid(),
        causation_id: None,
        traceparent: None,
        occurred_at: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn a_message_committed_late_with_a_lower_id_is_still_published() {
    let pool = fresh_database().await;
    let store = PgOrderStore::new(pool.clone());
    let captured = Arc::new(Captured::default());
    let relay: OutboxRelay<dyn OrderTransaction> = OutboxRelay::new(
        Arc::new(store.clone()),
        captured.clone(),
        Arc::new(PgOutboxSignal::new(pool.clone(), &ORDERS)),
        Arc::new(SystemClock),
        RelayConfig::default(),
    );
    let (late, early) = (message(1), message(2));

    // A takes outbox id N and stays open; B takes N+1 and commits; the relay publishes B.
    let mut a = UnitOfWork::<dyn OrderTransaction>::begin(&store)
        .await
        .expect("begin");
    a.outbox().append(&late).await.expect("append");
    let mut b = UnitOfWork::<dyn OrderTransaction>::begin(&store)
        .await
        .expect("begin");
    b.outbox().append(&early).await.expect("append");
    b.commit().await.expect("commit");
    assert_eq!(relay.relay_once().await.expect("relay"), 1);
    assert_eq!(
        captured.take().iter().map(|m| m.id).collect::<Vec<_>>(),
        [early.id]
    );

    // A commits after N+1 was published: a high-water mark would skip it forever.
    a.commit().await.expect("commit");
    assert_eq!(relay.relay_once().await.expect("relay"), 1);
    assert_eq!(
        captured.take().iter().map(|m| m.id).collect::<Vec<_>>(),
        [late.id]
    );
    assert_eq!(
        crate::harness::count(
            &pool,
            "SELECT count(*) FROM orders.outbox WHERE published_at IS NULL"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_commit_to_the_outbox_wakes_the_listener() {
    let pool = fresh_database().await;
    let store = PgOrderStore::new(pool.clone());
    let signal = Arc::new(PgOutboxSignal::new(pool.clone(), &ORDERS));
    // The first call connects and starts listening; nothing is pending yet, so it waits.
    let waiting = {
        let signal = signal.clone();
        tokio::spawn(async move { signal.committed().await })
    };
    // Give LISTEN a moment to be registered before the NOTIFY: poll the server for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let listening: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
                .fetch_one(&pool)
                .await
                .expect("query");
        if listening > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "LISTEN never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut tx = UnitOfWork::<dyn OrderTransaction>::begin(&store)
        .await
        .expect("begin");
    tx.outbox().append(&message(1)).await.expect("append");
    tx.commit().await.expect("commit");
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken by NOTIFY within 5 s")
        .expect("task");
}
