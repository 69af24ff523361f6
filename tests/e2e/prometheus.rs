//! The operations files, loaded by the real thing: a Prometheus (Debian's, which scripts/test.sh
//! installs) scrapes the two services under a short load with the deploy alert rules loaded, and
//! every expression of every panel of the Grafana dashboard is evaluated through its HTTP API:
//! each must return data. A metric the dashboard uses that the services stop exporting turns this
//! red: a second Prometheus drops one of them at every scrape, and each query is evaluated once
//! more per metric it reads with that metric renamed to one nobody exports. The dashboard JSON is
//! also checked for what Grafana needs to load it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::binary::{http, order};
use crate::kafka::{Cluster, Deployment, load};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_owned()
}

fn dashboard() -> Value {
    let path = repository().join("deploy/grafana/dashboards/ordership.json");
    serde_json::from_slice(&std::fs::read(&path).expect("the dashboard")).expect("JSON")
}

/// The panel types Grafana 11 ships with that the dashboard may use.
const PANEL_TYPES: &[&str] = &[
    "timeseries",
    "stat",
    "gauge",
    "bargauge",
    "table",
    "text",
    "row",
];

#[test]
fn the_dashboard_has_what_grafana_needs_to_load_it() {
    let dashboard = dashboard();
    for field in ["uid", "title", "schemaVersion", "panels"] {
        assert!(!dashboard[field].is_null(), "the dashboard has no {field}");
    }
    let provisioned = std::fs::read_to_string(
        repository().join("deploy/grafana/provisioning/datasources/prometheus.yml"),
    )
    .expect("the datasource");
    let mut ids = HashSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        assert!(
            ids.insert(panel["id"].as_u64().expect("a numeric id")),
            "{title}: id used twice"
        );
        let kind = panel["type"].as_str().expect("a type");
        assert!(
            PANEL_TYPES.contains(&kind),
            "{title}: unknown panel type {kind}"
        );
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        let uid = panel["datasource"]["uid"]
            .as_str()
            .expect("a datasource uid");
        assert_eq!(panel["datasource"]["type"], "prometheus", "{title}");
        assert!(
            provisioned.contains(&format!("uid: {uid}")),
            "{title}: datasource {uid} is not provisioned"
        );
        let mut refs = HashSet::new();
        for target in panel["targets"].as_array().expect("targets") {
            assert!(target["expr"].is_string(), "{title}: a target without expr");
            assert!(
                refs.insert(target["refId"].as_str().expect("refId")),
                "{title}: refId twice"
            );
        }
    }
}

/// The dashboard's expressions, with Grafana's variables set as Grafana would for a short range.
fn expressions() -> Vec<(String, String)> {
    dashboard()["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| {
                    let expr = t["expr"].as_str().expect("expr");
                    let expr = expr
                        .replace("$__rate_interval", "15s")
                        .replace("$__interval", "5s")
                        .replace("$__range", "1m");
                    assert!(!expr.contains('$'), "{title}: a variable left in {expr}");
                    (title.clone(), expr)
                })
        })
        .collect()
}

