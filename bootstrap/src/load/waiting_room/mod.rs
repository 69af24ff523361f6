//! `ordership load --flash-sale ROOM --buyers N`: N buyers (each a customer with a development
//! token) join a waiting room at once, wait by polling their entry, and order the room's product
//! with their admission token. Reports how the room admitted them — admissions per interval
//! against the rate, fairness (admissions out of ticket order), time in the queue — and what the
//! orders got.
//!
//! Buyers are spread over every `--target` (comma-separated base URLs), so several instances of
//! the order service tick one shared queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use hyper::{Method, Uri};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::order::call;
use super::report::percentiles;
use super::{HttpClient, client_for};
use crate::cli::{AuthArgs, LoadArgs};

mod buyer;
mod events;
mod report;

use buyer::{failed, one_buyer};

pub use report::{Intervals, WaitingRoomReport};
use report::{judge, print};

/// The room as `GET /waiting-rooms/{room}` shows it.
#[derive(Debug, Clone)]
struct Room {
    sku: String,
    admissions: u32,
    interval_ms: u64,
    validity_ms: i64,
    /// What buyers pay per unit: the room's price when it has one.
    unit_price: Value,
    /// The units on sale, when the room counts them, and the units held when it was read.
    stock: Option<(u64, u64)>,
}

/// What happened to one buyer.
#[derive(Debug, Clone)]
struct Buyer {
    ticket: Option<u64>,
    /// On the queue's clock (milliseconds), when admitted.
    admitted_at_ms: Option<i64>,
    join: Option<Duration>,
    /// When the buyer joined, and when they were first told the sale is sold out (this
    /// machine's clock).
    joined_at: Option<DateTime<Utc>>,
    in_queue: Option<Duration>,
    told_sold_out: Option<DateTime<Utc>>,
    /// When the buyer's order was placed (the server's clock).
    placed_at: Option<DateTime<Utc>>,
    /// `placed`, a problem type of the refusal, or why the buyer got no admission.
    outcome: String,
    rejoined: usize,
    /// Whether the buyer followed their place on an event stream.
    streamed: bool,
    /// Whether the buyer cancelled the order they placed.
    cancelled: bool,
    /// The order's status once its saga ended.
    order_status: Option<String>,
}

async fn read_room(
    client: &HttpClient,
    base: &str,
    room: &str,
    token: &str,
) -> anyhow::Result<Room> {
    let uri: Uri = format!("{base}/waiting-rooms/{room}").parse()?;
    let (status, body) = call(
        client,
        Duration::from_secs(10),
        (Method::GET, uri, token),
        &[("accept", "application/json")],
        None,
    )
    .await?;
    if status != 200 {
        bail!("GET /waiting-rooms/{room} answered {status}: {body}");
    }
    let number = |field: &str| {
        body[field]
            .as_u64()
            .with_context(|| format!("the room's {field}: {body}"))
    };
    Ok(Room {
        sku: body["skus"][0]
            .as_str()
            .context("the room gates no SKU")?
            .to_owned(),
        admissions: u32::try_from(number("admissions")?)?,
        interval_ms: number("interval_ms")?,
        validity_ms: i64::try_from(number("admission_validity_ms")?)?,
        unit_price: match &body["unit_price"] {
            Value::Null => json!({ "amount": 1250, "currency": "KRW" }),
            price => price.clone(),
        },
        stock: body["stock"]["total"]
            .as_u64()
            .zip(body["stock"]["sold"].as_u64()),
    })
}

struct Shared {
    client: HttpClient,
    args: LoadArgs,
    room_id: String,
    room: Room,
    bases: Vec<String>,
    permits: Semaphore,
    run_id: String,
    /// HTTP requests sent (event streams count one each).
    requests: AtomicUsize,
}

/// Buyers who were waiting when the run sold the last unit left when it began (its `available`-th
/// order, by the server's time of placing): how long after it each was told the sale is sold out.
/// Measured on one machine's clock (the generator's and the services' agree when they share it).
fn sold_out_notices(results: &[Buyer], available: Option<u64>) -> Vec<Duration> {
    let mut placed: Vec<DateTime<Utc>> = results.iter().filter_map(|b| b.placed_at).collect();
    placed.sort_unstable();
    let last_unit = available
        .and_then(|n| usize::try_from(n).ok())
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| placed.get(i).copied());
    let Some(at) = last_unit else {
        return Vec::new();
    };
    results
        .iter()
        .filter(|b| b.joined_at.is_some_and(|joined| joined < at))
        .filter_map(|b| b.told_sold_out)
        .map(|told| (told - at).to_std().unwrap_or_default())
        .collect()
}

