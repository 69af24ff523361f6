//! One buyer of a flash-sale run: joins the room, follows their place on the event stream (or
//! by polling), orders with the admission, maybe cancels, and follows the order to its end.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hyper::{Method, Uri};
use serde_json::{Value, json};

use super::events::{self, Events, Opened};
use super::{Buyer, Shared};
use crate::cli::Follow;
use crate::load::order::{call, is_settled, retrying};

/// One request (within the run's concurrency), sent again while it gets no answer or a 5xx.
pub(super) async fn request(
    s: &Shared,
    (method, uri, token): (Method, &Uri, &str),
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let send = || async {
        let _permit = s.permits.acquire().await?;
        s.requests.fetch_add(1, Ordering::Relaxed);
        call(
            &s.client,
            s.args.request_timeout + Duration::from_secs(10),
            (method.clone(), uri.clone(), token),
            headers,
            body,
        )
        .await
    };
    retrying(s.args.post_retries, send, || true).await
}

pub(super) fn problem_type(body: &Value, status: u16) -> String {
    body["type"]
        .as_str()
        .and_then(|t| t.rsplit('/').next())
        .map_or_else(|| format!("http_{status}"), str::to_owned)
}

pub(super) fn failed(outcome: &str) -> Buyer {
    Buyer {
        ticket: None,
        admitted_at_ms: None,
        join: None,
        joined_at: None,
        in_queue: None,
        told_sold_out: None,
        placed_at: None,
        outcome: outcome.to_owned(),
        rejoined: 0,
        streamed: false,
        cancelled: false,
        order_status: None,
    }
}

/// The addresses one buyer uses, on the instance they were given.
struct Uris {
    entries: Uri,
    me: Uri,
    events: Uri,
    orders: String,
}

impl Uris {
    fn new(base: &str, room: &str) -> Option<Self> {
        let entries = format!("{base}/waiting-rooms/{room}/entries");
        Some(Self {
            me: format!("{entries}/me").parse().ok()?,
            events: format!("{entries}/me/events").parse().ok()?,
            entries: entries.parse().ok()?,
            orders: format!("{base}/orders"),
        })
    }
}

/// Whether buyer `i` cancels the order they placed: a `ratio` of the buyers, spread evenly over
/// the run (golden-ratio steps).
fn cancels(i: usize, ratio: f64) -> bool {
    #[allow(clippy::cast_precision_loss, reason = "a spread, not a count")]
    let x = (i as f64 * 0.618_033_988_749_895).fract();
    x < ratio
}

pub(super) async fn one_buyer(s: std::sync::Arc<Shared>, i: usize, token: String) -> Buyer {
    let base = &s.bases[i % s.bases.len()];
    let Some(uris) = Uris::new(base, &s.room_id) else {
        return failed("bad_target");
    };
    let started = Instant::now();
    let mut buyer = failed("error");
    buyer.joined_at = Some(Utc::now());
    let joined = request(&s, (Method::POST, &uris.entries, &token), &[], None).await;
    buyer.join = Some(started.elapsed());
    let Ok(answer) = joined else {
        return buyer;
    };
    if s.args.join_only {
        buyer.outcome = match answer {
            (200 | 202, entry) => format!("joined_{}", entry["status"].as_str().unwrap_or("?")),
            (status, problem) => problem_type(&problem, status),
        };
        return buyer;
    }
    let entry = match admission(&s, &uris, &token, &mut buyer, answer, started).await {
        Ok(entry) => entry,
        Err(outcome) => {
            buyer.outcome = outcome;
            // A buyer who gives up leaves, so the room does not admit them later.
            let _ = request(&s, (Method::DELETE, &uris.me, &token), &[], None).await;
            return buyer;
        }
    };
    buyer.in_queue = Some(started.elapsed());
    buyer.admitted_at_ms = entry["expires_at"]
        .as_str()
        .and_then(|at| at.parse::<DateTime<Utc>>().ok())
        .map(|at| at.timestamp_millis() - s.room.validity_ms);
    let admission = entry["admission_token"].as_str().unwrap_or_default();
    let Some(order) = place(&s, &uris, &token, admission, i, &mut buyer).await else {
        return buyer;
    };
    if cancels(i, s.args.cancel_ratio) {
        let cancel: Option<Uri> = format!("{}/{order}/cancel", uris.orders).parse().ok();
        if let Some(cancel) = cancel {
            let key = format!("{}-{i}-cancel", s.run_id);
            let answer = request(
                &s,
                (Method::POST, &cancel, &token),
                &[("idempotency-key", &key)],
                None,
            )
            .await;
            buyer.cancelled = matches!(answer, Ok((200 | 202, _)));
        }
    }
    if buyer.cancelled || buyer.order_status.is_none() {
        buyer.order_status = settled(&s, &uris, &token, &order).await;
    }
    buyer
}

