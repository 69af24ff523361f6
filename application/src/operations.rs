//! An operator's hands on sagas: list them by state and age, read one's history, retry a failed
//! one, force one to compensate. Each action is one saga step — locked, decided by the domain
//! ([`decide::on_operator`]), saved with its messages and a history record that says who did it
//! and why — so it races replies and sweepers like any other step: one of them goes first, the
//! other sees what it did.

use std::sync::Arc;

use ordership_domain::ports::{
    BoxError, Clock, IdGenerator, OrderTransaction, SagaQuery, StoreError, UnitOfWork,
};
use ordership_domain::saga::{OperatorAction, OperatorError, SagaStepRecord, StepCause, decide};
use ordership_domain::{FulfilmentSaga, OrderId, SagaPolicy};

use crate::error::from_store_error;
use crate::orders::{GetOrderError, OrderAccess, OrderView, read_order};
use crate::saga::{Loaded, SOURCE, StepToSave, encode, save_step};
use crate::stamp::Stamps;

/// How many steps of one saga's history are read at most.
const HISTORY_LIMIT: u32 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum SagaActionError {
    #[error("saga not found")]
    NotFound,
    /// The saga's state (or its order's) does not allow the action.
    #[error(transparent)]
    NotAllowed(OperatorError),
    #[error("the saga was changed concurrently")]
    Conflict,
    #[error("storage is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("unexpected error")]
    Unexpected(#[source] BoxError),
}
from_store_error!(SagaActionError);

/// An operator's action on one saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaAction<'a> {
    pub action: OperatorAction,
    /// Who acts (the token's subject).
    pub actor: &'a str,
    /// Why, in the operator's words (recorded in the history).
    pub reason: &'a str,
}

/// Saga operations for operators.
#[derive(Clone)]
pub struct SagaOperations {
    uow: Arc<dyn UnitOfWork<dyn OrderTransaction>>,
    stamps: Stamps,
    policy: SagaPolicy,
}

impl SagaOperations {
    #[must_use]
    pub fn new(
        uow: Arc<dyn UnitOfWork<dyn OrderTransaction>>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        policy: SagaPolicy,
    ) -> Self {
        Self {
            uow,
            stamps: Stamps::new(SOURCE, clock, ids),
            policy,
        }
    }

    /// A page of sagas by ascending order id; pass the last one's order id as `after` for the
    /// next.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn list(&self, query: &SagaQuery) -> Result<Vec<FulfilmentSaga>, GetOrderError> {
        let mut tx = self.uow.begin_read_only().await?;
        Ok(tx.sagas().list(query).await?)
    }

    /// An order with its saga, and every step of the saga, oldest first (from one snapshot).
    ///
    /// # Errors
    /// `NotFound`, or the store's failure.
    pub async fn history(
        &self,
        id: OrderId,
    ) -> Result<(OrderView, Vec<SagaStepRecord>), GetOrderError> {
        let mut tx = self.uow.begin_read_only().await?;
        let view = read_order(tx.as_mut(), id, &OrderAccess::All).await?;
        let steps = tx.sagas().history(id, 0, HISTORY_LIMIT).await?;
        Ok((view, steps))
    }

    /// Carries out an operator's action on the saga of order `id`, as one step.
    ///
    /// # Errors
    /// `NotFound`; `NotAllowed` when the saga's state refuses the action (nothing changes);
    /// the store's failure.
    #[tracing::instrument(name = "saga.operator", skip_all, fields(order_id = %id, action = act.action.as_str(), actor = act.actor))]
    pub async fn act(
        &self,
        id: OrderId,
        act: SagaAction<'_>,
    ) -> Result<OrderView, SagaActionError> {
        let mut tx = self.uow.begin().await?;
        // Lock the saga before reading the order, as every saga step does.
        let Some((mut saga, mut order)) = tx.lock_saga_with_order(id).await? else {
            return Err(SagaActionError::NotFound);
        };
        let loaded = Loaded::of(&order, Some(&saga));
        let now = self.stamps.now();
        let outgoing = decide::on_operator(
            &self.policy,
            &mut order,
            &mut saga,
            act.action,
            act.reason,
            now,
        )
        .map_err(|e| match e {
            OperatorError::Invalid(e) => SagaActionError::Unexpected(Box::new(e)),
            refused => SagaActionError::NotAllowed(refused),
        })?;
        let messages =
            encode(&self.stamps, &order, outgoing, None).map_err(SagaActionError::Unexpected)?;
        let step = StepToSave {
            loaded,
            order: &order,
            saga: Some(&saga),
            cause: StepCause::Operator {
                action: act.action,
                actor: act.actor.to_owned(),
                reason: act.reason.to_owned(),
            },
            messages: &messages,
        };
        save_step(tx.as_mut(), step, now).await?;
        tx.commit().await?;
        tracing::warn!(reason = act.reason, state = %saga.state(), "operator acted on a saga");
        Ok(OrderView {
            order,
            saga: Some(saga),
        })
    }
}
