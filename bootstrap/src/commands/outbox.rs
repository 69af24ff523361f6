//! `ordership outbox`: an operator's hands on the parked messages of one service's outbox.

use std::io::Write as _;
use std::sync::Arc;

use ordership_application::outbox::{parked, purge_parked, redrive_parked};
use ordership_domain::ports::{Transaction, UnitOfWork};
use ordership_postgres::{PgDeliveryStore, PgOrderStore};

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
    let mode = postgres::outbox_mode(args);
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
