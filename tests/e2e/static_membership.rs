//! Static group membership (KIP-345) on a real broker (Tansu): two delivery-service instances
//! share the four partitions of the delivery commands. One is SIGKILLed and started again with
//! the same `--kafka-instance-id`: it gets its partitions back, and the other instance is not
//! rebalanced at all. The same run with dynamic members (no instance id) must show the other
//! instance's assignment moving: the test catches a removed `group.instance.id`. While the
//! restarted instance joins, its readiness answers 503; it answers 200 only once it owns its
//! partitions again.

use std::time::{Duration, Instant};

use crate::binary::http;
use crate::kafka::Cluster;
use crate::kafka_crash::{Service, free_port};
use ordership_postgres::testing::fresh_database_url;

const GROUP: &str = "delivery-service.commands";
/// How long the other instance is watched after the restart: longer than the 6 s session
/// timeout of a dynamic member, so a rebalance has time to happen.
const WATCH: Duration = Duration::from_secs(12);

/// One sample of `metric{group="…"}` (or of `metric`, unlabelled) from the service at `addr`;
/// `None` while it does not answer.
async fn sample(addr: &str, metric: &str) -> Option<f64> {
    let (status, body) = http(addr, "GET", "/metrics", None).await;
    if status != 200 {
        return None;
    }
    let prefixes = [
        format!("{metric}{{group=\"{GROUP}\"}} "),
        format!("{metric} "),
    ];
    String::from_utf8_lossy(&body).lines().find_map(|line| {
        prefixes
            .iter()
            .find_map(|prefix| line.strip_prefix(prefix.as_str())?.trim().parse().ok())
    })
}

async fn partitions(addr: &str) -> Option<f64> {
    sample(addr, "ordership_consumer_assigned_partitions").await
}

/// Polls until the instance at `addr` owns `wanted` partitions; how long that took.
async fn owns(addr: &str, wanted: f64, limit: Duration) -> Duration {
    let started = Instant::now();
    while partitions(addr).await != Some(wanted) {
        assert!(
            started.elapsed() < limit,
            "{addr} does not own {wanted} partitions after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// What the other instance went through while its peer was killed and restarted.
#[derive(Debug)]
struct Observed {
    /// The other instance's assignment sizes, in the order seen.
    assignments: Vec<f64>,
    /// Partitions revoked from it.
    revoked: f64,
    /// Rebalances it went through.
    rebalances: f64,
    /// From the restart to the restarted instance owning its partitions again.
    back_after: Duration,
    /// The restarted instance answered 503 on readiness while it was joining its group.
    unready_while_joining: bool,
    /// ...and never 200 before it owned its partitions again.
    ready_before_its_partitions: bool,
}

async fn kill_and_restart_one(static_members: bool) -> Observed {
    let cluster = Cluster::tansu().await;
    let database = fresh_database_url().await;
    let (a_addr, b_addr) = (free_port(), free_port());
    let identity = |id: &'static str| {
        if static_members {
            vec!["--kafka-instance-id", id]
        } else {
            Vec::new()
        }
    };
    let start = |addr: String, id: &'static str| {
        let (database, cluster, extra) = (&database, &cluster, identity(id));
        async move {
            Service::start(
                "delivery-service",
                &addr,
                database,
                cluster,
                false,
                &extra,
                "10s",
            )
            .await
        }
    };
    let mut a = start(a_addr.clone(), "delivery-a").await;
    let b = start(b_addr.clone(), "delivery-b").await;
    owns(&a_addr, 2.0, Duration::from_secs(60)).await;
    owns(&b_addr, 2.0, Duration::from_secs(60)).await;
    let revoked_before = sample(&b_addr, "ordership_consumer_partitions_revoked_total")
        .await
        .unwrap_or_default();
    let rebalances_before = sample(&b_addr, "ordership_consumer_rebalances_total")
        .await
        .unwrap_or_default();

    a.kill().await;
    a.restart().await;
    let restarted = Instant::now();
    let mut assignments = Vec::new();
    let mut back_after = None;
    let (mut unready_while_joining, mut ready_before_its_partitions) = (false, false);
    while restarted.elapsed() < WATCH || back_after.is_none() {
        assert!(
            restarted.elapsed() < Duration::from_secs(90),
            "the restarted instance never got its partitions back"
        );
        if let Some(n) = partitions(&b_addr).await
            && assignments.last() != Some(&n)
        {
            assignments.push(n);
        }
        if back_after.is_none() {
            // Readiness first: 200 means joined, so the partitions read after it are there.
            let ready = http(&a_addr, "GET", "/health/ready", None).await.0;
            let owned = partitions(&a_addr).await == Some(2.0);
            unready_while_joining |= ready == 503 && !owned;
            ready_before_its_partitions |= ready == 200 && !owned;
            if owned {
                back_after = Some(restarted.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let revoked = sample(&b_addr, "ordership_consumer_partitions_revoked_total")
        .await
        .unwrap_or_default()
        - revoked_before;
    let rebalances = sample(&b_addr, "ordership_consumer_rebalances_total")
        .await
        .unwrap_or_default()
        - rebalances_before;
    let pool = sqlx::PgPool::connect(&database).await.expect("database");
    Service::stop_all([a, b], cluster, pool, &database).await;
    Observed {
        assignments,
        revoked,
        rebalances,
        back_after: back_after.unwrap_or_default(),
        unready_while_joining,
        ready_before_its_partitions,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarted_within_its_session_gets_its_partitions_back_and_no_one_else_rebalances()
 {
    let observed = kill_and_restart_one(true).await;
    eprintln!(
        "static membership: partitions back {:?} after the restart; the other instance: assignments {:?}, {} revoked, {} rebalances",
        observed.back_after, observed.assignments, observed.revoked, observed.rebalances
    );
    assert_eq!(
        observed.assignments,
        [2.0],
        "{observed:?}: the other instance kept its partitions throughout"
    );
    assert!(
        observed.revoked.abs() < f64::EPSILON && observed.rebalances.abs() < f64::EPSILON,
        "{observed:?}: it was not rebalanced, nothing was revoked from it"
    );
    assert!(
        observed.unready_while_joining && !observed.ready_before_its_partitions,
        "{observed:?}: the restarted instance is not ready (503) until it has joined its group"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_membership_test_catches_dynamic_members() {
    let observed = kill_and_restart_one(false).await;
    eprintln!("dynamic membership: {observed:?}");
    assert!(
        observed.assignments.len() > 1 || observed.revoked > 0.0 || observed.rebalances > 0.0,
        "{observed:?}: without group.instance.id the other instance must have been rebalanced"
    );
}
