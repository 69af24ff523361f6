//! The waiting rooms' endpoints and the order gate, on the in-memory queue: joining, waiting,
//! admission, the event stream, leaving, the page, the room configuration, and every answer of
//! the gate.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use ordership::wiring::FairUseConfig;
use ordership_domain::CustomerId;
use ordership_domain::ports::{Admission, WaitingRoomTokens};
use ordership_domain::rate_limit::RateLimitPolicy;
use ordership_domain::waiting_room::RoomId;
use ordership_http::ClientAddr;
use ordership_http::auth::Scope;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::app::{Options, Reply, TestApp, error_fields};

fn request(
    method: &str,
    uri: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("request")
}

struct Sale {
    app: TestApp,
    admin: String,
}

impl Sale {
    /// A room gating `FLASH-1`, configured as `config` says.
    async fn new(config: Value) -> Self {
        Self::on(TestApp::new(), config).await
    }

    /// The same on `app`.
    async fn on(app: TestApp, config: Value) -> Self {
        let admin = app.token("ops", &[Scope::Admin]);
        let sale = Self { app, admin };
        sale.configure(config).await;
        sale
    }

    async fn configure(&self, mut config: Value) {
        config["skus"] = json!(["FLASH-1"]);
        let reply = self
            .app
            .send(request(
                "PUT",
                "/waiting-rooms/sale",
                &self.admin,
                &[],
                Some(&config),
            ))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }

    fn buyer(&self, name: &str) -> String {
        self.app.token(name, &[Scope::Orders])
    }

    async fn join(&self, token: &str) -> Reply {
        self.app
            .send(request(
                "POST",
                "/waiting-rooms/sale/entries",
                token,
                &[],
                None,
            ))
            .await
    }

    async fn me(&self, token: &str) -> Reply {
        self.app
            .send(request(
                "GET",
                "/waiting-rooms/sale/entries/me",
                token,
                &[],
                None,
            ))
            .await
    }

    async fn order(&self, token: &str, sku: &str, admission: Option<&str>) -> Reply {
        let mut body = crate::app::order_body("KR");
        body["lines"][0]["sku"] = json!(sku);
        let headers: Vec<(&str, &str)> = admission
            .map(|a| ("admission-token", a))
            .into_iter()
            .collect();
        self.app
            .send(request("POST", "/orders", token, &headers, Some(&body)))
            .await
    }

