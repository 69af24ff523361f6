//! Saga operations: operators list sagas, read one's history, retry a failed one and force one to
//! compensate; each action is recorded with who and why, and refused with 409 when the saga's
//! state does not allow it.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ordership_domain::ports::{OrderTransaction, UnitOfWork};
use ordership_domain::{OrderId, SagaState};
use ordership_http::auth::Scope;
use serde_json::{Value, json};

use crate::app::TestApp;

fn as_admin(app: &TestApp, method: &str, uri: &str, body: Option<&Value>) -> Request<Body> {
    let token = app.token("ops-1", &[Scope::Admin]);
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
    request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request")
}

async fn confirmed(app: &TestApp) -> String {
    let id = app.place("KR").await["id"].as_str().expect("id").to_owned();
    app.wait_for(&id, |o| o["saga"]["state"] == "completed")
        .await;
    id
}

#[tokio::test]
async fn an_operator_forces_a_compensation_once_and_the_history_says_who_and_why() {
    let app = TestApp::new();
    let id = confirmed(&app).await;
    let reason = json!({ "reason": "fraud suspected" });
    let uri = format!("/sagas/{id}/compensate");

    // Customers may not.
    app.post(&uri, &reason)
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    let forced = app.send(as_admin(&app, "POST", &uri, Some(&reason))).await;
    assert_eq!(forced.status, StatusCode::OK, "{}", forced.text());
    let order = forced.json();
    assert_eq!(order["status"], "cancelled");
    assert_eq!(
        order["cancellation_reason"],
        "cancelled by an operator: fraud suspected"
    );
    // The delivery service undoes the delivery: the saga ends compensated.
    app.wait_for(&id, |o| o["saga"]["state"] == "compensated")
        .await;
    // Not twice.
    app.send(as_admin(&app, "POST", &uri, Some(&reason)))
        .await
        .problem(StatusCode::CONFLICT, "conflict");

    let detail = app
        .send(as_admin(&app, "GET", &format!("/sagas/{id}"), None))
        .await
        .json();
    let causes: Vec<&str> = detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|s| s["cause"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        causes,
        ["placed", "reply", "operator_force_compensation", "reply"]
    );
    let operator = &detail["history"][2];
    assert_eq!(operator["actor"], "ops-1");
    assert_eq!(operator["reason"], "fraud suspected");
    assert_eq!(operator["saga"]["state"], "cancelling");
    assert_eq!(
        operator["sent"].as_array().map(Vec::len),
        Some(2),
        "OrderCancelled + CancelDelivery"
    );
}

#[tokio::test]
async fn a_failed_saga_is_listed_retried_once_and_compensated() {
    let app = TestApp::new();
    let id = confirmed(&app).await;
    // A saga that gave up (as when the delivery service never confirmed a cancellation).
    let order_id: OrderId = id.parse().expect("id");
    let mut tx = UnitOfWork::<dyn OrderTransaction>::begin(&app.order_store)
        .await
        .expect("begin");
    let mut saga = tx.sagas().get(order_id).await.expect("get").expect("saga");
    let version = saga.version();
    saga.fail("no answer to CancelDelivery".into(), chrono::Utc::now())
        .expect("fail");
    tx.sagas().update(&saga, version).await.expect("update");
    tx.commit().await.expect("commit");
    assert_eq!(saga.state(), SagaState::Failed);

    let failed = app
        .send(as_admin(&app, "GET", "/sagas?state=failed", None))
        .await
        .json();
    assert_eq!(
        failed["items"].as_array().map(Vec::len),
        Some(1),
        "{failed}"
    );
    assert_eq!(failed["items"][0]["order_id"], id.as_str());
    assert_eq!(
        failed["items"][0]["failure_reason"],
        "no answer to CancelDelivery"
    );
    let young = app
        .send(as_admin(
            &app,
            "GET",
            "/sagas?state=failed&older_than=1h",
            None,
        ))
        .await
        .json();
    assert_eq!(young["items"], json!([]), "not an hour old yet");
    app.send(as_admin(&app, "GET", "/sagas?older_than=soon", None))
        .await
        .problem(StatusCode::BAD_REQUEST, "bad-parameter");

    let uri = format!("/sagas/{id}/retry");
    let reason = json!({ "reason": "the courier confirmed by phone" });
    let retried = app.send(as_admin(&app, "POST", &uri, Some(&reason))).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text());
    assert_eq!(retried.json()["saga"]["state"], "cancelling");
    app.send(as_admin(&app, "POST", &uri, Some(&reason)))
        .await
        .problem(StatusCode::CONFLICT, "conflict");
    // The re-sent CancelDelivery is answered: the order is cancelled, the saga compensated.
    let done = app
        .wait_for(&id, |o| o["saga"]["state"] == "compensated")
        .await;
    assert_eq!(done["status"], "cancelled");
    app.send(as_admin(
        &app,
        "POST",
        "/sagas/0190b5a4-0000-7000-8000-000000000000/retry",
        Some(&reason),
    ))
    .await
    .problem(StatusCode::NOT_FOUND, "not-found");
    app.send(as_admin(&app, "POST", &uri, Some(&json!({ "reason": "" }))))
        .await
        .problem(StatusCode::BAD_REQUEST, "validation-failed");
}
