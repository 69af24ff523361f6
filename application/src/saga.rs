//! The orchestrator of the fulfilment saga: loads and locks an order's saga, lets the domain
//! decide ([`ordership_domain::saga::decide`]), and saves what the step changed with the messages
//! it sends — order, saga and outbox in one transaction ([`save_step`]), with the reply recorded
//! in the inbox in that same transaction, so a redelivered reply has no effect.

use std::sync::Arc;

use async_trait::async_trait;
use ordership_domain::ports::{
    BoxError, Clock, HandleError, HandleOutcome, IdGenerator, MessageHandler, OrderTransaction,
    RandomSource, StoreError, UnitOfWork,
};
use ordership_domain::saga::{
    DeadlineAction, Outgoing, SagaCommand, SagaStepRecord, Step, StepCause, decide,
};
use ordership_domain::{
    FulfilmentSaga, Message, MessageId, Order, OrderStatus, SagaPolicy, SagaState, SeededRandom,
};

use ordership_domain::planted::{self, Bug};
use ordership_domain::{CancellationReason, OrderEvent};

use crate::messages::delivery_commands::{cancel_delivery, schedule_delivery};
use crate::messages::delivery_events::decode_reply;
use crate::messages::order_events::order_event;
use crate::stamp::Stamps;

/// The inbox name of the saga's reply consumer.
pub const CONSUMER: &str = "order-service.saga";

/// The `source` of the order service's messages.
pub const SOURCE: &str = "/ordership/order-service";

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub retried: u32,
    pub compensated: u32,
    pub failed: u32,
}

/// The versions an order and its saga had when a step loaded them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loaded {
    order: u64,
    saga: Option<u64>,
    /// Whether the order was cancelled already: the step that cancels it gives its units back.
    cancelled: bool,
}

impl Loaded {
    pub(crate) fn of(order: &Order, saga: Option<&FulfilmentSaga>) -> Self {
        Self {
            order: order.version(),
            saga: saga.map(FulfilmentSaga::version),
            cancelled: order.status() == OrderStatus::Cancelled,
        }
    }
}

/// What one saga step changed, to save: the order and its saga as they are now, what caused the
/// step, and the messages it sends.
pub(crate) struct StepToSave<'a> {
    pub(crate) loaded: Loaded,
    pub(crate) order: &'a Order,
    pub(crate) saga: Option<&'a FulfilmentSaga>,
    pub(crate) cause: StepCause,
    pub(crate) messages: &'a [Message],
}

/// Writes what one saga step changed, in the step's transaction: the order if it changed, the
/// saga if it changed (each against the version it was loaded with), the step in the saga's
/// history, then the step's messages — aggregate rows before outbox rows, so one order's outbox
/// order is its commit order.
pub(crate) async fn save_step(
    tx: &mut dyn OrderTransaction,
    step: StepToSave<'_>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    let StepToSave {
        loaded,
        order,
        saga,
        cause,
        messages,
    } = step;
    let order_changed = order.version() != loaded.order;
    let sent = || messages.iter().map(|m| m.id).collect();
    match (saga, loaded.saga) {
        // The saga changed: its row and its step in one go, with the order if it changed too.
        (Some(saga), Some(expected)) if saga.version() != expected => {
            let step = SagaStepRecord::of(order, saga, cause, at, sent());
            if order_changed {
                tx.update_order_and_saga_with_step(order, loaded.order, saga, expected, &step)
                    .await?;
            } else {
                tx.sagas().update_with_step(saga, expected, &step).await?;
            }
        }
        (Some(saga), _) if order_changed => {
            tx.orders().update(order, loaded.order).await?;
            let step = SagaStepRecord::of(order, saga, cause, at, sent());
            tx.sagas().record_step(&step).await?;
        }
        _ if order_changed => tx.orders().update(order, loaded.order).await?,
        _ => {}
    }
    // The step that cancels an order gives back the units it held, once: the order turns
    // cancelled once, and the update above is against the version it was loaded at, so a step
    // replayed from a redelivered message or raced by another fails or finds it cancelled.
    if !loaded.cancelled
        && order.status() == OrderStatus::Cancelled
        && let Some(admission) = order.admission().filter(|a| a.units > 0)
    {
        tx.orders()
            .give_back_stock(&admission.room, admission.units)
            .await?;
    }
    crate::outbox::append(tx.outbox(), messages).await
}

/// Encodes what a step sends. A command is caused by the event decided before it in the same
/// step, if any, else by `cause` (the message that triggered the step).
pub(crate) fn encode(
    stamps: &Stamps,
    order: &Order,
    outgoing: Vec<Outgoing>,
    cause: Option<MessageId>,
) -> Result<Vec<Message>, BoxError> {
    let mut messages: Vec<Message> = Vec::with_capacity(outgoing.len());
    let mut last_event = None;
    for out in outgoing {
        let message = match out {
            Outgoing::Event(event) => {
                let message = order_event(stamps.envelope(cause), order, &event)?;
                last_event = Some(message.id);
                message
            }
            Outgoing::Command(command) => {
                let envelope = stamps.envelope(last_event.or(cause));
                match command {
                    SagaCommand::ScheduleDelivery => schedule_delivery(envelope, order)?,
                    SagaCommand::CancelDelivery => cancel_delivery(envelope, order.id())?,
                }
            }
        };
        messages.push(message);
    }
    Ok(messages)
}