    /// Polls the buyer's entry until it is admitted; its admission token.
    async fn admitted(&self, token: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let entry = self.me(token).await.json();
            if entry["status"] == "admitted" {
                return entry["admission_token"].as_str().expect("token").to_owned();
            }
            assert!(Instant::now() < deadline, "never admitted: {entry}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_quiet_room_admits_at_once_and_a_busy_one_queues_with_retry_after() {
    // One admission a minute: the first buyer takes it.
    let sale = Sale::new(json!({"admissions": 1, "interval_ms": 60_000, "state": "open"})).await;
    let first = sale.join(&sale.buyer("c-1")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let admitted = first.json();
    assert_eq!(admitted["status"], "admitted");
    assert_eq!(admitted["ticket"], 1);
    assert!(admitted["admission_token"].is_string() && admitted["expires_at"].is_string());

    let second = sale.buyer("c-2");
    let waiting = sale.join(&second).await;
    assert_eq!(waiting.status, StatusCode::ACCEPTED);
    assert!(
        waiting
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok())
    );
    let entry = waiting.json();
    assert_eq!(
        (
            entry["status"].as_str(),
            entry["position"].as_u64(),
            entry["waiting"].as_u64()
        ),
        (Some("waiting"), Some(1), Some(1))
    );
    assert_eq!(entry["estimated_wait_ms"], 60_000);
    assert!(entry["queue_token"].is_string() && entry["poll_after_ms"].is_u64());

    // One entry per buyer: joining again (a new tab, a retry) changes nothing.
    assert_eq!(sale.join(&second).await.json()["ticket"], entry["ticket"]);
    let third = sale.join(&sale.buyer("c-3")).await.json();
    assert_eq!(
        (third["position"].as_u64(), third["waiting"].as_u64()),
        (Some(2), Some(2))
    );
    let status = sale.me(&second).await;
    assert_eq!(status.status, StatusCode::ACCEPTED);
    assert_eq!(status.json()["position"], 1);

    let room = sale
        .app
        .send_as_is(
            Request::get("/waiting-rooms/sale")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(room.status, StatusCode::OK, "public");
    let room = room.json();
    assert_eq!(
        room["queue"],
        json!({"waiting": 2, "admitted": 1, "admitted_in_window": 1, "holding": 1})
    );
    assert_eq!(room["phase"], "open");
}

#[tokio::test]
async fn a_paused_room_admits_nobody_until_it_opens() {
    let sale = Sale::new(json!({"admissions": 100, "interval_ms": 100, "state": "paused"})).await;
    let buyer = sale.buyer("c-1");
    assert_eq!(
        sale.join(&buyer).await.status,
        StatusCode::ACCEPTED,
        "nobody is admitted on joining"
    );
    // Many ticks pass (one every 50 ms at this rate): still waiting.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(sale.me(&buyer).await.json()["status"], "waiting");
    }
    sale.configure(json!({"admissions": 100, "interval_ms": 100, "state": "open"}))
        .await;
    sale.admitted(&buyer).await;
}

#[tokio::test]
async fn the_gate_wants_the_buyers_own_admission_and_one_order_per_admission() {
    let sale = Sale::new(json!({"admissions": 100, "interval_ms": 1000, "state": "open"})).await;
    let (buyer, other) = (sale.buyer("c-1"), sale.buyer("c-2"));
    sale.order(&buyer, "FLASH-1", None)
        .await
        .problem(StatusCode::FORBIDDEN, "admission-required");
    sale.order(&buyer, "FLASH-1", Some("not-a-token"))
        .await
        .problem(StatusCode::FORBIDDEN, "admission-required");
    // A product no room gates needs nothing.
    assert_eq!(
        sale.order(&buyer, "ABC-123", None).await.status,
        StatusCode::CREATED
    );

    let admission = sale.join(&buyer).await.json()["admission_token"]
        .as_str()
        .expect("admitted")
        .to_owned();
    let refused = sale
        .order(&other, "FLASH-1", Some(&admission))
        .await
        .problem(StatusCode::FORBIDDEN, "admission-required");
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("another buyer")),
        "{refused}"
    );
    let placed = sale.order(&buyer, "FLASH-1", Some(&admission)).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text());
    sale.order(&buyer, "FLASH-1", Some(&admission))
        .await
        .problem(StatusCode::CONFLICT, "admission-used");
    // Once ordered, the buyer is not admitted again in this sale.
    sale.join(&buyer)
        .await
        .problem(StatusCode::CONFLICT, "already-ordered");

    // An admission past its expiry.
    let expired = sale
        .app
        .admissions
        .sign_admission(&Admission {
            room: RoomId::parse("sale").expect("room"),
            buyer: CustomerId::parse("c-2").expect("buyer"),
            id: "sale-expired".into(),
            expires_at: chrono::Utc::now() - chrono::Duration::seconds(1),
        })
        .expect("sign");
    sale.order(&other, "FLASH-1", Some(&expired))
        .await
        .problem(StatusCode::FORBIDDEN, "admission-expired");
}

#[tokio::test]
async fn a_closed_room_sells_without_a_queue() {
    let sale = Sale::new(json!({"state": "closed"})).await;
    let buyer = sale.buyer("c-1");
    sale.join(&buyer)
        .await
        .problem(StatusCode::CONFLICT, "waiting-room-closed");
    assert_eq!(
        sale.order(&buyer, "FLASH-1", None).await.status,
        StatusCode::CREATED
    );
    // Scheduled and paused rooms gate (fail closed) though they admit nobody.
    sale.configure(json!({"state": "scheduled"})).await;
    sale.order(&buyer, "FLASH-1", None)
        .await
        .problem(StatusCode::FORBIDDEN, "admission-required");
}

