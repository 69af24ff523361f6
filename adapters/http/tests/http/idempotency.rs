use axum::http::StatusCode;
use serde_json::json;

use crate::app::{TestApp, order_body, post};

#[tokio::test]
async fn a_retry_with_the_same_key_replays_the_first_response_byte_for_byte() {
    let app = TestApp::new();
    let first = app
        .send(post("/orders", &order_body("KR"), Some("key-1")))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.header("idempotent-replayed"), None);
    let second = app
        .send(post("/orders", &order_body("KR"), Some("key-1")))
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.body, first.body, "byte for byte");
    assert_eq!(second.header("location"), first.header("location"));
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.order_store.orders().await.len(), 1);
}

#[tokio::test]
async fn the_same_json_written_differently_is_the_same_request() {
    let app = TestApp::new();
    app.send(post("/orders", &order_body("KR"), Some("k")))
        .await;
    let body = order_body("KR");
    let spaced = serde_json::to_string_pretty(&body).expect("json");
    let request = axum::http::Request::post("/orders")
        .header("idempotency-key", "k")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(spaced))
        .expect("request");
    let reply = app.send(request).await;
    assert_eq!(reply.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_with_422() {
    let app = TestApp::new();
    app.send(post("/orders", &order_body("KR"), Some("key-1")))
        .await;
    app.send(post("/orders", &order_body("JP"), Some("key-1")))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    assert_eq!(app.order_store.orders().await.len(), 1);
}

#[tokio::test]
async fn an_invalid_request_stores_nothing_under_its_key() {
    let app = TestApp::new();
    let mut invalid = order_body("KR");
    invalid["lines"][0]["quantity"] = json!(0);
    app.send(post("/orders", &invalid, Some("key-1")))
        .await
        .problem(StatusCode::BAD_REQUEST, "validation-failed");
    // The key is still free: the corrected request goes through.
    let reply = app
        .send(post("/orders", &order_body("KR"), Some("key-1")))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.header("idempotent-replayed"), None);
}

#[tokio::test]
async fn a_malformed_key_is_a_bad_request() {
    let app = TestApp::new();
    let long = "k".repeat(256);
    app.send(post("/orders", &order_body("KR"), Some(&long)))
        .await
        .problem(StatusCode::BAD_REQUEST, "bad-idempotency-key");
    app.send(post("/orders", &order_body("KR"), Some("has space")))
        .await
        .problem(StatusCode::BAD_REQUEST, "bad-idempotency-key");
    assert!(app.order_store.orders().await.is_empty());
}

#[tokio::test]
async fn concurrent_duplicates_create_one_order_and_agree_on_the_response() {
    let app = std::sync::Arc::new(TestApp::new());
    let requests = (0..32).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            app.send(post("/orders", &order_body("KR"), Some("double-click")))
                .await
        })
    });
    let replies = futures::future::join_all(requests).await;
    let mut bodies = std::collections::HashSet::new();
    for reply in replies {
        let reply = reply.expect("task");
        // A concurrent duplicate may be told to retry (409) but never gets a second order.
        match reply.status {
            StatusCode::CREATED => {
                bodies.insert(reply.body);
            }
            StatusCode::CONFLICT => {
                reply.problem(StatusCode::CONFLICT, "idempotency-key-in-flight");
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    assert_eq!(bodies.len(), 1, "every 201 carries the same order");
    assert_eq!(app.order_store.orders().await.len(), 1);
}

#[tokio::test]
async fn a_cancel_retried_with_its_key_is_replayed() {
    let app = TestApp::new();
    let id = app.place("KR").await["id"].as_str().expect("id").to_owned();
    let uri = format!("/orders/{id}/cancel");
    let first = app.send(post(&uri, &json!({}), Some("cancel-1"))).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let second = app.send(post(&uri, &json!({}), Some("cancel-1"))).await;
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
}
