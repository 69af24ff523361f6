use std::sync::Arc;
use std::time::Duration;

use ordership_application::{OutboxRelay, RelayConfig};
use ordership_domain::ports::{OrderTransaction, OutboxSignal, UnitOfWork};
use ordership_domain::{Message, MessageId, OrderId};
use ordership_memory::SystemClock;
use ordership_postgres::testing::fresh_database;
use ordership_postgres::{ORDERS, PgOrderStore, PgOutboxSignal};

use crate::harness::{FakePublisher, message};

#[tokio::test]
async fn a_message_committed_late_with_a_lower_id_is_still_published() {
    let pool = fresh_database().await;
    let store = PgOrderStore::new(pool.clone());
    let captured = Arc::new(FakePublisher::default());
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

/// Publishes its first batch only when the test lets it, telling the test when it got it; the
/// batches after it at once.
struct Gated {
    entered: Arc<tokio::sync::Notify>,
    gate: Arc<tokio::sync::Notify>,
    opened: std::sync::atomic::AtomicBool,
    captured: FakePublisher,
}

#[async_trait::async_trait]
impl ordership_domain::ports::MessagePublisher for Gated {
    async fn publish(
        &self,
        batch: &[Message],
    ) -> Result<(), ordership_domain::ports::PublishError> {
        if !self.opened.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.entered.notify_one();
            self.gate.notified().await;
        }
        self.captured.publish(batch).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_relay_waits_while_the_first_publishes_so_one_key_stays_in_order() {
    let pool = fresh_database().await;
    let store = PgOrderStore::new(pool.clone());
    let key = OrderId::from_uuid(uuid::Uuid::now_v7()).to_string();
    let mut tx = UnitOfWork::<dyn OrderTransaction>::begin(&store)
        .await
        .expect("begin");
    let mut sent = Vec::new();
    for n in 0..10 {
        let mut m = message(n);
        m.key.clone_from(&key);
        tx.outbox().append(&m).await.expect("append");
        sent.push(m.id);
    }
    tx.commit().await.expect("commit");

    let config = RelayConfig {
        batch_size: 5,
        ..RelayConfig::default()
    };
    let relay = |publisher: Arc<dyn ordership_domain::ports::MessagePublisher>| -> OutboxRelay<dyn OrderTransaction> {
        OutboxRelay::new(
            Arc::new(store.clone()),
            publisher,
            Arc::new(PgOutboxSignal::new(pool.clone(), &ORDERS)),
            Arc::new(SystemClock),
            config.clone(),
        )
    };
    let first = Arc::new(Gated {
        entered: Arc::default(),
        gate: Arc::default(),
        opened: std::sync::atomic::AtomicBool::new(false),
        captured: FakePublisher::default(),
    });
    let second = Arc::new(FakePublisher::default());
    let (relay_a, relay_b) = (Arc::new(relay(first.clone())), relay(second.clone()));

    // Relay A claims messages 1-5 and hangs in publishing them.
    let a = {
        let relay_a = relay_a.clone();
        tokio::spawn(async move { relay_a.relay_once().await })
    };
    tokio::time::timeout(Duration::from_secs(10), first.entered.notified())
        .await
        .expect("A is publishing");
    // Meanwhile B must not publish 6-10 ahead of them.
    assert_eq!(relay_b.relay_once().await.expect("relay"), 0);
    assert!(
        second.take().is_empty(),
        "a second relay published while the first held its batch"
    );

    first.gate.notify_one();
    // A goes on with 6-10 in the same transaction (batches overlap), then B finds nothing left.
    assert_eq!(a.await.expect("task").expect("relay"), 10);
    assert_eq!(relay_b.relay_once().await.expect("relay"), 0);
    let order: Vec<MessageId> = first
        .captured
        .take()
        .into_iter()
        .chain(second.take())
        .map(|m| m.id)
        .collect();
    assert_eq!(order, sent, "one key, published in outbox order");
}