#[tokio::test]
async fn rooms_are_configured_by_operators_with_every_error_named() {
    let sale = Sale::new(json!({"state": "open"})).await;
    let customer = sale.buyer("c-1");
    let config = json!({"skus": ["X-1"], "state": "open"});
    sale.app
        .send(request(
            "PUT",
            "/waiting-rooms/other",
            &customer,
            &[],
            Some(&config),
        ))
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    let bad = json!({"skus": ["bad sku"], "admissions": 0, "interval_ms": 50, "state": "open",
        "heartbeat_timeout_ms": 10, "max_unordered": 0});
    let problem = sale
        .app
        .send(request(
            "PUT",
            "/waiting-rooms/other",
            &sale.admin,
            &[],
            Some(&bad),
        ))
        .await
        .problem(StatusCode::BAD_REQUEST, "validation-failed");
    let fields = error_fields(&problem);
    for field in [
        "skus[0]",
        "admissions",
        "interval_ms",
        "heartbeat_timeout_ms",
        "max_unordered",
    ] {
        assert!(fields.contains(&field), "{field} in {problem}");
    }
    // A holding limit is shown as set.
    let limited = json!({"skus": ["X-1"], "state": "open", "max_unordered": 5});
    let shown = sale
        .app
        .send(request(
            "PUT",
            "/waiting-rooms/other",
            &sale.admin,
            &[],
            Some(&limited),
        ))
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text());
    assert_eq!(shown.json()["max_unordered"], 5);
    let backwards = json!({"skus": ["X-1"], "state": "open",
        "opens_at": "2030-01-02T00:00:00Z", "closes_at": "2030-01-01T00:00:00Z"});
    sale.app
        .send(request(
            "PUT",
            "/waiting-rooms/other",
            &sale.admin,
            &[],
            Some(&backwards),
        ))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "business-rule");
    sale.app
        .send(request(
            "PUT",
            "/waiting-rooms/Bad_Room",
            &sale.admin,
            &[],
            Some(&config),
        ))
        .await
        .problem(StatusCode::BAD_REQUEST, "bad-parameter");
    sale.app
        .get("/waiting-rooms/nowhere")
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
    sale.join(&customer).await;
    let courier = sale.app.token("courier-1", &[Scope::Courier]);
    sale.join(&courier)
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn a_browser_gets_the_waiting_page_and_a_page_for_unknown_rooms() {
    let sale = Sale::new(json!({"state": "open"})).await;
    let html = |uri: &str| {
        Request::get(uri)
            .header(header::ACCEPT, "text/html,*/*")
            .body(Body::empty())
            .expect("request")
    };
    let page = sale.app.send_as_is(html("/waiting-rooms/sale")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    );
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("connect-src 'self'"))
    );
    assert!(
        page.text().contains("<script>") && !page.text().contains("src=\"http"),
        "self-contained"
    );
    let missing = sale.app.send_as_is(html("/waiting-rooms/nowhere")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text().contains("No such waiting room"));
}

#[tokio::test]
async fn leaving_gives_up_the_place() {
    let sale = Sale::new(json!({"admissions": 1, "interval_ms": 60_000, "state": "open"})).await;
    sale.join(&sale.buyer("c-1")).await;
    let (second, third) = (sale.buyer("c-2"), sale.buyer("c-3"));
    sale.join(&second).await;
    sale.join(&third).await;
    let leave = |token: &str| {
        sale.app.send(request(
            "DELETE",
            "/waiting-rooms/sale/entries/me",
            token,
            &[],
            None,
        ))
    };
    assert_eq!(leave(&second).await.status, StatusCode::NO_CONTENT);
    sale.me(&second)
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
    leave(&second)
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
    assert_eq!(sale.me(&third).await.json()["position"], 1, "moved up");
}

#[tokio::test]
async fn the_event_stream_tells_the_position_then_the_admission() {
    // One a second: the second buyer waits for the next window.
    let sale = Sale::new(json!({"admissions": 1, "interval_ms": 1000, "state": "open"})).await;
    sale.join(&sale.buyer("c-1")).await;
    let buyer = sale.buyer("c-2");
    sale.join(&buyer).await;
    let response = sale
        .app
        .router
        .clone()
        .oneshot(request(
            "GET",
            "/waiting-rooms/sale/entries/me/events",
            &buyer,
            &[],
            None,
        ))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let mut text = String::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.expect("frame").data_ref() {
                text.push_str(&String::from_utf8_lossy(data));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the stream ends once the buyer is admitted");
    let position = text.find("event: position").expect("a position first");
    let admitted = text.find("event: admitted").expect("then the admission");
    assert!(position < admitted, "{text}");
    assert!(text.contains("admission_token"), "{text}");
}

#[tokio::test]
async fn joins_from_one_address_past_its_quota_get_429_whichever_customer_joins() {
    let fair_use: &'static FairUseConfig = Box::leak(Box::new(FairUseConfig {
        joins_per_address: Some(
            RateLimitPolicy::new("joins-per-address", 2, Duration::from_secs(60)).expect("policy"),
        ),
        ..FairUseConfig::default()
    }));
    let app = TestApp::with(Options {
        fair_use: Some(fair_use),
        ..Options::default()
    });
    let sale = Sale::on(
        app,
        json!({"admissions": 100, "interval_ms": 1000, "state": "open"}),
    )
    .await;
    let join_from = |customer: &str, host: u8| {
        let mut joining = request(
            "POST",
            "/waiting-rooms/sale/entries",
            &sale.buyer(customer),
            &[],
            None,
        );
        let from = std::net::SocketAddr::from(([10, 0, 0, host], 40_000));
        joining.extensions_mut().insert(ClientAddr(from));
        sale.app.send(joining)
    };
    for customer in ["c-1", "c-2"] {
        let joined = join_from(customer, 1).await;
        assert_eq!(joined.status, StatusCode::OK, "{}", joined.text());
        assert_eq!(
            joined.header("ratelimit-policy"),
            Some(r#""joins-per-address";q=2;w=60"#)
        );
    }
    let refused = join_from("c-3", 1).await;
    refused.problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    assert!(refused.header(header::RETRY_AFTER.as_str()).is_some());
    assert_eq!(
        join_from("c-3", 2).await.status,
        StatusCode::OK,
        "another address joins"
    );
}

