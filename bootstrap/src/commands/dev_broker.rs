//! `ordership dev-broker`: librdkafka's mock cluster behind a fixed local port, for development
//! and the tests; SIGUSR1 takes the broker down, SIGUSR2 brings it back.

use std::net::SocketAddr;

use anyhow::Context as _;
use ordership_kafka::DevBroker;
use tokio::net::TcpListener;

use crate::server::shutdown_signal;

/// # Errors
/// The mock cluster cannot start, or the port cannot be bound.
pub async fn run(port: u16, partitions: i32) -> anyhow::Result<()> {
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
