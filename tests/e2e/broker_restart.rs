//! The broker dies mid-run (SIGKILL).
//!
//! On a real broker that keeps its data (Tansu), it comes back with its log, its committed
//! offsets and the idempotent producers' state: the services ride it out without a restart, and
//! then survive a crash of everything at once (both services and the broker): consumers resume at
//! their committed offsets, nothing is lost, no saga needs to re-send, and the inboxes discard the
//! redeliveries. The same run with offsets stored before the effect must be caught.
//!
//! The development broker (librdkafka's mock) comes back empty on the same port: messages, topics and
//! committed offsets are gone. Both services must notice (readiness 503), get back into their
//! consumer groups without being restarted (readiness 200), and every order must settle — the
//! saga's re-sends replace what the broker lost, so no order to a served country is cancelled
//! for want of a reply.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::binary::{Process, http, spawn};
use crate::kafka::{Cluster, Deployment, assert_none_timed_out, check_invariants, count};
use crate::kafka_crash::{Fault, crash_run_on};

/// Static members, as deployed: a restarted service takes its partitions back at once.
const STATIC: &[&str] = &["--kafka-instance-id", "instance-0"];
/// Enough for three crash moments (up to 225 settled sagas apart) with orders still flowing, also
/// after the stalled crash, whose backlog settles at once when everything is back: with 1,500 the
/// whole load had sometimes settled by the stalled crash (the broker's restart lets a backlog
/// build up that then settles in a burst), so the stall caught no command and a mutant went
/// unnoticed.
const ORDERS: usize = 3000;

/// A crash run on a Tansu broker of its own: the broker killed alone, then everything at once.
async fn broker_then_everything(unsafe_offsets: bool) -> crate::kafka_crash::Verdict {
    crash_run_on(
        Cluster::tansu().await,
        Fault::BrokerThenEverything,
        ORDERS,
        unsafe_offsets,
        STATIC,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_with_its_data_then_everything_killed_loses_nothing() {
    let verdict = broker_then_everything(false).await;
    eprintln!(
        "broker restart with data, then everything: {verdict:?} ({:.0} duplicates discarded by the inboxes)",
        verdict.duplicates
    );
    verdict.assert_nothing_lost();
}

/// How many crash runs the mutant gets to show itself. Losing a message needs a command received
/// and its offset committed but not handled when everything dies; on Tansu some runs lose nothing
/// even so (the stall catches a handler, yet every command comes back after the restart). A
/// mutant caught once is caught; a correct build is checked by the test above, every run.
const MUTANT_RUNS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_restart_test_catches_offsets_stored_before_the_commit() {
    let mut verdicts = Vec::new();
    for _ in 0..MUTANT_RUNS {
        let verdict = broker_then_everything(true).await;
        if !verdict.nothing_lost() {
            return;
        }
        verdicts.push(verdict);
    }
    panic!("{verdicts:?}: the mutant went unnoticed in {MUTANT_RUNS} runs");
}

async fn ready(addr: &str) -> bool {
    http(addr, "GET", "/health/ready", None).await.0 == 200
}

/// Polls both services' readiness until it is `wanted` for both; how long that took.
async fn both_ready_becomes(deployment: &Deployment, wanted: bool, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let orders = ready(&deployment.orders.addr).await;
        let deliveries = ready(&deployment.deliveries.addr).await;
        if orders == wanted && deliveries == wanted {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "readiness did not become {wanted} within {limit:?} (orders {orders}, deliveries {deliveries})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_broker_is_killed_and_restarted_empty_both_services_resume_and_every_order_settles()
 {
    let cluster = Cluster::own().await;
    let port = cluster.brokers.rsplit(':').next().expect("port").to_owned();
    // A reply timeout of 2 s doubling over 5 attempts gives each saga a minute: far more than the
    // outage and the consumers' way back.
    let mut deployment = Deployment::start(cluster).await;
    both_ready_becomes(&deployment, true, Duration::from_secs(30)).await;
    let pool = PgPool::connect(&deployment.database)
        .await
        .expect("database");

    let orders = 1500;
    let load = crate::binary::load_through_a_fault(&deployment.orders.addr, orders, "120s", "90s")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("load runs");

    // Kill the broker once orders flow.
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(
        &pool,
        "SELECT count(*) FROM orders.sagas WHERE state = 'completed'",
    )
    .await
        < 100
    {
        assert!(
            Instant::now() < deadline,
            "no order settled before the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let broker: &mut Process = deployment
        .cluster
        .own
        .as_mut()
        .expect("the test's own broker");
    broker.child.start_kill().expect("SIGKILL");
    broker.child.wait().await.expect("killed");
    let killed = Instant::now();
    let unready_after = both_ready_becomes(&deployment, false, Duration::from_secs(30)).await;

    // The same port, an empty broker.
    let broker = spawn(&["dev-broker", "--port", &port], "dev broker ready on ").await;
    let restarted = Instant::now();
    deployment.cluster.own = Some(broker);
    let ready_after = both_ready_becomes(&deployment, true, Duration::from_secs(60)).await;
    eprintln!(
        "broker restart: readiness 503 {unready_after:?} after the kill; broker back {:?} after the kill; both ready {ready_after:?} after that",
        restarted - killed
    );

    let output = load.wait_with_output().await.expect("load ends");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no report ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    eprintln!("load across the broker restart: {report}");
    assert!(output.status.success(), "every order settled: {report}");
    assert_eq!(report["outcomes"]["confirmed"], 1200, "{report}");
    assert_eq!(report["outcomes"]["cancelled"], 300, "{report}");
    assert_none_timed_out(&pool).await;
    let resent = count(
        &pool,
        "SELECT count(*) FROM orders.sagas WHERE attempts > 1",
    )
    .await;
    eprintln!("sagas that re-sent a command after the broker lost it: {resent}");
    check_invariants(&pool).await;
    pool.close().await;
    deployment.stop().await;
}
