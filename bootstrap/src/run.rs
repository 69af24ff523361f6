//! What each subcommand does.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::http::HeaderValue;
use ordership_application::ConsumerStats;
use ordership_application::{RelayConfig, RetentionConfig};
use ordership_domain::SagaPolicy;
use ordership_domain::ports::OutboxFeed;
use ordership_domain::{CountryCode, DeliveryPolicy, RetryPolicy};
use ordership_http::HttpConfig;
use ordership_http::auth::{Authenticator, DevKey, KeyRing, Scope, SignedAdmissions};
use ordership_kafka::{DevBroker, KafkaPublisher, Namespace, ProducerConfig, ensure_topics};
use ordership_memory::{BusConfig, InProcessBus};
use ordership_postgres::{
    DELIVERY, ORDERS, OutboxMode, PgConfig, PgDeliveryStore, PgOrderStore, PgOutboxFeed,
    PgOutboxSignal, PgPool, PgWaitingRooms, Schema,
};
use tokio::net::TcpListener;

use crate::cli::{
    AuthArgs, Cli, Command, CommonArgs, OutboxAction, RelayMode, ServiceName, TokenArgs,
};
use crate::embedded::Embedded;
use crate::server::ServerLimits;
use crate::wiring::{
    self, KafkaTransport, Running, Side, Stores, SystemConfig, Transport, WaitingRoomConfig,
};

/// Which services a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    All,
    Orders,
    Deliveries,
}

/// Runs the parsed command line to completion.
///
/// # Errors
/// Bad configuration, a port that cannot be bound, an unreachable database, or missing settings.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::All) {
        Command::All => serve_role(&cli.common, Role::All).await,
        Command::OrderService => serve_role(&cli.common, Role::Orders).await,
        Command::DeliveryService => serve_role(&cli.common, Role::Deliveries).await,
        Command::Migrate { undo_to } => migrate(&cli.common, undo_to).await,
        Command::DevBroker { port, partitions } => dev_broker(port, partitions).await,
        Command::Load(args) => crate::load::run(&args, &cli.common.auth).await,
        Command::Token(args) => token(&cli.common.auth, &args),
        Command::Outbox { service, action } => outbox(&cli.common, service, action).await,
        Command::BenchPublish {
            messages,
            keys,
            payload_bytes,
            batch,
        } => bench_publish(&cli.common, messages, keys, payload_bytes, batch).await,
    }
}

/// The topics of the configured namespace made sure of on the cluster, and the producer the
/// relays publish with.
async fn kafka_publisher(
    args: &CommonArgs,
    brokers: &str,
) -> anyhow::Result<(Namespace, KafkaPublisher)> {
    let namespace = Namespace::new(&args.kafka_namespace);
    ensure_topics(
        brokers,
        &namespace.all_topics(),
        args.kafka_partitions,
        Duration::from_secs(30),
    )
    .await
    .with_context(|| format!("preparing the topics on the Kafka cluster at {brokers}"))?;
    let publisher = KafkaPublisher::new(&ProducerConfig {
        namespace: namespace.clone(),
        ..ProducerConfig::new(brokers)
    })
    .context("creating the Kafka producer")?;
    Ok((namespace, publisher))
}

/// `ordership bench-publish`: how fast the broker takes what a relay sends, with the relays'
/// producer, so a relay's rate can be judged against it.
async fn bench_publish(
    args: &CommonArgs,
    messages: usize,
    keys: usize,
    payload_bytes: usize,
    batch: usize,
) -> anyhow::Result<()> {
    use ordership_domain::ports::MessagePublisher;
    let brokers = args
        .kafka_brokers
        .as_deref()
        .context("bench-publish needs --kafka-brokers (KAFKA_BROKERS)")?;
    let (_, publisher) = kafka_publisher(args, brokers).await?;
    let filler = "x".repeat(payload_bytes.saturating_sub(40));
    let all: Vec<ordership_domain::Message> = (0..messages)
        .map(|i| ordership_domain::Message {
            id: ordership_domain::MessageId::from_uuid(uuid::Uuid::now_v7()),
            topic: ordership_domain::topics::ORDER_EVENTS.to_owned(),
            key: format!("order-{}", i % keys.max(1)),
            message_type: "ordership.bench.v1".to_owned(),
            source: "/bench".to_owned(),
            payload: serde_json::json!({ "n": i, "filler": filler }),
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            traceparent: None,
            occurred_at: chrono::Utc::now(),
        })
        .collect();
    let started = std::time::Instant::now();
    for chunk in all.chunks(batch.max(1)) {
        publisher.publish(chunk).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "a rate")]
    let rate = messages as f64 / seconds.max(1e-9);
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::json!({ "messages": messages, "seconds": seconds, "per_second": rate })
    )?;
    Ok(())
}

