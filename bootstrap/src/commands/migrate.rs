//! `ordership migrate`: applies (or undoes down to a version) both services' schema migrations,
//! and sets their outboxes' shard count when asked.

use anyhow::Context as _;
use ordership_postgres::{DELIVERY, ORDERS};

use crate::cli::CommonArgs;
use crate::wiring::postgres;

/// # Errors
/// No database, or a migration that fails.
pub async fn run(args: &CommonArgs, undo_to: Option<i64>) -> anyhow::Result<()> {
    let pool = postgres::connect(args, "migrate")?;
    for schema in [&ORDERS, &DELIVERY] {
        match undo_to {
            None => schema.migrate(&pool).await,
            Some(target) => schema.undo(&pool, target).await,
        }
        .with_context(|| format!("migrating schema {}", schema.name))?;
        tracing::info!(schema = schema.name, undo_to, "migrations done");
        if let (Some(shards), None) = (args.relay_shards, undo_to) {
            schema.reshard(&pool, shards).await.with_context(|| {
                format!(
                    "giving the outbox of schema {} {shards} shards",
                    schema.name
                )
            })?;
            tracing::info!(schema = schema.name, shards, "outbox shards set");
        }
    }
    Ok(())
}
