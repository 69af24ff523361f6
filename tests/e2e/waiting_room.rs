//! The flash-sale waiting room through the real binary, on real Redis: many buyers at once on
//! the suite's standalone Redis (`REDIS_URL`) and Redis Cluster (`REDIS_CLUSTER_NODES`), several
//! service processes ticking one queue; and the faults — Redis flushed, Redis down, a cluster
//! failover — on servers of each test's own. The gate's one-order-per-admission rule under
//! concurrency runs on PostgreSQL.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ordership_http::auth::Scope;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::binary::{Process, command, dev_key, http, request, start};

/// A room configured on every process (each keeps its rooms in memory; the queue is shared).
pub(crate) async fn put_room(processes: &[&Process], room: &str, config: &Value) {
    for process in processes {
        let (status, body) = http(
            &process.addr,
            "PUT",
            &format!("/waiting-rooms/{room}"),
            Some(config),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
}

/// A room name no other test or run uses.
pub(crate) fn unique_room(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{nanos}")
}

pub(crate) fn buyer(name: &str) -> String {
    dev_key()
        .mint(name, &[Scope::Orders], Duration::from_secs(3600))
        .expect("token")
}

pub(crate) fn body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// A request as `buyer` with extra headers; status and JSON body.
pub(crate) async fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    payload: Option<&Value>,
) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    let (status, _, bytes) = request(addr, method, path, &all, payload)
        .await
        .expect("a whole HTTP response");
    (status, body(&bytes))
}

/// `POST /orders` of one `sku` as `token`, with the admission token if given.
pub(crate) async fn place(
    addr: &str,
    token: &str,
    sku: &str,
    admission: Option<&str>,
) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = admission
        .map(|a| ("admission-token", a))
        .into_iter()
        .collect();
    call(
        addr,
        "POST",
        "/orders",
        token,
        &headers,
        Some(&order_of(sku)),
    )
    .await
}

/// An order of one unit of `sku`.
pub(crate) fn order_of(sku: &str) -> Value {
    order_at(sku, 1250)
}

/// An order of one `sku` at `amount` KRW.
fn order_at(sku: &str, amount: i64) -> Value {
    json!({
        "lines": [{ "sku": sku, "quantity": 1, "unit_price": { "amount": amount, "currency": "KRW" } }],
        "shipping_address": { "recipient": "Kim", "line1": "1 Sejong-daero", "city": "Seoul",
                              "postal_code": "04524", "country": "KR" }
    })
}

/// `ordership load --flash-sale` against the processes at `addrs`; its JSON report, after
/// checking it exited 0.
async fn flash_sale(addrs: &[String], room: &str, buyers: usize) -> Value {
    flash_sale_with(addrs, room, buyers, &[]).await
}

