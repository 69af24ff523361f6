//! The orchestrated fulfilment saga: handles the delivery service's replies and the deadlines of
//! sagas that wait too long. Every step changes order, saga and outbox in one transaction, and
//! records the reply in the inbox in that same transaction, so a redelivered reply has no effect.

use std::sync::Arc;

use async_trait::async_trait;
use ordership_domain::ports::{
    BoxError, HandleError, HandleOutcome, MessageHandler, OrderTransaction, StoreError, UnitOfWork,
};
use ordership_domain::{
    CancellationReason, DeliveryId, FulfilmentSaga, InvalidTransition, Message, MessageId, Order,
    OrderId, OrderStatus, SagaState, topics,
};
use uuid::Uuid;

use crate::config::SagaConfig;
use crate::messages::{
    AddressV1, CancelDeliveryV1, DeliveryCancellationRefusedV1, DeliveryCancelledV1,
    DeliveryProgressV1, DeliveryRejectedV1, DeliveryScheduledV1, MessageFactory,
    ScheduleDeliveryV1, decode, types,
};

/// The inbox name of the saga's reply consumer.
pub const CONSUMER: &str = "order-service.saga";

/// `ScheduleDelivery` for `order`.
pub(crate) fn schedule_delivery(
    messages: &MessageFactory,
    order: &Order,
    causation: Option<MessageId>,
) -> Result<Message, BoxError> {
    let payload = ScheduleDeliveryV1 {
        order_id: *order.id().as_uuid(),
        shipping_address: AddressV1::from(order.shipping_address()),
    };
    messages.build(
        topics::DELIVERY_COMMANDS,
        types::SCHEDULE_DELIVERY,
        order.id(),
        &payload,
        causation,
    )
}

/// `CancelDelivery` for `order_id`.
pub(crate) fn cancel_delivery(
    messages: &MessageFactory,
    order_id: OrderId,
    causation: Option<MessageId>,
) -> Result<Message, BoxError> {
    let payload = CancelDeliveryV1 {
        order_id: *order_id.as_uuid(),
    };
    messages.build(
        topics::DELIVERY_COMMANDS,
        types::CANCEL_DELIVERY,
        order_id,
        &payload,
        causation,
    )
}

/// A reply or progress event of the delivery service, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DeliveryReply {
    Scheduled(DeliveryId),
    Rejected(String),
    Cancelled,
    CancellationRefused { delivery_id: Uuid, status: String },
    Shipped,
    Delivered,
}

fn decode_reply(message: &Message) -> Result<(OrderId, DeliveryReply), HandleError> {
    let decoded = match message.message_type.as_str() {
        types::DELIVERY_SCHEDULED => {
            let m: DeliveryScheduledV1 = decode(message)?;
            (
                m.order_id,
                DeliveryReply::Scheduled(DeliveryId::from_uuid(m.delivery_id)),
            )
        }
        types::DELIVERY_REJECTED => {
            let m: DeliveryRejectedV1 = decode(message)?;
            (m.order_id, DeliveryReply::Rejected(m.reason))
        }
        types::DELIVERY_CANCELLED => {
            let m: DeliveryCancelledV1 = decode(message)?;
            (m.order_id, DeliveryReply::Cancelled)
        }
        types::DELIVERY_CANCELLATION_REFUSED => {
            let m: DeliveryCancellationRefusedV1 = decode(message)?;
            let reply = DeliveryReply::CancellationRefused {
                delivery_id: m.delivery_id,
                status: m.status,
            };
            (m.order_id, reply)
        }
        types::DELIVERY_SHIPPED => (
            decode::<DeliveryProgressV1>(message)?.order_id,
            DeliveryReply::Shipped,
        ),
        types::DELIVERY_DELIVERED => (
            decode::<DeliveryProgressV1>(message)?.order_id,
            DeliveryReply::Delivered,
        ),
        other => {
            return Err(HandleError::Permanent(format!(
                "unknown message type {other:?} on {}",
                message.topic
            )));
        }
    };
    Ok((OrderId::from_uuid(decoded.0), decoded.1))
}