/// `ordership outbox`: an operator's hands on the parked messages of one service's outbox.
async fn outbox(
    args: &CommonArgs,
    service: ServiceName,
    action: OutboxAction,
) -> anyhow::Result<()> {
    use ordership_application::outbox::{parked, purge_parked, redrive_parked};
    use ordership_domain::ports::{Transaction, UnitOfWork};
    let url = args
        .database_url
        .as_deref()
        .context("`outbox` needs --database-url (or DATABASE_URL)")?;
    let pool = ordership_postgres::connect(&pg_config(args, url))?;
    let mode = match args.relay_mode {
        RelayMode::Poll => OutboxMode::Poll,
        RelayMode::Cdc => OutboxMode::Cdc,
    };
    // Only the outbox is used: either service's store, seen as a plain transaction.
    let store: Arc<dyn UnitOfWork<dyn Transaction>> = match service {
        ServiceName::Order => Arc::new(PgOrderStore::new(pool).with_outbox_mode(mode)),
        ServiceName::Delivery => Arc::new(PgDeliveryStore::new(pool).with_outbox_mode(mode)),
    };
    let mut out = std::io::stdout().lock();
    match action {
        OutboxAction::Parked { limit } => {
            for p in parked(store.as_ref(), limit).await? {
                let m = &p.entry.message;
                let line = serde_json::json!({
                    "position": p.entry.position, "message_id": m.id.to_string(), "topic": m.topic,
                    "key": m.key, "type": m.message_type, "created_at": p.entry.created_at,
                    "reason": p.reason,
                });
                writeln!(out, "{line}")?;
            }
        }
        OutboxAction::Redrive { positions } => {
            let n = redrive_parked(store.as_ref(), &positions).await?;
            writeln!(out, "{n} parked messages sent again")?;
        }
        OutboxAction::Purge { positions } => {
            let n = purge_parked(store.as_ref(), &positions).await?;
            writeln!(out, "{n} parked messages deleted")?;
        }
    }
    Ok(())
}

/// The development key the flags name.
///
/// # Errors
/// The key file cannot be read or made.
pub fn dev_key(auth: &AuthArgs) -> anyhow::Result<(DevKey, PathBuf)> {
    let path = auth
        .dev_key_file
        .clone()
        .unwrap_or_else(DevKey::default_path);
    let key = DevKey::load_or_create(&path)?;
    Ok((key, path))
}

/// Scopes written as `orders courier` or `orders,courier`.
fn parse_scopes(text: &str) -> anyhow::Result<Vec<Scope>> {
    text.split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(|s| {
            Scope::parse(s).with_context(|| {
                format!("unknown scope {s:?}: the scopes are orders, courier and admin")
            })
        })
        .collect()
}

/// `ordership token`: prints a development token.
fn token(auth: &AuthArgs, args: &TokenArgs) -> anyhow::Result<()> {
    let scopes = parse_scopes(&args.scope)?;
    let (key, path) = dev_key(auth)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.count {
        None => writeln!(out, "{}", key.mint(&args.customer, &scopes, args.ttl)?)?,
        Some(n) => {
            for i in 0..n {
                let subject = format!("{}-{i}", args.customer);
                writeln!(out, "{}", key.mint(&subject, &scopes, args.ttl)?)?;
            }
        }
    }
    out.flush()?;
    tracing::info!(key = %path.display(), subject = %args.customer, count = args.count, scope = %args.scope, "development token");
    Ok(())
}

