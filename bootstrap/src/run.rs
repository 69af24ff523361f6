//! What each subcommand does.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ordership_application::ConsumerStats;
use ordership_application::RetentionConfig;
use ordership_domain::SagaPolicy;
use ordership_domain::ports::OutboxFeed;
use ordership_domain::{CountryCode, DeliveryPolicy, RetryPolicy};
use ordership_kafka::{DevBroker, KafkaPublisher, Namespace, ProducerConfig, ensure_topics};
use ordership_memory::{BusConfig, InProcessBus};
use ordership_postgres::{
    DELIVERY, ORDERS, OutboxMode, PgConfig, PgDeliveryStore, PgOrderStore, PgOutboxFeed,
    PgOutboxSignal, PgPool, Schema,
};
use tokio::net::TcpListener;

use crate::cli::{Cli, Command, CommonArgs, OutboxAction, RelayMode, ServiceName};
use crate::embedded::Embedded;
use crate::server::ServerLimits;
use crate::wiring::{self, KafkaTransport, Running, Side, Stores, SystemConfig, Transport};

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
        Command::Load(args) => crate::load::run(&args).await,
        Command::Outbox { service, action } => outbox(&cli.common, service, action).await,
    }
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
        retention: RetentionConfig {
            outbox: args.outbox_retention,
            inbox: args.inbox_retention,
            idempotency_keys: args.idempotency_retention,
            interval: args.retention_interval,
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
    let feed = PgOutboxFeed::open(pool, schema).await.with_context(|| {
        format!(
            "opening the CDC feed of schema {} (wal_level=logical?)",
            schema.name
        )
    })?;
    tracing::info!(
        slot = feed.slot(),
        "CDC relay: reading the outbox from the write-ahead log"
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
    let config = system_config(args)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let (app, mode) = match (&args.database_url, &args.kafka_brokers) {
        (Some(url), Some(brokers)) => {
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