/// What one saga step decided.
enum Step {
    /// Write the changed order and saga, send these messages.
    Changed(Vec<Message>),
    /// Stale or duplicate in meaning: acknowledge without effect.
    Ignored(&'static str),
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub retried: u32,
    pub compensated: u32,
    pub failed: u32,
}

/// Drives fulfilment sagas forward: replies from the delivery service, and deadlines.
#[derive(Clone)]
pub struct FulfilmentOrchestrator {
    uow: Arc<dyn UnitOfWork<dyn OrderTransaction>>,
    messages: MessageFactory,
    config: SagaConfig,
}

fn bug(e: InvalidTransition) -> HandleError {
    HandleError::Transient(Box::new(e))
}

impl FulfilmentOrchestrator {
    #[must_use]
    pub fn new(
        uow: Arc<dyn UnitOfWork<dyn OrderTransaction>>,
        messages: MessageFactory,
        config: SagaConfig,
    ) -> Self {
        Self {
            uow,
            messages,
            config,
        }
    }

    /// Decides what a reply does to an order and its saga (mutating them in place).
    fn step(
        &self,
        reply: DeliveryReply,
        order: &mut Order,
        saga: &mut FulfilmentSaga,
        cause: MessageId,
    ) -> Result<Step, HandleError> {
        let now = self.messages.now();
        let event = |order: &Order, event| {
            self.messages
                .order_event(order, &event, Some(cause))
                .map_err(HandleError::Transient)
        };
        Ok(match (reply, saga.state()) {
            (DeliveryReply::Scheduled(delivery_id), SagaState::AwaitingDelivery) => {
                let confirmed = order.confirm(delivery_id, now).map_err(bug)?;
                saga.complete(now).map_err(bug)?;
                Step::Changed(vec![event(order, confirmed)?])
            }
            (DeliveryReply::Rejected(reason), SagaState::AwaitingDelivery) => {
                let cancelled = order
                    .cancel(CancellationReason::DeliveryRejected { reason }, now)
                    .map_err(bug)?;
                saga.compensated(now).map_err(bug)?;
                Step::Changed(vec![event(order, cancelled)?])
            }
            (DeliveryReply::Cancelled, SagaState::Cancelling) => {
                let mut out = Vec::new();
                if order.is_cancellable() {
                    let cancelled = order
                        .cancel(CancellationReason::CustomerRequested, now)
                        .map_err(bug)?;
                    out.push(event(order, cancelled)?);
                }
                saga.compensated(now).map_err(bug)?;
                Step::Changed(out)
            }
            (
                DeliveryReply::CancellationRefused {
                    delivery_id,
                    status,
                },
                SagaState::Cancelling,
            ) => {
                if order.status() != OrderStatus::Cancelled {
                    // The customer asked too late: the parcel is on its way, the order follows it.
                    saga.complete(now).map_err(bug)?;
                } else {
                    let reason = format!(
                        "delivery {delivery_id} was already {status} when the order was cancelled"
                    );
                    tracing::error!(order_id = %order.id(), %reason, "saga failed");
                    saga.fail(reason, now).map_err(bug)?;
                }
                Step::Changed(Vec::new())
            }
            (DeliveryReply::Shipped, _) => match order.ship(now) {
                Ok(shipped) => Step::Changed(vec![event(order, shipped)?]),
                Err(_) => Step::Ignored("order is not confirmed"),
            },
            (DeliveryReply::Delivered, _) => match order.deliver(now) {
                Ok(delivered) => Step::Changed(vec![event(order, delivered)?]),
                Err(_) => Step::Ignored("order is not shipped"),
            },
            _ => Step::Ignored("the saga is no longer waiting for this reply"),
        })
    }