/// How the API verifies tokens: a production key when one is configured; else the development
/// key, which `ordership all` uses by default and a separate service only with --dev-auth.
async fn authenticator(auth: &AuthArgs, role: Role) -> anyhow::Result<Arc<Authenticator>> {
    let production = auth.jwt_public_key.is_some() || auth.jwks_url.is_some();
    if production && auth.dev_auth {
        bail!("--dev-auth and a production key (--jwt-public-key / --jwks-url) exclude each other");
    }
    if !production {
        if !auth.dev_auth && role != Role::All {
            bail!(
                "a service running as its own process needs the key its callers' tokens are \
                 verified with: --jwks-url or --jwt-public-key, with --jwt-issuer; or --dev-auth \
                 on a development machine"
            );
        }
        let (key, path) = dev_key(auth)?;
        tracing::warn!(
            key = %path.display(),
            "DEVELOPMENT tokens: anyone who can read this key file can mint any token; \
             mint one with `ordership token --customer c-42 [--scope orders|courier|admin]`"
        );
        return Ok(Arc::new(key.authenticator()));
    }
    let issuer = auth
        .jwt_issuer
        .clone()
        .context("--jwt-issuer (ORDERSHIP_JWT_ISSUER) is needed with a production key")?;
    let keys = match (&auth.jwt_public_key, &auth.jwks_url) {
        (Some(_), Some(_)) => bail!("give --jwt-public-key or --jwks-url, not both"),
        (Some(path), None) => KeyRing::from_pem_file(path)?,
        (None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
            KeyRing::from_jwks_url(url).await?
        }
        (None, Some(path)) => KeyRing::from_jwks_file(path.trim_start_matches("file://"))?,
        (None, None) => unreachable!("checked above"),
    };
    tracing::info!(
        issuer,
        audience = auth.jwt_audience,
        "verifying tokens with {keys:?}"
    );
    Ok(Arc::new(Authenticator::new(
        keys,
        issuer,
        &auth.jwt_audience,
    )))
}

/// The waiting rooms' queue (Redis when --redis-url is set) and the key of their tokens: the
/// configured one, or in development mode the development key, so that every process on the
/// machine honours what another issued.
async fn waiting_room_config(args: &CommonArgs, role: Role) -> anyhow::Result<WaitingRoomConfig> {
    let mut config = WaitingRoomConfig::default();
    if role == Role::Deliveries {
        return Ok(config);
    }
    let production = args.auth.jwt_public_key.is_some() || args.auth.jwks_url.is_some();
    config.tokens = match &args.admission_key {
        Some(path) => Arc::new(SignedAdmissions::from_pem_file(path)?),
        None if !production => Arc::new(SignedAdmissions::from_pem_file(&dev_key(&args.auth)?.1)?),
        None => bail!(
            "the order service signs waiting-room tokens with a key every instance shares:              --admission-key (ORDERSHIP_ADMISSION_KEY), an Ed25519 private key in PEM"
        ),
    };
    config.queue = match &args.redis_url {
        None => None,
        Some(url) if args.redis_cluster => {
            let nodes: Vec<String> = url
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect();
            let queue = ordership_redis::connect_cluster(&nodes)
                .await
                .with_context(|| format!("connecting to the Redis Cluster at {nodes:?}"))?;
            tracing::info!(nodes = ?nodes, "waiting rooms: Redis Cluster");
            Some(queue)
        }
        Some(url) => {
            let queue = ordership_redis::connect(url).context("--redis-url")?;
            // Lazily connected: a Redis that is down now is reported by readiness, and joins
            // answer 503 until it is back.
            if let Err(e) = queue.ping().await {
                tracing::warn!(error = %e, "Redis does not answer yet; waiting rooms refuse joins until it does");
            }
            tracing::info!("waiting rooms: Redis");
            Some(queue)
        }
    };
    Ok(config)
}

