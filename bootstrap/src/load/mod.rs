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
use http_body_util::Full;
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::cli::{AuthArgs, LoadArgs};

mod order;
mod report;
mod waiting_room;

use order::one_order;
#[cfg(test)]
use order::order_body;
pub use report::{Percentiles, Report};
use report::{intervals, percentiles, print_report};
pub use waiting_room::{Intervals, WaitingRoomReport};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const SERVED: [&str; 6] = ["KR", "JP", "US", "DE", "GB", "FR"];
const UNSERVED: [&str; 3] = ["BR", "CN", "ZA"];

/// What happened to one order.
#[derive(Debug, Clone)]
struct Sample {
    post: Duration,
    settled: Option<Duration>,
    outcome: String,
    /// When the order was done with, from the start of the run.
    at: Duration,
}

/// Customers a load run places orders for, each with a development token.
const CUSTOMERS: usize = 64;

/// The bearer tokens orders are placed with.
enum Tokens {
    /// The one token given.
    Given(String),
    /// A development token per load customer (`load-0` …).
    PerCustomer(Vec<String>),
}

impl Tokens {
    fn new(args: &LoadArgs, auth: &AuthArgs) -> anyhow::Result<Self> {
        if let Some(token) = &args.token {
            return Ok(Self::Given(token.clone()));
        }
        let (key, _) = crate::wiring::auth::dev_key(auth)?;
        let ttl = args.deadline.saturating_mul(4) + Duration::from_secs(3600);
        let tokens = (0..CUSTOMERS)
            .map(|c| {
                key.mint(
                    &format!("load-{c}"),
                    &[ordership_http::auth::Scope::Orders],
                    ttl,
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self::PerCustomer(tokens))
    }

    /// The token order `i` is placed and followed with.
    fn for_order(&self, i: usize) -> &str {
        match self {
            Self::Given(token) => token,
            Self::PerCustomer(tokens) => &tokens[i % tokens.len()],
        }
    }
}

/// What the workers of one run share.
struct Run {
    tokens: Tokens,
    /// The next order to place.
    next: AtomicUsize,
    /// Orders finished (whatever their outcome).
    done: AtomicUsize,
    post_retries: AtomicUsize,
    /// HTTP requests sent to place and follow orders.
    requests: AtomicUsize,
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
                let of = if total == usize::MAX {
                    String::new()
                } else {
                    format!("/{total}")
                };
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "load: {n}{of} settled, {rate:.0}/s"
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

/// An HTTP client keeping up to `connections` idle connections per host.
fn client_for(connections: usize) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(connections)
        .build_http()
}

/// Runs the load and prints the report; fails if any order did not settle or could not be placed.
/// With `--flash-sale`, runs a flash sale instead.
///
/// # Errors
/// Bad arguments, or orders that failed.
pub async fn run(args: &LoadArgs, auth: &AuthArgs) -> anyhow::Result<()> {
    if let Some(room) = &args.flash_sale {
        return waiting_room::run(args, auth, room).await;
    }
    if args.orders == 0 || args.concurrency == 0 || !(0.0..=1.0).contains(&args.unserved_ratio) {
        bail!("--orders and --concurrency must be positive, --unserved-ratio between 0 and 1");
    }
    if args.report_every.is_some_and(|every| every.is_zero()) {
        bail!("--report-every must be positive");
    }
    if args.wait.is_zero() || args.wait > Duration::from_secs(30) {
        bail!("--wait must be between 1 and 30 seconds");
    }
    // A soak places orders until its time is up: as many as it takes.
    let total = if args.duration.is_some() {
        usize::MAX
    } else {
        args.orders
    };
    let base = args.target.trim_end_matches('/').to_owned();
    base.parse::<Uri>()
        .with_context(|| format!("--target {base:?} is not a URL"))?;
    let client = client_for(args.concurrency);
    // Keys unique to this run, so a second run against the same deployment places new orders.
    let run_id = format!(
        "load-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let run = Arc::new(Run {
        tokens: Tokens::new(args, auth)?,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        post_retries: AtomicUsize::new(0),
        requests: AtomicUsize::new(0),
        last_progress: Mutex::new(Instant::now()),
        stalled_at: OnceLock::new(),
    });
    let samples = Arc::new(Mutex::new(Vec::with_capacity(args.orders)));
    let started = Instant::now();
    let bar = tokio::spawn(progress(Arc::clone(&run), total, started));
    let watchdog = tokio::spawn(watch_for_stall(Arc::clone(&run), total, args.stall_limit));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.min(total) {
        let (client, base, args, run, samples, run_id) = (
            client.clone(),
            base.clone(),
            args.clone(),
            Arc::clone(&run),
            Arc::clone(&samples),
            run_id.clone(),
        );
        workers.spawn(async move {
            while run.stalled_at.get().is_none()
                && args.duration.is_none_or(|soak| started.elapsed() < soak)
            {
                let i = run.next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let mut sample = one_order(&client, &base, i, &args, &run, &run_id).await;
                sample.at = started.elapsed();
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
        orders: samples.len(),
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
        not_placed: if args.duration.is_some() {
            0
        } else {
            args.orders.saturating_sub(samples.len())
        },
        intervals: args
            .report_every
            .map(|every| intervals(&samples, every))
            .unwrap_or_default(),
        outcomes,
        post_retries: run.post_retries.load(Ordering::Relaxed),
        requests: run.requests.load(Ordering::Relaxed),
        requests_per_order: run.requests.load(Ordering::Relaxed) as f64
            / samples.len().max(1) as f64,
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
            report.orders
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
