use std::sync::Arc;
use std::time::Duration;

use ordership_application::{OutboxRelay, RelayConfig};
use ordership_domain::ports::{OrderTransaction, UnitOfWork};
use ordership_domain::{Message, MessageId, OrderId};
use ordership_memory::SystemClock;
use ordership_postgres::testing::fresh_database;
use ordership_postgres::{ORDERS, PgOrderStore, PgOutboxSignal};

use crate::harness::{FakePublisher, message};

/// A relay over the order store's outbox that publishes into `captured`.
fn captured_relay(
    store: &PgOrderStore,
    captured: &Arc<FakePublisher>,
    config: RelayConfig,
) -> OutboxRelay<dyn OrderTransaction> {
    OutboxRelay::new(
        Arc::new(store.clone()),
        captured.clone(),
        Arc::new(PgOutboxSignal::new(store.pool().clone(), &ORDERS)),
        Arc::new(SystemClock),
        config,
    )
}

#[tokio::test]
async fn a_message_committed_late_with_a_lower_id_is_still_published() {
    let pool = fresh_database().await;
    let store = PgOrderStore::new(pool.clone());
    let captured = Arc::new(FakePublisher::default());
    let relay = captured_relay(&store, &captured, RelayConfig::default());
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
        crate::harness::count(&pool, "SELECT count(*) FROM orders.outbox").await,
        0
    );
}

#[tokio::test]
async fn a_commit_to_the_outbox_wakes_the_listener() {
    let pool = fresh_database().await;
    let store = PgOrderStore::new(pool.clone());
    // The first call connects and starts listening; nothing is pending yet, so it waits.
    let waiting = crate::harness::listening_to_the_outbox(&pool).await;
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

/// `rows` outbox messages of one order each, committed in one statement (CDC mode: deleted again
/// at once, as the CDC-mode outbox does).
async fn fill(pool: &sqlx::PgPool, rows: i64, cdc: bool) {
    let insert = "INSERT INTO orders.outbox (message_id, topic, key, message_type, payload, headers, created_at) \
         SELECT gen_random_uuid(), 'ordership.order.events', 'order-' || i, 'ordership.test.v1', \
         jsonb_build_object('n', i, 'filler', repeat('x', 200)), \
         jsonb_build_object('source', '/test', 'correlation_id', gen_random_uuid()), now() \
         FROM generate_series(1, $1) i";
    sqlx::query(insert)
        .bind(rows)
        .execute(pool)
        .await
        .expect("fill the outbox");
    if cdc {
        sqlx::query("DELETE FROM orders.outbox")
            .execute(pool)
            .await
            .expect("delete as CDC mode does");
    }
}

/// What a table's autovacuum would do is taken out of the figures: the upkeep must suffice alone.
async fn without_autovacuum(pool: &sqlx::PgPool) {
    sqlx::query("ALTER TABLE orders.outbox SET (autovacuum_enabled = false)")
        .execute(pool)
        .await
        .expect("autovacuum off for the outbox");
}

#[tokio::test]
async fn the_relays_claim_costs_what_is_waiting_not_what_was_published_before() {
    use ordership_postgres::testing::{OutboxStatement, outbox_statement_buffers};
    let pool = fresh_database().await;
    without_autovacuum(&pool).await;
    let store = PgOrderStore::new(pool.clone());
    let captured = Arc::new(FakePublisher::default());
    let relay = captured_relay(
        &store,
        &captured,
        RelayConfig {
            batch_size: 1000,
            ..RelayConfig::default()
        },
    );
    let claim = || outbox_statement_buffers(&pool, &ORDERS, OutboxStatement::Claim);
    fill(&pool, 10, false).await;
    let fresh = claim().await;

    // 20,000 messages published through the relay, then as many waiting as at first.
    fill(&pool, 20_000, false).await;
    let mut published = 0;
    while published < 20_010 {
        published += relay.relay_once().await.expect("relay");
    }
    assert_eq!(captured.take().len(), 20_010);
    fill(&pool, 10, false).await;
    let before_upkeep = claim().await;
    UnitOfWork::<dyn OrderTransaction>::upkeep(&store)
        .await
        .expect("upkeep");
    let after_upkeep = claim().await;

    assert!(
        before_upkeep > 20 * fresh,
        "what the published rows left makes a claim dear until the upkeep ({before_upkeep} pages, {fresh} fresh)"
    );
    assert!(
        after_upkeep <= 2 * fresh + 4,
        "after the upkeep a claim costs what it cost on a fresh outbox: {after_upkeep} pages, {fresh} fresh"
    );
    assert_eq!(
        crate::harness::count(&pool, "SELECT count(*) FROM orders.outbox_published").await,
        20_010,
        "published messages are kept for their retention"
    );
}

#[tokio::test]
async fn in_cdc_mode_the_backlog_figures_cost_no_more_as_messages_pass() {
    use ordership_postgres::testing::{OutboxStatement, outbox_statement_buffers};
    let pool = fresh_database().await;
    without_autovacuum(&pool).await;
    let store =
        PgOrderStore::new(pool.clone()).with_outbox_mode(ordership_postgres::OutboxMode::Cdc);
    let stats = || outbox_statement_buffers(&pool, &ORDERS, OutboxStatement::Stats);
    let upkeep = || UnitOfWork::<dyn OrderTransaction>::upkeep(&store);

    // Written and removed again: all that stays is the room the rows took, given back by the
    // upkeep and taken again by the next ones, so the table grows no further.
    fill(&pool, 20_000, true).await;
    let one_pass = stats().await;
    for _ in 0..2 {
        upkeep().await.expect("upkeep");
        fill(&pool, 20_000, true).await;
    }
    upkeep().await.expect("upkeep");
    let three_passes = stats().await;
    assert!(
        three_passes <= one_pass + 4,
        "three times as many messages passed, and the figures cost no more: {three_passes} pages, {one_pass} after one pass"
    );
}
