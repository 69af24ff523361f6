//! The `ordership` binary: parse, log, wire, run.

use clap::Parser;
use ordership::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result_on_stdout = matches!(
        cli.command,
        Some(
            Command::Load(_)
                | Command::Outbox { .. }
                | Command::Saga { .. }
                | Command::Room { .. }
                | Command::Dlq { .. }
                | Command::Token(_)
                | Command::BenchPublish { .. }
                | Command::Simulate(_)
        )
    );
    let service = match &cli.command {
        Some(Command::OrderService) => "ordership-order-service",
        Some(Command::DeliveryService) => "ordership-delivery-service",
        _ => "ordership",
    };
    // Held until the end of main: dropping it flushes the spans not yet exported.
    let _telemetry =
        ordership::wiring::telemetry::init(cli.common.log_format, result_on_stdout, service);
    // Every open connection is a file: a service holding thousands of event streams, or a load
    // run with a connection per buyer, needs more than the usual soft limit of 1,024. Raised to
    // the hard limit, as Go and the JVM do at start.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "the open-files limit could not be raised"),
    }
    match ordership::run::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
