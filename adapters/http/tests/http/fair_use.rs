//! Fair use: a customer past their quota of orders gets 429 with `Retry-After` and the
//! `RateLimit-Policy` / `RateLimit` fields while others go on; a service shedding load refuses
//! new orders with 503 while reads go on.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use ordership::wiring::FairUseConfig;
use ordership_application::{LoadShedder, Pressure, ShedThresholds};
use ordership_domain::rate_limit::RateLimitPolicy;
use ordership_http::auth::Scope;

use crate::app::{Options, TestApp, order_body, post};

fn with(fair_use: FairUseConfig) -> TestApp {
    TestApp::with(Options {
        fair_use: Some(Box::leak(Box::new(fair_use))),
        ..Options::default()
    })
}

#[tokio::test]
async fn a_customer_past_their_quota_gets_429_with_the_ratelimit_fields_and_others_go_on() {
    let app = with(FairUseConfig {
        orders: Some(RateLimitPolicy::new("orders", 2, Duration::from_secs(60)).expect("policy")),
        ..FairUseConfig::default()
    });
    let body = order_body("KR");
    let mut remaining = Vec::new();
    for _ in 0..2 {
        let reply = app.post("/orders", &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        assert_eq!(
            reply.header("ratelimit-policy"),
            Some(r#""orders";q=2;w=60"#)
        );
        remaining.push(reply.header("ratelimit").map(str::to_owned));
    }
    assert_eq!(
        remaining,
        [
            Some(r#""orders";r=1;t=30"#.to_owned()),
            Some(r#""orders";r=0;t=60"#.to_owned())
        ]
    );

    let refused = app.post("/orders", &body).await;
    refused.problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    assert_eq!(refused.header(header::RETRY_AFTER.as_str()), Some("30"));
    assert_eq!(refused.header("ratelimit"), Some(r#""orders";r=0;t=60"#));
    let mine = app.get("/orders").await.json();
    assert_eq!(
        mine["items"].as_array().map(Vec::len),
        Some(2),
        "the refused order was not placed: {mine}"
    );

    let other = app.token("c-7", &[Scope::Orders]);
    let mut request = post("/orders", &body, None);
    request.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {other}").parse().expect("header"),
    );
    assert_eq!(app.send(request).await.status, StatusCode::CREATED);

    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"ordership_http_rate_limited_total{quota="orders"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn while_the_service_sheds_load_new_orders_get_503_and_reads_go_on() {
    let shedder = Arc::new(LoadShedder::new(ShedThresholds {
        outbox_backlog: Some(10),
        consumer_lag: None,
    }));
    let app = with(FairUseConfig {
        shedder: Some(Arc::clone(&shedder)),
        ..FairUseConfig::default()
    });
    let placed = app.place("KR").await;

    shedder.observe(Pressure {
        outbox_backlog: 11,
        consumer_lag: None,
    });
    let refused = app.post("/orders", &order_body("KR")).await;
    let problem = refused.problem(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("outbox_backlog")),
        "{problem}"
    );
    assert_eq!(refused.header(header::RETRY_AFTER.as_str()), Some("2"));
    let id = placed["id"].as_str().expect("id");
    assert_eq!(
        app.get(&format!("/orders/{id}")).await.status,
        StatusCode::OK
    );
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"ordership_load_shedding{reason="outbox_backlog"} 1"#)
            && metrics.contains("ordership_orders_shed_total 1"),
        "{metrics}"
    );

    shedder.observe(Pressure::default());
    app.place("KR").await;
}