/// [`flash_sale`] with more arguments for `ordership load`.
pub(crate) async fn flash_sale_with(
    addrs: &[String],
    room: &str,
    buyers: usize,
    more: &[&str],
) -> Value {
    let targets: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    let output = command()
        .args([
            "load",
            "--flash-sale",
            room,
            "--buyers",
            &buyers.to_string(),
        ])
        .args([
            "--target",
            &targets.join(","),
            "--concurrency",
            "64",
            "--json",
        ])
        .args(["--deadline", "60s"])
        .args(more)
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("ordership load runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("a JSON report ({e}): {stdout}"));
    assert!(output.status.success(), "the flash sale failed: {report}");
    report
}

/// What every flash sale must show: each buyer admitted once, in ticket order, never more per
/// interval than the rate, and each admission buying its order.
fn assert_fair(report: &Value, buyers: u64, rate: u64) {
    assert_safe(report, buyers, rate);
    // A sale that admits buyers at all admits them at its rate: no interval is short of it
    // except the first and the last, and a sliding window drifts by up to a tick (a tenth of
    // the interval) each interval.
    let spread = report["admissions_per_interval"]["intervals"]
        .as_u64()
        .expect("intervals");
    let batches = buyers.div_ceil(rate);
    assert!(spread <= batches + batches.div_ceil(10) + 2, "{report}");
}

/// What every sale must show, whatever outage paused it: each buyer admitted once, in ticket
/// order, never more than the rate within any interval, and each admission buying its order.
fn assert_safe(report: &Value, buyers: u64, rate: u64) {
    assert_eq!(report["admitted"], buyers, "{report}");
    assert_eq!(report["orders_placed"], buyers, "{report}");
    assert_eq!(report["duplicate_tickets"], 0, "{report}");
    assert_eq!(report["out_of_order"], 0, "{report}");
    let intervals = &report["admissions_per_interval"];
    assert_eq!(intervals["over_rate"], 0, "{report}");
    assert!(intervals["max"].as_u64().expect("max") <= rate, "{report}");
    let most = intervals["max_in_any_interval"].as_u64().expect("sliding");
    assert!(most <= rate, "the rate holds in every interval: {report}");
}

const FIFTY_A_SECOND: &str = r#"{"skus":["FLASH-1"],"admissions":50,"interval_ms":1000,"state":"open","unit_price":{"amount":9900,"currency":"KRW"}}"#;

/// Three `ordership all` processes with `redis` (the flags naming the queue) sharing a room of
/// fifty a second named after `name`; their addresses and the room.
async fn three_processes_and_a_room(
    redis: &[&str],
    name: &str,
) -> ([Process; 3], Vec<String>, String) {
    let mut args = vec!["all"];
    args.extend_from_slice(redis);
    let processes = [start(&args).await, start(&args).await, start(&args).await];
    let targets: Vec<&Process> = processes.iter().collect();
    let room = unique_room(name);
    put_room(
        &targets,
        &room,
        &serde_json::from_str(FIFTY_A_SECOND).expect("json"),
    )
    .await;
    let addrs = processes.iter().map(|p| p.addr.clone()).collect();
    (processes, addrs, room)
}

/// Three service processes tick one queue; 1,000 buyers join at once.
async fn a_thousand_buyers_on(redis: &[&str]) {
    let (_processes, addrs, room) = three_processes_and_a_room(redis, "thousand").await;
    let report = flash_sale(&addrs, &room, 1_000).await;
    assert_fair(&report, 1_000, 50);
}

pub(crate) fn suite_redis() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub(crate) fn suite_cluster() -> String {
    std::env::var("REDIS_CLUSTER_NODES")
        .expect("REDIS_CLUSTER_NODES names the suite's Redis Cluster (scripts/test.sh starts one)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_buyers_keep_the_rate_and_their_order_on_standalone_redis() {
    let url = suite_redis();
    a_thousand_buyers_on(&["--redis-url", &url]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_buyers_keep_the_rate_and_their_order_on_a_redis_cluster() {
    let nodes = suite_cluster();
    a_thousand_buyers_on(&["--redis-url", &nodes, "--redis-cluster"]).await;
}

/// `redis-cli -p port args…`, its output trimmed.
async fn redis_cli(port: &str, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", port])
        .args(args)
        .output()
        .await
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A `redis-server` of the test's own on a free port, nothing kept on disk; killed on drop.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port).await
    }

    async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (scripts/test.sh installs it)");
        let redis = Self { child, port };
        redis.wait_until(|pong| pong == "PONG").await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn cli(&self, args: &[&str]) -> String {
        redis_cli(&self.port.to_string(), args).await
    }

    async fn wait_until(&self, ok: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok(&self.cli(&["ping"]).await) {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) -> u16 {
        self.child.kill().await.expect("kill redis-server");
        self.port
    }
}

/// Polls `f` until it says yes, for at most `within`.
pub(crate) async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyers_come_back_at_their_tickets_after_redis_lost_its_data() {
    let redis = OwnRedis::start().await;
    let process = start(&["all", "--redis-url", &redis.url()]).await;
    let room = unique_room("flushed");
    // Paused: everyone waits, so places can be compared before and after.
    put_room(
        &[&process],
        &room,
        &json!({"skus": ["FLASH-2"], "admissions": 5, "interval_ms": 1000, "state": "paused"}),
    )
    .await;
    let entries = format!("/waiting-rooms/{room}/entries");
    let mut buyers = Vec::new();
    for i in 0..20 {
        let token = buyer(&format!("flushed-{i}"));
        let (status, entry) = call(&process.addr, "POST", &entries, &token, &[], None).await;
        assert_eq!(status, 202, "{entry}");
        buyers.push((token, entry));
    }

    assert_eq!(redis.cli(&["flushall"]).await, "OK");
    let me = format!("{entries}/me");
    let (status, _) = call(&process.addr, "GET", &me, &buyers[3].0, &[], None).await;
    assert_eq!(status, 404, "the queue forgot the buyer");

    // Back in reverse order, each with their queue token: each gets their ticket again.
    for (token, before) in buyers.iter().rev() {
        let queue_token = before["queue_token"].as_str().expect("queue token");
        let (status, after) = call(
            &process.addr,
            "POST",
            &entries,
            token,
            &[("queue-token", queue_token)],
            None,
        )
        .await;
        assert_eq!(status, 202, "{after}");
        assert_eq!(after["ticket"], before["ticket"]);
    }
    for (token, before) in &buyers {
        let (_, now) = call(&process.addr, "GET", &me, token, &[], None).await;
        assert_eq!(
            now["position"], before["position"],
            "the same place in the queue"
        );
    }
    // New tickets go past every ticket presented.
    let last = buyers
        .iter()
        .map(|(_, e)| e["ticket"].as_u64().expect("ticket"))
        .max();
    let (_, newcomer) = call(
        &process.addr,
        "POST",
        &entries,
        &buyer("flushed-new"),
        &[],
        None,
    )
    .await;
    assert!(newcomer["ticket"].as_u64() > last, "{newcomer}");
    assert_eq!(newcomer["position"], 21);

    // Someone else's queue token counts for nothing: the thief joins at the back.
    let (status, thief) = call(
        &process.addr,
        "POST",
        &entries,
        &buyer("flushed-thief"),
        &[(
            "queue-token",
            buyers[0].1["queue_token"].as_str().expect("token"),
        )],
        None,
    )
    .await;
    assert_eq!(status, 202, "{thief}");
    assert_eq!(thief["position"], 22, "{thief}");
}

/// A service on a queue that goes down mid-sale: what it answers then.
struct Outage {
    process: Process,
    entries: String,
    /// A buyer who joins only once the queue is down.
    late: String,
}

/// Starts a service on the queue `redis_args` name, opens a room, admits one buyer, runs `stop`
/// (the queue goes away), and checks the service fails closed: joins and unadmitted gated
/// orders are 503, the admission issued before still buys its order, other products flow, and
/// readiness (200) and the metrics report the queue down.
async fn the_queue_goes_down(redis_args: &[&str], stop: impl AsyncFnOnce()) -> Outage {
    let mut args = vec!["all"];
    args.extend_from_slice(redis_args);
    let process = start(&args).await;
    let addr = process.addr.clone();
    let room = unique_room("outage");
    put_room(
        &[&process],
        &room,
        &json!({"skus": ["FLASH-3"], "admissions": 100, "interval_ms": 1000, "state": "open"}),
    )
    .await;
    let entries = format!("/waiting-rooms/{room}/entries");
    let early = buyer("outage-early");
    // A quiet room admits at once, once the admission is on a replica: a loaded machine may
    // answer 503 (ask again) while a fresh cluster's replica is slow to acknowledge.
    let deadline = Instant::now() + Duration::from_secs(10);
    let admitted = loop {
        let (status, answer) = call(&addr, "POST", &entries, &early, &[], None).await;
        if status == 200 {
            break answer;
        }
        assert!(
            status == 503 && Instant::now() < deadline,
            "a quiet room admits at once: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let admission = admitted["admission_token"]
        .as_str()
        .expect("admission")
        .to_owned();

    stop().await;
    let late = buyer("outage-late");
    let (status, _, bytes) = request(
        &addr,
        "POST",
        &entries,
        &[("authorization", &format!("Bearer {late}"))],
        None,
    )
    .await
    .expect("answer");
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&bytes));
    let problem = body(&bytes);
    assert_eq!(
        problem["type"],
        "https://ordership.dev/problems/waiting-room-unavailable"
    );

    // Without an admission, a gated order cannot get one now: 503, not through.
    let (status, refused) = place(&addr, &late, "FLASH-3", None).await;
    assert_eq!(status, 503, "{refused}");
    // An admission issued before the outage still buys its order (the gate needs no Redis).
    let (status, order) = place(&addr, &early, "FLASH-3", Some(&admission)).await;
    assert_eq!(status, 201, "{order}");
    // Other products are not affected at all.
    let (status, order) = place(&addr, &late, "PLAIN-1", None).await;
    assert_eq!(status, 201, "{order}");

    // Ready (orders flow), with the queue reported down; and in the metrics.
    let (status, ready) = http(&addr, "GET", "/health/ready", None).await;
    assert_eq!(status, 200);
    let checks = body(&ready)["checks"].clone();
    let queue = checks
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "waiting-room-queue")
        .expect("the queue's check")
        .clone();
    assert_eq!(queue["ok"], false, "{checks}");
    assert_eq!(queue["required"], false);
    let (_, metrics) = http(&addr, "GET", "/metrics", None).await;
    assert!(
        String::from_utf8_lossy(&metrics).contains("ordership_waiting_room_queue_up 0"),
        "metrics report the queue down"
    );
    Outage {
        process,
        entries,
        late,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_joins_and_unadmitted_gated_orders_fail_closed_and_the_rest_flows() {
    let redis = OwnRedis::start().await;
    let url = redis.url();
    let mut port = 0;
    let outage = the_queue_goes_down(&["--redis-url", &url], async || {
        port = redis.stop().await;
    })
    .await;
    // Redis comes back (empty, on the same port): the service recovers by itself.
    let _redis = OwnRedis::start_on(port).await;
    let addr = &outage.process.addr;
    eventually(Duration::from_secs(20), "joins work again", || async {
        call(addr, "POST", &outage.entries, &outage.late, &[], None)
            .await
            .0
            == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_whole_redis_cluster_down_joins_are_503_gated_orders_fail_closed_and_the_queue_is_down()
 {
    let cluster = OwnCluster::start_at(17300).await;
    let nodes = cluster.nodes.clone();
    the_queue_goes_down(&["--redis-url", &nodes, "--redis-cluster"], async || {
        cluster.stop();
    })
    .await;
}

/// The order service on PostgreSQL (the unique constraints are the database's).
pub(crate) async fn on_postgres() -> Process {
    let database = ordership_postgres::testing::fresh_database_url().await;
    start(&["all", "--database-url", &database]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_admission_buys_exactly_one_order_under_a_hundred_concurrent_posts() {
    let process = on_postgres().await;
    let addr = process.addr.clone();
    let room = unique_room("once");
    put_room(
        &[&process],
        &room,
        &json!({"skus": ["FLASH-4"], "admissions": 10, "interval_ms": 1000, "state": "open"}),
    )
    .await;
    let token = buyer("once-buyer");
    let (status, entry) = call(
        &addr,
        "POST",
        &format!("/waiting-rooms/{room}/entries"),
        &token,
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "{entry}");
    let admission = entry["admission_token"]
        .as_str()
        .expect("admission")
        .to_owned();

    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (addr, token, admission) = (addr.clone(), token.clone(), admission.clone());
        posts.spawn(async move { place(&addr, &token, "FLASH-4", Some(&admission)).await });
    }
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(done) = posts.join_next().await {
        let (status, answer) = done.expect("task");
        if status != 201 {
            assert_eq!(
                answer["type"], "https://ordership.dev/problems/admission-used",
                "{answer}"
            );
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&201), Some(&1), "{statuses:?}");
    assert_eq!(statuses.get(&409), Some(&99), "{statuses:?}");

    // Admitted once per room: joining again after ordering is refused, even with the queue
    // emptied.
    let (status, again) = call(
        &addr,
        "POST",
        &format!("/waiting-rooms/{room}/entries"),
        &token,
        &[],
        None,
    )
    .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(
        again["type"],
        "https://ordership.dev/problems/already-ordered"
    );
}

/// A Redis Cluster of the test's own (3 masters, 3 replicas), stopped on drop.
struct OwnCluster {
    dir: PathBuf,
    nodes: String,
}

impl OwnCluster {
    async fn start() -> Self {
        Self::start_at(17100).await
    }

    /// On the first free ports from `base` (tests that run at once start from different ones).
    async fn start_at(base: u16) -> Self {
        let dir = std::env::temp_dir().join(unique_room("ordership-cluster"));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/redis-cluster.sh");
        let output = Command::new("bash")
            .arg(&script)
            .args(["start", dir.to_str().expect("utf-8 path")])
            .env("REDIS_CLUSTER_BASE_PORT", base.to_string())
            .stderr(Stdio::inherit())
            .output()
            .await
            .expect("scripts/redis-cluster.sh runs");
        assert!(output.status.success(), "the cluster started");
        let nodes = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Self { dir, nodes }
    }

    /// The ports of the master that serves `key` and of its replica.
    async fn master_and_replica_for(&self, key: &str) -> (String, String) {
        let any = self.nodes.split(',').next().expect("a node");
        let any_port = any.rsplit(':').next().expect("port");
        let slot: u16 = redis_cli(any_port, &["cluster", "keyslot", key])
            .await
            .parse()
            .expect("slot");
        let nodes = redis_cli(any_port, &["cluster", "nodes"]).await;
        let fields: Vec<Vec<&str>> = nodes
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let master = fields
            .iter()
            .find(|f| {
                f[2].contains("master")
                    && !f[2].contains("fail")
                    && f[8..].iter().any(|range| {
                        let (from, to) = range.split_once('-').unwrap_or((range, range));
                        (from.parse().unwrap_or(u16::MAX)..=to.parse().unwrap_or(0)).contains(&slot)
                    })
            })
            .expect("the slot's master");
        let replica = fields
            .iter()
            .find(|f| f[3] == master[0])
            .expect("the master's replica");
        let port = |address: &str| {
            address
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .expect("a port")
                .to_owned()
        };
        (port(master[1]), port(replica[1]))
    }

    /// The port of the replica of the master that serves `key`.
    async fn replica_of_master_for(&self, key: &str) -> String {
        self.master_and_replica_for(key).await.1
    }

    /// SIGKILL of the node on `port`: no shutdown, nothing handed over.
    async fn kill(&self, port: &str) {
        let pid = std::fs::read_to_string(self.dir.join(format!("redis-{port}.pid")))
            .expect("the node's pid file");
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "the node on {port} killed");
    }

    /// Starts the node on `port` again (it rejoins the cluster, as a replica after a failover).
    async fn restart(&self, port: &str) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/redis-cluster.sh");
        let status = Command::new("bash")
            .arg(&script)
            .args(["restart", self.dir.to_str().expect("utf-8 path"), port])
            .status()
            .await
            .expect("scripts/redis-cluster.sh runs");
        assert!(status.success(), "the node on {port} started again");
    }
}

impl OwnCluster {
    /// Stops every node (again on drop, which finds nothing left to stop).
    fn stop(&self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/redis-cluster.sh");
        let _ = std::process::Command::new("bash")
            .arg(script)
            .args(["stop", self.dir.to_str().unwrap_or_default()])
            .status();
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_mid_sale_keeps_the_rate_and_every_buyer() {
    let cluster = OwnCluster::start().await;
    let (processes, addrs, room) = three_processes_and_a_room(
        &["--redis-url", &cluster.nodes, "--redis-cluster"],
        "failover",
    )
    .await;
    let replica = cluster
        .replica_of_master_for(&format!("{{wr:{room}}}:seq"))
        .await;

    let sale = tokio::spawn({
        let room = room.clone();
        async move { flash_sale(&addrs, &room, 600).await }
    });
    // Mid-sale: once some buyers are in, the room's master hands over to its replica.
    until_admitted(&processes[0].addr, &room, 120).await;
    // A manual failover hands over without losing writes — from a replica in sync.
    eventually(
        Duration::from_secs(30),
        "the replica is in sync",
        || async {
            redis_cli(&replica, &["info", "replication"])
                .await
                .contains("master_link_status:up")
        },
    )
    .await;
    assert_eq!(redis_cli(&replica, &["cluster", "failover"]).await, "OK");
    eventually(
        Duration::from_secs(20),
        "the replica became master",
        || async { redis_cli(&replica, &["role"]).await.starts_with("master") },
    )
    .await;
    let report = sale.await.expect("the sale ran");
    assert_fair(&report, 600, 50);
}

/// Polls `room` on the process at `addr` until `admitted` buyers are in.
async fn until_admitted(addr: &str, room: &str, admitted: u64) {
    eventually(Duration::from_secs(30), "buyers admitted", || async {
        let (_, room_now) = http(addr, "GET", &format!("/waiting-rooms/{room}"), None).await;
        body(&room_now)["queue"]["admitted"].as_u64().unwrap_or(0) >= admitted
    })
    .await;
}

/// A master SIGKILLed mid-sale: its replica takes over with whatever it had received. An
/// admission is told to its buyer only once it is on the replica (`WAIT`), so the admissions the
/// dead master made and never replicated were told to nobody: the new master cannot let a second
/// set of buyers in within one interval. Counted over every interval across the failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_mid_sale_never_lets_more_than_the_rate_in_within_an_interval() {
    let cluster = OwnCluster::start_at(17500).await;
    let (processes, addrs, room) = three_processes_and_a_room(
        &["--redis-url", &cluster.nodes, "--redis-cluster"],
        "killed",
    )
    .await;
    let (master, replica) = cluster
        .master_and_replica_for(&format!("{{wr:{room}}}:seq"))
        .await;
    let sale = tokio::spawn({
        let room = room.clone();
        // The room's slot is out for a few seconds: buyers ask again for longer.
        async move { flash_sale_with(&addrs, &room, 600, &["--post-retries", "10"]).await }
    });
    until_admitted(&processes[0].addr, &room, 120).await;
    cluster.kill(&master).await;
    eventually(Duration::from_secs(30), "the replica took over", || async {
        redis_cli(&replica, &["role"]).await.starts_with("master")
    })
    .await;
    // The dead master comes back as the new master's replica: admissions can be told again.
    cluster.restart(&master).await;
    let report = sale.await.expect("the sale ran");
    // The slot's outage pauses admissions: no throughput is asked of those seconds.
    assert_safe(&report, 600, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_sells_at_its_own_price_and_refuses_any_other() {
    let url = suite_redis();
    let process = start(&["all", "--redis-url", &url]).await;
    let addr = process.addr.clone();
    let room = unique_room("price");
    put_room(
        &[&process],
        &room,
        &json!({"skus": ["FLASH-9"], "admissions": 100, "interval_ms": 1000, "state": "open",
                "unit_price": {"amount": 9900, "currency": "KRW"}}),
    )
    .await;
    let (status, shown) = http(&addr, "GET", &format!("/waiting-rooms/{room}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body(&shown)["unit_price"],
        json!({"amount": 9900, "currency": "KRW"})
    );
    let kim = buyer("price-kim");
    let (status, admitted) = call(
        &addr,
        "POST",
        &format!("/waiting-rooms/{room}/entries"),
        &kim,
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "a quiet room admits at once: {admitted}");
    let admission = admitted["admission_token"].as_str().expect("admission");
    let order = |amount| {
        let kim = kim.clone();
        let addr = addr.clone();
        async move {
            call(
                &addr,
                "POST",
                "/orders",
                &kim,
                &[("admission-token", admission)],
                Some(&order_at("FLASH-9", amount)),
            )
            .await
        }
    };
    // The buyer's own price is refused, whatever the admission, and spends nothing.
    let (status, refused) = order(1).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["errors"][0]["field"], "lines[0].unit_price",
        "{refused}"
    );
    let (status, placed) = order(9900).await;
    assert_eq!(status, 201, "the admission still buys its order: {placed}");
    // A bad price in the room itself is the operator's 400.
    let (status, bad) = http(
        &addr,
        "PUT",
        &format!("/waiting-rooms/{room}"),
        Some(&json!({"skus": ["FLASH-9"], "state": "open",
                     "unit_price": {"amount": 9900, "currency": "krw"}})),
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&bad));
}
