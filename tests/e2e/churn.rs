//! Process churn on a real broker (Tansu): two instances of each service, static group members
//! (`--kafka-instance-id`), and while orders flow one instance or another is SIGKILLed and started
//! again about every ten seconds for a minute. Nothing may be lost or done twice, every order must
//! settle, and the settled sagas per second under churn must stay at half the undisturbed rate or
//! more, both measured in this one run. A restarted static member takes its partitions back
//! without moving anyone else's, so a kill stalls only the victim's share of the partitions.
//! (Dynamic members — `ORDERSHIP_TEST_CHURN_DYNAMIC=1`, for showing the difference — leave the
//! victim's partitions idle until its session times out, and rebalance everyone.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::binary::{order, try_http};
use crate::kafka::{Cluster, assert_none_timed_out, check_invariants, count};
use crate::kafka_crash::{Service, free_port, random_below, settled};
use ordership_postgres::testing::fresh_database_url;

/// How long throughput is measured without churn, then with it.
const CALM: Duration = Duration::from_secs(15);
const CHURN: Duration = Duration::from_secs(60);

/// Sagas settled per second over `during`, from `before` settled sagas.
async fn rate(pool: &PgPool, before: i64, during: Duration) -> f64 {
    (settled(pool).await - before) as f64 / during.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_service_every_ten_seconds_for_a_minute_loses_nothing_and_every_order_settles() {
    let cluster = Cluster::tansu().await;
    let database = fresh_database_url().await;
    let dynamic = std::env::var_os("ORDERSHIP_TEST_CHURN_DYNAMIC").is_some();
    let start = |kind: &'static str, id: String| {
        let (database, cluster) = (&database, &cluster);
        async move {
            let mut extra = vec!["--kafka-instance-id", id.as_str()];
            if dynamic {
                extra.clear();
            }
            Service::start(kind, &free_port(), database, cluster, false, &extra, "10s").await
        }
    };
    let mut services = Vec::new();
    for i in 0..2 {
        services.push(start("delivery-service", format!("delivery-{i}")).await);
    }
    for i in 0..2 {
        services.push(start("order-service", format!("order-{i}")).await);
    }
    let order_addrs: Vec<String> = services[2..].iter().map(Service::addr).collect();
    let pool = PgPool::connect(&database).await.expect("database");

    // Eight clients, each placing an order and following it until it settles before placing the
    // next (a closed loop, as `ordership load` does), until told to stop. Requests are retried
    // while the order service is down; a POST keeps its key, so a retry never places twice.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..8 {
        let (addr, stop) = (order_addrs[client % 2].clone(), Arc::clone(&stop));
        clients.spawn(async move {
            let mut placed = 0;
            while !stop.load(Ordering::Relaxed) {
                let i = client * 1_000_000 + placed;
                let country = if i % 5 == 4 { "BR" } else { "KR" };
                let key = format!("churn-{i}");
                let deadline = Instant::now() + Duration::from_secs(120);
                let id = loop {
                    if let Some((201, body)) = try_http(
                        &addr,
                        "POST",
                        "/orders",
                        Some(&order(country, i)),
                        Some(&key),
                    )
                    .await
                    {
                        let order: serde_json::Value = serde_json::from_slice(&body).expect("json");
                        break order["id"].as_str().expect("id").to_owned();
                    }
                    assert!(Instant::now() < deadline, "order {key} was never accepted");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                placed += 1;
                let path = format!("/orders/{id}");
                loop {
                    if let Some((200, body)) = try_http(&addr, "GET", &path, None, None).await {
                        let order: serde_json::Value = serde_json::from_slice(&body).expect("json");
                        if !matches!(
                            order["saga"]["state"].as_str(),
                            Some("awaiting_delivery" | "cancelling")
                        ) {
                            break;
                        }
                    }
                    assert!(
                        Instant::now() < deadline,
                        "order {key} did not settle in two minutes"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            placed
        });
    }

    let before = settled(&pool).await;
    tokio::time::sleep(CALM).await;
    let calm = rate(&pool, before, CALM).await;

    let churn_started = Instant::now();
    let before = settled(&pool).await;
    let mut kills = 0;
    while churn_started.elapsed() < CHURN {
        // Every 8–12 s, a delivery and an order instance in turn, down for up to a second.
        tokio::time::sleep(Duration::from_millis(8_000 + random_below::<u64>(4_000))).await;
        let victim = &mut services[(kills % 2) * 2 + random_below::<usize>(2)];
        victim.kill().await;
        tokio::time::sleep(Duration::from_millis(random_below::<u64>(1_000))).await;
        victim.restart().await;
        kills += 1;
    }
    let churned = churn_started.elapsed();
    let under_churn = rate(&pool, before, churned).await;
    stop.store(true, Ordering::Relaxed);
    let mut placed = 0;
    while let Some(done) = clients.join_next().await {
        placed += done.expect("client");
    }

    assert_eq!(
        count(&pool, "SELECT count(*) FROM orders.orders").await,
        i64::try_from(placed).expect("small"),
        "one order per key"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let waiting =
        "SELECT count(*) FROM orders.sagas WHERE state IN ('awaiting_delivery', 'cancelling')";
    while count(&pool, waiting).await > 0 {
        assert!(
            Instant::now() < deadline,
            "orders still unsettled two minutes after the churn"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check_invariants(&pool).await;
    assert_none_timed_out(&pool).await;
    let p99: f64 = sqlx::query_scalar(
        "SELECT coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM s.updated_at - o.created_at)), 0)::float8 \
         FROM orders.orders o JOIN orders.sagas s ON s.order_id = o.id",
    )
    .fetch_one(&pool)
    .await
    .expect("p99");
    let resent = count(
        &pool,
        "SELECT count(*) FROM orders.sagas WHERE attempts > 1",
    )
    .await;
    let ratio = under_churn / calm.max(f64::EPSILON);
    eprintln!(
        "churn ({} members): {kills} kills in {churned:.0?}; {placed} orders; sagas/s calm {calm:.1}, under churn {under_churn:.1} (ratio {ratio:.2}); settle p99 {p99:.2} s; sagas that re-sent {resent}",
        if dynamic { "dynamic" } else { "static" }
    );
    assert!(kills >= 5, "{kills} kills");
    Service::stop_all(services, cluster, pool, &database).await;
    assert!(
        ratio >= 0.5,
        "under churn {under_churn:.1} sagas/s is less than half of the undisturbed {calm:.1}"
    );
}
