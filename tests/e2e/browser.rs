//! Pages in a real browser: headless Chromium (Debian's `chromium`) driven by `playwright-core`
//! (`tests/browser/page.mjs`), with every request to anything but this machine blocked — what a
//! laptop on a plane or a network without egress sees. `scripts/test.sh` installs both when
//! absent; without them these tests fail, they never skip.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::process::Command;

use crate::binary::{http, start, terminate};

fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Loads `url` in the browser harness and waits until every one of `texts` is visible.
async fn load(url: &str, texts: &[String]) -> Value {
    let dir = harness_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "the browser harness is not installed: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    let output = Command::new("node")
        .arg(dir.join("page.mjs"))
        .arg(url)
        .args(texts)
        .output()
        .await
        .expect("node runs (scripts/test.sh installs Node.js and Chromium when absent)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the harness printed no report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(
        output.status.success(),
        "not everything appeared: missing {}, errors {}",
        report["missing"],
        report["errors"]
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reference_renders_every_operation_with_no_network() {
    let process = start(&[]).await;
    let (status, body) = http(&process.addr, "GET", "/openapi.json", None).await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_slice(&body).expect("the OpenAPI document");
    // Every operation's summary must be on the rendered page.
    let mut summaries = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let summary = operation["summary"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has a summary"));
            // Rendered as Markdown: `code` is an element of its own, so look for the text before it.
            let plain = summary.split('`').next().unwrap_or(summary).trim_end();
            summaries.push(plain.to_owned());
        }
    }
    assert!(summaries.len() >= 10, "every operation: {summaries:?}");

    let report = load(&format!("http://{}/docs", process.addr), &summaries).await;
    assert_eq!(report["title"], "ordership API reference");
    assert_eq!(
        report["blocked"],
        Value::Array(Vec::new()),
        "the page asked for nothing beyond this server"
    );
    assert_eq!(
        report["errors"],
        Value::Array(Vec::new()),
        "no script errors"
    );
    let text = report["text"].as_str().expect("the page's text");
    for path in ["/orders", "/orders/{id}/cancel", "/deliveries/{id}/ship"] {
        assert!(text.contains(path), "{path} is rendered");
    }
    terminate(process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_page_shows_the_position_then_the_admission_and_orders() {
    use crate::binary::{dev_key, request};
    use ordership_http::auth::Scope;

    let process = start(&["all"]).await;
    // One buyer every 3 s, and five buyers ahead: the page waits unless the browser takes over
    // 12 s to start (on a loaded machine it has taken over 6 s), and is admitted within 18 s.
    let room = serde_json::json!({"skus": ["FLASH-PAGE"], "admissions": 1, "interval_ms": 3000, "state": "open"});
    let (status, _) = http(
        &process.addr,
        "PUT",
        "/waiting-rooms/page-sale",
        Some(&room),
    )
    .await;
    assert_eq!(status, 200);
    let token = |name: &str| {
        dev_key()
            .mint(name, &[Scope::Orders], std::time::Duration::from_secs(600))
            .expect("token")
    };
    for ahead in ["ahead-1", "ahead-2", "ahead-3", "ahead-4", "ahead-5"] {
        let auth = format!("Bearer {}", token(ahead));
        let (status, _, _) = request(
            &process.addr,
            "POST",
            "/waiting-rooms/page-sale/entries",
            &[("authorization", &auth)],
            None,
        )
        .await
        .expect("joined");
        assert!(status == 200 || status == 202);
    }
    let url = format!(
        "http://{}/waiting-rooms/page-sale#token={}",
        process.addr,
        token("page-buyer")
    );
    let steps: Vec<String> = [
        "Your position",
        "Estimated wait",
        "You're in!",
        "click=Place order",
        "Order placed",
    ]
    .map(str::to_owned)
    .to_vec();
    let report = load(&url, &steps).await;
    assert_eq!(report["title"], "Waiting room — ordership");
    assert_eq!(
        report["blocked"],
        Value::Array(Vec::new()),
        "nothing beyond this server"
    );
    assert_eq!(
        report["errors"],
        Value::Array(Vec::new()),
        "no script errors"
    );
    assert!(
        report["text"]
            .as_str()
            .is_some_and(|t| t.contains("Order placed")),
        "{report}"
    );
    terminate(process).await;
}