/// The system configuration the flags describe.
///
/// # Errors
/// An invalid country code or redelivery probability.
pub fn system_config(args: &CommonArgs) -> anyhow::Result<SystemConfig> {
    let served = args
        .served_countries
        .iter()
        .map(|c| CountryCode::parse(c.trim()).with_context(|| format!("--served-countries: {c:?}")))
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
                    format!("--cors-origin {origin:?} is not an origin like https://shop.example")
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(SystemConfig {
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
            ..RelayConfig::default()
        },
        retention: RetentionConfig {
            outbox: args.outbox_retention,
            inbox: args.inbox_retention,
            idempotency_keys: args.idempotency_retention,
            interval: args.retention_interval,
        },
        http: HttpConfig {
            cors_origins,
            ..HttpConfig::default()
        },
        ..SystemConfig::default()
    })
}

fn pg_config(args: &CommonArgs, url: &str) -> PgConfig {
    PgConfig {
        max_connections: args.db_max_connections,
        statement_timeout: args.db_statement_timeout,
        ..PgConfig::new(url)
    }
}

async fn migrate(args: &CommonArgs, undo_to: Option<i64>) -> anyhow::Result<()> {
    let url = args
        .database_url
        .as_deref()
        .context("`migrate` needs --database-url (or DATABASE_URL)")?;
    let pool = ordership_postgres::connect(&pg_config(args, url))?;
    for schema in [&ORDERS, &DELIVERY] {
        match undo_to {
            None => schema.migrate(&pool).await,
            Some(target) => schema.undo(&pool, target).await,
        }
        .with_context(|| format!("migrating schema {}", schema.name))?;
        tracing::info!(schema = schema.name, undo_to, "migrations done");
    }
    Ok(())
}

/// Opens the pools of the role's services and migrates their schemas (idempotent; safe when
/// several instances start at once).
async fn postgres_stores(args: &CommonArgs, url: &str, role: Role) -> anyhow::Result<Stores> {
    let config = pg_config(args, url);
    let mut stores = Stores {
        orders: None,
        deliveries: None,
        waiting_rooms: None,
    };
    let mode = match args.relay_mode {
        RelayMode::Poll => OutboxMode::Poll,
        RelayMode::Cdc => OutboxMode::Cdc,
    };
    if role != Role::Deliveries {
        let pool = ordership_postgres::connect(&config)?;
        ORDERS
            .migrate(&pool)
            .await
            .context("migrating schema orders")?;
        stores.waiting_rooms = Some(Arc::new(PgWaitingRooms::new(pool.clone())));
        stores.orders = Some(Side {
            store: Arc::new(PgOrderStore::new(pool.clone()).with_outbox_mode(mode)),
            outbox: Arc::new(PgOutboxSignal::new(pool.clone(), &ORDERS)),
            feed: cdc_feed(args, pool, &ORDERS).await?,
        });
    }
    if role != Role::Orders {
        let pool = ordership_postgres::connect(&config)?;
        DELIVERY
            .migrate(&pool)
            .await
            .context("migrating schema delivery")?;
        stores.deliveries = Some(Side {
            store: Arc::new(PgDeliveryStore::new(pool.clone()).with_outbox_mode(mode)),
            outbox: Arc::new(PgOutboxSignal::new(pool.clone(), &DELIVERY)),
            feed: cdc_feed(args, pool, &DELIVERY).await?,
        });
    }
    Ok(stores)
}

/// The schema's outbox feed in CDC relay mode.
async fn cdc_feed(
    args: &CommonArgs,
    pool: PgPool,
    schema: &'static Schema,
) -> anyhow::Result<Option<Arc<dyn OutboxFeed>>> {
    if args.relay_mode != RelayMode::Cdc {
        return Ok(None);
    }
    let feed = PgOutboxFeed::open(pool, schema)
        .await
        .with_context(|| {
            format!(
                "opening the CDC feed of schema {} (wal_level=logical?)",
                schema.name
            )
        })?
        .with_password_of(args.database_url.as_deref().unwrap_or_default());
    tracing::info!(
        slot = feed.slot(),
        "CDC relay: streaming the outbox from the write-ahead log"
    );
    Ok(Some(Arc::new(feed)))
}

