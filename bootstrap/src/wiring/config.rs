//! What the running system is tuned with, and which stores it runs on.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::http::HeaderValue;
use ordership_application::{
    LoadShedder, RelayConfig, RetentionConfig, ShedThresholds, WatchLimits,
};
use ordership_domain::ports::{
    DeliveryTransaction, OrderChangeFeed, OrderTransaction, OutboxFeed, OutboxSignal, RateLimiter,
    RelayLeases, Transaction, UnitOfWork, WaitingRoomQueue, WaitingRoomStore, WaitingRoomTokens,
};
use ordership_domain::{CountryCode, DeliveryPolicy, RateLimitPolicy, RetryPolicy, SagaPolicy};
use ordership_http::auth::{Authenticator, DevKey};
use ordership_http::waiting_room::SignedTokens;
use ordership_http::{HealthCheck, HttpConfig};
use ordership_memory::BusConfig;

use crate::cli::CommonArgs;

/// Everything the running system can be tuned with.
#[derive(Clone)]
pub struct SystemConfig {
    pub saga: SagaPolicy,
    pub policy: DeliveryPolicy,
    pub bus: BusConfig,
    pub relay: RelayConfig,
    pub sweep_interval: Duration,
    pub retention: RetentionConfig,
    pub http: HttpConfig,
    /// How the API verifies bearer tokens. The default verifies only tokens of a key made for
    /// this process and never shown: nothing gets in until one is configured.
    pub authenticator: Arc<Authenticator>,
    /// Further readiness checks: dependencies of an embedding service the wiring does not know.
    pub extra_checks: Vec<Arc<dyn HealthCheck>>,
    pub waiting_rooms: WaitingRoomConfig,
    /// How many readers may follow orders at once (event streams, long polls).
    pub followers: WatchLimits,
    /// Per-customer quotas and load shedding of the order API; all off by default.
    pub fair_use: FairUseConfig,
}

/// Per-customer quotas and load shedding of the order API.
#[derive(Clone, Default)]
pub struct FairUseConfig {
    /// Orders per customer and window.
    pub orders: Option<RateLimitPolicy>,
    /// Waiting-room joins per customer and window.
    pub joins: Option<RateLimitPolicy>,
    /// Waiting-room joins per source address and window.
    pub joins_per_address: Option<RateLimitPolicy>,
    /// The source address is the last `X-Forwarded-For` entry (behind a proxy that sets it).
    pub trust_forwarded_for: bool,
    /// Where the quotas' buckets live (Redis, shared); `None`: in this process.
    pub limiter: Option<Arc<dyn RateLimiter>>,
    /// When to refuse new orders because the service is behind.
    pub shed: ShedThresholds,
    /// A shedder its owner feeds (an embedding service with pressure figures of its own): used
    /// instead of one sampled from the outbox and the consumer lag by `shed`.
    pub shedder: Option<Arc<LoadShedder>>,
}

impl FairUseConfig {
    fn from_args(args: &CommonArgs) -> anyhow::Result<Self> {
        let policy = |name: &str, flag: &'static str, quota: Option<(u32, Duration)>| {
            quota
                .map(|(n, window)| RateLimitPolicy::new(name, n, window).context(flag))
                .transpose()
        };
        Ok(Self {
            orders: policy("orders", "--order-rate-limit", args.order_rate_limit)?,
            joins: policy("joins", "--join-rate-limit", args.join_rate_limit)?,
            joins_per_address: policy(
                "joins-per-address",
                "--join-rate-limit-per-address",
                args.join_rate_limit_per_address,
            )?,
            trust_forwarded_for: args.trust_forwarded_for,
            limiter: None,
            shedder: None,
            shed: ShedThresholds {
                outbox_backlog: args.shed_outbox_backlog,
                consumer_lag: args.shed_consumer_lag,
            },
        })
    }
}

/// The waiting rooms' queue and token key.
#[derive(Clone)]
pub struct WaitingRoomConfig {
    /// The queue every instance shares (Redis); `None`: one in this process's memory.
    pub queue: Option<Arc<dyn WaitingRoomQueue>>,
    /// Signs and checks queue and admission tokens; every instance needs the same key. The
    /// default is a key made for this process: right for one process only.
    pub tokens: Arc<dyn WaitingRoomTokens>,
    /// How long a closed or deleted room's queue is kept.
    pub key_ttl: Duration,
}

impl Default for WaitingRoomConfig {
    fn default() -> Self {
        Self {
            queue: None,
            tokens: Arc::new(SignedTokens::generate()),
            key_ttl: ordership_application::waiting_room::DEFAULT_KEY_TTL,
        }
    }
}

