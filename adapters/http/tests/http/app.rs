use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use ordership::wiring::Embedded;
use ordership::wiring::{FairUseConfig, SystemConfig, WaitingRoomConfig};
use ordership_application::{RelayConfig, WatchLimits};
use ordership_http::auth::{DevKey, Scope};
use ordership_http::waiting_room::SignedTokens;
use ordership_http::{HealthCheck, HttpConfig};
use ordership_memory::MemoryStore;
use serde_json::Value;
use tower::ServiceExt;

/// Both services on the memory adapters, wired by the binary's own composition root.
pub(crate) struct TestApp {
    pub(crate) router: Router,
    pub(crate) order_store: MemoryStore,
    /// Signs the tests' tokens; the app verifies with its public half.
    key: DevKey,
    /// Signs and checks the waiting rooms' tokens, as the app does.
    pub(crate) admissions: Arc<SignedTokens>,
    /// Sent with every request that carries no `Authorization` of its own: customer `c-42`
    /// (the fixtures' orders), who is also a courier.
    default_token: String,
    _system: Embedded,
}

/// A health check that always fails.
pub(crate) struct Broken;

#[async_trait]
impl HealthCheck for Broken {
    fn name(&self) -> &str {
        "broker"
    }
    async fn check(&self) -> Result<(), String> {
        Err("connection refused".into())
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Options {
    pub(crate) body_limit: usize,
    pub(crate) broken_check: bool,
    pub(crate) request_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) cors_origins: &'static [&'static str],
    pub(crate) followers: WatchLimits,
    pub(crate) fair_use: Option<&'static FairUseConfig>,
    pub(crate) max_room_streams: usize,
}

impl Default for Options {
    fn default() -> Self {
        let http = HttpConfig::default();
        Self {
            body_limit: http.body_limit,
            broken_check: false,
            request_timeout: http.request_timeout,
            body_timeout: http.body_timeout,
            cors_origins: &[],
            followers: WatchLimits::default(),
            fair_use: None,
            max_room_streams: http.max_room_streams,
        }
    }
}

impl TestApp {
    pub(crate) fn new() -> Self {
        Self::with(Options::default())
    }

    pub(crate) fn with(options: Options) -> Self {
        let key = DevKey::generate();
        let admissions = Arc::new(SignedTokens::generate());
        let mut config = SystemConfig {
            waiting_rooms: WaitingRoomConfig {
                queue: None,
                tokens: Arc::clone(&admissions) as _,
                ..WaitingRoomConfig::default()
            },
            http: HttpConfig {
                body_limit: options.body_limit,
                request_timeout: options.request_timeout,
                body_timeout: options.body_timeout,
                cors_origins: options
                    .cors_origins
                    .iter()
                    .map(|o| axum::http::HeaderValue::from_static(o))
                    .collect(),
                max_room_streams: options.max_room_streams,
            },
            authenticator: Arc::new(key.authenticator()),
            relay: RelayConfig {
                poll_interval: Duration::from_millis(20),
                ..RelayConfig::default()
            },
            followers: options.followers,
            fair_use: options.fair_use.cloned().unwrap_or_default(),
            ..SystemConfig::default()
        };
        if options.broken_check {
            config.extra_checks.push(Arc::new(Broken));
        }
        let system = Embedded::start(&config);
        let default_token = key
            .mint(
                "c-42",
                &[Scope::Orders, Scope::Courier],
                Duration::from_secs(600),
            )
            .expect("token");
        Self {
            router: system.app.router.clone(),
            order_store: system.order_store.clone(),
            key,
            admissions,
            default_token,
            _system: system,
        }
    }

    /// A token of the app's key for `subject` with these scopes.
    pub(crate) fn token(&self, subject: &str, scopes: &[Scope]) -> String {
        self.key
            .mint(subject, scopes, Duration::from_secs(600))
            .expect("token")
    }

    /// A token of the app's key with exactly these claims.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.key.sign(claims).expect("token")
    }

    /// Sends the request as it is: with the `Authorization` it has, or none.
    pub(crate) async fn send_as_is(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        Reply::read(response).await
    }

    /// Sends the request, as customer `c-42` unless it carries an `Authorization` already.
    pub(crate) async fn send(&self, mut request: Request<Body>) -> Reply {
        if !request.headers().contains_key(header::AUTHORIZATION) {
            let bearer = format!("Bearer {}", self.default_token);
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, bearer.parse().expect("header value"));
        }
        self.send_as_is(request).await
    }

    pub(crate) async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).expect("request"))
            .await
    }

    pub(crate) async fn post(&self, uri: &str, body: &Value) -> Reply {
        self.send(post(uri, body, None)).await
    }

    pub(crate) async fn place(&self, country: &str) -> Value {
        let reply = self.post("/orders", &order_body(country)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        reply.json()
    }

    /// Polls the order until `done` holds, failing after a deadline.
    pub(crate) async fn wait_for(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let order = self.get(&format!("/orders/{id}")).await.json();
            if done(&order) {
                return order;
            }
            assert!(
                Instant::now() < deadline,
                "order never reached the state: {order}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub(crate) async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        self.wait_for(id, |o| o["status"] == status).await
    }
}

pub(crate) fn post(uri: &str, body: &Value, key: Option<&str>) -> Request<Body> {
    let mut builder = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    builder.body(Body::from(body.to_string())).expect("request")
}

pub(crate) fn order_body(country: &str) -> Value {
    ordership_tests::fixtures::order_json(country)
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    async fn read(response: Response<Body>) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Self {
            status,
            headers,
            body,
        }
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem of the given status and type slug; returns it.
    pub(crate) fn problem(&self, status: StatusCode, slug: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let problem = self.json();
        assert_eq!(
            problem["type"],
            format!("https://ordership.dev/problems/{slug}"),
            "{problem}"
        );
        assert_eq!(problem["status"], status.as_u16());
        assert!(problem["title"].is_string() && problem["detail"].is_string());
        problem
    }
}

/// The fields a validation problem names, in its order.
pub(crate) fn error_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect()
}
