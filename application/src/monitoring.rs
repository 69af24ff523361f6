//! Figures for metrics, read from the stores at scrape time.

use ordership_domain::SagaState;
use ordership_domain::ports::{OrderTransaction, OutboxStats, StoreError, Transaction, UnitOfWork};

/// How many sagas are in each state; every state is listed, with zero where there are none.
///
/// # Errors
/// The store's failure.
pub async fn saga_counts(
    uow: &dyn UnitOfWork<dyn OrderTransaction>,
) -> Result<Vec<(SagaState, u64)>, StoreError> {
    let mut tx = uow.begin_read_only().await?;
    let counted = tx.sagas().count_by_state().await?;
    Ok(SagaState::ALL
        .into_iter()
        .map(|state| {
            let n = counted
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            (state, n)
        })
        .collect())
}

/// The outbox backlog of one service.
///
/// # Errors
/// The store's failure.
pub async fn outbox_stats<Tx: ?Sized + Transaction>(
    uow: &dyn UnitOfWork<Tx>,
) -> Result<OutboxStats, StoreError> {
    uow.begin_read_only().await?.outbox().stats().await
}
