use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::app::{Options, TestApp, error_fields, order_body};

#[tokio::test]
async fn placing_an_order_answers_201_with_location_and_the_contract() {
    let app = TestApp::new();
    let reply = app.post("/orders", &order_body("KR")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let order = reply.json();
    let id = order["id"].as_str().expect("id");
    assert_eq!(
        reply.header("location"),
        Some(format!("/orders/{id}").as_str())
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(order["status"], "pending");
    assert_eq!(order["customer_id"], "c-42");
    assert_eq!(order["total"], json!({"amount": 2500, "currency": "KRW"}));
    assert_eq!(
        order["lines"][0]["unit_price"],
        json!({"amount": 1250, "currency": "KRW"})
    );
    assert_eq!(order["shipping_address"]["country"], "KR");
    assert_eq!(order["delivery_id"], serde_json::Value::Null);
    assert_eq!(order["cancellation_reason"], serde_json::Value::Null);
    assert_eq!(
        order["saga"],
        json!({"state": "awaiting_delivery", "attempts": 1})
    );
    assert_eq!(order["version"], 1);
    assert!(order["created_at"].is_string() && order["updated_at"].is_string());
}

#[tokio::test]
async fn an_order_to_a_served_country_ends_confirmed_with_its_delivery() {
    let app = TestApp::new();
    let id = app.place("KR").await["id"].as_str().expect("id").to_owned();
    let order = app.wait_for_status(&id, "confirmed").await;
    assert_eq!(order["saga"]["state"], "completed");
    assert!(order["delivery_id"].is_string());
}

#[tokio::test]
async fn an_order_to_an_unserved_country_ends_cancelled_with_a_reason() {
    let app = TestApp::new();
    let id = app.place("BR").await["id"].as_str().expect("id").to_owned();
    let order = app.wait_for_status(&id, "cancelled").await;
    assert_eq!(
        order["cancellation_reason"],
        "delivery rejected: country BR is not served"
    );
    assert_eq!(order["saga"]["state"], "compensated");
    assert_eq!(order["delivery_id"], serde_json::Value::Null);
}

#[tokio::test]
async fn invalid_fields_are_all_reported_with_their_paths() {
    let app = TestApp::new();
    let mut body = order_body("korea");
    body["lines"][0]["quantity"] = json!(0);
    body["lines"][0]["unit_price"]["currency"] = json!("krw");
    let problem = app
        .post("/orders", &body)
        .await
        .problem(StatusCode::BAD_REQUEST, "validation-failed");
    let fields = error_fields(&problem);
    assert_eq!(
        fields,
        [
            "lines[0].quantity",
            "lines[0].unit_price.currency",
            "shipping_address.country"
        ]
    );
    assert!(app.order_store.orders().await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn an_order_without_lines_is_malformed_and_mixed_currencies_break_a_business_rule() {
    let app = TestApp::new();
    let mut empty = order_body("KR");
    empty["lines"] = json!([]);
    let p = app
        .post("/orders", &empty)
        .await
        .problem(StatusCode::BAD_REQUEST, "validation-failed");
    assert_eq!(p["errors"][0]["field"], "lines");
    let mut mixed = order_body("KR");
    mixed["lines"] = json!([
        {"sku": "A", "quantity": 1, "unit_price": {"amount": 1, "currency": "KRW"}},
        {"sku": "B", "quantity": 1, "unit_price": {"amount": 1, "currency": "USD"}}
    ]);
    let p = app
        .post("/orders", &mixed)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "business-rule");
    assert_eq!(p["errors"][0]["field"], "lines[1].unit_price.currency");
}

#[tokio::test]
async fn malformed_json_and_unknown_fields_are_bad_requests() {
    let app = TestApp::new();
    let request = Request::post("/orders")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .expect("request");
    app.send(request)
        .await
        .problem(StatusCode::BAD_REQUEST, "malformed-body");
    let mut extra = order_body("KR");
    extra["discount"] = json!(100);
    let p = app
        .post("/orders", &extra)
        .await
        .problem(StatusCode::BAD_REQUEST, "malformed-body");
    assert!(p["detail"].as_str().expect("detail").contains("discount"));
    let mut wrong_type = order_body("KR");
    wrong_type["lines"][0]["quantity"] = json!("two");
    app.post("/orders", &wrong_type)
        .await
        .problem(StatusCode::BAD_REQUEST, "malformed-body");
    // Unknown fields at any depth.
    for pointer in ["/lines/0", "/lines/0/unit_price", "/shipping_address"] {
        let mut nested = order_body("KR");
        nested
            .pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .expect("an object")
            .insert("extra".into(), json!(1));
        let p = app
            .post("/orders", &nested)
            .await
            .problem(StatusCode::BAD_REQUEST, "malformed-body");
        assert!(
            p["detail"].as_str().expect("detail").contains("extra"),
            "{pointer}"
        );
    }
}

#[tokio::test]
async fn a_duplicated_key_is_malformed_not_last_one_wins() {
    let app = TestApp::new();
    let body = order_body("KR").to_string();
    let lines =
        r#"{"lines":[{"sku":"X","quantity":1,"unit_price":{"amount":1,"currency":"KRW"}}],"#;
    let twice = body.replacen("{", lines, 1);
    let request = Request::post("/orders")
        .header("content-type", "application/json")
        .body(Body::from(twice))
        .expect("request");
    let p = app
        .send(request)
        .await
        .problem(StatusCode::BAD_REQUEST, "malformed-body");
    assert!(p["detail"].as_str().expect("detail").contains("duplicate"));
    assert!(app.order_store.orders().await.is_empty());
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_unsupported() {
    let app = TestApp::new();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = Request::post("/orders");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request
            .body(Body::from(order_body("KR").to_string()))
            .expect("request");
        app.send(request)
            .await
            .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    }
    let with_charset = Request::post("/orders")
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(order_body("KR").to_string()))
        .expect("request");
    assert_eq!(app.send(with_charset).await.status, StatusCode::CREATED);
    assert_eq!(app.order_store.orders().await.len(), 1);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let app = TestApp::with(Options {
        body_limit: 256,
        ..Options::default()
    });
    let mut big = order_body("KR");
    big["shipping_address"]["line1"] = json!("x".repeat(1000));
    app.post("/orders", &big)
        .await
        .problem(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large");
}

#[tokio::test]
async fn an_unknown_order_is_not_found_and_a_malformed_id_is_a_bad_request() {
    let app = TestApp::new();
    app.get("/orders/01890a5d-ac96-774b-bcce-b302099a8057")
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
    for path in ["/orders/not-a-uuid", "/orders/%FF%FE"] {
        app.get(path)
            .await
            .problem(StatusCode::BAD_REQUEST, "bad-parameter");
    }
    app.post("/orders/not-a-uuid/cancel", &json!({}))
        .await
        .problem(StatusCode::BAD_REQUEST, "bad-parameter");
}

#[tokio::test]
async fn orders_are_listed_by_status_a_page_at_a_time() {
    let app = TestApp::new();
    let mut confirmed = Vec::new();
    for _ in 0..3 {
        let id = app.place("KR").await["id"].as_str().expect("id").to_owned();
        app.wait_for_status(&id, "confirmed").await;
        confirmed.push(id);
    }
    let rejected = app.place("BR").await["id"].as_str().expect("id").to_owned();
    app.wait_for_status(&rejected, "cancelled").await;

    let first = app.get("/orders?status=confirmed&limit=2").await.json();
    assert_eq!(first["items"].as_array().expect("items").len(), 2);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = app
        .get(&format!("/orders?status=confirmed&limit=2&after={cursor}"))
        .await
        .json();
    assert_eq!(second["next_cursor"], serde_json::Value::Null);
    let ids: Vec<&str> = first["items"]
        .as_array()
        .into_iter()
        .chain(second["items"].as_array())
        .flatten()
        .map(|o| o["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, confirmed);
    let cancelled = app.get("/orders?status=cancelled").await.json();
    assert_eq!(cancelled["items"][0]["id"], rejected.as_str());
}

#[tokio::test]
async fn bad_list_parameters_name_the_parameter() {
    let app = TestApp::new();
    let p = app
        .get("/orders?status=lost")
        .await
        .problem(StatusCode::BAD_REQUEST, "bad-parameter");
    assert_eq!(p["errors"][0]["field"], "status");
    let p = app
        .get("/orders?limit=0")
        .await
        .problem(StatusCode::BAD_REQUEST, "bad-parameter");
    assert_eq!(p["errors"][0]["field"], "limit");
    let p = app
        .get("/orders?after=xyz")
        .await
        .problem(StatusCode::BAD_REQUEST, "bad-parameter");
    assert_eq!(p["errors"][0]["field"], "after");
    for (query, field) in [
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=99999999999", "limit"),
        ("limit=1&limit=2", "limit"),
        ("after=&limit=0", "after"),
        ("colour=red", "colour"),
    ] {
        let p = app
            .get(&format!("/orders?{query}"))
            .await
            .problem(StatusCode::BAD_REQUEST, "bad-parameter");
        assert_eq!(p["errors"][0]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn cancelling_a_confirmed_order_is_accepted_then_completed() {
    let app = TestApp::new();
    let id = app.place("KR").await["id"].as_str().expect("id").to_owned();
    app.wait_for_status(&id, "confirmed").await;
    let reply = app.post(&format!("/orders/{id}/cancel"), &json!({})).await;
    // 202 while the delivery is being cancelled, unless the saga was faster than this reply.
    let body = reply.json();
    match reply.status {
        StatusCode::ACCEPTED => assert_eq!(body["saga"]["state"], "cancelling"),
        StatusCode::OK => assert_eq!(body["status"], "cancelled"),
        other => panic!("unexpected {other}: {body}"),
    }
    let order = app.wait_for_status(&id, "cancelled").await;
    assert_eq!(order["cancellation_reason"], "cancelled by the customer");
    assert_eq!(
        app.wait_for(&id, |o| o["saga"]["state"] == "compensated")
            .await["status"],
        "cancelled"
    );
    // Asking again is harmless.
    let again = app.post(&format!("/orders/{id}/cancel"), &json!({})).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["version"], order["version"]);
}

#[tokio::test]
async fn cancelling_a_shipped_order_is_a_conflict() {
    let app = TestApp::new();
    let id = app.place("KR").await["id"].as_str().expect("id").to_owned();
    let delivery = app.wait_for_status(&id, "confirmed").await["delivery_id"]
        .as_str()
        .expect("delivery")
        .to_owned();
    assert_eq!(
        app.post(&format!("/deliveries/{delivery}/ship"), &json!({}))
            .await
            .status,
        StatusCode::OK
    );
    app.wait_for_status(&id, "shipped").await;
    let p = app
        .post(&format!("/orders/{id}/cancel"), &json!({}))
        .await
        .problem(StatusCode::CONFLICT, "conflict");
    assert!(p["detail"].as_str().expect("detail").contains("shipped"));
}
