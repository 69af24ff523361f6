//! The real `ordership` binary, over TCP, as a user runs it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Builds the binary (a no-op when it is up to date) and returns its path.
pub(crate) fn binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "--quiet", "-p", "ordership", "--bin", "ordership"]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo build runs");
    assert!(
        status.success(),
        "cargo build of the ordership binary failed"
    );
    profile_dir.join("ordership")
}

/// The development key every process of these tests signs and verifies with: one file of this
/// test build's own, so runs never touch the user's key.
pub(crate) fn dev_key_file() -> &'static str {
    concat!(env!("CARGO_TARGET_TMPDIR"), "/dev-signing-key.pem")
}

/// The tests' development key.
pub(crate) fn dev_key() -> &'static ordership_http::auth::DevKey {
    static KEY: std::sync::OnceLock<ordership_http::auth::DevKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        ordership_http::auth::DevKey::load_or_create(std::path::Path::new(dev_key_file()))
            .expect("the tests' development key")
    })
}

/// A bearer token of the tests' key: customer `c-e2e`, who is also a courier and an operator.
pub(crate) fn token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        let all = ordership_http::auth::Scope::ALL;
        dev_key()
            .mint("c-e2e", &all, Duration::from_secs(6 * 3600))
            .expect("token")
    })
}

/// `ordership` as these tests run it: on the tests' development key.
pub(crate) fn command() -> Command {
    let mut command = Command::new(binary());
    command
        .env("ORDERSHIP_DEV_KEY_FILE", dev_key_file())
        .env("ORDERSHIP_DEV_AUTH", "true")
        .env_remove("ORDERSHIP_LOAD_TOKEN")
        // The suite's Redis is for the tests that ask for it (`--redis-url`), not for everyone.
        .env_remove("REDIS_URL")
        .env_remove("ORDERSHIP_REDIS_CLUSTER");
    command
}

/// `ordership load` against the order API at `addr`, for a fault test: `orders` orders, 8 at a
/// time, a failed POST sent again up to 20 times, a JSON report; `deadline` per order, and the
/// run gives up after `stall` without progress.
pub(crate) fn load_through_a_fault(
    addr: &str,
    orders: usize,
    deadline: &str,
    stall: &str,
) -> Command {
    let mut load = command();
    load.args(["load", "--target", &format!("http://{addr}")])
        .args([
            "--orders",
            &orders.to_string(),
            "--concurrency",
            "8",
            "--json",
        ])
        .args([
            "--post-retries",
            "20",
            "--deadline",
            deadline,
            "--stall-limit",
            stall,
        ]);
    load
}

/// A running `ordership` process and the address it listens on.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

pub(crate) async fn start(args: &[&str]) -> Process {
    start_with_env(args, &[]).await
}

/// [`start`] with these environment variables set.
pub(crate) async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Process {
    let mut all = args.to_vec();
    all.extend(["--http-addr", "127.0.0.1:0"]);
    spawn_with_env(&all, "listening on http://", env).await
}

/// Starts `ordership` with `args` and waits for a log line containing `marker`; the address is
/// what follows the marker.
pub(crate) async fn spawn(args: &[&str], marker: &str) -> Process {
    spawn_with_env(args, marker, &[]).await
}

/// [`spawn`] with these environment variables set.
pub(crate) async fn spawn_with_env(args: &[&str], marker: &str, env: &[(&str, &str)]) -> Process {
    let mut child = command()
        .args(args)
        .envs(env.iter().copied())
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_BROKERS")
        .env_remove("ORDERSHIP_KAFKA_NAMESPACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("ordership starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    // What it logged so far, shown when it never gets to listen.
    let mut log = Vec::new();
    let addr = loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "ordership logged no address in time; its log:\n{}",
                    log.join("\n")
                )
            })
            .expect("read stdout");
        let Some(line) = line else {
            let status = child.wait().await.expect("exit status");
            panic!(
                "ordership {args:?} exited ({status}) before listening; its log:\n{}",
                log.join("\n")
            );
        };
        if let Some(rest) = line.split(marker).nth(1) {
            break rest.split(['"', ' ']).next().expect("address").to_owned();
        }
        log.push(line);
    };
    // Keep draining the log so the process never blocks on a full pipe (into a file, when asked).
    let mut kept = log_file(&format!("{}-{}", args[0], child.id().unwrap_or_default()));
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(file) = kept.as_mut() {
                use std::io::Write;
                let _ = writeln!(file, "{line}");
            }
        }
    });
    Process { child, addr }
}

