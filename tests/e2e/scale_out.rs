//! Scale-out: two order services and two delivery services on one database and one real broker
//! (Tansu, each instance a static group member), driven by two load generators at once — one
//! placing orders, one running a flash sale whose waiting room, on Redis, both order services
//! share. Each instance must do a real share of its group's work (at least a quarter of the
//! messages its consumer group handled, and of what its outbox published). Then one instance of
//! each service is SIGKILLed mid-run: the survivors take over every partition and every outbox
//! shard, nothing is lost, no effect happens twice, and each order's events stay in order.
//!
//! What goes red: without the shards' leases being taken over, the dead instances' shards are
//! never published and their orders never settle; without consumer-group membership (each
//! instance consuming everything) the shares are 100 % each and the inboxes discard half of what
//! arrives; without the inbox, the messages redelivered after the kill (handled, their offsets not
//! yet committed) are not discarded — the test asserts some were — and apply twice (a second
//! delivery for an order, which `check_invariants` counts).

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;

use crate::binary::{command, http};
use crate::kafka::{Cluster, EventOrderCheck, check_invariants, count};
use crate::kafka_crash::{Service, free_port};
use ordership_postgres::testing::fresh_database_url;

const ORDER_GROUP: &str = "order-service.saga";
const DELIVERY_GROUP: &str = "delivery-service.commands";
/// The topics' partitions (the services' default) and the outboxes' shards (the migration's).
const PARTITIONS: f64 = 4.0;
const SHARDS: f64 = 4.0;

