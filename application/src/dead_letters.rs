//! What an operator does with dead letters (the messages a consumer gave up on), each in a
//! transaction of its own: list, show, re-drive, purge. Re-driving appends the messages to the
//! service's outbox as they were — same id, topic, key and headers, in the order they died — and
//! marks them re-driven in the same transaction, so the relay sends each back to its topic once,
//! per-key order kept among them; the consumer's inbox then treats it like any delivery (one that
//! was handled meanwhile has no effect).

use chrono::{DateTime, Utc};
use ordership_domain::ports::{
    DeadLetter, DeadLetterQuery, DeadLetterSelection, StoreError, Transaction, UnitOfWork,
};

/// A page of dead letters, by ascending id.
///
/// # Errors
/// The store's failure.
pub async fn list<Tx: ?Sized + Transaction>(
    uow: &dyn UnitOfWork<Tx>,
    query: &DeadLetterQuery,
) -> Result<Vec<DeadLetter>, StoreError> {
    uow.begin_read_only()
        .await?
        .dead_letters()
        .list(query)
        .await
}

/// One dead letter, with its message.
///
/// # Errors
/// The store's failure.
pub async fn show<Tx: ?Sized + Transaction>(
    uow: &dyn UnitOfWork<Tx>,
    id: i64,
) -> Result<Option<DeadLetter>, StoreError> {
    uow.begin_read_only().await?.dead_letters().get(id).await
}

/// Sends the selected dead letters (of `consumer`, if given) back to their topics through the
/// outbox; the ones re-driven.
///
/// # Errors
/// The store's failure; nothing changed then.
pub async fn redrive<Tx: ?Sized + Transaction>(
    uow: &dyn UnitOfWork<Tx>,
    consumer: Option<&str>,
    selection: &DeadLetterSelection,
    now: DateTime<Utc>,
) -> Result<Vec<DeadLetter>, StoreError> {
    let mut tx = uow.begin().await?;
    let taken = tx
        .dead_letters()
        .take_for_redrive(consumer, selection, now)
        .await?;
    let messages: Vec<_> = taken.iter().map(|l| l.message.clone()).collect();
    crate::outbox::append(tx.outbox(), &messages).await?;
    tx.commit().await?;
    tracing::warn!(
        redriven = taken.len(),
        "dead letters sent back to their topics"
    );
    Ok(taken)
}

/// Deletes the selected dead letters (of `consumer`, if given); how many.
///
/// # Errors
/// The store's failure; nothing changed then.
pub async fn purge<Tx: ?Sized + Transaction>(
    uow: &dyn UnitOfWork<Tx>,
    consumer: Option<&str>,
    selection: &DeadLetterSelection,
) -> Result<u64, StoreError> {
    let mut tx = uow.begin().await?;
    let purged = tx.dead_letters().purge(consumer, selection).await?;
    tx.commit().await?;
    tracing::warn!(purged, "dead letters deleted");
    Ok(purged)
}