/// A file named `name.log` in `ORDERSHIP_TEST_LOG_DIR`, when that is set: where a diagnosis keeps
/// the logs of the processes a test starts (otherwise they are read and dropped).
pub(crate) fn log_file(name: &str) -> Option<std::fs::File> {
    let dir = std::path::PathBuf::from(std::env::var_os("ORDERSHIP_TEST_LOG_DIR")?);
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .ok()
}

/// One HTTP/1.1 request on a fresh connection; returns status and body.
pub(crate) async fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Vec<u8>) {
    try_http(addr, method, path, body, None)
        .await
        .expect("a whole HTTP response")
}

/// One HTTP/1.1 request on a fresh connection, with an optional Idempotency-Key; `None` when the
/// connection failed or closed before a whole response arrived (the server died).
pub(crate) async fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Option<(u16, Vec<u8>)> {
    let key = idempotency_key.map(|k| ("idempotency-key", k));
    let (status, _, payload) = request(addr, method, path, key.as_slice(), body).await?;
    Some((status, payload))
}

/// One HTTP/1.1 request on a fresh connection with these headers (the tests' token unless an
/// `authorization` is among them); the status, the response head and the body. `None` when the
/// connection failed or closed before a whole response arrived.
pub(crate) async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Option<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
    {
        extra.push_str(&format!("authorization: Bearer {}\r\n", token()));
    }
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok())?;
    let mut payload = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    Some((status, head, payload))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 4 + size..];
    }
    out
}

pub(crate) fn order(country: &str, i: usize) -> Value {
    json!({
        "lines": [{ "sku": "ABC-123", "quantity": 1 + i % 3, "unit_price": { "amount": 1250, "currency": "KRW" } }],
        "shipping_address": { "recipient": "Kim", "line1": "1 Sejong-daero", "city": "Seoul",
                              "postal_code": "04524", "country": country }
    })
}

