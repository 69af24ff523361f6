//! Crash tests over Kafka: the delivery service and the order service (with their relays and
//! consumers) are killed with SIGKILL at random moments of load and restarted. Correct offsets mean
//! nothing is lost: every order settles once the group has rebalanced, and no saga ever has to
//! re-send a command (the reply timeout is ten minutes, far longer than a run, so a re-send means a
//! lost message). The same run with offsets stored before the effect committed (the unsafe
//! test-only switch) must be caught.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::binary::{Process, http, order, spawn, terminate, try_http};
use crate::kafka::{Cluster, check_invariants, count};
use ordership_postgres::testing::fresh_database_url;

/// Orders per crash run: 3000, or `ORDERSHIP_TEST_CRASH_ORDERS` (the Tansu lane of scripts/test.sh
/// sets fewer: a real broker on this machine settles fewer sagas per second than the mock).
fn orders_per_run() -> usize {
    std::env::var("ORDERSHIP_TEST_CRASH_ORDERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000)
}
/// Longer than any run: a saga that re-sends lost a message.
const REPLY_TIMEOUT: &str = "600s";
/// Orders start this far apart, so they keep flowing through every crash.
const SPACING: Duration = Duration::from_millis(5);

/// A random number below `n`, different in every run.
pub(crate) fn random_below<T: TryFrom<u64>>(n: u64) -> T {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    T::try_from(hasher.finish() % n.max(1)).unwrap_or_else(|_| panic!("{n} fits the target type"))
}

pub(crate) fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    format!("127.0.0.1:{}", listener.local_addr().expect("addr").port())
}

pub(crate) struct Service {
    args: Vec<String>,
    pub(crate) process: Option<Process>,
}

impl Service {
    pub(crate) async fn start(
        kind: &str,
        addr: &str,
        database: &str,
        cluster: &Cluster,
        unsafe_offsets: bool,
        extra: &[&str],
        reply_timeout: &str,
    ) -> Self {
        let mut args: Vec<String> = [
            kind,
            "--http-addr",
            addr,
            "--database-url",
            database,
            "--reply-timeout",
            reply_timeout,
            "--sweep-interval",
            "200ms",
        ]
        .iter()
        .chain(cluster.args().iter())
        .chain(extra)
        .map(|s| (*s).to_owned())
        .collect();
        if unsafe_offsets {
            args.push("--unsafe-store-offset-before-commit".to_owned());
        }
        let mut service = Self {
            args,
            process: None,
        };
        service.restart().await;
        service
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> String {
        self.args[self
            .args
            .iter()
            .position(|a| a == "--http-addr")
            .expect("an address")
            + 1]
        .clone()
    }

    pub(crate) async fn restart(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.process = Some(spawn(&args, "listening on http://").await);
    }

    /// Stops the services and the cluster, and drops the replication slots SIGKILLed services
    /// never dropped (they keep write-ahead log).
    pub(crate) async fn stop_all(
        services: impl IntoIterator<Item = Self>,
        cluster: Cluster,
        pool: PgPool,
        database: &str,
    ) {
        for service in services {
            if let Some(process) = service.process {
                terminate(process).await;
            }
        }
        cluster.stop().await;
        pool.close().await;
        ordership_postgres::testing::drop_replication_slots(database).await;
    }

    /// Killed, down for `down`, started again.
    async fn bounce(&mut self, down: Duration) {
        self.kill().await;
        tokio::time::sleep(down).await;
        self.restart().await;
    }

    pub(crate) async fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.child.start_kill().expect("SIGKILL");
            process.child.wait().await.expect("killed");
        }
    }
}

/// Crashes in a run.
const CRASHES: usize = 3;

/// What a crash run left behind.
#[derive(Debug)]
pub(crate) struct Verdict {
    /// Crashes done, of the three planned (fewer when the services stalled before one).
    crashes: usize,
    stuck_sagas: i64,
    resent: i64,
    pub(crate) duplicates: f64,
}

impl Verdict {
    /// Whether every saga settled without needing its deadline.
    pub(crate) fn nothing_lost(&self) -> bool {
        self.stuck_sagas == 0 && self.resent == 0
    }

    /// Nothing lost, no saga needed its deadline, and duplicates were delivered and discarded.
    pub(crate) fn assert_nothing_lost(&self) {
        assert_eq!(
            self.crashes, CRASHES,
            "{self:?}: the services stalled between crashes"
        );
        assert_eq!(self.stuck_sagas, 0, "{self:?}: a message was lost");
        assert_eq!(
            self.resent, 0,
            "{self:?}: no saga should have needed its deadline"
        );
        assert!(
            self.duplicates > 0.0,
            "{self:?}: the crashes must have caused redeliveries"
        );
    }
}

/// The sum of every sample of a counter of the service at `addr`.
async fn total(addr: &str, counter: &str) -> f64 {
    let (_, body) = http(addr, "GET", "/metrics", None).await;
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(counter))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

