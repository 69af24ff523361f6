//! The background loops: the saga's deadline sweeper (order service), and retention of published
//! outbox messages, inbox entries and idempotency keys (both services).

use std::sync::Arc;
use std::time::Duration;

use ordership_domain::ports::{Clock, StoreError, Transaction, UnitOfWork};

use crate::config::RetentionConfig;
use crate::saga::FulfilmentOrchestrator;
use crate::shutdown::Shutdown;

/// Whether the saga's replies can reach it now. While they cannot (the process's reply consumer
/// is not in its group yet, say right after a restart), a saga's deadline says nothing about the
/// delivery service, and re-sending would only flood it.
pub type RepliesFlowing = Arc<dyn Fn() -> bool + Send + Sync>;

/// Runs the saga deadline sweeper every `interval` until `shutdown`, skipping the rounds in
/// which `replies_flowing` says no.
pub async fn run_sweeper(
    orchestrator: FulfilmentOrchestrator,
    interval: Duration,
    batch: u32,
    replies_flowing: RepliesFlowing,
    mut shutdown: Shutdown,
) {
    let mut held_back = false;
    loop {
        if !replies_flowing() {
            if !held_back {
                tracing::info!("saga deadlines held back: replies cannot arrive yet");
            }
            held_back = true;
            tokio::select! {
                () = shutdown.requested() => return,
                () = tokio::time::sleep(interval) => {}
            }
            continue;
        }
        if held_back {
            tracing::info!("saga deadlines judged again: replies can arrive");
        }
        held_back = false;
        match orchestrator.sweep_overdue(batch).await {
            // A full batch: there may be more overdue right now.
            Ok(r) if r.retried + r.compensated + r.failed == batch => continue,
            Ok(r) if r != crate::saga::SweepReport::default() => {
                tracing::info!(
                    retried = r.retried,
                    compensated = r.compensated,
                    failed = r.failed,
                    "saga deadlines swept"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "saga sweep failed"),
        }
        tokio::select! {
            () = shutdown.requested() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub outbox: u64,
    pub inbox: u64,
}

/// Removes published outbox messages and old inbox entries of one service.
///
/// # Errors
/// The store's failure.
pub async fn purge_outbox_and_inbox<Tx: ?Sized + Transaction>(
    uow: &dyn UnitOfWork<Tx>,
    clock: &dyn Clock,
    retention: &RetentionConfig,
) -> Result<Purged, StoreError> {
    let now = clock.now();
    let ago = |d: Duration| now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let mut tx = uow.begin().await?;
    let purged = Purged {
        outbox: tx.outbox().purge_published(ago(retention.outbox)).await?,
        inbox: tx.inbox().purge(ago(retention.inbox)).await?,
    };
    tx.commit().await?;
    Ok(purged)
}

/// Removes idempotency keys older than their retention.
///
/// # Errors
/// The store's failure.
pub async fn purge_idempotency_keys(
    uow: &dyn UnitOfWork<dyn ordership_domain::ports::OrderTransaction>,
    clock: &dyn Clock,
    retention: &RetentionConfig,
) -> Result<u64, StoreError> {
    let before = clock.now()
        - chrono::Duration::from_std(retention.idempotency_keys).unwrap_or(chrono::Duration::MAX);
    let mut tx = uow.begin().await?;
    let purged = tx.idempotency_keys().purge(before).await?;
    tx.commit().await?;
    Ok(purged)
}

/// Runs `pass` every `interval` until `shutdown`, logging failures.
pub async fn run_every<F, Fut>(
    name: &'static str,
    interval: Duration,
    mut shutdown: Shutdown,
    pass: F,
) where
    F: Fn() -> Fut + Send,
    Fut: std::future::Future<Output = Result<(), StoreError>> + Send,
{
    loop {
        if let Err(e) = pass().await {
            tracing::warn!(task = name, error = %e, "background pass failed");
        }
        tokio::select! {
            () = shutdown.requested() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
