//! The two services as separate processes over PostgreSQL and a Kafka-protocol broker, driven
//! by `ordership load`. Tests use the cluster in `KAFKA_BROKERS` (scripts/test.sh starts a dev
//! broker; any real cluster works), each in a namespace of its own, so they share it without
//! seeing each other's topics or groups; without `KAFKA_BROKERS` each starts its own
//! `ordership dev-broker`. The broker-outage test always takes its own dev broker down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ordership_application::ConsumerStats;
use ordership_domain::ports::MessageHandler;
use ordership_domain::topics;
use ordership_kafka::{Connection, ConsumerConfig, Namespace, consume};
use ordership_postgres::testing::fresh_database_url;
use serde_json::Value;
use sqlx::PgPool;
use tokio::process::Command;

use crate::binary::{Process, spawn, start_with_env, terminate};
use crate::invariants::EventRecorder;
use crate::tansu::Tansu;

/// A Kafka cluster and the namespace a test works in.
pub(crate) struct Cluster {
    pub(crate) brokers: String,
    pub(crate) namespace: String,
    /// The dev broker this test started, if it started one.
    pub(crate) own: Option<Process>,
    /// The Tansu broker this test started, if it started one.
    pub(crate) tansu: Option<Tansu>,
}

impl Cluster {
    /// The cluster in `KAFKA_BROKERS` with a fresh namespace, or else a dev broker of this test's
    /// own.
    pub(crate) async fn for_test() -> Self {
        match std::env::var("KAFKA_BROKERS") {
            Ok(brokers) if !brokers.trim().is_empty() => Self {
                brokers,
                namespace: format!("e2e-{}.", uuid::Uuid::now_v7().simple()),
                own: None,
                tansu: None,
            },
            _ => Self::own().await,
        }
    }

    /// A dev broker of this test's own, for tests that take it down.
    pub(crate) async fn own() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port()
            .to_string();
        let broker = spawn(&["dev-broker", "--port", &port], "dev broker ready on ").await;
        Self {
            brokers: broker.addr.clone(),
            namespace: String::new(),
            own: Some(broker),
            tansu: None,
        }
    }

    /// A Tansu broker of this test's own, a real broker that keeps its data across a restart.
    pub(crate) async fn tansu() -> Self {
        let broker = Tansu::start().await;
        Self {
            brokers: broker.addr.clone(),
            namespace: String::new(),
            own: None,
            tansu: Some(broker),
        }
    }

    /// The flags that put a service on this cluster, in this namespace.
    pub(crate) fn args(&self) -> Vec<&str> {
        let mut args = vec![
            "--kafka-brokers",
            &self.brokers,
            "--kafka-namespace",
            &self.namespace,
        ];
        if self.tansu.is_some() {
            args.extend(["--kafka-config", crate::tansu::CLIENT_CONFIG]);
        }
        args
    }

    /// A connection to this cluster with the settings the services get: those of a Tansu of the
    /// test's own, else `ORDERSHIP_KAFKA_CONFIG` (what scripts/test.sh passes on a shared broker).
    pub(crate) fn connection(&self) -> Connection {
        let settings: Vec<String> = if self.tansu.is_some() {
            vec![crate::tansu::CLIENT_CONFIG.to_owned()]
        } else {
            std::env::var("ORDERSHIP_KAFKA_CONFIG")
                .unwrap_or_default()
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Connection::new(&self.brokers)
            .with_settings(&settings)
            .expect("the test's Kafka settings are allowed")
    }

    pub(crate) async fn stop(self) {
        if let Some(broker) = self.own {
            terminate(broker).await;
        }
        if let Some(broker) = self.tansu {
            broker.stop().await;
        }
    }
}

/// The delivery service and the order service on a Kafka cluster and a fresh database.
pub(crate) struct Deployment {
    pub(crate) cluster: Cluster,
    pub(crate) orders: Process,
    pub(crate) deliveries: Process,
    pub(crate) database: String,
}

/// How long the saga waits for the delivery service's reply before it sends its command again:
/// 2 s, short so that a lost message shows quickly, unless `ORDERSHIP_TEST_REPLY_TIMEOUT` says
/// otherwise (scripts/test.sh's Tansu lane: on a broker that settles a few sagas per second beside
/// other tests, a 2 s wait re-sends commands that are only slow, and the re-sends slow it further).
fn reply_timeout() -> String {
    std::env::var("ORDERSHIP_TEST_REPLY_TIMEOUT").unwrap_or_else(|_| "2s".to_owned())
}