async fn duplicates(addr: &str) -> f64 {
    total(addr, "ordership_inbox_duplicates_discarded_total").await
}

/// What is killed at each of a crash run's moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// One service, then the other.
    Services,
    /// The broker alone (its data kept), then the broker and both services at once.
    BrokerThenEverything,
}

pub(crate) async fn settled(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM orders.sagas WHERE state IN ('completed', 'compensated')",
    )
    .fetch_one(pool)
    .await
    .expect("count")
}

/// The offsets `group` committed on each partition of `topic`, and the topic's high watermarks.
async fn positions(cluster: &Cluster, group: &str, topic: &str) -> (Vec<i64>, Vec<i64>) {
    let brokers = cluster.brokers.clone();
    let topic = format!("{}{topic}", cluster.namespace);
    let group = format!("{}{group}", cluster.namespace);
    tokio::task::spawn_blocking(move || {
        ordership_kafka::testing::positions(&brokers, &group, &topic, 4, Duration::from_secs(30))
            .expect("committed offsets and high watermarks")
    })
    .await
    .expect("joined")
}

/// The offsets the delivery service's group committed on its commands topic.
async fn committed(cluster: &Cluster) -> Vec<i64> {
    positions(
        cluster,
        ordership_application::deliveries::CONSUMER,
        ordership_domain::topics::DELIVERY_COMMANDS,
    )
    .await
    .0
}

/// Where both services' consumers stand on their topics, for a run that left sagas stuck.
async fn consumer_positions(cluster: &Cluster) -> String {
    let mut lines = Vec::new();
    for (group, topic) in [
        (
            ordership_application::deliveries::CONSUMER,
            ordership_domain::topics::DELIVERY_COMMANDS,
        ),
        (
            ordership_application::saga::CONSUMER,
            ordership_domain::topics::DELIVERY_EVENTS,
        ),
    ] {
        let (committed, high) = positions(cluster, group, topic).await;
        lines.push(format!(
            "{group} on {topic}: committed {committed:?}, high watermarks {high:?}"
        ));
    }
    lines.join("; ")
}

