//! `ordership load`: places orders against a running deployment (a mix of served and unserved
//! countries), follows each to its terminal state, and reports throughput, latency percentiles
//! from `POST` to terminal state, and counts per outcome.
//!
//! Built for faulty days too: every request has a timeout, a failed `POST` is sent again with the
//! same Idempotency-Key (so a retry never places a second order), and when nothing settles for
//! `--stall-limit` the run stops placing, waits for what is in flight, reports what settled and
//! what did not, and exits non-zero.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::LoadArgs;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const SERVED: [&str; 6] = ["KR", "JP", "US", "DE", "GB", "FR"];
const UNSERVED: [&str; 3] = ["BR", "CN", "ZA"];

/// What happened to one order.
#[derive(Debug, Clone)]
struct Sample {
    post: Duration,
    settled: Option<Duration>,
    outcome: String,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub orders: usize,
    pub concurrency: usize,
    pub elapsed_seconds: f64,
    /// Orders placed per second (POST answered).
    pub placed_per_second: f64,
    /// Orders that reached a terminal state per second (omitted with --no-wait).
    pub settled_per_second: Option<f64>,
    pub post_latency_ms: Percentiles,
    /// From POST to terminal state (omitted with --no-wait).
    pub settle_latency_ms: Option<Percentiles>,
    pub outcomes: BTreeMap<String, usize>,
    /// POSTs sent again after a failure (same Idempotency-Key).
    pub post_retries: usize,
    /// Orders never placed because the run stalled.
    pub not_placed: usize,
    /// Nothing settled for `--stall-limit`: the run stopped early.
    pub stalled: bool,
}

/// What the workers of one run share.
struct Run {
    /// The next order to place.
    next: AtomicUsize,
    /// Orders finished (whatever their outcome).
    done: AtomicUsize,
    post_retries: AtomicUsize,
    /// When an order last settled (or was placed, with --no-wait).
    last_progress: Mutex<Instant>,
    /// Set when nothing settled for the stall limit.
    stalled_at: OnceLock<Instant>,
}