impl std::fmt::Debug for WaitingRoomConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitingRoomConfig")
            .field(
                "queue",
                &if self.queue.is_some() {
                    "shared"
                } else {
                    "in memory"
                },
            )
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SystemConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemConfig")
            .field("saga", &self.saga)
            .field("policy", &self.policy)
            .field("bus", &self.bus)
            .field("relay", &self.relay)
            .field("sweep_interval", &self.sweep_interval)
            .field("retention", &self.retention)
            .field("http", &self.http)
            .field("authenticator", &self.authenticator)
            .field("waiting_rooms", &self.waiting_rooms)
            .field(
                "extra_checks",
                &self
                    .extra_checks
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SystemConfig {
    /// The configuration the flags describe (keys and the waiting rooms' queue aside: they are
    /// made by [`super::auth`] and [`super::redis`]).
    ///
    /// # Errors
    /// An invalid country code, redelivery probability or CORS origin.
    pub fn from_args(args: &CommonArgs) -> anyhow::Result<Self> {
        let served = args
            .served_countries
            .iter()
            .map(|c| {
                CountryCode::parse(c.trim()).with_context(|| format!("--served-countries: {c:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !(0.0..=1.0).contains(&args.redelivery_probability) {
            bail!("--redelivery-probability must be between 0 and 1");
        }
        let cors_origins = args
            .auth
            .cors_origin
            .iter()
            .map(|origin| {
                let origin = origin.trim();
                HeaderValue::from_str(origin)
                    .ok()
                    .filter(|_| origin.starts_with("http://") || origin.starts_with("https://"))
                    .with_context(|| {
                        format!(
                            "--cors-origin {origin:?} is not an origin like https://shop.example"
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            saga: SagaPolicy {
                reply_timeout: args.reply_timeout,
                max_schedule_attempts: args.max_schedule_attempts.max(1),
                ..SagaPolicy::default()
            },
            policy: DeliveryPolicy::new(served, args.daily_capacity),
            bus: BusConfig {
                redelivery_probability: args.redelivery_probability,
                retry: RetryPolicy {
                    max_attempts: args.max_handler_attempts.max(1),
                    ..BusConfig::default().retry
                },
                // Over a durable store, a message counts as published only once it was handled.
                acknowledge_after_handling: args.database_url.is_some(),
                ..BusConfig::default()
            },
            sweep_interval: args.sweep_interval,
            relay: RelayConfig {
                batch_size: args.relay_batch_size.max(1),
                batches_per_transaction: args.relay_batches_per_transaction.max(1),
                lease_term: args.relay_lease,
                ..RelayConfig::default()
            },
            retention: RetentionConfig {
                outbox: args.outbox_retention,
                inbox: args.inbox_retention,
                idempotency_keys: args.idempotency_retention,
                interval: args.retention_interval,
                outbox_vacuum: args.outbox_vacuum_interval,
            },
            http: HttpConfig {
                cors_origins,
                max_room_streams: args.max_room_streams,
                ..HttpConfig::default()
            },
            followers: WatchLimits {
                per_instance: args.max_order_followers.max(1),
                per_caller: args.max_order_followers_per_customer.max(1),
            },
            fair_use: FairUseConfig::from_args(args)?,
            ..Self::default()
        })
    }
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            saga: SagaPolicy::default(),
            policy: DeliveryPolicy::default(),
            bus: BusConfig::default(),
            relay: RelayConfig::default(),
            sweep_interval: Duration::from_secs(1),
            retention: RetentionConfig::default(),
            http: HttpConfig::default(),
            authenticator: Arc::new(DevKey::generate().authenticator()),
            extra_checks: Vec::new(),
            waiting_rooms: WaitingRoomConfig::default(),
            followers: WatchLimits::default(),
            fair_use: FairUseConfig::default(),
        }
    }
}

/// One service's store and the wake-up signal of its outbox.
pub struct Side<Tx: ?Sized> {
    pub store: Arc<dyn UnitOfWork<Tx>>,
    /// The same store, offering only what every service's transaction has (outbox, inbox, dead
    /// letters).
    pub transactions: Arc<dyn UnitOfWork<dyn Transaction>>,
    pub outbox: Arc<dyn OutboxSignal>,
    /// The leases by which the instances share the outbox's shards (polling relay).
    pub leases: Arc<dyn RelayLeases>,
    /// The outbox read from the transaction log: set, the CDC relay publishes; unset, the
    /// polling relay.
    pub feed: Option<Arc<dyn OutboxFeed>>,
}

impl<Tx: ?Sized> Clone for Side<Tx> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            transactions: Arc::clone(&self.transactions),
            outbox: Arc::clone(&self.outbox),
            leases: Arc::clone(&self.leases),
            feed: self.feed.clone(),
        }
    }
}

/// The services this process runs, with their stores.
#[derive(Clone)]
pub struct Stores {
    pub orders: Option<Side<dyn OrderTransaction>>,
    pub deliveries: Option<Side<dyn DeliveryTransaction>>,
    /// Where the order service keeps its waiting rooms and their stock: the order store itself,
    /// since orders take a room's stock in their own transactions. `None`: no waiting rooms.
    pub waiting_rooms: Option<Arc<dyn WaitingRoomStore>>,
    /// The order store's announcements of changed orders (all instances' changes); `None`:
    /// readers that follow an order see a change only when they look again on their own.
    pub order_changes: Option<Arc<dyn OrderChangeFeed>>,
}

impl Stores {
    /// No service yet.
    #[must_use]
    pub const fn none() -> Self {
        Self {
            orders: None,
            deliveries: None,
            waiting_rooms: None,
            order_changes: None,
        }
    }
}
