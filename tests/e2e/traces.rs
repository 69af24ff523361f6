//! One order, one trace: the two services as separate processes over PostgreSQL and Kafka export
//! their spans over OTLP/HTTP (JSON) to a receiver in this test, and the trace a client starts
//! with its `traceparent` runs from `POST /orders` through the delivery service and back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::binary::http;
use crate::kafka::{Cluster, Deployment};

/// A span as exported, with the service that exported it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

type Received = Arc<Mutex<Vec<Span>>>;

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

async fn receive(State(received): State<Received>, body: Bytes) -> &'static str {
    let export: Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut spans = received.lock().expect("lock");
    for resource in export["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .map(|a| text(&a["value"]["stringValue"]))
            .unwrap_or_default();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                spans.push(Span {
                    service: service.clone(),
                    name: text(&span["name"]),
                    trace_id: text(&span["traceId"]),
                    span_id: text(&span["spanId"]),
                    parent_span_id: text(&span["parentSpanId"]),
                });
            }
        }
    }
    "{}"
}

/// An OTLP/HTTP receiver for traces; its endpoint and what it received.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), received)
}

/// `POST /orders` with a `traceparent`; the new order's id.
async fn place_with_traceparent(addr: &str, traceparent: &str) -> String {
    let body = ordership_tests::fixtures::order_json("KR").to_string();
    let request = format!(
        "POST /orders HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntraceparent: {traceparent}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        crate::binary::token(),
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let json = response.split("\r\n\r\n").nth(1).expect("a body");
    let order: Value = serde_json::from_str(json).expect("json");
    text(&order["id"])
}

/// `span` is `ancestor` or one of its descendants, through exported spans only.
fn assert_descends(by_id: &HashMap<&str, &Span>, span: &Span, ancestor: &Span) {
    let mut current = span;
    while current.span_id != ancestor.span_id {
        current = by_id
            .get(current.parent_span_id.as_str())
            .unwrap_or_else(|| panic!("{} descends from {}", span.name, ancestor.name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_http_request_through_the_delivery_service_and_back() {
    let (endpoint, received) = receiver().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let deployment = Deployment::start_with_env(Cluster::for_test().await, &[], &env).await;
    let trace_id = uuid::Uuid::now_v7().simple().to_string();
    let client_span = "00f067aa0ba902b7";
    let id = place_with_traceparent(
        &deployment.orders.addr,
        &format!("00-{trace_id}-{client_span}-01"),
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http(
            &deployment.orders.addr,
            "GET",
            &format!("/orders/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let order: Value = serde_json::from_slice(&body).expect("json");
        if order["status"] == "confirmed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the order was never confirmed: {order}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The three spans, as soon as both services exported them.
    let find = |spans: &[Span], service: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.trace_id == trace_id && s.service == service && s.name == name)
            .cloned()
    };
    let (http_span, delivery_consumer, reply_handler, spans) = loop {
        let spans = received.lock().expect("lock").clone();
        let found = (
            find(&spans, "ordership-order-service", "POST /orders"),
            find(
                &spans,
                "ordership-delivery-service",
                "consume ordership.delivery.schedule.v1",
            ),
            find(
                &spans,
                "ordership-order-service",
                "consume ordership.delivery.scheduled.v1",
            ),
        );
        if let (Some(a), Some(b), Some(c)) = found {
            break (a, b, c, spans);
        }
        assert!(
            Instant::now() < deadline,
            "not every span arrived: {:?}",
            spans
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .map(|s| (&s.service, &s.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_id: HashMap<&str, &Span> = spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .map(|s| (s.span_id.as_str(), s))
        .collect();
    // The HTTP span continues the client's context.
    assert_eq!(http_span.parent_span_id, client_span);
    // The delivery service's consumer is a child of the span in the order service that wrote
    // the command, and that span descends from the HTTP request.
    let writer = by_id
        .get(delivery_consumer.parent_span_id.as_str())
        .expect("the span that wrote the command was exported");
    assert_eq!(writer.service, "ordership-order-service");
    assert_descends(&by_id, writer, &http_span);
    // The order service's reply handling is a child of the delivery service's span that wrote
    // the reply, itself within the delivery service's consumer.
    let reply_writer = by_id
        .get(reply_handler.parent_span_id.as_str())
        .expect("the span that wrote the reply was exported");
    assert_eq!(reply_writer.service, "ordership-delivery-service");
    assert_descends(&by_id, reply_writer, &delivery_consumer);
    eprintln!(
        "trace {trace_id}: {:#?}",
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .map(|s| format!(
                "{} {} {} <- {}",
                s.service, s.name, s.span_id, s.parent_span_id
            ))
            .collect::<Vec<_>>()
    );
    deployment.stop().await;
}
