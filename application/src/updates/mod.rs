//! Pushed outcomes: follow an order's steps as they commit, on whichever instance — for event
//! streams and long polls. A reader registers with [`OrderWatches`] first and reads the order
//! after, so no change committed after its read goes unnoticed; the store's change feed wakes it.

mod watches;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ordership_domain::ports::{OrderTransaction, UnitOfWork};
use ordership_domain::saga::{SagaStepRecord, step_seq};
use ordership_domain::{CancellationReason, OrderId, OrderStatus, SagaState};
use tokio::time::Instant;

pub use watches::{OrderWatches, Watch, WatchLimits, WatchRefused};

use crate::Shutdown;
use crate::orders::{GetOrderError, OrderAccess, OrderView, read_order};

/// The state of a saga as an update shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaProgress {
    pub state: SagaState,
    pub attempts: u32,
    pub failure_reason: Option<String>,
}

/// One committed state of an order and its saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderUpdate {
    pub order_id: OrderId,
    /// Grows with every step of the order: the position to resume after.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub status: OrderStatus,
    pub cancellation: Option<CancellationReason>,
    pub saga: Option<SagaProgress>,
}

impl OrderUpdate {
    fn of_step(step: SagaStepRecord) -> Self {
        Self {
            order_id: step.order_id,
            seq: step.seq,
            at: step.at,
            status: step.order_status,
            cancellation: step.cancellation,
            saga: Some(SagaProgress {
                state: step.saga_state,
                attempts: step.attempts,
                failure_reason: step.failure_reason,
            }),
        }
    }

    /// The state an order is in now.
    #[must_use]
    pub fn of_view(view: &OrderView) -> Self {
        let order = &view.order;
        let saga = view.saga.as_ref();
        Self {
            order_id: order.id(),
            seq: step_seq(order, saga),
            at: saga.map_or(order.updated_at(), |s| {
                s.updated_at().max(order.updated_at())
            }),
            status: order.status(),
            cancellation: order.cancellation_reason().cloned(),
            saga: saga.map(|s| SagaProgress {
                state: s.state(),
                attempts: s.attempts(),
                failure_reason: s.failure_reason().map(str::to_owned),
            }),
        }
    }

    /// Whether the order's saga has ended (completed, compensated or failed): the outcome of
    /// placing it is known.
    #[must_use]
    pub fn settled(&self) -> bool {
        self.saga.as_ref().is_none_or(|s| !s.state.is_waiting())
    }
}

/// Follows orders for readers that wait (event streams, long polls).
#[derive(Clone)]
pub struct OrderUpdates {
    uow: Arc<dyn UnitOfWork<dyn OrderTransaction>>,
    watches: OrderWatches,
    shutdown: Option<Shutdown>,
}

/// How many history steps one read returns at most.
const STEPS_PER_READ: u32 = 100;

impl OrderUpdates {
    #[must_use]
    pub fn new(uow: Arc<dyn UnitOfWork<dyn OrderTransaction>>, watches: OrderWatches) -> Self {
        Self {
            uow,
            watches,
            shutdown: None,
        }
    }

    /// Readers stop waiting when `shutdown` is requested, so a graceful stop does not wait for
    /// them.
    #[must_use]
    pub fn with_shutdown(self, shutdown: Shutdown) -> Self {
        Self {
            shutdown: Some(shutdown),
            ..self
        }
    }

    /// Starts following an order for `caller` (counted against their limit). Nothing is read
    /// yet: the first read answers `NotFound` for an order that does not exist or that `access`
    /// does not cover, so a follower costs no read of its own.
    ///
    /// # Errors
    /// [`WatchRefused`] when the instance or the caller follows as many orders as they may.
    pub fn follow(
        &self,
        id: OrderId,
        access: &OrderAccess,
        caller: &str,
    ) -> Result<Following, WatchRefused> {
        let watch = self.watches.watch(id, caller)?;
        Ok(Following {
            uow: Arc::clone(&self.uow),
            id,
            access: access.clone(),
            watch,
            shutdown: self.shutdown.clone(),
        })
    }
}

/// One reader following one order.
pub struct Following {
    uow: Arc<dyn UnitOfWork<dyn OrderTransaction>>,
    id: OrderId,
    access: OrderAccess,
    watch: Watch,
    shutdown: Option<Shutdown>,
}

impl Following {
    /// The order now.
    ///
    /// # Errors
    /// `NotFound`, or the store's failure.
    pub async fn view(&self) -> Result<OrderView, GetOrderError> {
        let mut tx = self.uow.begin_single_read().await?;
        read_order(tx.as_mut(), self.id, &self.access).await
    }

    /// The order's updates after `after`, oldest first — its saga's steps, then its current state
    /// if no step records it (an order older than the history) — or, with no `after`, its current
    /// state alone. Read from one snapshot.
    ///
    /// # Errors
    /// `NotFound`, or the store's failure.
    pub async fn updates_after(
        &self,
        after: Option<u64>,
    ) -> Result<Vec<OrderUpdate>, GetOrderError> {
        let mut tx = self.uow.begin_read_only().await?;
        let now = OrderUpdate::of_view(&read_order(tx.as_mut(), self.id, &self.access).await?);
        let Some(after) = after else {
            return Ok(vec![now]);
        };
        let mut updates: Vec<OrderUpdate> = tx
            .sagas()
            .history(self.id, after, STEPS_PER_READ)
            .await?
            .into_iter()
            .map(OrderUpdate::of_step)
            .collect();
        let newest = updates.last().map_or(after, |u| u.seq);
        if now.seq > newest && updates.len() < STEPS_PER_READ as usize {
            updates.push(now);
        }
        Ok(updates)
    }

    /// Waits until the order may have changed; `false` if `deadline` came first or the service
    /// is stopping.
    pub async fn changed_before(&mut self, deadline: Instant) -> bool {
        let mut shutdown = self.shutdown.clone();
        let stopping = async {
            match shutdown.as_mut() {
                Some(shutdown) => shutdown.requested().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.watch.changed() => true,
            () = tokio::time::sleep_until(deadline) => false,
            () = stopping => false,
        }
    }

    /// Whether the service is stopping (readers should end).
    #[must_use]
    pub fn stopping(&self) -> bool {
        self.shutdown.as_ref().is_some_and(Shutdown::is_requested)
    }

    /// Waits up to `wait` for the order to settle; its state when it did, or when the wait ended.
    ///
    /// # Errors
    /// `NotFound`, or the store's failure.
    pub async fn settled_within(&mut self, wait: Duration) -> Result<OrderView, GetOrderError> {
        let deadline = Instant::now() + wait;
        loop {
            let view = self.view().await?;
            if OrderUpdate::of_view(&view).settled() || !self.changed_before(deadline).await {
                return Ok(view);
            }
        }
    }
}
