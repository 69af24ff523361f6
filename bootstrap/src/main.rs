//! The `ordership` binary: parse, log, wire, run.

use clap::Parser;
use ordership::cli::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    ordership::telemetry::init(cli.common.log_format);
    match ordership::run::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
