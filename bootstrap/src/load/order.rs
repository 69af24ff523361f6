//! One order of a load run: placed (retried with its key when the POST fails), then followed to
//! its terminal state.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri};
use serde_json::{Value, json};

use super::{HttpClient, Run, SERVED, Sample, UNSERVED};
use crate::cli::{Follow, LoadArgs};

pub(super) fn order_body(i: usize, unserved_ratio: f64) -> Value {
    // Deterministic mix: order i is unserved when the running share falls behind the ratio.
    let unserved = ((i + 1) as f64 * unserved_ratio).floor() > (i as f64 * unserved_ratio).floor();
    let country = if unserved {
        UNSERVED[i % UNSERVED.len()]
    } else {
        SERVED[i % SERVED.len()]
    };
    json!({
        "lines": [{ "sku": "LOAD-1", "quantity": 1 + i % 3, "unit_price": { "amount": 1250, "currency": "KRW" } }],
        "shipping_address": { "recipient": "Load Test", "line1": "1 Sejong-daero", "city": "Seoul",
                              "postal_code": "04524", "country": country }
    })
}

/// One request with the caller's token, these extra headers and an optional JSON body, given up
/// after `timeout`; the status and the JSON answer (`null` when it is not JSON).
pub(super) async fn call(
    client: &HttpClient,
    timeout: Duration,
    (method, uri, token): (Method, Uri, &str),
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    tokio::time::timeout(
        timeout,
        call_once(client, (method, uri, token), headers, body),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
}

async fn call_once(
    client: &HttpClient,
    request: (Method, Uri, &str),
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let (status, value, _) = exchange(client, request, headers, body).await?;
    Ok((status, value))
}

/// Sends one request; the status, the JSON answer (`null` when it is not JSON) and whether the
/// server honoured a `Prefer` (`Preference-Applied`).
async fn exchange(
    client: &HttpClient,
    (method, uri, token): (Method, Uri, &str),
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value, bool)> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let payload = body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
    let response = client.request(request.body(Full::new(payload))?).await?;
    let status = response.status().as_u16();
    let applied = response.headers().contains_key("preference-applied");
    let bytes = response.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value, applied))
}

/// `Prefer: wait=N` when the server is asked to answer once the order settled.
fn prefer(args: &LoadArgs) -> Option<String> {
    (args.follow == Follow::Wait).then(|| format!("wait={}", args.wait.as_secs()))
}

/// Whether the answer shows a saga that ended; an answer without a saga state (an older server,
/// a proxy's body) is not taken for an outcome.
pub(super) fn is_settled(order: &Value) -> bool {
    matches!(
        order["saga"]["state"].as_str(),
        Some("completed" | "compensated" | "failed")
    )
}

/// Places the order, sending the POST again with the same key while it fails for want of an
/// answer or with a 5xx; the last result.
async fn place(
    client: &HttpClient,
    (uri, token): (&Uri, &str),
    body: &Value,
    key: &str,
    args: &LoadArgs,
    run: &Run,
) -> anyhow::Result<(u16, Value)> {
    let prefer = prefer(args);
    let mut headers = vec![("idempotency-key", key)];
    headers.extend(prefer.as_deref().map(|wait| ("prefer", wait)));
    let send = || {
        run.requests.fetch_add(1, Ordering::Relaxed);
        call(
            client,
            args.request_timeout + args.wait,
            (Method::POST, uri.clone(), token),
            &headers,
            Some(body),
        )
    };
    retrying(args.post_retries, send, || {
        let go_on = run.stalled_at.get().is_none();
        if go_on {
            run.post_retries.fetch_add(1, Ordering::Relaxed);
        }
        go_on
    })
    .await
}

/// Sends again, after a doubling pause (100 ms, 200 ms, …), while a request gets no answer or a
/// 5xx, at most `retries` times and while `again` agrees; the last result.
pub(super) async fn retrying<F, Fut>(
    retries: u32,
    mut send: F,
    mut again: impl FnMut() -> bool,
) -> anyhow::Result<(u16, Value)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u16, Value)>>,
{
    let mut attempt = 0;
    loop {
        let result = send().await;
        let failed = match &result {
            Ok((status, _)) => *status >= 500,
            Err(_) => true,
        };
        if !failed || attempt >= retries || !again() {
            return result;
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100) * 2u32.saturating_pow(attempt - 1)).await;
    }
}

fn sample(post: Duration, settled: Option<Duration>, outcome: &str) -> Sample {
    Sample {
        post,
        settled,
        outcome: outcome.to_owned(),
        at: Duration::ZERO,
    }
}

pub(super) async fn one_order(
    client: &HttpClient,
    base: &str,
    i: usize,
    args: &LoadArgs,
    run: &Run,
    run_id: &str,
) -> Sample {
    let started = Instant::now();
    let body = order_body(i, args.unserved_ratio);
    let token = run.tokens.for_order(i);
    let posted = match format!("{base}/orders").parse::<Uri>() {
        Ok(uri) => {
            let key = format!("{run_id}-{i}");
            place(client, (&uri, token), &body, &key, args, run).await
        }
        Err(e) => Err(e.into()),
    };
    let post = started.elapsed();
    let settled = |order: &Value| {
        run.progressed();
        let outcome = match order["saga"]["state"].as_str() {
            Some("failed") => "saga_failed",
            _ => order["status"].as_str().unwrap_or("unknown"),
        };
        sample(post, Some(started.elapsed()), outcome)
    };
    let id = match posted {
        Ok((201, order)) if !args.no_wait && is_settled(&order) => return settled(&order),
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
    // Long polls answer when the order changes; polls start often and back off a little, so
    // that measuring does not become the load.
    let prefer = prefer(args);
    let headers: Vec<(&str, &str)> = prefer
        .as_deref()
        .map(|w| ("prefer", w))
        .into_iter()
        .collect();
    let mut wait = args.poll_interval;
    loop {
        run.requests.fetch_add(1, Ordering::Relaxed);
        let answer = tokio::time::timeout(
            args.request_timeout + args.wait,
            exchange(client, (Method::GET, uri.clone(), token), &headers, None),
        )
        .await;
        // A long poll the server honoured goes on at once; a poll, a failed request, or a
        // server that does not wait pauses first.
        let mut pause = true;
        if let Ok(Ok((200, order, applied))) = &answer {
            if is_settled(order) {
                return settled(order);
            }
            pause = !*applied;
        }
        if started.elapsed() > args.deadline || run.gave_up(args.stall_limit) {
            return sample(post, None, "not_settled");
        }
        if pause {
            tokio::time::sleep(wait).await;
            wait = (wait * 3 / 2).min(args.poll_interval.max(Duration::from_millis(50)));
        }
    }
}
