//! The composition root. [`Application::build`] turns the flags into adapters — one module per
//! technology: [`postgres`], [`kafka`], [`redis`], `memory`, [`auth`] (keys), [`telemetry`] — and hands them
//! to [`start`], which wires both services, their relays, consumers, the saga's sweeper, retention
//! and the HTTP API. `main`, the end-to-end tests (through the binary) and the benchmarks build
//! the system through `Application::build`; in-process tests and embedders call [`start`] with
//! stores of their own ([`Embedded`] is its in-memory preset).

pub mod auth;
mod config;
pub mod kafka;
mod memory;
pub mod postgres;
pub(crate) mod redis;
mod relays;
mod services;
pub mod telemetry;
mod transport;

pub use config::{FairUseConfig, Side, Stores, SystemConfig, WaitingRoomConfig};
pub use memory::Embedded;
pub use services::{Running, start};
pub use transport::{KafkaTransport, Transport};

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ordership_memory::InProcessBus;
use tokio::net::TcpListener;

use crate::cli::{CommonArgs, RelayMode};
use crate::server::ServerLimits;

/// Which services a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Both, in one process (`ordership all`).
    All,
    /// The order service: its API, the saga, the waiting rooms.
    Orders,
    /// The delivery service.
    Deliveries,
}

impl Role {
    #[must_use]
    pub fn runs_orders(self) -> bool {
        self != Self::Deliveries
    }

    #[must_use]
    pub fn runs_deliveries(self) -> bool {
        self != Self::Orders
    }

    const fn name(self) -> &'static str {
        match self {
            Self::All => "ordership",
            Self::Orders => "ordership order-service",
            Self::Deliveries => "ordership delivery-service",
        }
    }

    const fn default_port(self) -> u16 {
        match self {
            Self::Deliveries => 8081,
            Self::All | Self::Orders => 8080,
        }
    }
}

/// The system the flags describe, wired and listening.
pub struct Application {
    listener: TcpListener,
    running: Running,
    limits: ServerLimits,
}

impl Application {
    /// Checks the flags, opens the stores and the broker they name, wires the role's services and
    /// binds the HTTP port: on PostgreSQL + Kafka, PostgreSQL + the in-process bus, or all in
    /// memory (no database URL).
    ///
    /// # Errors
    /// Flags that contradict each other, an unreachable database or broker, a port in use.
    pub async fn build(args: &CommonArgs, role: Role) -> anyhow::Result<Self> {
        check(args, role)?;
        let mut config = SystemConfig::from_args(args)?;
        config.authenticator = auth::authenticator(&args.auth, role).await?;
        if role.runs_orders() {
            let redis = redis::connect(args).await?;
            config.fair_use.limiter = redis.as_ref().map(|r| r.rate_limiter.clone());
            config.waiting_rooms = WaitingRoomConfig {
                queue: redis.map(|r| r.queue),
                tokens: auth::waiting_room_tokens(args)?,
                key_ttl: args.waiting_room_key_ttl,
            };
        }
        let addr = args
            .http_addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], role.default_port())));
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let (running, mode) = match (&args.database_url, &args.kafka_brokers) {
            (Some(url), Some(brokers)) => {
                // The database first: its schema and shard count are checked before the broker
                // is waited for.
                let stores = postgres::stores(args, url, role).await?;
                let transport = Transport::Kafka(kafka::transport(args, brokers).await?);
                (start(&config, &stores, transport), "PostgreSQL, Kafka")
            }
            (Some(url), None) => {
                let transport = Transport::Bus(InProcessBus::new(config.bus.clone()));
                let stores = postgres::stores(args, url, role).await?;
                (
                    start(&config, &stores, transport),
                    "PostgreSQL, in-process bus",
                )
            }
            _ => (
                Embedded::start(&config).app,
                "embedded: in-memory stores, in-process bus",
            ),
        };
        let addr = listener.local_addr()?;
        tracing::info!("{} ({mode}) listening on http://{addr}", role.name());
        tracing::info!(
            "API reference: http://{addr}/docs   OpenAPI: http://{addr}/openapi.json   metrics: http://{addr}/metrics"
        );
        let limits = ServerLimits {
            header_timeout: args.http_header_timeout,
            ..ServerLimits::default()
        };
        Ok(Self {
            listener,
            running,
            limits,
        })
    }

    /// Where the HTTP API listens.
    ///
    /// # Errors
    /// The socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` resolves, then drains the background work.
    ///
    /// # Errors
    /// The background work did not stop within 10 s.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            listener,
            running,
            limits,
        } = self;
        crate::server::serve(listener, running.router.clone(), limits, stop).await;
        tracing::info!("shutting down: draining background work");
        tokio::time::timeout(Duration::from_secs(10), running.shutdown())
            .await
            .context("background work did not stop within 10 s")?;
        Ok(())
    }
}

/// Flags that cannot work together.
fn check(args: &CommonArgs, role: Role) -> anyhow::Result<()> {
    if role != Role::All && (args.database_url.is_none() || args.kafka_brokers.is_none()) {
        bail!(
            "a service running as its own process needs PostgreSQL and Kafka: set --database-url \
             (DATABASE_URL) and --kafka-brokers (KAFKA_BROKERS); `ordership dev-broker` gives a \
             local broker. Or run `ordership all` for both services in one process"
        );
    }
    if args.kafka_brokers.is_some() && args.database_url.is_none() {
        bail!(
            "--kafka-brokers needs --database-url too: consumer offsets in Kafka and state in memory would disagree after a restart"
        );
    }
    if args.relay_mode == RelayMode::Cdc && args.database_url.is_none() {
        bail!(
            "--relay-mode cdc reads PostgreSQL's write-ahead log: it needs --database-url (DATABASE_URL)"
        );
    }
    Ok(())
}