/// One service on `cluster` and `database`, with these environment variables set.
pub(crate) async fn service_with_env(
    kind: &str,
    database: &str,
    cluster: &Cluster,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Process {
    let reply_timeout = reply_timeout();
    let mut args = vec![
        kind,
        "--database-url",
        database,
        "--reply-timeout",
        &reply_timeout,
        "--sweep-interval",
        "200ms",
    ];
    args.extend_from_slice(&cluster.args());
    args.extend_from_slice(extra);
    start_with_env(&args, env).await
}

impl Deployment {
    pub(crate) async fn start(cluster: Cluster) -> Self {
        Self::start_with(cluster, &[]).await
    }

    pub(crate) async fn start_with(cluster: Cluster, extra: &[&str]) -> Self {
        Self::start_with_env(cluster, extra, &[]).await
    }

    /// Both services with these environment variables set.
    pub(crate) async fn start_with_env(
        cluster: Cluster,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let database = fresh_database_url().await;
        let deliveries =
            service_with_env("delivery-service", &database, &cluster, extra, env).await;
        let orders = service_with_env("order-service", &database, &cluster, extra, env).await;
        Self {
            cluster,
            orders,
            deliveries,
            database,
        }
    }

    /// Stops both services and the test's own broker, and drops the replication slots the CDC
    /// relays left on the database (a slot keeps write-ahead log until dropped).
    pub(crate) async fn stop(self) {
        terminate(self.orders).await;
        terminate(self.deliveries).await;
        self.cluster.stop().await;
        ordership_postgres::testing::drop_replication_slots(&self.database).await;
        assert_eq!(
            ordership_postgres::testing::replication_slots(&self.database).await,
            0,
            "no replication slot is left behind"
        );
    }
}

/// Runs `ordership load` against `target` and returns its JSON report.
pub(crate) async fn load(target: &str, orders: usize) -> Value {
    let output = crate::binary::command()
        .args([
            "load",
            "--target",
            &format!("http://{target}"),
            "--orders",
            &orders.to_string(),
            "--concurrency",
            "32",
            "--json",
            "--deadline",
            "90s",
        ])
        .output()
        .await
        .expect("load runs");
    assert!(
        output.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

/// One number from the deployment's database.
pub(crate) async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

/// No order was cancelled for want of a reply: whatever the fault, the saga got its answer.
pub(crate) async fn assert_none_timed_out(pool: &PgPool) {
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM orders.orders WHERE cancellation_kind = 'delivery_timed_out'"
        )
        .await,
        0,
        "no order was cancelled for want of a reply"
    );
}

/// The end-to-end invariants (`docs/design.md`, *Tests*) on the deployment's database.
pub(crate) async fn check_invariants(pool: &PgPool) {
    let one = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .expect(sql)
    };
    assert_eq!(
        one("SELECT count(*) FROM orders.orders o WHERE o.status = 'confirmed' AND (SELECT count(*) FROM delivery.deliveries d WHERE d.order_id = o.id AND d.status <> 'cancelled') <> 1").await,
        0,
        "every confirmed order has exactly one live delivery"
    );
    assert_eq!(
        one("SELECT count(*) FROM orders.orders o WHERE o.cancellation_kind = 'delivery_rejected' AND EXISTS (SELECT 1 FROM delivery.deliveries d WHERE d.order_id = o.id)").await,
        0,
        "no delivery for an order cancelled by rejection"
    );
    assert_eq!(one("SELECT count(*) FROM orders.sagas WHERE state IN ('awaiting_delivery', 'cancelling', 'failed')").await, 0);
    // Every committed outbox message reaches the broker.
    let deadline = Instant::now() + Duration::from_secs(30);
    while one(
        "SELECT (SELECT count(*) FROM orders.outbox) + (SELECT count(*) FROM delivery.outbox)",
    )
    .await
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "outbox messages were never published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A consumer of `ordership.order.events`, in a group of its own from the start of the topic,
/// that checks each order's events arrive in order. It reads while the run goes on, as a
/// downstream service would: on Tansu a consumer starting a whole run behind waits for its first
/// records in time that grows with the square of the backlog (ADR 0021).
pub(crate) struct EventOrderCheck {
    recorder: Arc<EventRecorder>,
    stop: tokio::sync::watch::Sender<bool>,
    consumer: tokio::task::JoinHandle<()>,
}

impl EventOrderCheck {
    pub(crate) fn start(cluster: &Cluster) -> Self {
        let recorder = Arc::new(EventRecorder::default());
        let handler: Arc<dyn MessageHandler> = recorder.clone();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let config = ConsumerConfig {
            namespace: Namespace::new(&cluster.namespace),
            ..ConsumerConfig::on(
                cluster.connection(),
                &format!("test-recorder-{}", uuid::Uuid::now_v7()),
                &[topics::ORDER_EVENTS],
            )
        };
        let consumer = tokio::spawn(async move {
            consume(
                config,
                handler,
                Arc::new(ConsumerStats::default()),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            )
            .await
            .expect("consumer runs");
        });
        Self {
            recorder,
            stop,
            consumer,
        }
    }

    /// Waits until every order in the deployment's database has had its events, in order.
    pub(crate) async fn verify(self, pool: &PgPool) {
        let versions: Vec<(String, u64)> =
            sqlx::query_as::<_, (uuid::Uuid, i64)>("SELECT id, version FROM orders.orders")
                .fetch_all(pool)
                .await
                .expect("orders")
                .into_iter()
                .map(|(id, v)| (id.to_string(), u64::try_from(v).expect("version")))
                .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(problem) = self.recorder.check_versions(versions.clone()) {
            assert!(Instant::now() < deadline, "order events: {problem}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.stop.send_replace(true);
        self.consumer.await.expect("consumer stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_orders_over_kafka_between_two_processes_all_settle() {
    let deployment = Deployment::start(Cluster::for_test().await).await;
    let event_order = EventOrderCheck::start(&deployment.cluster);
    let report = load(&deployment.orders.addr, 2000).await;
    assert_eq!(
        report["outcomes"],
        serde_json::json!({ "confirmed": 1600, "cancelled": 400 }),
        "{report}"
    );

    let pool = PgPool::connect(&deployment.database)
        .await
        .expect("database");
    check_invariants(&pool).await;
    event_order.verify(&pool).await;
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cdc_relay_mode_orders_settle_in_order_and_the_outboxes_stay_empty() {
    let deployment =
        Deployment::start_with(Cluster::for_test().await, &["--relay-mode", "cdc"]).await;
    let event_order = EventOrderCheck::start(&deployment.cluster);
    let report = load(&deployment.orders.addr, 1000).await;
    assert_eq!(
        report["outcomes"],
        serde_json::json!({ "confirmed": 800, "cancelled": 200 }),
        "{report}"
    );
    let pool = PgPool::connect(&deployment.database)
        .await
        .expect("database");
    check_invariants(&pool).await;
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM orders.outbox) + (SELECT count(*) FROM delivery.outbox)",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(
        rows, 0,
        "CDC mode deletes each outbox row in the transaction that wrote it"
    );
    let (_, metrics) = crate::binary::http(&deployment.orders.addr, "GET", "/metrics", None).await;
    assert!(
        String::from_utf8_lossy(&metrics)
            .contains("ordership_cdc_slot_lag_bytes{service=\"order\"}"),
        "slot lag is a metric"
    );
    event_order.verify(&pool).await;
    deployment.stop().await;
}

async fn signal(process: &Process, name: &str) {
    let pid = process.child.id().expect("pid").to_string();
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(sent.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_completes_after_the_broker_was_down_for_several_seconds() {
    let deployment = Deployment::start(Cluster::own().await).await;
    let broker = deployment
        .cluster
        .own
        .as_ref()
        .expect("a dev broker of its own");
    let target = deployment.orders.addr.clone();
    let run = tokio::spawn(async move { load(&target, 1000).await });
    let pool = PgPool::connect(&deployment.database)
        .await
        .expect("database");
    let settled = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM orders.sagas WHERE state IN ('completed', 'compensated')",
        )
        .fetch_one(&pool)
        .await
        .expect("count")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while settled().await < 100 {
        assert!(Instant::now() < deadline, "no progress before the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    signal(broker, "USR1").await;
    // Readiness reports the outage (the metadata request fails while the broker is down).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) =
            crate::binary::http(&deployment.orders.addr, "GET", "/health/ready", None).await;
        if status == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never noticed the broker was down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    signal(broker, "USR2").await;

    let report = run.await.expect("load task");
    assert_eq!(
        report["outcomes"],
        serde_json::json!({ "confirmed": 800, "cancelled": 200 }),
        "{report}"
    );
    check_invariants(&pool).await;
    let (status, _) =
        crate::binary::http(&deployment.orders.addr, "GET", "/health/ready", None).await;
    assert_eq!(status, 200, "ready again");
    // A service stops cleanly even when the broker goes away as it stops (its consumers cannot
    // leave their group): `terminate` wants exit 0 within 15 s of SIGTERM.
    let Deployment {
        cluster,
        orders,
        deliveries,
        ..
    } = deployment;
    let broker = cluster.own.expect("a dev broker of its own");
    tokio::join!(terminate(broker), terminate(orders), terminate(deliveries));
}
