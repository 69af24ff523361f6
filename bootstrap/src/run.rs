//! What each subcommand does.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ordership_application::{RetentionConfig, SagaConfig};
use ordership_domain::{CountryCode, DeliveryPolicy};
use ordership_memory::BusConfig;
use ordership_postgres::{
    DELIVERY, ORDERS, PgConfig, PgDeliveryStore, PgOrderStore, PgOutboxSignal,
};
use tokio::net::TcpListener;

use crate::cli::{Cli, Command, CommonArgs};
use crate::embedded::Embedded;
use crate::wiring::{self, Running, Stores, SystemConfig};

/// Runs the parsed command line to completion.
///
/// # Errors
/// Bad configuration, a port that cannot be bound, an unreachable database, or a subcommand this
/// build cannot run.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::All) {
        Command::All => all(&cli.common).await,
        Command::Migrate { undo_to } => migrate(&cli.common, undo_to).await,
        Command::OrderService | Command::DeliveryService => bail!(
            "running the services as separate processes needs Kafka (--kafka-brokers), which this \
             build does not support yet; run `ordership all` for both services in one process"
        ),
        Command::DevBroker { .. } => {
            bail!("`dev-broker` comes with the Kafka adapter, which this build does not have yet")
        }
        Command::Load(args) => crate::load::run(&args).await,
    }
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
        saga: SagaConfig {
            reply_timeout: args.reply_timeout,
            max_schedule_attempts: args.max_schedule_attempts.max(1),
            ..SagaConfig::default()
        },
        policy: DeliveryPolicy::new(served, args.daily_capacity),
        bus: BusConfig {
            redelivery_probability: args.redelivery_probability,
            // Over a durable store, a message counts as published only once it was handled.
            acknowledge_after_handling: args.database_url.is_some(),
            ..BusConfig::default()
        },
        sweep_interval: args.sweep_interval,
        retention: RetentionConfig {
            outbox: args.outbox_retention,
            inbox: args.inbox_retention,
            idempotency_keys: args.idempotency_retention,
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

/// Opens both services' pools and migrates their schemas (idempotent; safe when several
/// instances start at once).
async fn postgres_stores(args: &CommonArgs, url: &str) -> anyhow::Result<Stores> {
    let config = pg_config(args, url);
    let order_pool = ordership_postgres::connect(&config)?;
    let delivery_pool = ordership_postgres::connect(&config)?;
    ORDERS
        .migrate(&order_pool)
        .await
        .context("migrating schema orders")?;
    DELIVERY
        .migrate(&delivery_pool)
        .await
        .context("migrating schema delivery")?;
    Ok(Stores {
        orders: Arc::new(PgOrderStore::new(order_pool.clone())),
        order_outbox: Arc::new(PgOutboxSignal::new(order_pool, &ORDERS)),
        deliveries: Arc::new(PgDeliveryStore::new(delivery_pool.clone())),
        delivery_outbox: Arc::new(PgOutboxSignal::new(delivery_pool, &DELIVERY)),
    })
}

async fn all(args: &CommonArgs) -> anyhow::Result<()> {
    if args.kafka_brokers.is_some() {
        bail!(
            "KAFKA_BROKERS is set, but this build has no Kafka adapter yet; unset it to use the in-process bus"
        );
    }
    let config = system_config(args)?;
    let listener = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.http_addr))?;
    let addr = listener.local_addr()?;
    let (app, mode) = match &args.database_url {
        Some(url) => (
            wiring::start(&config, postgres_stores(args, url).await?),
            "PostgreSQL stores, in-process bus",
        ),
        None => (
            Embedded::start(&config).app,
            "embedded: in-memory stores, in-process bus",
        ),
    };
    tracing::info!("ordership ({mode}) listening on http://{addr}");
    tracing::info!(
        "API reference: http://{addr}/docs   OpenAPI: http://{addr}/openapi.json   metrics: http://{addr}/metrics"
    );
    serve(listener, app).await
}

async fn serve(listener: TcpListener, app: Running) -> anyhow::Result<()> {
    axum::serve(listener, app.router.clone())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    tracing::info!("shutting down: draining background work");
    tokio::time::timeout(Duration::from_secs(10), app.shutdown())
        .await
        .context("background work did not stop within 10 s")?;
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