/// Places the buyer's order with their admission; its id when placed.
async fn place(
    s: &Shared,
    uris: &Uris,
    token: &str,
    admission: &str,
    i: usize,
    buyer: &mut Buyer,
) -> Option<String> {
    let body = json!({
        "lines": [{ "sku": s.room.sku, "quantity": 1, "unit_price": s.room.unit_price }],
        "shipping_address": { "recipient": "Flash Buyer", "line1": "1 Sejong-daero", "city": "Seoul",
                              "postal_code": "04524", "country": "KR" }
    });
    let key = format!("{}-{i}", s.run_id);
    let orders: Uri = uris.orders.parse().ok()?;
    // Answered once the order's saga ended (within the wait): no reads to follow it.
    let wait = format!("wait={}", s.args.wait.as_secs().clamp(1, 30));
    let answer = request(
        s,
        (Method::POST, &orders, token),
        &[
            ("admission-token", admission),
            ("idempotency-key", &key),
            ("prefer", &wait),
        ],
        Some(&body),
    )
    .await;
    match answer {
        Ok((201, order)) => {
            buyer.outcome = "placed".into();
            buyer.placed_at = order["created_at"]
                .as_str()
                .and_then(|at| at.parse::<DateTime<Utc>>().ok());
            if is_settled(&order) {
                buyer.order_status = order["status"].as_str().map(str::to_owned);
            }
            order["id"].as_str().map(str::to_owned)
        }
        Ok((status, problem)) => {
            buyer.outcome = problem_type(&problem, status);
            if buyer.outcome == "sold-out" {
                buyer.told_sold_out.get_or_insert_with(Utc::now);
            }
            None
        }
        Err(_) => {
            buyer.outcome = "error".into();
            None
        }
    }
}

