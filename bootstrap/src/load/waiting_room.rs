//! `ordership load --flash-sale ROOM --buyers N`: N buyers (each a customer with a development
//! token) join a waiting room at once, wait by polling their entry, and order the room's product
//! with their admission token. Reports how the room admitted them — admissions per interval
//! against the rate, fairness (admissions out of ticket order), time in the queue — and what the
//! orders got.
//!
//! Buyers are spread over every `--target` (comma-separated base URLs), so several instances of
//! the order service tick one shared queue.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use hyper::{Method, Uri};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::order::{call, retrying};
use super::report::{Percentiles, percentiles};
use super::{HttpClient, client_for};
use crate::cli::{AuthArgs, LoadArgs};

/// The room as `GET /waiting-rooms/{room}` shows it.
#[derive(Debug, Clone)]
struct Room {
    sku: String,
    admissions: u32,
    interval_ms: u64,
    validity_ms: i64,
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

/// Admissions per interval of the room's rate, over the intervals from the first admission to
/// the last.
#[derive(Debug, Serialize)]
pub struct Intervals {
    pub intervals: u64,
    pub max: u64,
    pub mean: f64,
    /// Intervals with more admissions than the rate allows (must be 0).
    pub over_rate: u64,
}

/// The report of a flash-sale run.
#[derive(Debug, Serialize)]
pub struct WaitingRoomReport {
    pub room: String,
    pub buyers: usize,
    pub targets: usize,
    pub rate_admissions: u32,
    pub rate_interval_ms: u64,
    pub elapsed_seconds: f64,
    /// Joins answered per second, while everyone was joining.
    pub joins_per_second: f64,
    pub join_latency_ms: Percentiles,
    pub admitted: usize,
    pub admissions_per_interval: Intervals,
    /// Buyers admitted before someone holding an earlier ticket (must be 0).
    pub out_of_order: usize,
    /// Tickets handed to more than one buyer (must be 0).
    pub duplicate_tickets: usize,
    /// Buyers put back in the queue with their queue token (their entry had been lost).
    pub rejoined: usize,
    /// From joining to admission.
    pub queue_time_ms: Percentiles,
    pub orders_placed: usize,
    /// Every outcome: `placed`, or a refusal's problem type, or why no admission came.
    pub outcomes: BTreeMap<String, usize>,
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
        "lines": [{ "sku": s.room.sku, "quantity": 1, "unit_price": { "amount": 1250, "currency": "KRW" } }],
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

/// Admissions per interval, and buyers admitted ahead of an earlier ticket.
fn judge(buyers: &[Buyer], room: &Room) -> (Intervals, usize, usize) {
    let interval = i64::try_from(room.interval_ms.max(1)).unwrap_or(i64::MAX);
    let mut per_window: BTreeMap<i64, u64> = BTreeMap::new();
    for at in buyers.iter().filter_map(|b| b.admitted_at_ms) {
        *per_window.entry(at.div_euclid(interval)).or_default() += 1;
    }
    let admitted: u64 = per_window.values().sum();
    let intervals = match (per_window.keys().next(), per_window.keys().next_back()) {
        (Some(first), Some(last)) => u64::try_from(last - first + 1).unwrap_or(1),
        _ => 0,
    };
    let summary = Intervals {
        intervals,
        max: per_window.values().copied().max().unwrap_or(0),
        #[allow(clippy::cast_precision_loss, reason = "a report")]
        mean: if intervals == 0 {
            0.0
        } else {
            admitted as f64 / intervals as f64
        },
        over_rate: per_window
            .values()
            .filter(|n| **n > u64::from(room.admissions))
            .count() as u64,
    };
    let mut by_ticket: Vec<(u64, i64)> = buyers
        .iter()
        .filter_map(|b| Some((b.ticket?, b.admitted_at_ms?)))
        .collect();
    by_ticket.sort_unstable();
    let mut latest = i64::MIN;
    let mut out_of_order = 0;
    for (_, at) in &by_ticket {
        if *at < latest {
            out_of_order += 1;
        }
        latest = latest.max(*at);
    }
    let mut seen = HashSet::new();
    let duplicates = buyers
        .iter()
        .filter_map(|b| b.ticket)
        .filter(|t| !seen.insert(*t))
        .count();
    (summary, out_of_order, duplicates)
}

/// Runs the flash sale and prints its report; fails when the room broke its rate, its order or
/// its tickets, or a buyer got no admission or no order.
///
/// # Errors
/// Bad arguments, an unknown room, or a broken rule.
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
    let room = read_room(&client, &bases[0], room_id, &tokens[0]).await?;
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
    };
    print(&report, args.json)?;
    if report.admissions_per_interval.over_rate > 0 {
        bail!("the room admitted more than its rate in some intervals");
    }
    if report.out_of_order > 0 || report.duplicate_tickets > 0 {
        bail!("admissions out of ticket order, or tickets handed out twice");
    }
    if report.orders_placed < buyers {
        bail!(
            "{} of {buyers} buyers did not get an order placed",
            buyers - report.orders_placed
        );
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the report is the command's output")]
fn print(r: &WaitingRoomReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let a = &r.admissions_per_interval;
    let q = &r.queue_time_ms;
    let j = &r.join_latency_ms;
    println!(
        "room              {} ({} buyers on {} target(s))",
        r.room, r.buyers, r.targets
    );
    println!(
        "rate              {} every {} ms",
        r.rate_admissions, r.rate_interval_ms
    );
    println!("elapsed           {:.2} s", r.elapsed_seconds);
    println!(
        "joins             {:.0}/s  latency p50 {:.1} ms  p99 {:.1} ms",
        r.joins_per_second, j.p50, j.p99
    );
    println!(
        "admitted          {} in {} intervals: max {} per interval, mean {:.2}, {} over the rate",
        r.admitted, a.intervals, a.max, a.mean, a.over_rate
    );
    println!(
        "fairness          {} admitted out of ticket order; {} duplicate tickets; {} rejoined",
        r.out_of_order, r.duplicate_tickets, r.rejoined
    );
    println!(
        "time in queue     p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        q.p50, q.p99, q.max
    );
    let outcomes: Vec<String> = r.outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "orders            {} placed; {}",
        r.orders_placed,
        outcomes.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(ticket: u64, at: i64) -> Buyer {
        Buyer {
            ticket: Some(ticket),
            admitted_at_ms: Some(at),
            ..failed("placed")
        }
    }

    #[test]
    fn intervals_order_and_tickets_are_judged() {
        let room = Room {
            sku: "HOT".into(),
            admissions: 2,
            interval_ms: 1000,
            validity_ms: 300_000,
        };
        let buyers = [
            admitted(1, 10_100),
            admitted(2, 10_100),
            admitted(3, 11_000),
            admitted(4, 12_500),
            admitted(5, 12_400),
            admitted(5, 12_600),
        ];
        let (intervals, out_of_order, duplicates) = judge(&buyers, &room);
        assert_eq!(intervals.intervals, 3);
        assert_eq!(intervals.max, 3);
        assert_eq!(intervals.over_rate, 1, "three in the interval from 12 s");
        assert_eq!(out_of_order, 1, "ticket 5 admitted before ticket 4");
        assert_eq!(duplicates, 1);
    }
}
