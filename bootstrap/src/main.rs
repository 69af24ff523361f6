//! The `ordership` binary: parse, log, wire, run.

use clap::Parser;
use ordership::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result_on_stdout = matches!(cli.command, Some(Command::Load(_)));
    ordership::telemetry::init(cli.common.log_format, result_on_stdout);
    match ordership::run::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
