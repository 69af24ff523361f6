//! One order of a load run: placed (retried with its key when the POST fails), then followed to
//! its terminal state.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri};
use serde_json::{Value, json};

use super::{HttpClient, Run, SERVED, Sample, UNSERVED};
use crate::cli::LoadArgs;

pub(super) fn order_body(i: usize, unserved_ratio: f64) -> Value {
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
