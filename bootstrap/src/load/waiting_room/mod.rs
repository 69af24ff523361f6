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
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use hyper::{Method, Uri};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::order::{call, retrying};
use super::report::percentiles;
use super::{HttpClient, client_for};
use crate::cli::{AuthArgs, LoadArgs};

mod report;

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
    in_queue: Option<Duration>,
    /// `placed`, a problem type of the refusal, or why the buyer got no admission.
    outcome: String,
    rejoined: usize,
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

fn problem_type(body: &Value, status: u16) -> String {
    body["type"]
        .as_str()
        .and_then(|t| t.rsplit('/').next())
        .map_or_else(|| format!("http_{status}"), str::to_owned)
}

/// One request (within the run's concurrency), sent again while it gets no answer or a 5xx.
async fn request(
    s: &Shared,
    (method, uri, token): (Method, &Uri, &str),
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let send = || async {
        let _permit = s.permits.acquire().await?;
        call(
            &s.client,
            s.args.request_timeout,
            (method.clone(), uri.clone(), token),
            headers,
            body,
        )
        .await
    };
    retrying(s.args.post_retries, send, || true).await
}

struct Shared {
    client: HttpClient,
    args: LoadArgs,
    room_id: String,
    room: Room,
    bases: Vec<String>,
    permits: Semaphore,
    run_id: String,
}

fn failed(outcome: &str) -> Buyer {
    Buyer {
        ticket: None,
        admitted_at_ms: None,
        join: None,
        in_queue: None,
        outcome: outcome.to_owned(),
        rejoined: 0,
    }
}

async fn one_buyer(s: Arc<Shared>, i: usize, token: String) -> Buyer {
    let base = &s.bases[i % s.bases.len()];
    let (Ok(entries), Ok(me)) = (
        format!("{base}/waiting-rooms/{}/entries", s.room_id).parse::<Uri>(),
        format!("{base}/waiting-rooms/{}/entries/me", s.room_id).parse::<Uri>(),
    ) else {
        return failed("bad_target");
    };
    let started = Instant::now();
    let joined = request(&s, (Method::POST, &entries, &token), &[], None).await;
    let mut buyer = failed("error");
    buyer.join = Some(started.elapsed());
    let Ok((mut status, mut entry)) = joined else {
        return buyer;
    };
    let mut queue_token = String::new();
    let mut deadline = started + s.args.deadline;
    loop {
        match status {
            200 | 202 => {
                buyer.ticket = entry["ticket"].as_u64().or(buyer.ticket);
                if let Some(t) = entry["queue_token"].as_str() {
                    t.clone_into(&mut queue_token);
                }
            }
            404 => {}
            _ => {
                buyer.outcome = problem_type(&entry, status);
                return buyer;
            }
        }
        match (status, entry["status"].as_str()) {
            (200, Some("admitted")) => break,
            (200, Some("expired")) => {
                buyer.outcome = "admission_expired".into();
                return buyer;
            }
            // Units may come back, but a run ends here.
            (200, Some("sold_out")) => {
                buyer.outcome = "sold_out".into();
                return buyer;
            }
            (202, _) => {
                // The buyer's own wait, plus the deadline, before giving up.
                let wait = Duration::from_millis(entry["estimated_wait_ms"].as_u64().unwrap_or(0));
                deadline = deadline.max(Instant::now() + wait + s.args.deadline);
                let poll = entry["poll_after_ms"].as_u64().unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(poll)).await;
            }
            _ => {}
        }
        if Instant::now() > deadline {
            buyer.outcome = "not_admitted".into();
            return buyer;
        }
        let answer = if status == 404 {
            // The queue lost the buyer (restart, failover): back at the ticket of their token.
            buyer.rejoined += 1;
            let headers = [("queue-token", queue_token.as_str())];
            let headers = if queue_token.is_empty() {
                &headers[..0]
            } else {
                &headers[..]
            };
            request(&s, (Method::POST, &entries, &token), headers, None).await
        } else {
            request(&s, (Method::GET, &me, &token), &[], None).await
        };
        let Ok(answer) = answer else {
            return buyer;
        };
        (status, entry) = answer;
    }
    buyer.in_queue = Some(started.elapsed());
    let admission = entry["admission_token"].as_str().unwrap_or_default();
    buyer.admitted_at_ms = entry["expires_at"]
        .as_str()
        .and_then(|at| at.parse::<DateTime<Utc>>().ok())
        .map(|at| at.timestamp_millis() - s.room.validity_ms);
    let body = json!({
        "lines": [{ "sku": s.room.sku, "quantity": 1, "unit_price": s.room.unit_price }],
        "shipping_address": { "recipient": "Flash Buyer", "line1": "1 Sejong-daero", "city": "Seoul",
                              "postal_code": "04524", "country": "KR" }
    });
    let key = format!("{}-{i}", s.run_id);
    let Ok(orders) = format!("{base}/orders").parse::<Uri>() else {
        return failed("bad_target");
    };
    buyer.outcome = match request(
        &s,
        (Method::POST, &orders, &token),
        &[("admission-token", admission), ("idempotency-key", &key)],
        Some(&body),
    )
    .await
    {
        Ok((201, _)) => "placed".into(),
        Ok((status, body)) => problem_type(&body, status),
        Err(_) => "error".into(),
    };
    buyer
}