impl Run {
    fn progressed(&self) {
        *self
            .last_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn since_progress(&self) -> Duration {
        self.last_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    /// Once stalled, what is in flight may wait at most another stall limit.
    fn gave_up(&self, stall_limit: Duration) -> bool {
        self.stalled_at
            .get()
            .is_some_and(|at| at.elapsed() > stall_limit)
    }
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

fn percentiles(mut values: Vec<Duration>) -> Percentiles {
    values.sort_unstable();
    let at = |q: f64| {
        if values.is_empty() {
            return 0.0;
        }
        // Nearest-rank: the smallest value with at least q of the samples at or below it.
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1].as_secs_f64() * 1000.0
    };
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    }
}

fn order_body(i: usize, unserved_ratio: f64) -> Value {
    // Deterministic mix: order i is unserved when the running share falls behind the ratio.
    let unserved = ((i + 1) as f64 * unserved_ratio).floor() > (i as f64 * unserved_ratio).floor();
    let country = if unserved {
        UNSERVED[i % UNSERVED.len()]
    } else {
        SERVED[i % SERVED.len()]
    };
    json!({
        "customer_id": format!("load-{i}"),
        "lines": [{ "sku": "LOAD-1", "quantity": 1 + i % 3, "unit_price": { "amount": 1250, "currency": "KRW" } }],
        "shipping_address": { "recipient": "Load Test", "line1": "1 Sejong-daero", "city": "Seoul",
                              "postal_code": "04524", "country": country }
    })
}

/// One request, given up after `timeout`.
async fn call(
    client: &HttpClient,
    timeout: Duration,
    method: Method,
    uri: Uri,
    body: Option<(&Value, &str)>,
) -> anyhow::Result<(u16, Value)> {
    tokio::time::timeout(timeout, call_once(client, method, uri, body))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
}

async fn call_once(
    client: &HttpClient,
    method: Method,
    uri: Uri,
    body: Option<(&Value, &str)>,
) -> anyhow::Result<(u16, Value)> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    let payload = match body {
        Some((body, key)) => {
            request = request.header("idempotency-key", key);
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    let response = client.request(request.body(Full::new(payload))?).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

fn is_settled(order: &Value) -> bool {
    !matches!(
        order["saga"]["state"].as_str(),
        Some("awaiting_delivery" | "cancelling")
    )
}

/// Places the order, sending the POST again with the same key while it fails for want of an
/// answer or with a 5xx; the last result.
async fn place(
    client: &HttpClient,
    uri: &Uri,
    body: &Value,
    key: &str,
    args: &LoadArgs,
    run: &Run,
) -> anyhow::Result<(u16, Value)> {
    let mut attempt = 0;
    loop {
        let result = call(
            client,
            args.request_timeout,
            Method::POST,
            uri.clone(),
            Some((body, key)),
        )
        .await;
        let retryable = match &result {
            Ok((status, _)) => *status >= 500,
            Err(_) => true,
        };
        if !retryable || attempt >= args.post_retries || run.stalled_at.get().is_some() {
            return result;
        }
        attempt += 1;
        run.post_retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100) * 2u32.saturating_pow(attempt - 1)).await;
    }
}

fn sample(post: Duration, settled: Option<Duration>, outcome: &str) -> Sample {
    Sample {
        post,
        settled,
        outcome: outcome.to_owned(),
    }
}

async fn one_order(
    client: &HttpClient,
    base: &str,
    i: usize,
    args: &LoadArgs,
    run: &Run,
    run_id: &str,
) -> Sample {
    let started = Instant::now();
    let body = order_body(i, args.unserved_ratio);
    let posted = match format!("{base}/orders").parse::<Uri>() {
        Ok(uri) => place(client, &uri, &body, &format!("{run_id}-{i}"), args, run).await,
        Err(e) => Err(e.into()),
    };
    let post = started.elapsed();
    let id = match posted {
        Ok((201, order)) => order["id"].as_str().map(str::to_owned),
        Ok((status, _)) => return sample(post, None, &format!("http_{status}")),
        Err(_) => return sample(post, None, "error"),
    };
    let Some(id) = id else {
        return sample(post, None, "error");
    };
    if args.no_wait {
        run.progressed();
        return sample(post, None, "placed");
    }
    let Ok(uri) = format!("{base}/orders/{id}").parse::<Uri>() else {
        return sample(post, None, "error");
    };
    // Poll often at first, then back off a little, so that measuring does not become the load.
    let mut wait = args.poll_interval;
    loop {
        if let Ok((200, order)) =
            call(client, args.request_timeout, Method::GET, uri.clone(), None).await
            && is_settled(&order)
        {
            run.progressed();
            let outcome = match order["saga"]["state"].as_str() {
                Some("failed") => "saga_failed",
                _ => order["status"].as_str().unwrap_or("unknown"),
            };
            return sample(post, Some(started.elapsed()), outcome);
        }
        if started.elapsed() > args.deadline || run.gave_up(args.stall_limit) {
            return sample(post, None, "not_settled");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 3 / 2).min(args.poll_interval.max(Duration::from_millis(50)));
    }
}

/// Marks the run stalled once nothing settled for the stall limit; returns when the run is over.
async fn watch_for_stall(run: Arc<Run>, total: usize, stall_limit: Duration) {
    loop {
        tokio::time::sleep(
            (stall_limit / 10).clamp(Duration::from_millis(10), Duration::from_secs(1)),
        )
        .await;
        if run.done.load(Ordering::Relaxed) >= total {
            return;
        }
        if run.since_progress() > stall_limit {
            let _ = run.stalled_at.set(Instant::now());
            tracing::warn!(
                stall_limit_s = stall_limit.as_secs_f64(),
                "no order settled within the stall limit: placing no more, waiting for those in flight"
            );
            return;
        }
    }
}

/// Shows progress on stderr: a bar with rate and time left on a terminal (`indicatif`), a line
/// every few seconds otherwise (logs of CI runs and scripts).
async fn progress(run: Arc<Run>, total: usize, started: Instant) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) =
            ProgressStyle::with_template("[{bar:30}] {pos}/{len} settled  {per_sec:.0}  {eta} left")
        {
            bar.set_style(style.progress_chars("#>-"));
        }
        bar
    });
    let every = if bar.is_some() {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    };
    loop {
        tokio::time::sleep(every).await;
        let n = run.done.load(Ordering::Relaxed).min(total);
        match &bar {
            Some(bar) => bar.set_position(n as u64),
            None => {
                let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "load: {n}/{total} settled, {rate:.0}/s"
                );
            }
        }
        if n >= total {
            if let Some(bar) = &bar {
                bar.finish();
            }
            return;
        }
    }
}