#[tokio::test]
async fn an_instance_keeps_no_more_room_streams_open_than_its_cap() {
    let app = TestApp::with(Options {
        max_room_streams: 1,
        ..Options::default()
    });
    let sale = Sale::on(
        app,
        json!({"admissions": 1, "interval_ms": 60000, "state": "open"}),
    )
    .await;
    sale.join(&sale.buyer("c-1")).await;
    let (second, third) = (sale.buyer("c-2"), sale.buyer("c-3"));
    sale.join(&second).await;
    sale.join(&third).await;
    let open = |buyer: &str| {
        sale.app.router.clone().oneshot(request(
            "GET",
            "/waiting-rooms/sale/entries/me/events",
            buyer,
            &[],
            None,
        ))
    };
    let first_stream = open(&second).await.expect("infallible");
    assert_eq!(first_stream.status(), StatusCode::OK);
    let refused = open(&third).await.expect("infallible");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "5");
    let body = refused
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let problem: Value = serde_json::from_slice(&body).expect("problem");
    assert_eq!(
        problem["type"],
        "https://ordership.dev/problems/waiting-room-streams-full"
    );
    // Polling still answers, and a stream that ends frees its place.
    assert_eq!(sale.me(&third).await.status, StatusCode::ACCEPTED);
    drop(first_stream);
    assert_eq!(
        open(&third).await.expect("infallible").status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn overlapping_rooms_each_admit_to_their_products_and_an_order_stays_in_one_sale() {
    let sale = Sale::new(json!({"admissions": 100, "interval_ms": 1000, "state": "open"})).await;
    // A second room gating FLASH-1 too, and FLASH-2 of its own.
    let other = json!({"skus": ["FLASH-1", "FLASH-2"], "admissions": 100, "interval_ms": 1000, "state": "open"});
    let reply = sale
        .app
        .send(request(
            "PUT",
            "/waiting-rooms/second",
            &sale.admin,
            &[],
            Some(&other),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let buyer = sale.buyer("c-1");
    let join = sale
        .app
        .send(request(
            "POST",
            "/waiting-rooms/second/entries",
            &buyer,
            &[],
            None,
        ))
        .await
        .json();
    let admission = join["admission_token"]
        .as_str()
        .expect("admitted")
        .to_owned();
    // The second room's admission covers FLASH-1 (it gates it too) …
    let mut body = crate::app::order_body("KR");
    body["lines"][0]["sku"] = json!("FLASH-1");
    let mut both = body.clone();
    both["lines"].as_array_mut().expect("lines").push(
        json!({"sku": "FLASH-2", "quantity": 1, "unit_price": {"amount": 100, "currency": "KRW"}}),
    );
    let placed = sale
        .app
        .send(request(
            "POST",
            "/orders",
            &buyer,
            &[("admission-token", &admission)],
            Some(&both),
        ))
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text());
    // … but the first room's admission does not cover FLASH-2.
    let other_buyer = sale.buyer("c-2");
    let first = sale.join(&other_buyer).await.json();
    let first_admission = first["admission_token"].as_str().expect("admitted");
    let refused = sale
        .app
        .send(request(
            "POST",
            "/orders",
            &other_buyer,
            &[("admission-token", first_admission)],
            Some(&both),
        ))
        .await
        .problem(StatusCode::FORBIDDEN, "admission-required");
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not for the waiting room")),
        "{refused}"
    );
}