pub(super) async fn run(args: &LoadArgs, auth: &AuthArgs, room_id: &str) -> anyhow::Result<()> {
    let buyers = args.buyers;
    if buyers == 0 || args.concurrency == 0 {
        bail!("--buyers and --concurrency must be positive");
    }
    if args.token.is_some() {
        bail!("a flash sale needs a token per buyer: it mints development tokens (no --token)");
    }
    if !(0.0..=1.0).contains(&args.cancel_ratio) {
        bail!("--cancel-ratio must be between 0 and 1");
    }
    let bases: Vec<String> = args
        .target
        .split(',')
        .map(|t| t.trim().trim_end_matches('/').to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    for base in &bases {
        base.parse::<Uri>()
            .with_context(|| format!("--target {base:?} is not a URL"))?;
    }
    let (key, _) = crate::wiring::auth::dev_key(auth)?;
    let run_id = format!(
        "fs{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let ttl = Duration::from_secs(6 * 3600);
    let scope = [ordership_http::auth::Scope::Orders];
    let tokens = (0..buyers)
        .map(|i| key.mint(&format!("{run_id}-{i}"), &scope, ttl))
        .collect::<Result<Vec<_>, _>>()?;
    let client = client_for(args.concurrency);
    let tokens_for_read = tokens[0].clone();
    let room = read_room(&client, &bases[0], room_id, &tokens_for_read).await?;
    let shared = Arc::new(Shared {
        client,
        args: args.clone(),
        room_id: room_id.to_owned(),
        room: room.clone(),
        bases,
        permits: Semaphore::new(args.concurrency),
        run_id,
        requests: AtomicUsize::new(0),
    });
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, token) in tokens.into_iter().enumerate() {
        tasks.spawn(one_buyer(Arc::clone(&shared), i, token));
    }
    let mut results = Vec::with_capacity(buyers);
    while let Some(done) = tasks.join_next().await {
        results.push(done.unwrap_or_else(|_| failed("panicked")));
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let (intervals, out_of_order, duplicate_tickets) = judge(&results, &room);
    let joins: Vec<Duration> = results.iter().filter_map(|b| b.join).collect();
    let joining = joins.iter().max().copied().unwrap_or_default();
    let count = |f: &dyn Fn(&Buyer) -> bool| results.iter().filter(|b| f(b)).count();
    let mut outcomes = BTreeMap::new();
    let mut order_statuses = BTreeMap::new();
    for b in &results {
        *outcomes.entry(b.outcome.clone()).or_insert(0) += 1;
        if let Some(status) = &b.order_status {
            *order_statuses.entry(status.clone()).or_insert(0) += 1;
        }
    }
    let available = room.stock.map(|(total, sold)| total.saturating_sub(sold));
    let notices = sold_out_notices(&results, available);
    let mut report = WaitingRoomReport {
        room: room_id.to_owned(),
        buyers,
        targets: shared.bases.len(),
        rate_admissions: room.admissions,
        rate_interval_ms: room.interval_ms,
        elapsed_seconds: elapsed,
        #[allow(clippy::cast_precision_loss, reason = "a report")]
        joins_per_second: joins.len() as f64 / joining.as_secs_f64().max(1e-9),
        join_latency_ms: percentiles(joins),
        streamed: count(&|b| b.streamed),
        #[allow(clippy::cast_precision_loss, reason = "a report")]
        requests_per_buyer: shared.requests.load(Ordering::Relaxed) as f64 / buyers as f64,
        admitted: count(&|b| b.admitted_at_ms.is_some()),
        admissions_per_interval: intervals,
        out_of_order,
        duplicate_tickets,
        rejoined: results.iter().map(|b| b.rejoined).sum(),
        queue_time_ms: percentiles(results.iter().filter_map(|b| b.in_queue).collect()),
        orders_placed: outcomes.get("placed").copied().unwrap_or(0),
        cancelled: count(&|b| b.cancelled),
        outcomes,
        order_statuses,
        told_sold_out: count(&|b| b.told_sold_out.is_some()),
        sold_out_notice_ms: (!notices.is_empty()).then(|| percentiles(notices)),
        stock: None,
        units_sold: None,
        oversold: 0,
    };
    if let Some((stock, sold_before)) = room.stock {
        let after = read_room(&shared.client, &shared.bases[0], room_id, &tokens_for_read)
            .await?
            .stock
            .map_or(sold_before, |(_, sold)| sold);
        // One unit per order: the run may hold what was left when it began, no more.
        let held = u64::try_from(report.orders_placed - report.cancelled)?;
        let available = stock.saturating_sub(sold_before);
        report.stock = Some(stock);
        report.units_sold = Some(after);
        report.oversold = held
            .saturating_sub(available)
            .max(after.saturating_sub(stock));
    }
    print(&report, args.json)?;
    judge_run(&report, &room, args.join_only)
}

/// Fails the run when the room broke its rate, its order, its tickets or its stock, or a unit
/// that could sell did not (with `join_only`: when a buyer could not join).
fn judge_run(report: &WaitingRoomReport, room: &Room, join_only: bool) -> anyhow::Result<()> {
    let most = report.admissions_per_interval.max_in_any_interval;
    if report.admissions_per_interval.over_rate > 0 || most > u64::from(room.admissions) {
        bail!("the room admitted more than its rate within an interval ({most} at most)");
    }
    if report.out_of_order > 0 || report.duplicate_tickets > 0 {
        bail!("admissions out of ticket order, or tickets handed out twice");
    }
    if report.oversold > 0 {
        bail!("{} units sold beyond the room's stock", report.oversold);
    }
    if join_only {
        let refused: usize = report
            .outcomes
            .iter()
            .filter(|(outcome, _)| !outcome.starts_with("joined_"))
            .map(|(_, n)| n)
            .sum();
        if refused > 0 {
            bail!("{refused} buyers could not join");
        }
        return Ok(());
    }
    // With a stock, buyers beyond it are told "sold out"; every unit left must sell.
    let can_sell = room.stock.map_or(report.buyers, |(stock, sold)| {
        report
            .buyers
            .min(usize::try_from(stock.saturating_sub(sold)).unwrap_or(usize::MAX))
    });
    let kept = report.orders_placed - report.cancelled;
    if kept < can_sell {
        bail!(
            "{} of {can_sell} units that could sell were not ordered",
            can_sell - kept
        );
    }
    Ok(())
}
