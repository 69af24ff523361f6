//! Pushed outcomes across instances: a reader following an order on one instance is woken by a
//! step another instance commits (the saga history's trigger, `LISTEN/NOTIFY`).

use std::sync::Arc;
use std::time::Duration;

use ordership_application::{OrderAccess, OrderUpdates, OrderWatches, ShutdownTrigger};
use ordership_domain::ports::{HandleOutcome, MessageHandler};
use ordership_domain::{DeliveryPolicy, OrderStatus, SagaState};
use ordership_postgres::testing::fresh_database_url;
use ordership_postgres::{PgConfig, PgOrderChanges, PgOrderStore, connect};
use sqlx::PgPool;
use tokio::time::Instant;

use crate::harness::{scheduled, services};

/// Waits until `n` sessions of the database `LISTEN`.
async fn listening(pool: &PgPool, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sessions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(pool)
        .await
        .expect("query");
        if sessions >= n {
            return;
        }
        assert!(Instant::now() < deadline, "LISTEN never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_on_one_instance_sees_each_step_another_instance_commits_within_100_ms() {
    let url = fresh_database_url().await;
    let pool = |_| connect(&PgConfig::new(&url)).expect("pool");
    let (pool_a, pool_b): (PgPool, PgPool) = (pool(0), pool(1));
    // Instance A: places the order and follows it.
    let a = services(&pool_a, DeliveryPolicy::default());
    let (stop, shutdown) = ShutdownTrigger::new();
    let watches = OrderWatches::new(ordership_application::WatchLimits::default());
    tokio::spawn({
        let (watches, shutdown) = (watches.clone(), shutdown.clone());
        let feed = Arc::new(PgOrderChanges::new(pool_a.clone()));
        async move { watches.run(feed, shutdown).await }
    });
    let updates = OrderUpdates::new(Arc::new(PgOrderStore::new(pool_a.clone())), watches)
        .with_shutdown(shutdown);
    // Instance B: handles the delivery service's reply.
    let b = services(&pool_b, DeliveryPolicy::default());

    let id = a.place("KR").await;
    let stream = updates
        .follow(id, &OrderAccess::All, "c-42")
        .expect("follow");
    let placed = stream.updates_after(Some(0)).await.expect("history");
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_eq!(placed[0].status, OrderStatus::Pending);
    assert!(!placed[0].settled());

    // A long poll on A, from the state the order is in.
    let mut poll = updates
        .follow(id, &OrderAccess::All, "c-42")
        .expect("follow");
    let long_poll = tokio::spawn(async move {
        let start = poll.view().await.expect("view").order.version();
        let deadline = Instant::now() + Duration::from_secs(10);
        while poll.changed_before(deadline).await {
            if poll.view().await.expect("view").order.version() != start {
                return Some(Instant::now());
            }
        }
        None
    });
    listening(&pool_a, 1).await;

    let reply = scheduled(id, uuid::Uuid::now_v7());
    assert_eq!(
        b.saga.handle(&reply).await.expect("handled"),
        HandleOutcome::Applied
    );
    let committed = Instant::now();

    let answered = long_poll
        .await
        .expect("task")
        .expect("the long poll answered before its deadline");
    let after = answered.saturating_duration_since(committed);
    assert!(
        after < Duration::from_millis(100),
        "answered {after:?} after the commit"
    );

    let rest = stream
        .updates_after(Some(placed[0].seq))
        .await
        .expect("history");
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert!(rest[0].seq > placed[0].seq, "in order");
    assert_eq!(rest[0].status, OrderStatus::Confirmed);
    assert_eq!(
        rest[0].saga.as_ref().map(|s| s.state),
        Some(SagaState::Completed)
    );
    assert!(rest[0].settled(), "the last step of the saga");
    stop.trigger();
}
