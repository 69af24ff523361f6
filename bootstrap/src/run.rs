//! Dispatch: which module runs each subcommand.

use crate::cli::{Cli, Command};
use crate::commands::{
    bench_order, bench_publish, dev_broker, dlq, migrate, outbox, room, saga, simulate, token,
};
use crate::server::shutdown_signal;
use crate::wiring::{Application, Role};

/// Runs the parsed command line to completion.
///
/// # Errors
/// Bad configuration, a port that cannot be bound, an unreachable database, or missing settings.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let args = &cli.common;
    match cli.command.unwrap_or(Command::All) {
        Command::All => serve(args, Role::All).await,
        Command::OrderService => serve(args, Role::Orders).await,
        Command::DeliveryService => serve(args, Role::Deliveries).await,
        Command::Migrate { undo_to } => migrate::run(args, undo_to).await,
        Command::DevBroker { port, partitions } => dev_broker::run(port, partitions).await,
        Command::Load(load) => crate::load::run(&load, &args.auth).await,
        Command::Token(token) => token::run(&args.auth, &token),
        Command::Outbox { service, action } => outbox::run(args, service, action).await,
        Command::Saga { action } => saga::run(args, action).await,
        Command::Room { action } => room::run(args, action).await,
        Command::Simulate(simulate) => simulate::run(simulate).await,
        Command::Dlq { service, action } => dlq::run(args, service, action).await,
        Command::BenchCheckOrder {
            topics,
            messages,
            patience,
        } => bench_order::run(args, &topics, messages, patience).await,
        Command::BenchPublish {
            messages,
            keys,
            payload_bytes,
            batch,
        } => {
            let shape = bench_publish::Shape {
                messages,
                keys,
                payload_bytes,
                batch,
            };
            bench_publish::run(args, shape).await
        }
    }
}

/// `ordership all`, `order-service`, `delivery-service`: serve until Ctrl-C or SIGTERM.
async fn serve(args: &crate::cli::CommonArgs, role: Role) -> anyhow::Result<()> {
    Application::build(args, role)
        .await?
        .run_until_stopped(shutdown_signal())
        .await
}