    /// Finds sagas past their deadline and moves each on: sends its command again (with a
    /// longer wait), or after the last attempt compensates (`AwaitingDelivery`) or gives up
    /// (`Cancelling` → `Failed`). Sagas held by another sweeper are skipped.
    ///
    /// # Errors
    /// The store's failure; nothing of the batch is then committed.
    pub async fn sweep_overdue(&self, limit: u32) -> Result<SweepReport, StoreError> {
        let now = self.messages.now();
        let mut report = SweepReport::default();
        let mut tx = self.uow.begin().await?;
        let overdue = tx.sagas().claim_overdue(now, limit).await?;
        if overdue.is_empty() {
            return Ok(report);
        }
        let unexpected = |e: BoxError| StoreError::Unexpected(e);
        let invalid = |e: InvalidTransition| StoreError::Unexpected(Box::new(e));
        for mut saga in overdue {
            let expected = saga.version();
            let order_id = saga.order_id();
            let Some(mut order) = tx.orders().get(order_id).await? else {
                return Err(StoreError::Unexpected(
                    format!("saga {order_id} has no order").into(),
                ));
            };
            let order_version = order.version();
            let mut outgoing = Vec::new();
            match saga.state() {
                SagaState::AwaitingDelivery
                    if saga.attempts() < self.config.max_schedule_attempts =>
                {
                    saga.retry(self.config.deadline(saga.attempts() + 1, now), now)
                        .map_err(invalid)?;
                    outgoing
                        .push(schedule_delivery(&self.messages, &order, None).map_err(unexpected)?);
                    report.retried += 1;
                }
                SagaState::AwaitingDelivery => {
                    tracing::warn!(%order_id, attempts = saga.attempts(), "no reply from delivery, compensating");
                    let cancelled = order
                        .cancel(CancellationReason::DeliveryTimedOut, now)
                        .map_err(invalid)?;
                    outgoing.push(
                        self.messages
                            .order_event(&order, &cancelled, None)
                            .map_err(unexpected)?,
                    );
                    saga.begin_compensation(self.config.deadline(1, now), now)
                        .map_err(invalid)?;
                    outgoing
                        .push(cancel_delivery(&self.messages, order_id, None).map_err(unexpected)?);
                    report.compensated += 1;
                }
                SagaState::Cancelling if saga.attempts() < self.config.max_cancel_attempts => {
                    saga.retry(self.config.deadline(saga.attempts() + 1, now), now)
                        .map_err(invalid)?;
                    outgoing
                        .push(cancel_delivery(&self.messages, order_id, None).map_err(unexpected)?);
                    report.retried += 1;
                }
                SagaState::Cancelling => {
                    let reason = format!(
                        "the delivery service did not confirm the cancellation after {} attempts",
                        saga.attempts()
                    );
                    tracing::error!(%order_id, %reason, "saga failed");
                    saga.fail(reason, now).map_err(invalid)?;
                    report.failed += 1;
                }
                SagaState::Completed | SagaState::Compensated | SagaState::Failed => continue,
            }
            if order.version() != order_version {
                tx.orders().update(&order, order_version).await?;
            }
            tx.sagas().update(&saga, expected).await?;
            for message in &outgoing {
                tx.outbox().append(message).await?;
            }
        }
        tx.commit().await?;
        Ok(report)
    }
}

#[async_trait]
impl MessageHandler for FulfilmentOrchestrator {
    async fn handle(&self, message: &Message) -> Result<HandleOutcome, HandleError> {
        let (order_id, reply) = decode_reply(message)?;
        let mut tx = self.uow.begin().await?;
        if !tx
            .inbox()
            .record(CONSUMER, message.id, self.messages.now())
            .await?
        {
            return Ok(HandleOutcome::Duplicate);
        }
        // Lock the saga first: the order is then read after any concurrent step committed.
        let saga = tx.sagas().get_for_update(order_id).await?;
        let (Some(mut saga), Some(mut order)) = (saga, tx.orders().get(order_id).await?) else {
            return Err(HandleError::Permanent(format!(
                "{} for unknown order {order_id}",
                message.message_type
            )));
        };
        let (order_version, saga_version) = (order.version(), saga.version());
        let outcome = match self.step(reply, &mut order, &mut saga, message.id)? {
            Step::Ignored(why) => {
                tracing::debug!(%order_id, message_type = %message.message_type, why, "reply ignored");
                HandleOutcome::Ignored
            }
            Step::Changed(outgoing) => {
                if order.version() != order_version {
                    tx.orders().update(&order, order_version).await?;
                }
                if saga.version() != saga_version {
                    tx.sagas().update(&saga, saga_version).await?;
                }
                for m in &outgoing {
                    tx.outbox().append(m).await?;
                }
                HandleOutcome::Applied
            }
        };
        // Ignored replies are committed too: the inbox then discards their redeliveries cheaply.
        tx.commit().await?;
        Ok(outcome)
    }
}
