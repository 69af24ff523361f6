//! `ordership load` on faulty days, against a stand-in for the order API whose faults the test
//! chooses: a POST that fails once per key is sent again with the same key (one order each), and a
//! system where nothing settles makes the run stop, report and exit non-zero instead of waiting
//! for hours.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// How the stand-in behaves.
#[derive(Clone, Copy)]
enum Fault {
    /// The first POST of every key fails with 503; orders then settle at once.
    FlakyPost,
    /// Orders are accepted and never settle.
    NothingSettles,
}

/// Idempotency-Key → (POSTs seen, the order id given out).
type Keys = Arc<Mutex<HashMap<String, (u32, Option<String>)>>>;

#[derive(Clone)]
struct StandIn {
    fault: Fault,
    keys: Keys,
}

async fn place(State(s): State<StandIn>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut keys = s.keys.lock().expect("lock");
    let entry = keys.entry(key).or_insert((0, None));
    entry.0 += 1;
    if matches!(s.fault, Fault::FlakyPost) && entry.0 == 1 {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
    }
    let id = entry
        .1
        .get_or_insert_with(|| uuid::Uuid::now_v7().to_string())
        .clone();
    (StatusCode::CREATED, Json(json!({ "id": id })))
}

async fn read(State(s): State<StandIn>, Path(id): Path<String>) -> Json<Value> {
    Json(match s.fault {
        Fault::FlakyPost => {
            json!({ "id": id, "status": "confirmed", "saga": { "state": "completed" } })
        }
        Fault::NothingSettles => {
            json!({ "id": id, "status": "pending", "saga": { "state": "awaiting_delivery" } })
        }
    })
}

async fn stand_in(fault: Fault) -> (String, StandIn) {
    let state = StandIn {
        fault,
        keys: Arc::default(),
    };
    let app = Router::new()
        .route("/orders", post(place))
        .route("/orders/{id}", get(read))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), state)
}

/// Runs `ordership load` with `args`; its exit success and its JSON report.
async fn load(target: &str, args: &[&str]) -> (bool, Value) {
    let output = crate::binary::command()
        .args(["load", "--target", target, "--json"])
        .args(args)
        .output()
        .await
        .expect("ordership load runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_post_is_sent_again_with_the_same_key_and_the_run_succeeds() {
    let (target, stand_in) = stand_in(Fault::FlakyPost).await;
    let (ok, report) = load(&target, &["--orders", "20", "--concurrency", "4"]).await;
    assert!(ok, "every order settled: {report}");
    assert_eq!(report["outcomes"], json!({ "confirmed": 20 }));
    assert_eq!(report["post_retries"], 20, "one retry per order");
    assert_eq!(report["stalled"], false);
    let keys = stand_in.keys.lock().expect("lock");
    assert_eq!(keys.len(), 20, "one key per order, the same on its retry");
    assert!(keys.values().all(|(posts, id)| *posts == 2 && id.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_nothing_settles_the_run_stops_reports_and_fails() {
    let (target, _stand_in) = stand_in(Fault::NothingSettles).await;
    // Built first, so that the clock measures the run and not a build.
    crate::binary::binary();
    let started = Instant::now();
    let (ok, report) = load(
        &target,
        &[
            "--orders",
            "200",
            "--concurrency",
            "4",
            "--stall-limit",
            "1s",
        ],
    )
    .await;
    assert!(!ok, "a stalled run exits non-zero: {report}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it stops at the stall limit, not after every order's deadline"
    );
    assert_eq!(report["stalled"], true);
    assert_eq!(
        report["outcomes"],
        json!({ "not_settled": 4 }),
        "those in flight"
    );
    assert_eq!(report["not_placed"], 196);
}