/// Drives fulfilment sagas forward: replies from the delivery service, and deadlines.
#[derive(Clone)]
pub struct FulfilmentOrchestrator {
    uow: Arc<dyn UnitOfWork<dyn OrderTransaction>>,
    stamps: Stamps,
    policy: SagaPolicy,
    /// Spreads the waits of re-sent commands (jitter).
    random: Arc<dyn RandomSource>,
}

impl FulfilmentOrchestrator {
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
            random: Arc::new(SeededRandom::from_entropy()),
        }
    }

    /// Draws the jitter of re-sends from `random` (the default is seeded per process).
    #[must_use]
    pub fn with_random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = random;
        self
    }

    /// Finds sagas past their deadline and moves each on: sends its command again (with a
    /// longer wait), or after the last attempt compensates (`AwaitingDelivery`) or gives up
    /// (`Cancelling` → `Failed`). Sagas held by another sweeper are skipped.
    ///
    /// # Errors
    /// The store's failure; nothing of the batch is then committed.
    #[tracing::instrument(name = "saga.sweep", level = "debug", skip(self))]
    pub async fn sweep_overdue(&self, limit: u32) -> Result<SweepReport, StoreError> {
        let now = self.stamps.now();
        let mut report = SweepReport::default();
        let mut tx = self.uow.begin().await?;
        let overdue = tx.sagas().claim_overdue(now, limit).await?;
        if overdue.is_empty() {
            return Ok(report);
        }
        for mut saga in overdue {
            let order_id = saga.order_id();
            let Some(mut order) = tx.orders().get(order_id).await? else {
                return Err(StoreError::Unexpected(
                    format!("saga {order_id} has no order").into(),
                ));
            };
            let loaded = Loaded::of(&order, Some(&saga));
            let attempts = saga.attempts();
            let Some((action, outgoing)) = decide::on_deadline(
                &self.policy,
                &mut order,
                &mut saga,
                now,
                self.random.jitter(),
            )
            .map_err(|e| StoreError::Unexpected(Box::new(e)))?
            else {
                continue;
            };
            match action {
                DeadlineAction::Retried => report.retried += 1,
                DeadlineAction::Compensating => {
                    tracing::warn!(%order_id, attempts, "no reply from delivery, compensating");
                    report.compensated += 1;
                }
                DeadlineAction::Failed => {
                    tracing::error!(%order_id, reason = saga.failure_reason(), "saga failed");
                    report.failed += 1;
                }
            }
            let messages =
                encode(&self.stamps, &order, outgoing, None).map_err(StoreError::Unexpected)?;
            let step = StepToSave {
                loaded,
                order: &order,
                saga: Some(&saga),
                cause: StepCause::Deadline,
                messages: &messages,
            };
            save_step(tx.as_mut(), step, now).await?;
        }
        tx.commit().await?;
        Ok(report)
    }
}

#[async_trait]
impl MessageHandler for FulfilmentOrchestrator {
    #[tracing::instrument(name = "saga.reply", skip_all, fields(message_type = %message.message_type))]
    async fn handle(&self, message: &Message) -> Result<HandleOutcome, HandleError> {
        let (order_id, reply) = decode_reply(message)?;
        let now = self.stamps.now();
        let mut tx = self.uow.begin().await?;
        if !tx.inbox().record(CONSUMER, message.id, now).await?
            && !planted::active(Bug::InboxSkipped)
        {
            return Ok(HandleOutcome::Duplicate);
        }
        // The saga locked first: the order is then read after any concurrent step committed.
        let Some((mut saga, mut order)) = tx.lock_saga_with_order(order_id).await? else {
            return Err(HandleError::Permanent(format!(
                "{} for unknown order {order_id}",
                message.message_type
            )));
        };
        let loaded = Loaded::of(&order, Some(&saga));
        let step = decide::on_reply(&self.policy, &mut order, &mut saga, reply, now)
            .map_err(|e| HandleError::Transient(Box::new(e)))?;
        let outcome = match step {
            Step::Ignored(why) => {
                tracing::debug!(%order_id, message_type = %message.message_type, why, "reply ignored");
                if planted::active(Bug::CompensationTwice) && saga.state() == SagaState::Compensated
                {
                    // Planted: the compensation announced again for a late cancellation reply.
                    let again = OrderEvent::Cancelled {
                        reason: CancellationReason::CustomerRequested,
                    };
                    let messages = encode(
                        &self.stamps,
                        &order,
                        vec![Outgoing::Event(again)],
                        Some(message.id),
                    )
                    .map_err(HandleError::Transient)?;
                    crate::outbox::append(tx.outbox(), &messages).await?;
                }
                HandleOutcome::Ignored
            }
            Step::Changed(outgoing) => {
                if saga.state() == SagaState::Failed {
                    tracing::error!(%order_id, reason = saga.failure_reason(), "saga failed");
                }
                let messages = encode(&self.stamps, &order, outgoing, Some(message.id))
                    .map_err(HandleError::Transient)?;
                let step = StepToSave {
                    loaded,
                    order: &order,
                    saga: Some(&saga),
                    cause: StepCause::Reply {
                        message_id: message.id,
                        message_type: message.message_type.clone(),
                    },
                    messages: &messages,
                };
                save_step(tx.as_mut(), step, now).await?;
                HandleOutcome::Applied
            }
        };
        // Ignored replies are committed too: the inbox then discards their redeliveries cheaply.
        tx.commit().await?;
        Ok(outcome)
    }
}
