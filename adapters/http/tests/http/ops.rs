use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::StreamExt as _;
use serde_json::json;

use crate::app::{Options, TestApp};

#[tokio::test]
async fn liveness_and_readiness_answer_ok() {
    let app = TestApp::new();
    assert_eq!(app.get("/health/live").await.json()["status"], "ok");
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(
        ready.json()["checks"][0],
        json!({"name": "order-store", "ok": true, "required": true})
    );
}

#[tokio::test]
async fn readiness_fails_when_a_dependency_is_down() {
    let app = TestApp::with(Options {
        broken_check: true,
        ..Options::default()
    });
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = ready.json();
    assert_eq!(body["status"], "unavailable");
    let broker = body["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == "broker"))
        .expect("the broken check is listed");
    assert_eq!(broker["error"], "connection refused");
    assert_eq!(
        app.get("/health/live").await.status,
        StatusCode::OK,
        "still alive"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_sagas_by_state() {
    let app = TestApp::new();
    let id = app.place("BR").await["id"].as_str().expect("id").to_owned();
    app.wait_for(&id, |o| o["saga"]["state"] == "compensated")
        .await;
    let reply = app.get("/metrics").await;
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4"))
    );
    let text = reply.text();
    assert!(
        text.contains(r#"http_requests_total{method="POST",route="/orders",status="201"} 1"#),
        "{text}"
    );
    assert!(text.contains(
        r#"http_request_duration_seconds_bucket{method="GET",route="/orders/{id}",le="+Inf"}"#
    ));
    assert!(!text.contains(&id), "no series per order id");
    assert!(
        text.contains(r#"ordership_sagas{state="compensated"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"ordership_sagas{state="failed"} 0"#));
    // Relay and handler latency: the order relay published the command (and the cancellation
    // event), the saga handled the rejection.
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from {text}"))
    };
    assert!(value(r#"ordership_relay_lag_seconds_count{service="order"}"#) >= 2.0);
    assert!(value(r#"ordership_relay_lag_seconds_bucket{service="order",le="10"}"#) >= 2.0);
    assert!(value(r#"ordership_relay_publish_seconds_count{service="delivery"}"#) >= 1.0);
    assert!(value(r#"ordership_relay_published_total{service="delivery"}"#) >= 1.0);
    assert_eq!(
        value(r#"ordership_consumer_handle_seconds_count{consumer="order-service.saga"}"#),
        1.0
    );
    assert_eq!(
        value(r#"ordership_messages_handled_total{consumer="order-service.saga"}"#),
        1.0
    );
    // Two services report the outbox backlog: one family, two series.
    for family in ["ordership_outbox_pending", "ordership_relay_lag_seconds"] {
        let declared = text
            .lines()
            .filter(|l| l.starts_with(&format!("# TYPE {family} ")))
            .count();
        assert_eq!(declared, 1, "{family} declared once: {text}");
    }
    assert!(text.contains(r#"ordership_outbox_pending{service="order"}"#));
    assert!(text.contains(r#"ordership_outbox_pending{service="delivery"}"#));
}

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint() {
    let app = TestApp::new();
    let doc = app.get("/openapi.json").await.json();
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    for path in [
        "/orders",
        "/orders/{id}",
        "/orders/{id}/cancel",
        "/deliveries",
        "/deliveries/{id}",
        "/deliveries/{id}/ship",
        "/deliveries/{id}/deliver",
        "/health/live",
        "/health/ready",
        "/metrics",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
    for schema in [
        "PlaceOrderRequest",
        "OrderResponse",
        "Problem",
        "DeliveryResponse",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    let post = &doc["paths"]["/orders"]["post"];
    assert!(post["responses"]["201"].is_object() && post["responses"]["422"].is_object());
    assert!(
        post["parameters"]
            .as_array()
            .expect("params")
            .iter()
            .any(|p| p["name"] == "Idempotency-Key")
    );
}

#[tokio::test]
async fn the_docs_page_embeds_the_document() {
    let app = TestApp::new();
    let docs = app.get("/docs").await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(
        docs.header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
    );
    assert!(docs.text().contains("/orders/{id}/cancel"));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let app = TestApp::new();
    app.get("/nowhere")
        .await
        .problem(StatusCode::NOT_FOUND, "no-route");
    let delete = Request::delete("/orders")
        .body(Body::empty())
        .expect("request");
    app.send(delete)
        .await
        .problem(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_given_one_is_kept() {
    let app = TestApp::new();
    let generated = app.get("/health/live").await;
    assert!(
        generated
            .header("x-request-id")
            .is_some_and(|id| id.len() == 36)
    );
    let request = Request::get("/health/live")
        .header("x-request-id", "trace-me")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        app.send(request).await.header("x-request-id"),
        Some("trace-me")
    );
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_with_503() {
    use ordership_domain::ports::{OrderTransaction, UnitOfWork};
    let app = TestApp::with(Options {
        request_timeout: std::time::Duration::from_millis(50),
        ..Options::default()
    });
    // An open transaction holds the memory store: the request below cannot finish in time.
    let held = UnitOfWork::<dyn OrderTransaction>::begin(&app.order_store)
        .await
        .expect("begin");
    let reply = app
        .get("/orders/01890a5d-ac96-774b-bcce-b302099a8057")
        .await;
    reply.problem(StatusCode::SERVICE_UNAVAILABLE, "timeout");
    assert_eq!(reply.header("retry-after"), Some("1"));
    drop(held);
    app.get("/orders/01890a5d-ac96-774b-bcce-b302099a8057")
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
    // The request metrics see what timed out, not only what finished.
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_requests_total{")
                && l.contains(r#"route="/orders/{id}""#)
                && l.contains(r#"status="503""#)),
        "the timed-out request is counted:\n{metrics}"
    );
}

/// A new order whose body's first bytes arrive and then nothing more: a client that stalled.
fn stalled_order() -> Request<Body> {
    let first = futures::stream::once(async {
        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{\"lines\": ["))
    });
    Request::post("/orders")
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", "stalled-body")
        .body(Body::from_stream(first.chain(futures::stream::pending())))
        .expect("request")
}

#[tokio::test]
async fn a_client_that_stalls_its_body_gets_408_and_the_connection_closed() {
    let app = TestApp::with(Options {
        body_timeout: std::time::Duration::from_millis(50),
        request_timeout: std::time::Duration::from_secs(5),
        ..Options::default()
    });
    let reply = app.send(stalled_order()).await;
    reply.problem(StatusCode::REQUEST_TIMEOUT, "body-timeout");
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(reply.header("retry-after"), None, "not the server's fault");
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_requests_total{")
                && l.contains(r#"route="/orders""#)
                && l.contains(r#"status="408""#)),
        "the stalled request is counted:\n{metrics}"
    );
}

#[tokio::test]
async fn a_stalled_body_is_the_servers_timeout_when_the_request_timeout_comes_first() {
    // The settled rule: 408 only for the body timeout; a handler that runs out of time is 503.
    let app = TestApp::with(Options {
        body_timeout: std::time::Duration::from_secs(5),
        request_timeout: std::time::Duration::from_millis(50),
        ..Options::default()
    });
    app.send(stalled_order())
        .await
        .problem(StatusCode::SERVICE_UNAVAILABLE, "timeout");
}

#[tokio::test]
async fn metric_labels_stay_bounded_whatever_methods_clients_send() {
    let app = TestApp::new();
    for i in 0..200 {
        let method = format!("X{i:0>40}");
        let request = Request::builder()
            .method(method.as_str())
            .uri(format!("/orders/{i}/anything"))
            .body(Body::empty())
            .expect("request");
        app.send(request).await;
    }
    let metrics = app.get("/metrics").await.text();
    assert!(
        !metrics.contains("X0000"),
        "no label from a client's method"
    );
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .count();
    assert!(
        series <= 3,
        "{series} series for 200 distinct methods:\n{metrics}"
    );
    assert!(metrics.contains(r#"method="other""#));
}

#[tokio::test]
async fn a_request_id_is_echoed_only_when_it_is_well_formed() {
    let app = TestApp::new();
    let with_id = |id: &str| {
        Request::get("/health/live")
            .header("x-request-id", id)
            .body(Body::empty())
            .expect("request")
    };
    let kept = app.send(with_id("abc-123_x.y")).await;
    assert_eq!(kept.header("x-request-id"), Some("abc-123_x.y"));
    for bad in ["<script>", "a b", &"x".repeat(65)] {
        let replaced = app.send(with_id(bad)).await;
        let echoed = replaced.header("x-request-id").expect("a request id");
        assert_ne!(echoed, bad);
        assert!(
            uuid::Uuid::parse_str(echoed).is_ok(),
            "a fresh id: {echoed}"
        );
    }
}
