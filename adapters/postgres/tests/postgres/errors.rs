use std::time::Duration;

use ordership_domain::OrderId;
use ordership_domain::ports::{OrderTransaction, StoreError, UnitOfWork};
use ordership_postgres::testing::{create_database, database_url, fresh_database_url};
use ordership_postgres::{DELIVERY, ORDERS, PgConfig, PgOrderStore, connect};

#[tokio::test]
async fn an_unreachable_database_is_unavailable_not_a_panic() {
    let config = PgConfig {
        acquire_timeout: Duration::from_millis(500),
        ..PgConfig::new("postgres://postgres@127.0.0.1:1/none")
    };
    let store = PgOrderStore::new(connect(&config).expect("lazy pool"));
    let error = UnitOfWork::<dyn OrderTransaction>::begin(&store)
        .await
        .err()
        .expect("must fail");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_statement_over_its_timeout_is_unavailable() {
    let url = fresh_database_url().await;
    let store = PgOrderStore::new(connect(&PgConfig::new(&url)).expect("pool"));
    let impatient = PgOrderStore::new(
        connect(&PgConfig {
            statement_timeout: Duration::from_millis(200),
            ..PgConfig::new(&url)
        })
        .expect("pool"),
    );
    let order = crate::harness::place("KR");
    let id = OrderId::from_uuid(uuid::Uuid::now_v7());
    let (order, _) = ordership_domain::Order::place(id, order, chrono::Utc::now());
    let saga = ordership_domain::FulfilmentSaga::start(id, chrono::Utc::now(), chrono::Utc::now());
    let mut tx = UnitOfWork::<dyn OrderTransaction>::begin(&store)
        .await
        .expect("begin");
    tx.orders().insert(&order).await.expect("insert");
    tx.sagas().insert(&saga).await.expect("insert");
    tx.commit().await.expect("commit");

    // One transaction holds the saga's lock; the other waits past its statement timeout.
    let mut holder = UnitOfWork::<dyn OrderTransaction>::begin(&store)
        .await
        .expect("begin");
    holder.sagas().get_for_update(id).await.expect("lock");
    let mut waiter = UnitOfWork::<dyn OrderTransaction>::begin(&impatient)
        .await
        .expect("begin");
    let error = waiter
        .sagas()
        .get_for_update(id)
        .await
        .expect_err("times out");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(
        waiter.commit().await.is_err(),
        "an aborted transaction does not commit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_safely_twice_at_once_and_can_be_reverted() {
    let url = database_url(&create_database().await);
    let pool = connect(&PgConfig::new(&url)).expect("pool");
    let (a, b) = tokio::join!(ORDERS.migrate(&pool), ORDERS.migrate(&pool));
    a.expect("first");
    b.expect("second");
    DELIVERY.migrate(&pool).await.expect("delivery");
    ORDERS.migrate(&pool).await.expect("idempotent");
    ORDERS.undo(&pool, 0).await.expect("undo");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'orders' AND tablename = 'orders'",
    )
    .fetch_one(&pool)
    .await
    .expect("query");
    assert_eq!(tables, 0, "reverted");
    ORDERS.migrate(&pool).await.expect("again");
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname IN ('orders', 'delivery') AND tablename NOT LIKE '\\_sqlx%'")
        .fetch_one(&pool)
        .await
        .expect("query");
    assert_eq!(
        tables, 21,
        "8 tables, the published messages of both outboxes, the waiting rooms and their stock, the saga history, the two dead-letter indexes, the two cdc_slot records, and both outboxes' shards and relay instances"
    );
}
