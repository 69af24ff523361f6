//! What each subcommand does.

use std::time::Duration;

use anyhow::{Context as _, bail};
use ordership_application::SagaConfig;
use ordership_domain::{CountryCode, DeliveryPolicy};
use ordership_memory::BusConfig;
use tokio::net::TcpListener;

use crate::cli::{Cli, Command, CommonArgs};
use crate::embedded::{Embedded, EmbeddedConfig};

/// Runs the parsed command line to completion.
///
/// # Errors
/// Bad configuration, a port that cannot be bound, or a subcommand this build cannot run.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::All) {
        Command::All => all(&cli.common).await,
        Command::OrderService | Command::DeliveryService => bail!(
            "running the services as separate processes needs PostgreSQL and Kafka \
             (--database-url, --kafka-brokers), which this build does not support yet; \
             run `ordership all` for both services in one process"
        ),
        Command::Migrate => {
            bail!("`migrate` applies the PostgreSQL schema, which this build does not have yet")
        }
        Command::DevBroker { .. } => {
            bail!("`dev-broker` comes with the Kafka adapter, which this build does not have yet")
        }
        Command::Load => bail!("`load` is not available in this build yet"),
    }
}

/// The embedded configuration the flags describe.
///
/// # Errors
/// An invalid country code or redelivery probability.
pub fn embedded_config(args: &CommonArgs) -> anyhow::Result<EmbeddedConfig> {
    let served = args
        .served_countries
        .iter()
        .map(|c| CountryCode::parse(c.trim()).with_context(|| format!("--served-countries: {c:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !(0.0..=1.0).contains(&args.redelivery_probability) {
        bail!("--redelivery-probability must be between 0 and 1");
    }
    Ok(EmbeddedConfig {
        saga: SagaConfig {
            reply_timeout: args.reply_timeout,
            max_schedule_attempts: args.max_schedule_attempts.max(1),
            ..SagaConfig::default()
        },
        policy: DeliveryPolicy::new(served, args.daily_capacity),
        bus: BusConfig {
            redelivery_probability: args.redelivery_probability,
            ..BusConfig::default()
        },
        sweep_interval: args.sweep_interval,
        ..EmbeddedConfig::default()
    })
}

async fn all(args: &CommonArgs) -> anyhow::Result<()> {
    if args.database_url.is_some() || args.kafka_brokers.is_some() {
        bail!(
            "DATABASE_URL / KAFKA_BROKERS are set, but this build has only the in-memory adapters; \
             unset them to run embedded"
        );
    }
    let config = embedded_config(args)?;
    let listener = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.http_addr))?;
    let addr = listener.local_addr()?;
    let system = Embedded::start(&config);
    tracing::info!(
        "ordership (embedded: in-memory stores, in-process bus) listening on http://{addr}"
    );
    tracing::info!(
        "API reference: http://{addr}/docs   OpenAPI: http://{addr}/openapi.json   metrics: http://{addr}/metrics"
    );
    axum::serve(listener, system.router.clone())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    tracing::info!("shutting down: draining background work");
    tokio::time::timeout(Duration::from_secs(10), system.shutdown())
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