/// The sum of `metric`'s samples whose labels include `label` (all of them when empty).
async fn metric(addr: &str, metric: &str, label: &str) -> f64 {
    let (status, body) = http(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200, "metrics of {addr}");
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|line| line.starts_with(metric) && line[metric.len()..].starts_with(['{', ' ']))
        .filter(|line| label.is_empty() || line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn partitions(addr: &str, group: &str) -> f64 {
    let label = format!("group=\"{group}\"");
    metric(addr, "ordership_consumer_assigned_partitions", &label).await
}

async fn shards(addr: &str) -> f64 {
    metric(addr, "ordership_relay_shards_leased", "").await
}

/// Polls until `done` holds (every 100 ms), at most `limit`; how long it took.
async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// `ordership load` with these arguments; its JSON report, after checking it exited 0.
async fn load(args: &[&str]) -> Value {
    let output = command()
        .arg("load")
        .args(args)
        .args(["--json", "--deadline", "120s", "--stall-limit", "90s"])
        .output()
        .await
        .expect("ordership load runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "load {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("a JSON report")
}

/// Orders of a load report that ended confirmed or cancelled.
fn settled(report: &Value) -> u64 {
    ["confirmed", "cancelled"]
        .iter()
        .filter_map(|o| report["outcomes"][o].as_u64())
        .sum()
}

/// Each of `addrs`' share of `metric` (with `label`), asserted to be at least a quarter.
async fn shares(what: &str, addrs: &[&str], name: &str, label: &str) -> Vec<f64> {
    let mut counts = Vec::new();
    for addr in addrs {
        counts.push(metric(addr, name, label).await);
    }
    let total: f64 = counts.iter().sum();
    let shares: Vec<f64> = counts.iter().map(|c| c / total.max(1.0)).collect();
    eprintln!("{what}: {counts:?} of {total}, shares {shares:.2?}");
    assert!(
        shares.iter().all(|s| *s >= 0.25),
        "{what}: every instance does a real share (at least a quarter): {counts:?}"
    );
    shares
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_each_service_share_the_work_and_the_survivors_take_over_when_one_of_each_dies()
 {
    let cluster = Cluster::tansu().await;
    let database = fresh_database_url().await;
    let pool = PgPool::connect(&database).await.expect("database");
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let start = |kind: &'static str, id: &'static str| {
        let (database, cluster, redis) = (&database, &cluster, &redis);
        async move {
            let mut extra = vec!["--kafka-instance-id", id, "--relay-lease", "3s"];
            if kind == "order-service" {
                extra.extend(["--redis-url", redis.as_str()]);
            }
            Service::start(kind, &free_port(), database, cluster, false, &extra, "5s").await
        }
    };
    let d1 = start("delivery-service", "delivery-1").await;
    let mut d2 = start("delivery-service", "delivery-2").await;
    let o1 = start("order-service", "order-1").await;
    let mut o2 = start("order-service", "order-2").await;
    let (o1a, o2a, d1a, d2a) = (o1.addr(), o2.addr(), d1.addr(), d2.addr());
    for (addr, group) in [
        (&o1a, ORDER_GROUP),
        (&o2a, ORDER_GROUP),
        (&d1a, DELIVERY_GROUP),
        (&d2a, DELIVERY_GROUP),
    ] {
        until(
            "each member owns partitions",
            Duration::from_secs(90),
            || async { partitions(addr, group).await == PARTITIONS / 2.0 },
        )
        .await;
        until(
            "each relay leases shards",
            Duration::from_secs(30),
            || async { shards(addr).await == SHARDS / 2.0 },
        )
        .await;
    }
    let events = EventOrderCheck::start(&cluster);

    // Two load generators at once: orders, and a flash sale whose waiting room (on Redis) both
    // order services serve.
    let room = format!("scale-{}", uuid::Uuid::now_v7().simple());
    for addr in [&o1a, &o2a] {
        let config: Value = serde_json::json!({
            "skus": ["SCALE-1"], "admissions": 40, "interval_ms": 1000, "state": "open"
        });
        let (status, body) = http(
            addr,
            "PUT",
            &format!("/waiting-rooms/{room}"),
            Some(&config),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    // One places orders through the first order service; the other's buyers are spread over both.
    let (first, both) = (
        format!("http://{o1a}"),
        format!("http://{o1a},http://{o2a}"),
    );
    let placing = ["--target", &first, "--orders", "400", "--concurrency", "16"];
    let buying = [
        "--target",
        &both,
        "--flash-sale",
        &room,
        "--buyers",
        "120",
        "--concurrency",
        "32",
    ];
    let (orders, sale) = tokio::join!(load(&placing), load(&buying));
    assert_eq!(settled(&orders), 400, "{orders}");
    assert_eq!(sale["orders_placed"], 120, "{sale}");
    shares(
        "order-service consumers, messages handled",
        &[&o1a, &o2a],
        "ordership_messages_handled_total",
        "",
    )
    .await;
    shares(
        "delivery-service consumers, messages handled",
        &[&d1a, &d2a],
        "ordership_messages_handled_total",
        "",
    )
    .await;
    shares(
        "order-service relays, published",
        &[&o1a, &o2a],
        "ordership_relay_published_total",
        "",
    )
    .await;
    shares(
        "delivery-service relays, published",
        &[&d1a, &d2a],
        "ordership_relay_published_total",
        "",
    )
    .await;
    for addr in [&o1a, &o2a, &d1a, &d2a] {
        assert_eq!(
            metric(addr, "ordership_inbox_duplicates_discarded_total", "").await,
            0.0,
            "{addr}: each message reached one member of its group"
        );
    }

    // One instance of each service dies mid-run; the survivors take everything over.
    let placing = tokio::spawn({
        let target = format!("http://{o1a}");
        async move {
            load(&[
                "--target",
                &target,
                "--orders",
                "600",
                "--concurrency",
                "16",
            ])
            .await
        }
    });
    let before = count(&pool, "SELECT count(*) FROM orders.orders").await;
    until("orders flowing", Duration::from_secs(60), || async {
        count(&pool, "SELECT count(*) FROM orders.orders").await > before + 150
    })
    .await;
    o2.kill().await;
    d2.kill().await;
    let killed = Instant::now();
    // From the kill: when each survivor first leased every shard (its relay), and first owned
    // every partition (its consumer: a static member's partitions wait out its session timeout).
    let mut took_over: [[Option<Duration>; 2]; 2] = [[None; 2]; 2];
    while took_over.iter().flatten().any(Option::is_none) {
        assert!(
            killed.elapsed() < Duration::from_secs(120),
            "the survivors did not take everything over: {took_over:?}"
        );
        for (i, (addr, group)) in [(&o1a, ORDER_GROUP), (&d1a, DELIVERY_GROUP)]
            .iter()
            .enumerate()
        {
            if took_over[i][0].is_none() && shards(addr).await == SHARDS {
                took_over[i][0] = Some(killed.elapsed());
            }
            if took_over[i][1].is_none() && partitions(addr, group).await == PARTITIONS {
                took_over[i][1] = Some(killed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "take-over after SIGKILL [order service, delivery service][every shard, every partition]: {took_over:?}"
    );
    let last = placing.await.expect("load task");
    assert_eq!(settled(&last), 600, "{last}");
    // The killed instances had handled messages whose offsets were not committed yet (every
    // 500 ms): the survivors got them again, and their inboxes discarded them. Without the
    // inbox they would have applied twice (and `check_invariants` would count it).
    let mut redelivered = 0.0;
    for addr in [&o1a, &d1a] {
        redelivered += metric(addr, "ordership_inbox_duplicates_discarded_total", "").await;
    }
    eprintln!("redelivered after the kill and discarded by the survivors' inboxes: {redelivered}");
    assert!(
        redelivered > 0.0,
        "the kill left no message to redeliver: the inbox was not put to the test"
    );

    check_invariants(&pool).await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM orders.orders WHERE status = 'pending'"
        )
        .await,
        0,
        "every order settled"
    );
    events.verify(&pool).await;
    Service::stop_all([o1, d1], cluster, pool, &database).await;
}