/// Percent-encodes a query parameter.
fn encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus of the test's own scraping `targets` every second, with the deploy alert rules;
/// `dropping` names a metric it throws away at every scrape, as if the services no longer
/// exported it.
struct Prometheus {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Prometheus {
    async fn start(targets: &[&str], dropping: Option<&str>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ordership-prometheus-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let rules = repository().join("deploy/prometheus/alerts.yml");
        let config = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n  - job_name: ordership\n    static_configs:\n      - targets: {}\n{}",
            rules.display(),
            json!(targets),
            dropping.map_or_else(String::new, |name| format!(
                "    metric_relabel_configs:\n      - {{ source_labels: [__name__], regex: {name}, action: drop }}\n"
            ))
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("Prometheus is required for this test ({e}): apt-get install prometheus (scripts/test.sh does)")
            });
        let prometheus = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while prometheus.get("/-/ready").await.0 != 200 {
            assert!(Instant::now() < deadline, "Prometheus did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        prometheus
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        match crate::binary::try_http(&self.addr, "GET", path, None, None).await {
            Some((status, body)) => (status, serde_json::from_slice(&body).unwrap_or(Value::Null)),
            None => (0, Value::Null),
        }
    }

    /// The instant vector `expr` evaluates to now.
    async fn query(&self, expr: &str) -> Value {
        let (status, body) = self
            .get(&format!("/api/v1/query?query={}", encoded(expr)))
            .await;
        assert_eq!(status, 200, "{expr}: {body}");
        body["data"]["result"].clone()
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `c` may be part of a metric name.
const fn in_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metrics `expr` reads (ordership's and the HTTP middleware's), in order, each once.
fn metrics_in(expr: &str) -> Vec<&str> {
    let mut metrics: Vec<&str> = Vec::new();
    for token in expr.split(|c: char| !in_name(c)) {
        if (token.starts_with("ordership_") || token.starts_with("http_"))
            && !metrics.contains(&token)
        {
            metrics.push(token);
        }
    }
    metrics
}

/// `expr` reading `to` wherever it read the metric `from` (whole names only).
fn renamed(expr: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(expr.len() + to.len());
    let mut token = String::new();
    for c in expr.chars().chain(std::iter::once('\0')) {
        if in_name(c) {
            token.push(c);
            continue;
        }
        out.push_str(if token == from { to } else { &token });
        token.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

impl Prometheus {
    /// The expressions (panel, expression) that evaluate to no data now.
    async fn without_data(&self, expressions: &[(String, String)]) -> Vec<(String, String)> {
        let mut empty = Vec::new();
        for (panel, expr) in expressions {
            if self.query(expr).await.as_array().is_none_or(Vec::is_empty) {
                empty.push((panel.clone(), expr.clone()));
            }
        }
        empty
    }
}

/// The metric the second Prometheus throws away, as if the services stopped exporting it.
const DROPPED: &str = "ordership_consumer_lag_messages";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_both_services_and_every_dashboard_query_returns_data() {
    let deployment = Deployment::start(Cluster::for_test().await).await;
    let (orders, deliveries) = (&deployment.orders.addr, &deployment.deliveries.addr);
    let targets = [orders.as_str(), deliveries.as_str()];
    let prometheus = Prometheus::start(&targets, None).await;
    let dropping = Prometheus::start(&targets, Some(DROPPED)).await;

    // A flash sale with one buyer turned away at the gate (no admission), then ordinary load.
    let room =
        json!({"skus": ["FLASH-PROM"], "admissions": 10, "interval_ms": 1000, "state": "open"});
    let (status, body) = http(orders, "PUT", "/waiting-rooms/prometheus", Some(&room)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let mut gated = order("KR", 1);
    gated["lines"][0]["sku"] = json!("FLASH-PROM");
    let (status, _) = http(orders, "POST", "/orders", Some(&gated)).await;
    assert_eq!(
        status, 403,
        "a buyer without admission is refused at the gate"
    );
    let report = load(orders, 300).await;
    assert_eq!(report["outcomes"]["confirmed"], 240, "{report}");

    // Both targets up, and enough scrapes since the load for every rate to have two samples.
    let deadline = Instant::now() + Duration::from_secs(60);
    while prometheus.query("sum(up)").await[0]["value"][1] != "2" {
        assert!(
            Instant::now() < deadline,
            "Prometheus does not scrape both services"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, rules) = prometheus.get("/api/v1/rules").await;
    let loaded = rules["data"]["groups"][0]["rules"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(loaded >= 7, "the alert rules are loaded: {rules}");

    let expressions = expressions();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut empty = prometheus.without_data(&expressions).await;
    while !empty.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        empty = prometheus.without_data(&expressions).await;
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );

    // The red side. A metric missing from the scrapes empties exactly the queries that read it...
    let reading_dropped: Vec<(String, String)> = expressions
        .iter()
        .filter(|(_, expr)| metrics_in(expr).contains(&DROPPED))
        .cloned()
        .collect();
    assert!(!reading_dropped.is_empty(), "the dashboard reads {DROPPED}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut empty = dropping.without_data(&expressions).await;
    while empty != reading_dropped && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        empty = dropping.without_data(&expressions).await;
    }
    assert_eq!(
        empty, reading_dropped,
        "without {DROPPED}, the queries reading it (and only they) have no data"
    );
    // ...and so does every other metric the dashboard reads: each query, with any one of its
    // metrics replaced by one nobody exports, has no data (no `or vector(0)` hides a deletion).
    let mut unnoticed = Vec::new();
    let mut metrics = HashSet::new();
    for (panel, expr) in &expressions {
        for metric in metrics_in(expr) {
            metrics.insert(metric.to_owned());
            let without = renamed(expr, metric, &format!("{metric}_deleted"));
            if !prometheus
                .query(&without)
                .await
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                unnoticed.push(format!(
                    "{panel}: {metric} deleted, {without} still has data"
                ));
            }
        }
    }
    assert!(
        unnoticed.is_empty(),
        "deletions nobody would notice: {unnoticed:#?}"
    );
    eprintln!(
        "prometheus: {} dashboard expressions return data; each of the {} metrics they read, deleted, \
         empties them; {loaded} alert rules loaded",
        expressions.len(),
        metrics.len()
    );
    dropping.stop().await;
    prometheus.stop().await;
    deployment.stop().await;
}

#[test]
fn metric_names_are_found_and_replaced_whole() {
    let expr = "histogram_quantile(0.99, sum by (le) (rate(ordership_relay_lag_seconds_bucket{service=\"order\"}[15s]))) / ordership_sagas";
    assert_eq!(
        metrics_in(expr),
        ["ordership_relay_lag_seconds_bucket", "ordership_sagas"]
    );
    assert_eq!(
        renamed(expr, "ordership_sagas", "gone"),
        expr.replace("/ ordership_sagas", "/ gone")
    );
}
