//! Writing to the outbox inside a use case's transaction, as a span of its own; and what an
//! operator does with parked messages (list, re-drive, purge), each in a transaction of its own.

use ordership_domain::Message;
use ordership_domain::ports::{Outbox, ParkedMessage, StoreError, Transaction, UnitOfWork};
use tracing::Instrument;

/// Appends `messages`, in order, to the transaction's outbox.
pub(crate) async fn append(
    outbox: &mut dyn Outbox,
    messages: &[Message],
) -> Result<(), StoreError> {
    outbox
        .append_all(messages)
        .instrument(tracing::info_span!(
            "outbox.append",
            messages = messages.len()
        ))
        .await
}

/// Parked messages of an outbox, oldest first, at most `limit`.
///
/// # Errors
/// The store's failure.
pub async fn parked<Tx: ?Sized + Transaction>(
    uow: &dyn UnitOfWork<Tx>,
    limit: u32,
) -> Result<Vec<ParkedMessage>, StoreError> {
    uow.begin_read_only().await?.outbox().parked(limit).await
}

/// Sends parked messages again; returns how many were parked.
///
/// # Errors
/// The store's failure; nothing changed then.
pub async fn redrive_parked<Tx: ?Sized + Transaction>(
    uow: &dyn UnitOfWork<Tx>,
    positions: &[i64],
) -> Result<u64, StoreError> {
    let mut tx = uow.begin().await?;
    let redriven = tx.outbox().redrive_parked(positions).await?;
    tx.commit().await?;
    tracing::info!(redriven, "parked outbox messages sent again");
    Ok(redriven)
}

/// Deletes parked messages; returns how many were parked.
///
/// # Errors
/// The store's failure; nothing changed then.
pub async fn purge_parked<Tx: ?Sized + Transaction>(
    uow: &dyn UnitOfWork<Tx>,
    positions: &[i64],
) -> Result<u64, StoreError> {
    let mut tx = uow.begin().await?;
    let purged = tx.outbox().purge_parked(positions).await?;
    tx.commit().await?;
    tracing::warn!(purged, "parked outbox messages deleted");
    Ok(purged)
}