/// The order's status once its saga ended (`None`: not within the run's deadline), read again
/// every 100 ms.
async fn settled(s: &Shared, uris: &Uris, token: &str, order: &str) -> Option<String> {
    let uri: Uri = format!("{}/{order}", uris.orders).parse().ok()?;
    let deadline = Instant::now() + s.args.deadline;
    while Instant::now() < deadline {
        if let Ok((200, view)) = request(s, (Method::GET, &uri, token), &[], None).await
            && is_settled(&view)
        {
            return view["status"].as_str().map(str::to_owned);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// What a stream event says, as the answer to `GET …/entries/me` would: `None` for an event
/// that changes nothing (the queue is unavailable for a moment).
fn as_answer((name, data): events::Event) -> Option<(u16, Value)> {
    match name.as_str() {
        "position" => Some((202, data)),
        "admitted" | "expired" | "sold_out" => Some((200, data)),
        // Not in the room any more: joining again puts the buyer back at their ticket.
        "left" => Some((404, data)),
        "unavailable" => None,
        _ => Some((500, data)),
    }
}

/// How many times a buyer opens their stream again after it ended on an `error` event, as a
/// browser would, before giving up.
const STREAM_ERRORS: u32 = 3;

/// Follows the buyer's place until admitted (the admitted entry) or not (why).
async fn admission(
    s: &Shared,
    uris: &Uris,
    token: &str,
    buyer: &mut Buyer,
    (mut status, mut entry): (u16, Value),
    started: Instant,
) -> Result<Value, String> {
    let mut queue_token = String::new();
    let mut deadline = started + s.args.deadline;
    // Once told "sold out", how long the buyer keeps waiting for units to come back.
    let mut patience: Option<Instant> = None;
    let mut stream: Option<Events> = None;
    let mut streaming = s.args.follow == Follow::Wait;
    let mut stream_errors = 0;
    // Whether (status, entry) is an answer not looked at yet: a stream that only reopens, or an
    // event that changes nothing, must not move the deadline.
    let mut fresh = true;
    loop {
        let now = Instant::now();
        let poll = match (status, entry["poll_after_ms"].as_u64()) {
            (404, _) => Duration::ZERO,
            (_, after) => Duration::from_millis(after.unwrap_or(1000)),
        };
        if std::mem::take(&mut fresh) {
            match status {
                200 | 202 => {
                    buyer.ticket = entry["ticket"].as_u64().or(buyer.ticket);
                    if let Some(t) = entry["queue_token"].as_str() {
                        t.clone_into(&mut queue_token);
                    }
                }
                404 => {}
                _ => return Err(problem_type(&entry, status)),
            }
            match (status, entry["status"].as_str()) {
                (200, Some("admitted")) => return Ok(entry),
                (200, Some("expired")) => return Err("admission_expired".into()),
                (200, Some("sold_out")) => {
                    buyer.told_sold_out.get_or_insert_with(Utc::now);
                    patience.get_or_insert(now + s.args.patience);
                }
                (202, _) => {
                    // Units came back: the buyer waits their turn again.
                    patience = None;
                    let wait =
                        Duration::from_millis(entry["estimated_wait_ms"].as_u64().unwrap_or(0));
                    deadline = deadline.max(now + wait + s.args.deadline);
                }
                _ => {}
            }
        }
        let until = patience.map_or(deadline, |p| p.min(deadline));
        if now > until {
            return Err(if patience.is_some() {
                "sold_out"
            } else {
                "not_admitted"
            }
            .into());
        }
        let answer = if status == 404 {
            // The queue lost the buyer (restart, failover): back at the ticket of their token.
            buyer.rejoined += 1;
            stream = None;
            let headers = [("queue-token", queue_token.as_str())];
            let headers = if queue_token.is_empty() {
                &headers[..0]
            } else {
                &headers[..]
            };
            request(s, (Method::POST, &uris.entries, token), headers, None).await
        } else if streaming {
            if stream.is_none() {
                match events::open(&s.client, &uris.events, token, s.args.request_timeout).await {
                    Ok(Opened::Stream(events)) => {
                        buyer.streamed = true;
                        stream = Some(events);
                    }
                    // This instance keeps as many streams as it may: poll instead.
                    Ok(Opened::Refused(503, problem))
                        if problem_type(&problem, 503) == "waiting-room-streams-full" =>
                    {
                        streaming = false;
                        continue;
                    }
                    Ok(Opened::Refused(refused, problem)) if refused < 500 => {
                        (status, entry, fresh) = (refused, problem, true);
                        continue;
                    }
                    // No answer, or the queue unavailable for a moment: again, until `until`.
                    Ok(Opened::Refused(..)) | Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            let Some(events) = stream.as_mut() else {
                continue;
            };
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.next()).await {
                Ok(Ok(Some(event))) => match as_answer(event) {
                    // The server's last word on an unexpected failure: open the stream again.
                    Some((500, problem)) if stream_errors < STREAM_ERRORS => {
                        stream_errors += 1;
                        tracing::warn!(%problem, "a buyer's event stream ended on an error");
                        stream = None;
                        continue;
                    }
                    Some(answer) => Ok(answer),
                    None => continue,
                },
                // The stream ended or broke (an instance going away): open it again.
                Ok(Ok(None) | Err(_)) => {
                    stream = None;
                    continue;
                }
                Err(_) => continue,
            }
        } else {
            tokio::time::sleep(poll).await;
            request(s, (Method::GET, &uris.me, token), &[], None).await
        };
        let Ok(answer) = answer else {
            return Err("error".into());
        };
        (status, entry) = answer;
        fresh = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_of_buyers_cancel_spread_over_the_run() {
        let cancelling = (0..1_000).filter(|&i| cancels(i, 0.05)).count();
        assert!((45..=55).contains(&cancelling), "{cancelling}");
        assert!((0..20).any(|i| cancels(i, 0.05)), "early in the run too");
        assert_eq!((0..1_000).filter(|&i| cancels(i, 0.0)).count(), 0);
    }
}