/// Runs the load and prints the report; fails if any order did not settle or could not be placed.
///
/// # Errors
/// Bad arguments, or orders that failed.
pub async fn run(args: &LoadArgs) -> anyhow::Result<()> {
    if args.orders == 0 || args.concurrency == 0 || !(0.0..=1.0).contains(&args.unserved_ratio) {
        bail!("--orders and --concurrency must be positive, --unserved-ratio between 0 and 1");
    }
    let base = args.target.trim_end_matches('/').to_owned();
    base.parse::<Uri>()
        .with_context(|| format!("--target {base:?} is not a URL"))?;
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency)
        .build_http();
    // Keys unique to this run, so a second run against the same deployment places new orders.
    let run_id = format!(
        "load-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let run = Arc::new(Run {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        post_retries: AtomicUsize::new(0),
        last_progress: Mutex::new(Instant::now()),
        stalled_at: OnceLock::new(),
    });
    let samples = Arc::new(Mutex::new(Vec::with_capacity(args.orders)));
    let started = Instant::now();
    let bar = tokio::spawn(progress(Arc::clone(&run), args.orders, started));
    let watchdog = tokio::spawn(watch_for_stall(
        Arc::clone(&run),
        args.orders,
        args.stall_limit,
    ));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.min(args.orders) {
        let (client, base, args, run, samples, run_id) = (
            client.clone(),
            base.clone(),
            args.clone(),
            Arc::clone(&run),
            Arc::clone(&samples),
            run_id.clone(),
        );
        workers.spawn(async move {
            while run.stalled_at.get().is_none() {
                let i = run.next.fetch_add(1, Ordering::Relaxed);
                if i >= args.orders {
                    return;
                }
                let sample = one_order(&client, &base, i, &args, &run, &run_id).await;
                samples
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(sample);
                run.done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    bar.abort();
    watchdog.abort();

    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner));
    let mut outcomes = BTreeMap::new();
    for s in &samples {
        *outcomes.entry(s.outcome.clone()).or_insert(0) += 1;
    }
    let settled: Vec<Duration> = samples.iter().filter_map(|s| s.settled).collect();
    let secs = elapsed.as_secs_f64().max(1e-9);
    let report = Report {
        orders: args.orders,
        concurrency: args.concurrency,
        elapsed_seconds: secs,
        placed_per_second: samples
            .iter()
            .filter(|s| !s.outcome.starts_with("http_") && s.outcome != "error")
            .count() as f64
            / secs,
        settled_per_second: (!args.no_wait).then(|| settled.len() as f64 / secs),
        post_latency_ms: percentiles(samples.iter().map(|s| s.post).collect()),
        settle_latency_ms: (!args.no_wait).then(|| percentiles(settled)),
        not_placed: args.orders.saturating_sub(samples.len()),
        outcomes,
        post_retries: run.post_retries.load(Ordering::Relaxed),
        stalled: run.stalled_at.get().is_some(),
    };
    print_report(&report, args.json)?;
    let failed: usize = report
        .outcomes
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "confirmed" | "cancelled" | "shipped" | "delivered" | "placed"
            )
        })
        .map(|(_, n)| n)
        .sum();
    if report.stalled {
        bail!(
            "the run stalled (nothing settled for {:?}): {} orders not placed, {failed} placed but not settled",
            args.stall_limit,
            report.not_placed
        );
    }
    if failed > 0 {
        bail!(
            "{failed} of {} orders did not reach a terminal state",
            args.orders
        );
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the report is the command's output")]
fn print_report(r: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    println!(
        "orders            {} (concurrency {})",
        r.orders, r.concurrency
    );
    println!("elapsed           {:.2} s", r.elapsed_seconds);
    println!("placed            {:.1} orders/s", r.placed_per_second);
    if let Some(rate) = r.settled_per_second {
        println!("settled           {rate:.1} orders/s (POST to terminal state)");
    }
    let p = &r.post_latency_ms;
    println!(
        "POST latency      p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        p.p50, p.p95, p.p99, p.max
    );
    if let Some(p) = &r.settle_latency_ms {
        println!(
            "POST→terminal     p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            p.p50, p.p95, p.p99, p.max
        );
    }
    let outcomes: Vec<String> = r.outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("outcomes          {}", outcomes.join(", "));
    println!("POST retries      {}", r.post_retries);
    if r.stalled {
        println!(
            "STALLED           nothing settled within the stall limit; {} orders not placed",
            r.not_placed
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = percentiles(values);
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
    }

    #[test]
    fn the_unserved_share_follows_the_ratio() {
        let unserved = (0..1000)
            .filter(|i| {
                UNSERVED.contains(
                    &order_body(*i, 0.2)["shipping_address"]["country"]
                        .as_str()
                        .unwrap_or_default(),
                )
            })
            .count();
        assert_eq!(unserved, 200);
    }
}
