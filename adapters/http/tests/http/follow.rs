//! Pushed outcomes: an order's event stream, the long poll of `GET /orders/{id}`, and
//! `POST /orders` answered once settled — and the bounds on how many orders are followed.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ordership_application::WatchLimits;
use ordership_http::auth::Scope;
use serde_json::Value;
use tokio::time::Instant;

use crate::app::{Options, Reply, TestApp, order_body, post};

fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::empty()).expect("request")
}

/// The events of a stream that has ended: (event, id, data).
fn events(reply: &Reply) -> Vec<(String, String, Value)> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    reply
        .text()
        .split("\n\n")
        .filter(|block| block.lines().any(|l| l.starts_with("data:")))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            let data = serde_json::from_str(&field("data:")).expect("JSON data");
            (field("event:"), field("id:"), data)
        })
        .collect()
}

/// A long poll of `uri` as customer c-42, from the state `etag`, running on its own.
fn long_poll(
    app: &TestApp,
    uri: &str,
    etag: &str,
    wait: &'static str,
) -> tokio::task::JoinHandle<axum::http::Response<Body>> {
    let (router, token) = (app.router.clone(), app.token("c-42", &[Scope::Orders]));
    let (uri, etag) = (uri.to_owned(), etag.to_owned());
    tokio::spawn(async move {
        let bearer = format!("Bearer {token}");
        let headers = [
            ("prefer", wait),
            ("if-none-match", etag.as_str()),
            ("authorization", bearer.as_str()),
        ];
        tower::ServiceExt::oneshot(router, get(&uri, &headers))
            .await
            .expect("infallible")
    })
}

async fn confirmed_order(app: &TestApp) -> String {
    let id = app.place("KR").await["id"].as_str().expect("id").to_owned();
    app.wait_for(&id, |o| o["saga"]["state"] == "completed")
        .await;
    id
}

#[tokio::test]
async fn an_orders_event_stream_sends_each_state_in_order_and_ends_once_settled() {
    let app = TestApp::new();
    let id = confirmed_order(&app).await;
    let uri = format!("/orders/{id}/events");

    // From the start of its history: placed, then confirmed; the stream ends by itself.
    let all = events(&app.send(get(&uri, &[("last-event-id", "0")])).await);
    let states: Vec<(&str, &str)> = all
        .iter()
        .map(|(_, _, d)| {
            (
                d["status"].as_str().unwrap_or_default(),
                d["saga"]["state"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("pending", "awaiting_delivery"), ("confirmed", "completed")]
    );
    assert!(
        all.iter()
            .all(|(event, _, d)| event == "order" && d["order_id"] == id.as_str())
    );
    let ids: Vec<u64> = all.iter().map(|(_, i, _)| i.parse().expect("id")).collect();
    assert!(ids[0] < ids[1], "ids grow: {ids:?}");
    assert_eq!(all[0].2["settled"], false);
    assert_eq!(all[1].2["settled"], true);

    // Without Last-Event-ID: the state it is in now.
    let now = events(&app.get(&uri).await);
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].1, all[1].1);
    // Resumed after the first event: only what came after it.
    let rest = events(&app.send(get(&uri, &[("last-event-id", &all[0].1)])).await);
    assert_eq!(rest, all[1..]);

    // Another customer's order is not found, as with GET.
    let stranger = app.token("c-7", &[Scope::Orders]);
    let bearer = format!("Bearer {stranger}");
    app.send(get(&uri, &[("authorization", &bearer)]))
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn a_long_poll_answers_when_the_order_changes_or_304_when_the_wait_ends() {
    let app = TestApp::new();
    let id = confirmed_order(&app).await;
    let uri = format!("/orders/{id}");
    let plain = app.get(&uri).await;
    let etag = plain.header("etag").expect("an ETag").to_owned();

    // Unchanged for the whole wait.
    let started = Instant::now();
    let same = app
        .send(get(&uri, &[("prefer", "wait=1"), ("if-none-match", &etag)]))
        .await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    assert_eq!(same.header("preference-applied"), Some("wait=1"));
    assert_eq!(same.header("etag"), Some(etag.as_str()));

    // A stale tag is answered at once.
    let stale = app
        .send(get(
            &uri,
            &[("prefer", "wait=10"), ("if-none-match", "\"1\"")],
        ))
        .await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.json()["status"], "confirmed");

    // A change during the wait answers it.
    let poll = long_poll(&app, &uri, &etag, "wait=20");
    let cancel = app
        .post(&format!("/orders/{id}/cancel"), &Value::Null)
        .await;
    assert!(cancel.status.is_success(), "{}", cancel.text());
    let answered = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("answered well before its wait ended")
        .expect("task");
    assert_eq!(answered.status(), StatusCode::OK);
    assert_ne!(answered.headers()["etag"], etag.as_str(), "a newer state");
}

#[tokio::test]
async fn an_order_placed_with_prefer_wait_is_answered_settled() {
    let app = TestApp::new();
    for (country, status, saga) in [
        ("KR", "confirmed", "completed"),
        ("BR", "cancelled", "compensated"),
    ] {
        let mut request = post("/orders", &order_body(country), None);
        request
            .headers_mut()
            .insert("prefer", "wait=10".parse().expect("header"));
        let reply = app.send(request).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        let order = reply.json();
        assert_eq!(order["status"], status, "{order}");
        assert_eq!(order["saga"]["state"], saga, "{order}");
        assert_eq!(reply.header("preference-applied"), Some("wait=10"));
        assert!(reply.header("location").is_some());
    }
    // Without the preference: answered as placed.
    let reply = app.post("/orders", &order_body("KR")).await;
    assert_eq!(reply.json()["status"], "pending");
    assert_eq!(reply.header("preference-applied"), None);
}

#[tokio::test]
async fn followers_are_bounded_per_customer_429_and_per_instance_503() {
    let app = TestApp::with(Options {
        followers: WatchLimits {
            per_instance: 1,
            per_caller: 1,
        },
        ..Options::default()
    });
    let id = confirmed_order(&app).await;
    let uri = format!("/orders/{id}");
    let etag = app.get(&uri).await.header("etag").expect("etag").to_owned();
    // One long poll holds the customer's only place (and the instance's).
    let hold = || long_poll(&app, &uri, &etag, "wait=30");
    let mut holder = hold();
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        // The holder itself is refused if it asks while a probe holds the place: ask again.
        if holder.is_finished() {
            holder = hold();
        }
        tokio::task::yield_now().await;
        let reply = app.send(get(&uri, &[("prefer", "wait=0")])).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            break reply;
        }
        assert!(Instant::now() < deadline, "never refused: {}", reply.status);
    };
    refused.problem(StatusCode::TOO_MANY_REQUESTS, "too-many-followed");
    assert_eq!(refused.header("retry-after"), Some("5"));
    // Someone else: the instance is full.
    let admin = format!("Bearer {}", app.token("ops-1", &[Scope::Admin]));
    app.send(get(&format!("{uri}/events"), &[("authorization", &admin)]))
        .await
        .problem(StatusCode::SERVICE_UNAVAILABLE, "followers-full");
    // Reads that do not wait are not bounded.
    assert_eq!(app.get(&uri).await.status, StatusCode::OK);
    holder.abort();
}
