use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use ordership_application::monitoring::{HandlerMetrics, Measured, RelayMetrics};
use ordership_application::{
    DeliveryService, FulfilmentOrchestrator, OrderService, OutboxRelay, RelayConfig,
    ShutdownTrigger,
};
use ordership_domain::ports::{DeliveryTransaction, MessageHandler, OrderTransaction};
use ordership_domain::{DeliveryPolicy, SagaPolicy, topics};
use ordership_http::{
    ApiBuilder, HandlerLatency, HealthCheck, HttpConfig, MetricSource, OutboxBacklog, RelayLatency,
    SagaStates, StoreCheck,
};
use ordership_memory::{BusConfig, InProcessBus, MemoryStore, SystemClock, UuidV7Ids};
use serde_json::{Value, json};
use tower::ServiceExt;

pub(crate) struct TestApp {
    pub(crate) router: Router,
    pub(crate) order_store: MemoryStore,
    _trigger: ShutdownTrigger,
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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            broken_check: false,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl TestApp {
    pub(crate) fn new() -> Self {
        Self::with(Options::default())
    }

    pub(crate) fn with(options: Options) -> Self {
        let clock = Arc::new(SystemClock);
        let ids = Arc::new(UuidV7Ids);
        let order_store = MemoryStore::new();
        let delivery_store = MemoryStore::new();
        let order_uow: Arc<dyn ordership_domain::ports::UnitOfWork<dyn OrderTransaction>> =
            Arc::new(order_store.clone());
        let delivery_uow: Arc<dyn ordership_domain::ports::UnitOfWork<dyn DeliveryTransaction>> =
            Arc::new(delivery_store.clone());
        let saga_config = SagaPolicy::default();
        let orders = OrderService::new(
            order_uow.clone(),
            clock.clone(),
            ids.clone(),
            saga_config.clone(),
        );
        let saga =
            FulfilmentOrchestrator::new(order_uow.clone(), clock.clone(), ids.clone(), saga_config);
        let deliveries = DeliveryService::new(
            delivery_uow.clone(),
            clock.clone(),
            ids,
            DeliveryPolicy::default(),
        );
        let bus = InProcessBus::new(BusConfig::default());
        let d: Arc<dyn MessageHandler> = Arc::new(deliveries.clone());
        let saga_metrics = Arc::new(HandlerMetrics::default());
        let s: Arc<dyn MessageHandler> =
            Arc::new(Measured::new(Arc::new(saga), saga_metrics.clone()));
        bus.subscribe(topics::DELIVERY_COMMANDS, "d", &d);
        bus.subscribe(topics::DELIVERY_EVENTS, "o", &s);
        let (trigger, shutdown) = ShutdownTrigger::new();
        let relay_config = RelayConfig {
            poll_interval: Duration::from_millis(20),
            ..RelayConfig::default()
        };
        let order_relay_metrics = Arc::new(RelayMetrics::default());
        let delivery_relay_metrics = Arc::new(RelayMetrics::default());
        let order_relay: OutboxRelay<dyn OrderTransaction> = OutboxRelay::new(
            order_uow.clone(),
            Arc::new(bus.clone()),
            Arc::new(order_store.clone()),
            clock.clone(),
            relay_config.clone(),
        )
        .with_metrics(order_relay_metrics.clone());
        let delivery_relay: OutboxRelay<dyn DeliveryTransaction> = OutboxRelay::new(
            delivery_uow.clone(),
            Arc::new(bus),
            Arc::new(delivery_store),
            clock.clone(),
            relay_config,
        )
        .with_metrics(delivery_relay_metrics.clone());
        let s1 = shutdown.clone();
        tokio::spawn(async move { order_relay.run(s1).await });
        tokio::spawn(async move { delivery_relay.run(shutdown).await });

        let mut builder = ApiBuilder::new(HttpConfig {
            body_limit: options.body_limit,
            request_timeout: options.request_timeout,
        })
        .orders(orders)
        .deliveries(deliveries)
        .check(Arc::new(StoreCheck::new("order-store", order_uow.clone())))
        .metric_source(Arc::new(SagaStates(order_uow.clone())))
        .metric_source(Arc::new(HandlerLatency {
            consumer: "order-service.saga",
            metrics: saga_metrics,
        }))
        .metric_sources([
            Arc::new(RelayLatency {
                service: "order",
                metrics: order_relay_metrics,
            }) as Arc<dyn MetricSource>,
            Arc::new(RelayLatency {
                service: "delivery",
                metrics: delivery_relay_metrics,
            }),
            Arc::new(OutboxBacklog {
                service: "order",
                uow: order_uow,
                clock: clock.clone(),
            }),
            Arc::new(OutboxBacklog {
                service: "delivery",
                uow: delivery_uow,
                clock,
            }),
        ]);
        if options.broken_check {
            builder = builder.check(Arc::new(Broken));
        }
        Self {
            router: builder.build(),
            order_store,
            _trigger: trigger,
        }
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        Reply::read(response).await
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
    json!({
        "customer_id": "c-42",
        "lines": [{ "sku": "ABC-123", "quantity": 2, "unit_price": { "amount": 1250, "currency": "KRW" } }],
        "shipping_address": { "recipient": "Kim", "line1": "1 Sejong-daero", "city": "Seoul",
                              "postal_code": "04524", "country": country }
    })
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