async fn serve_role(args: &CommonArgs, role: Role) -> anyhow::Result<()> {
    let default_port = if role == Role::Deliveries { 8081 } else { 8080 };
    let addr = args
        .http_addr
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port)));
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
    let mut config = system_config(args)?;
    config.authenticator = authenticator(&args.auth, role).await?;
    config.waiting_rooms = waiting_room_config(args, role).await?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let (app, mode) = match (&args.database_url, &args.kafka_brokers) {
        (Some(url), Some(brokers)) => {
            let (namespace, publisher) = kafka_publisher(args, brokers).await?;
            let transport = Transport::Kafka(KafkaTransport {
                brokers: brokers.clone(),
                namespace,
                retry: RetryPolicy {
                    max_attempts: args.max_handler_attempts.max(1),
                    ..RetryPolicy::default()
                },
                publisher,
                stats: Arc::new(ConsumerStats::default()),
                store_offset_before_handling: args.unsafe_store_offset_before_commit,
                instance_id: args.kafka_instance_id.clone(),
            });
            if args.unsafe_store_offset_before_commit {
                tracing::warn!(
                    "UNSAFE: consumers store offsets before handling (mutation testing only)"
                );
            }
            (
                wiring::start(&config, &postgres_stores(args, url, role).await?, transport),
                "PostgreSQL, Kafka",
            )
        }
        (Some(url), None) => {
            let bus = InProcessBus::new(config.bus.clone());
            (
                wiring::start(
                    &config,
                    &postgres_stores(args, url, role).await?,
                    Transport::Bus(bus),
                ),
                "PostgreSQL, in-process bus",
            )
        }
        _ => (
            Embedded::start(&config).app,
            "embedded: in-memory stores, in-process bus",
        ),
    };
    let name = match role {
        Role::All => "ordership",
        Role::Orders => "ordership order-service",
        Role::Deliveries => "ordership delivery-service",
    };
    tracing::info!("{name} ({mode}) listening on http://{addr}");
    tracing::info!(
        "API reference: http://{addr}/docs   OpenAPI: http://{addr}/openapi.json   metrics: http://{addr}/metrics"
    );
    let limits = ServerLimits {
        header_timeout: args.http_header_timeout,
        ..ServerLimits::default()
    };
    serve(listener, app, limits).await
}

async fn serve(listener: TcpListener, app: Running, limits: ServerLimits) -> anyhow::Result<()> {
    crate::server::serve(listener, app.router.clone(), limits, shutdown_signal()).await;
    tracing::info!("shutting down: draining background work");
    tokio::time::timeout(Duration::from_secs(10), app.shutdown())
        .await
        .context("background work did not stop within 10 s")?;
    Ok(())
}

async fn dev_broker(port: u16, partitions: i32) -> anyhow::Result<()> {
    let broker = DevBroker::start(partitions).context("starting the mock cluster")?;
    let target: SocketAddr = broker
        .bootstrap_servers()
        .split(',')
        .next()
        .and_then(|a| a.parse().ok())
        .context("the mock cluster gave no address")?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let forwarder = tokio::spawn(ordership_kafka::forward(listener, target));
    tracing::info!(mock = %target, partitions, "dev broker ready on 127.0.0.1:{port} (KAFKA_BROKERS=127.0.0.1:{port}); SIGUSR1: broker down, SIGUSR2: broker up");
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut down = signal(SignalKind::user_defined1())?;
        let mut up = signal(SignalKind::user_defined2())?;
        let stop = shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = down.recv() => match broker.down() {
                    Ok(()) => tracing::warn!("broker DOWN"),
                    Err(e) => tracing::error!(error = %e, "cannot take the broker down"),
                },
                _ = up.recv() => match broker.up() {
                    Ok(()) => tracing::info!("broker UP"),
                    Err(e) => tracing::error!(error = %e, "cannot bring the broker up"),
                },
            }
        }
    }
    #[cfg(not(unix))]
    shutdown_signal().await;
    forwarder.abort();
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
