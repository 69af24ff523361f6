//! `ordership outbox`: an operator's hands on the parked messages of one service's outbox, and
//! on its shards.

use std::io::Write as _;
use std::sync::Arc;

use ordership_application::outbox::{parked, purge_parked, redrive_parked};
use ordership_domain::ports::{Transaction, UnitOfWork};
use ordership_postgres::{DELIVERY, ORDERS, PgDeliveryStore, PgOrderStore};

use crate::cli::{CommonArgs, OutboxAction, ServiceName};
use crate::wiring::postgres;

/// # Errors
/// No database, or a store that fails.
pub async fn run(
    args: &CommonArgs,
    service: ServiceName,
    action: OutboxAction,
) -> anyhow::Result<()> {
    let pool = postgres::connect(args, "outbox")?;
    let schema = match service {
        ServiceName::Order => &ORDERS,
        ServiceName::Delivery => &DELIVERY,
    };
    let mut out = std::io::stdout().lock();
    // Only the outbox is used: either service's store, seen as a plain transaction.
    let mode = postgres::outbox_mode(args);
    let store: Arc<dyn UnitOfWork<dyn Transaction>> = match service {
        ServiceName::Order => Arc::new(PgOrderStore::new(pool.clone()).with_outbox_mode(mode)),
        ServiceName::Delivery => {
            Arc::new(PgDeliveryStore::new(pool.clone()).with_outbox_mode(mode))
        }
    };
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
        OutboxAction::Shards => {
            for lease in schema.relay_leases(&pool).await? {
                let line = serde_json::json!({
                    "shard": lease.shard, "owner": lease.owner, "leased_until": lease.until,
                });
                writeln!(out, "{line}")?;
            }
        }
        OutboxAction::Reshard { shards } => {
            schema.reshard(&pool, shards).await?;
            writeln!(
                out,
                "the outbox of schema {} has {shards} shards",
                schema.name
            )?;
        }
    }
    Ok(())
}