pub(crate) async fn terminate(mut process: Process) {
    let pid = process.child.id().expect("pid").to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(15), process.child.wait())
        .await
        .expect("ordership stops within 15 s of SIGTERM")
        .expect("wait");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_settles_two_hundred_concurrent_orders_and_stops_on_sigterm() {
    let process = start(&["all"]).await;
    let addr = process.addr.clone();

    let placed = (0..200).map(|i| {
        let addr = addr.clone();
        tokio::spawn(async move {
            let country = if i % 5 == 0 { "BR" } else { "KR" };
            let (status, body) = http(&addr, "POST", "/orders", Some(&order(country, i))).await;
            assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
            let order: Value = serde_json::from_slice(&body).expect("json");
            (order["id"].as_str().expect("id").to_owned(), country)
        })
    });
    let mut orders = Vec::new();
    for task in placed {
        orders.push(task.await.expect("task"));
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    for (id, country) in &orders {
        loop {
            let (status, body) = http(&addr, "GET", &format!("/orders/{id}"), None).await;
            assert_eq!(status, 200);
            let order: Value = serde_json::from_slice(&body).expect("json");
            let expected = if *country == "BR" {
                ("cancelled", "compensated")
            } else {
                ("confirmed", "completed")
            };
            if (order["status"].as_str(), order["saga"]["state"].as_str())
                == (Some(expected.0), Some(expected.1))
            {
                if *country == "BR" {
                    assert_eq!(
                        order["cancellation_reason"],
                        "delivery rejected: country BR is not served"
                    );
                }
                break;
            }
            assert!(Instant::now() < deadline, "order {id} stuck at {order}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let (status, docs) = http(&addr, "GET", "/docs", None).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&docs).contains("api-reference"));
    let (status, _) = http(&addr, "GET", "/health/ready", None).await;
    assert_eq!(status, 200);
    terminate(process).await;
}

#[tokio::test]
async fn the_separate_services_say_clearly_what_they_need() {
    let output = command()
        .args(["order-service", "--http-addr", "127.0.0.1:0"])
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("needs PostgreSQL and Kafka"), "{text}");

    let output = command()
        .args(["all", "--relay-mode", "cdc", "--http-addr", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_BROKERS")
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("--relay-mode cdc"), "{text}");

    // Without a key to verify tokens with, a separate service does not start.
    let unreachable = [
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
        "--kafka-brokers",
        "127.0.0.1:1",
        "--http-addr",
        "127.0.0.1:0",
    ];
    for extra in [&[][..], &["--jwks-url", "http://127.0.0.1:1/jwks"][..]] {
        let output = command()
            .arg("delivery-service")
            .args(unreachable)
            .args(extra)
            .env_remove("ORDERSHIP_DEV_AUTH")
            .output()
            .await
            .expect("runs");
        assert!(!output.status.success());
        let text =
            String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
        let needed = if extra.is_empty() {
            "--jwks-url or --jwt-public-key"
        } else {
            "--jwt-issuer"
        };
        assert!(text.contains(needed), "{text}");
    }
}

/// `ordership token` mints from the development key every process on the machine shares.
#[tokio::test]
async fn ordership_token_mints_a_token_of_the_shared_development_key() {
    let output = command()
        .args(["token", "--customer", "c-7", "--scope", "orders,courier"])
        .output()
        .await
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let caller = dev_key()
        .authenticator()
        .verify(token.trim())
        .await
        .expect("a token of the shared key");
    assert_eq!(caller.subject(), "c-7");
    assert!(caller.has(ordership_http::auth::Scope::Courier));
    assert!(!caller.has(ordership_http::auth::Scope::Admin));

    let output = command()
        .args(["token", "--scope", "superuser"])
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown scope"));
}

/// Reads from `stream` until the server closes it; how long that took (panics after `limit`).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection was still open after {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let process = start(&["--http-header-timeout", "1s"]).await;
    let limit = Duration::from_secs(5);

    // Half a request line, then nothing.
    let mut half = TcpStream::connect(&process.addr).await.expect("connect");
    half.write_all(b"GET /health/li").await.expect("send");
    assert!(closed_within(&mut half, limit).await >= Duration::from_millis(900));

    // One header line at a time, each in time, the whole header never.
    let mut trickle = TcpStream::connect(&process.addr).await.expect("connect");
    trickle
        .write_all(b"GET /health/live HTTP/1.1\r\n")
        .await
        .expect("send");
    let started = Instant::now();
    let mut closed = false;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if trickle
            .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed || closed_within(&mut trickle, limit).await < limit,
        "a trickled header is cut off"
    );
    assert!(started.elapsed() < limit);

    // A whole request is answered; the idle keep-alive connection is closed afterwards.
    let mut idle = TcpStream::connect(&process.addr).await.expect("connect");
    idle.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("send");
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).await.expect("an answer");
    assert_eq!(&answer, b"HTTP/1.1 200");
    closed_within(&mut idle, limit).await;

    // And the server still serves.
    let (status, _) = http(&process.addr, "GET", "/health/live", None).await;
    assert_eq!(status, 200);
    terminate(process).await;
}

/// Runs `ordership <args…> --database-url <database>`; whether it succeeded, its standard
/// output and standard error.
async fn on_database(database: &str, args: &[&str]) -> (bool, String, String) {
    let output = command()
        .args(args)
        .args(["--database-url", database])
        .output()
        .await
        .expect("ordership runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `ordership outbox …` on `database`; its standard output.
async fn outbox_command(database: &str, args: &[&str]) -> String {
    let (ok, out, err) = on_database(database, &[&["outbox"], args].concat()).await;
    assert!(ok, "{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sets_and_changes_the_outbox_shards_and_a_service_expecting_others_refuses_to_start()
 {
    let database = ordership_postgres::testing::fresh_database_url().await;
    let (ok, _, err) = on_database(&database, &["migrate", "--relay-shards", "6"]).await;
    assert!(ok, "{err}");
    let shards = |listed: &str| -> Vec<Value> {
        listed
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    };
    let listed = shards(&outbox_command(&database, &["shards"]).await);
    assert_eq!(listed.len(), 6, "{listed:?}");
    assert_eq!(listed[5]["shard"], 5);
    assert!(listed.iter().all(|s| s["owner"].is_null()), "{listed:?}");
    let said = outbox_command(
        &database,
        &["--service", "delivery", "reshard", "--shards", "3"],
    )
    .await;
    assert!(said.contains("3 shards"), "{said}");
    let listed = shards(&outbox_command(&database, &["--service", "delivery", "shards"]).await);
    assert_eq!(listed.len(), 3, "{listed:?}");

    let output = command()
        .args([
            "delivery-service",
            "--relay-shards",
            "6",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--database-url",
            &database,
            "--kafka-brokers",
            "127.0.0.1:1",
        ])
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("--relay-shards is 6, but the outbox of schema delivery has 3 shards")
            && text.contains("ordership outbox reshard"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_redrives_and_purges_parked_messages() {
    use ordership_domain::ports::{OrderTransaction, UnitOfWork};
    let database = ordership_postgres::testing::fresh_database_url().await;
    let pool =
        ordership_postgres::connect(&ordership_postgres::PgConfig::new(&database)).expect("pool");
    let store = ordership_postgres::PgOrderStore::new(pool.clone());
    let (a, b) = (
        ordership_tests::fixtures::message("ordership.order.events", "k1", 1),
        ordership_tests::fixtures::message("ordership.order.events", "k2", 2),
    );
    let mut tx = UnitOfWork::<dyn OrderTransaction>::begin(&store)
        .await
        .expect("begin");
    tx.outbox().append(&a).await.expect("append");
    tx.outbox().append(&b).await.expect("append");
    let positions: Vec<i64> = ordership_tests::contract::claim_every_shard(tx.outbox(), 10, &[])
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    for p in &positions {
        tx.outbox()
            .park(*p, "message too large", chrono::Utc::now())
            .await
            .expect("park");
    }
    tx.commit().await.expect("commit");

    let listed = outbox_command(&database, &["parked"]).await;
    let lines: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert_eq!(lines[0]["message_id"], a.id.to_string());
    assert_eq!(lines[0]["reason"], "message too large");

    let (first, second) = (positions[0].to_string(), positions[1].to_string());
    assert!(
        outbox_command(&database, &["redrive", &first])
            .await
            .starts_with("1 ")
    );
    assert!(
        outbox_command(&database, &["purge", &second])
            .await
            .starts_with("1 ")
    );
    assert_eq!(outbox_command(&database, &["parked"]).await, "");
    let mut tx = UnitOfWork::<dyn OrderTransaction>::begin(&store)
        .await
        .expect("begin");
    let claimable = ordership_tests::contract::claimable_ids(tx.outbox()).await;
    assert_eq!(claimable, [a.id], "re-driven, the other one gone");
    drop(tx);
    pool.close().await;
}

/// Runs `ordership saga …` on `database`; whether it succeeded, its standard output and error.
async fn saga_command(database: &str, args: &[&str]) -> (bool, String, String) {
    on_database(database, &[&["saga"], args].concat()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_shows_and_compensates_sagas_from_the_command_line() {
    use std::sync::Arc;
    let database = ordership_postgres::testing::fresh_database_url().await;
    let pool =
        ordership_postgres::connect(&ordership_postgres::PgConfig::new(&database)).expect("pool");
    let orders = ordership_application::OrderService::new(
        Arc::new(ordership_postgres::PgOrderStore::new(pool)),
        Arc::new(ordership_memory::SystemClock),
        Arc::new(ordership_memory::UuidV7Ids),
        ordership_domain::SagaPolicy::default(),
    );
    let render = |_: &ordership_application::OrderView| ordership_domain::ports::StoredResponse {
        status: 201,
        body: Vec::new(),
    };
    let ordership_application::Outcome::Done(view) = orders
        .place_order(
            ordership_tests::fixtures::place_order("KR"),
            None,
            None,
            &render,
        )
        .await
        .expect("placed")
    else {
        panic!("placed")
    };
    let id = view.order.id().to_string();

    let (ok, listed, err) =
        saga_command(&database, &["list", "--state", "awaiting_delivery"]).await;
    assert!(ok, "{err}");
    let listed: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["order_id"], id.as_str());

    let (ok, out, err) = saga_command(
        &database,
        &["retry", &id, "--actor", "ops-1", "--reason", "x"],
    )
    .await;
    assert!(!ok, "only a failed saga can be retried");
    assert!(err.contains("cannot be retried"), "{out}{err}");

    let (ok, forced, err) = saga_command(
        &database,
        &[
            "compensate",
            &id,
            "--actor",
            "ops-1",
            "--reason",
            "duplicate order",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let forced: serde_json::Value = serde_json::from_str(forced.trim()).expect("JSON");
    assert_eq!(forced["status"], "cancelled");
    assert_eq!(forced["saga"]["state"], "cancelling");

    let (ok, shown, err) = saga_command(&database, &["show", &id]).await;
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("JSON");
    let last = &shown["history"][1];
    assert_eq!(last["cause"], "operator_force_compensation");
    assert_eq!(
        (last["actor"].as_str(), last["reason"].as_str()),
        (Some("ops-1"), Some("duplicate order"))
    );
}

/// Runs `ordership dlq …` on `database`; its standard output.
async fn dlq_command(database: &str, args: &[&str]) -> String {
    let (ok, out, err) = on_database(database, &[&["dlq"], args].concat()).await;
    assert!(ok, "{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_shows_redrives_and_purges_dead_letters() {
    use ordership_domain::ports::{DeliveryTransaction, UnitOfWork};
    let database = ordership_postgres::testing::fresh_database_url().await;
    let pool =
        ordership_postgres::connect(&ordership_postgres::PgConfig::new(&database)).expect("pool");
    let store = ordership_postgres::PgDeliveryStore::new(pool.clone());
    let (a, b) = (
        ordership_tests::fixtures::message("ordership.delivery.commands", "k1", 1),
        ordership_tests::fixtures::message("ordership.delivery.commands", "k2", 2),
    );
    let mut tx = UnitOfWork::<dyn DeliveryTransaction>::begin(&store)
        .await
        .expect("begin");
    for m in [&a, &b] {
        tx.dead_letters()
            .record(
                "delivery-service.commands",
                m,
                "no such country",
                5,
                chrono::Utc::now(),
            )
            .await
            .expect("record");
    }
    tx.commit().await.expect("commit");

    let listed: Vec<serde_json::Value> = dlq_command(&database, &["--service", "delivery", "list"])
        .await
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["message_id"], a.id.to_string());
    assert_eq!(listed[0]["reason"], "no such country");
    assert_eq!(listed[0]["attempts"], 5);
    let first = listed[0]["id"].to_string();
    let shown: serde_json::Value = serde_json::from_str(
        &dlq_command(&database, &["--service", "delivery", "show", &first]).await,
    )
    .expect("JSON");
    assert_eq!(shown["payload"], a.payload);
    assert_eq!(
        shown["headers"]["traceparent"],
        a.traceparent.clone().unwrap_or_default()
    );

    let out = dlq_command(
        &database,
        &["--service", "delivery", "redrive", "--id", &first],
    )
    .await;
    assert!(out.starts_with("1 dead letters sent back"), "{out}");
    let queued: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT message_id, key FROM delivery.outbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("outbox");
    assert_eq!(
        queued,
        [(*a.id.as_uuid(), "k1".to_owned())],
        "back through the outbox"
    );
    let out = dlq_command(&database, &["--service", "delivery", "purge", "--all"]).await;
    assert!(out.starts_with("1 dead letters deleted"), "{out}");
    assert_eq!(
        dlq_command(&database, &["--service", "delivery", "list"]).await,
        ""
    );
}