/// Waits until `more` sagas have settled since the call; false when they have not within two
/// minutes (generous: a real broker's group joins take seconds, and the machine is shared).
async fn wait_for_progress(pool: &PgPool, more: i64) -> bool {
    let target = settled(pool).await + more;
    let deadline = Instant::now() + Duration::from_secs(120);
    while settled(pool).await < target {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Holds writes to the delivery service's inbox for a few auto-commit intervals (500 ms each)
/// while commands keep coming; the stall lasts until the returned transaction ends.
async fn stall_delivery_inbox(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut stall = pool.begin().await.expect("a transaction");
    sqlx::query("LOCK TABLE delivery.inbox IN SHARE MODE")
        .execute(&mut *stall)
        .await
        .expect("lock");
    // Until a command's handling waits on the lock (received, so a mutant has stored its
    // offset), then longer than the consumers' auto-commit interval (500 ms), so that a stored
    // offset has reached the broker when everything dies.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    while count(
        pool,
        "SELECT count(*) FROM pg_locks WHERE relation = 'delivery.inbox'::regclass AND NOT granted",
    )
    .await
        == 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "the delivery inbox stalled: a handler waits on it after {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stall
}

async fn crash_run(unsafe_offsets: bool, extra: &[&str]) -> Verdict {
    crash_run_on(
        Cluster::for_test().await,
        Fault::Services,
        orders_per_run(),
        unsafe_offsets,
        extra,
    )
    .await
}

/// Places orders through crashes of `fault`'s kind at random moments, then waits for every order
/// to settle (if it can) and tells what was lost.
pub(crate) async fn crash_run_on(
    mut cluster: Cluster,
    fault: Fault,
    orders_count: usize,
    unsafe_offsets: bool,
    extra: &[&str],
) -> Verdict {
    let database = fresh_database_url().await;
    let (order_addr, delivery_addr) = (free_port(), free_port());
    let mut deliveries = Service::start(
        "delivery-service",
        &delivery_addr,
        &database,
        &cluster,
        unsafe_offsets,
        extra,
        REPLY_TIMEOUT,
    )
    .await;
    let mut orders = Service::start(
        "order-service",
        &order_addr,
        &database,
        &cluster,
        unsafe_offsets,
        extra,
        REPLY_TIMEOUT,
    )
    .await;

    // Clients: each order has its key and is retried until the order service answers 201.
    let permits = Arc::new(tokio::sync::Semaphore::new(16));
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..orders_count {
        let (addr, permits) = (order_addr.clone(), permits.clone());
        clients.spawn(async move {
            tokio::time::sleep(SPACING * u32::try_from(i).expect("small")).await;
            let _permit = permits.acquire_owned().await.expect("semaphore");
            let country = if i % 5 == 4 { "BR" } else { "KR" };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some((201, _)) = try_http(
                    &addr,
                    "POST",
                    "/orders",
                    Some(&order(country, i)),
                    Some(&format!("crash-{i}")),
                )
                .await
                {
                    return;
                }
                assert!(Instant::now() < deadline, "order {i} was never accepted");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    // Chaos while the orders flow: each kill comes after a random number of settled sagas (so
    // there are messages in flight to lose, or to redeliver), at a random point of the stream.
    let pool = PgPool::connect(&database).await.expect("database");
    let moments: Vec<(i64, u64)> = (0..CRASHES)
        .map(|_| (75 + random_below::<i64>(150), random_below::<u64>(400)))
        .collect();
    eprintln!("crash moments (sagas settled before, ms down): {moments:?}");
    let mut crashes = 0;
    for (round, (progress, down)) in moments.into_iter().enumerate() {
        if !wait_for_progress(&pool, progress).await {
            // Stalled (a mutant does): no more crashes; the verdict below shows what is stuck.
            eprintln!(
                "no progress before crash {}: {} settled",
                round + 1,
                settled(&pool).await
            );
            break;
        }
        let down = Duration::from_millis(down);
        match (fault, round) {
            (Fault::Services, 1) => orders.bounce(down).await,
            (Fault::Services, _) => deliveries.bounce(down).await,
            (Fault::BrokerThenEverything, 0) => {
                let before = committed(&cluster).await;
                let broker = cluster.tansu.as_mut().expect("a broker of the test's own");
                broker.kill().await;
                tokio::time::sleep(down).await;
                broker.restart().await;
                let after = committed(&cluster).await;
                eprintln!(
                    "committed offsets of the delivery commands: {before:?} before the broker was killed, {after:?} after its restart"
                );
                assert!(before.iter().sum::<i64>() > 0, "offsets were committed");
                assert!(
                    before.iter().zip(&after).all(|(b, a)| a >= b),
                    "the restarted broker kept the committed offsets: {before:?} then {after:?}"
                );
            }
            (Fault::BrokerThenEverything, round) => {
                // Before every crash of everything but the last, the delivery service's database
                // stalls, so commands are received but not yet handled when everything dies:
                // correct offsets replay them, offsets stored on receipt (and auto-committed
                // meanwhile) lose them. The last crash comes unannounced, mid-stream: its
                // redeliveries, counted by the processes started after it, show the inboxes at work.
                let stall = if round + 1 < CRASHES {
                    Some(stall_delivery_inbox(&pool).await)
                } else {
                    None
                };
                deliveries.kill().await;
                orders.kill().await;
                if let Some(stall) = stall {
                    stall.rollback().await.expect("stall ends");
                }
                let broker = cluster.tansu.as_mut().expect("a broker of the test's own");
                broker.kill().await;
                tokio::time::sleep(down).await;
                broker.restart().await;
                deliveries.restart().await;
                orders.restart().await;
            }
        }
        crashes += 1;
    }
    while let Some(done) = clients.join_next().await {
        done.expect("client");
    }

    assert_eq!(
        count(&pool, "SELECT count(*) FROM orders.orders").await,
        i64::try_from(orders_count).expect("small"),
        "one order per key"
    );
    // Correct delivery settles everything once the groups have their partitions back; waiting
    // stops when nothing has settled for a minute (a lost message then shows as a stuck saga: its
    // deadline is far away).
    let mut last_progress = (settled(&pool).await, Instant::now());
    let mut stuck = count(
        &pool,
        "SELECT count(*) FROM orders.sagas WHERE state IN ('awaiting_delivery', 'cancelling')",
    )
    .await;
    while stuck > 0 && last_progress.1.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = settled(&pool).await;
        if now > last_progress.0 {
            last_progress = (now, Instant::now());
        }
        stuck = count(
            &pool,
            "SELECT count(*) FROM orders.sagas WHERE state IN ('awaiting_delivery', 'cancelling')",
        )
        .await;
    }
    let verdict = Verdict {
        crashes,
        stuck_sagas: stuck,
        resent: count(
            &pool,
            "SELECT count(*) FROM orders.sagas WHERE attempts > 1",
        )
        .await,
        duplicates: duplicates(&order_addr).await + duplicates(&delivery_addr).await,
    };
    if stuck == 0 {
        check_invariants(&pool).await;
    } else {
        eprintln!(
            "{stuck} sagas stuck; {}",
            consumer_positions(&cluster).await
        );
    }
    Service::stop_all([orders, deliveries], cluster, pool, &database).await;
    verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_services_mid_run_loses_nothing_and_duplicates_are_discarded() {
    crash_run(false, &[]).await.assert_nothing_lost();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crash_test_catches_offsets_stored_before_the_commit() {
    let verdict = crash_run(true, &[]).await;
    assert!(
        verdict.stuck_sagas > 0 || verdict.resent > 0,
        "{verdict:?}: the mutant went unnoticed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cdc_relay_mode_killing_the_services_loses_nothing() {
    crash_run(false, &["--relay-mode", "cdc"])
        .await
        .assert_nothing_lost();
}