pub(super) async fn run(args: &LoadArgs, auth: &AuthArgs, room_id: &str) -> anyhow::Result<()> {
    let buyers = args.buyers;
    if buyers == 0 || args.concurrency == 0 {
        bail!("--buyers and --concurrency must be positive");
    }
    if args.token.is_some() {
        bail!("a flash sale needs a token per buyer: it mints development tokens (no --token)");
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
    let mut outcomes = BTreeMap::new();
    for b in &results {
        *outcomes.entry(b.outcome.clone()).or_insert(0) += 1;
    }
    let report = WaitingRoomReport {
        room: room_id.to_owned(),
        buyers,
        targets: shared.bases.len(),
        rate_admissions: room.admissions,
        rate_interval_ms: room.interval_ms,
        elapsed_seconds: elapsed,
        #[allow(clippy::cast_precision_loss, reason = "a report")]
        joins_per_second: joins.len() as f64 / joining.as_secs_f64().max(1e-9),
        join_latency_ms: percentiles(joins),
        admitted: results
            .iter()
            .filter(|b| b.admitted_at_ms.is_some())
            .count(),
        admissions_per_interval: intervals,
        out_of_order,
        duplicate_tickets,
        rejoined: results.iter().map(|b| b.rejoined).sum(),
        queue_time_ms: percentiles(results.iter().filter_map(|b| b.in_queue).collect()),
        orders_placed: outcomes.get("placed").copied().unwrap_or(0),
        outcomes,
        stock: None,
        units_sold: None,
        oversold: 0,
    };
    let mut report = report;
    if let Some((stock, sold_before)) = room.stock {
        let after = read_room(&shared.client, &shared.bases[0], room_id, &tokens_for_read)
            .await?
            .stock
            .map_or(sold_before, |(_, sold)| sold);
        // One unit per order: the run may sell what was left when it began, no more.
        let placed = u64::try_from(report.orders_placed)?;
        let available = stock.saturating_sub(sold_before);
        report.stock = Some(stock);
        report.units_sold = Some(after);
        report.oversold = placed
            .saturating_sub(available)
            .max(after.saturating_sub(stock));
    }
    print(&report, args.json)?;
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
    // With a stock, buyers beyond it are told "sold out"; every unit left must sell.
    let can_sell = room.stock.map_or(buyers, |(stock, sold)| {
        buyers.min(usize::try_from(stock.saturating_sub(sold)).unwrap_or(usize::MAX))
    });
    if report.orders_placed < can_sell {
        bail!(
            "{} of {can_sell} buyers who could buy did not get an order placed",
            can_sell - report.orders_placed
        );
    }
    Ok(())
}
