//! The delivery service's use cases: handle the saga's commands (idempotent by order id), and the
//! courier's progress updates.

use std::sync::Arc;

use async_trait::async_trait;
use ordership_domain::ports::{
    BoxError, Clock, DeliveryTransaction, HandleError, HandleOutcome, IdGenerator, MessageHandler,
    StoreError, UnitOfWork,
};
use ordership_domain::{
    Delivery, DeliveryEvent, DeliveryId, DeliveryPolicy, DeliveryStatus, InvalidTransition,
    Message, MessageId, OrderId,
};

use ordership_domain::planted::{self, Bug};

use crate::error::from_store_error;
use crate::messages::delivery_events::{cancellation_refused, cancelled, delivery_event, rejected};
use crate::messages::{CancelDeliveryV1, DeliveryCommand, ScheduleDeliveryV1};
use crate::stamp::Stamps;

/// The inbox name of the delivery service's command consumer.
pub const CONSUMER: &str = "delivery-service.commands";

#[derive(Debug, thiserror::Error)]
pub enum DeliveryCommandError {
    #[error("delivery not found")]
    NotFound,
    #[error(transparent)]
    InvalidTransition(InvalidTransition),
    #[error("the delivery was changed concurrently")]
    Conflict,
    #[error("storage is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("unexpected error")]
    Unexpected(#[source] BoxError),
}
from_store_error!(DeliveryCommandError);

#[derive(Debug, thiserror::Error)]
pub enum GetDeliveryError {
    #[error("delivery not found")]
    NotFound,
    #[error("storage is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("unexpected error")]
    Unexpected(#[source] BoxError),
}
from_store_error!(GetDeliveryError, without_conflict);

/// The `source` of the delivery service's messages.
pub const SOURCE: &str = "/ordership/delivery-service";

/// The delivery service.
#[derive(Clone)]
pub struct DeliveryService {
    uow: Arc<dyn UnitOfWork<dyn DeliveryTransaction>>,
    stamps: Stamps,
    policy: DeliveryPolicy,
}

impl DeliveryService {
    #[must_use]
    pub fn new(
        uow: Arc<dyn UnitOfWork<dyn DeliveryTransaction>>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        policy: DeliveryPolicy,
    ) -> Self {
        Self {
            uow,
            stamps: Stamps::new(SOURCE, clock, ids),
            policy,
        }
    }

    /// The message announcing a delivery event.
    fn event_message(
        &self,
        event: &DeliveryEvent,
        cause: Option<MessageId>,
    ) -> Result<Message, HandleError> {
        delivery_event(self.stamps.envelope(cause), event).map_err(HandleError::Transient)
    }

    /// `ScheduleDelivery`: the existing delivery if the order has one (answered again, since
    /// the saga may have missed the first answer), else a new one if the policy admits it, else
    /// a rejection.
    async fn schedule(
        &self,
        tx: &mut dyn DeliveryTransaction,
        command: ScheduleDeliveryV1,
        cause: MessageId,
    ) -> Result<Message, HandleError> {
        let order_id = OrderId::from_uuid(command.order_id);
        let now = self.stamps.now();
        if let Some(existing) = tx.deliveries().get_by_order(order_id).await? {
            return self.answer_for_existing(&existing, cause);
        }
        let address = command
            .shipping_address
            .parse()
            .map_err(|e| HandleError::Permanent(format!("invalid shipping address: {e}")))?;
        // Counting today's deliveries (and serializing on the region) is needed only when
        // capacity is limited.
        let today = match self.policy.daily_capacity() {
            Some(_) if self.policy.serves(address.country()) => {
                tx.deliveries()
                    .count_live_on(address.country(), now.date_naive())
                    .await?
            }
            _ => 0,
        };
        match self.policy.admit(&address, today) {
            Ok(()) => {
                let id = DeliveryId::from_uuid(self.stamps.new_id());
                let (delivery, event) =
                    Delivery::schedule(id, order_id, address, self.policy.eta(now), now);
                tx.deliveries().insert(&delivery).await?;
                tracing::info!(%order_id, delivery_id = %id, "delivery scheduled");
                self.event_message(&event, Some(cause))
            }
            Err(reason) => {
                tracing::info!(%order_id, %reason, "delivery rejected");
                rejected(self.stamps.envelope(Some(cause)), order_id, &reason)
                    .map_err(HandleError::Transient)
            }
        }
    }

    fn answer_for_existing(&self, d: &Delivery, cause: MessageId) -> Result<Message, HandleError> {
        let (delivery_id, order_id) = (d.id(), d.order_id());
        let event = if d.status() == DeliveryStatus::Cancelled {
            DeliveryEvent::Cancelled {
                delivery_id,
                order_id,
            }
        } else {
            DeliveryEvent::Scheduled {
                delivery_id,
                order_id,
                eta: d.eta(),
            }
        };
        self.event_message(&event, Some(cause))
    }

    /// `CancelDelivery`: cancels a scheduled delivery, confirms when there is none (or it is
    /// cancelled already), refuses once shipped.
    async fn cancel(
        &self,
        tx: &mut dyn DeliveryTransaction,
        command: &CancelDeliveryV1,
        cause: MessageId,
    ) -> Result<Message, HandleError> {
        let order_id = OrderId::from_uuid(command.order_id);
        let Some(mut delivery) = tx.deliveries().get_by_order(order_id).await? else {
            return cancelled(self.stamps.envelope(Some(cause)), order_id, None)
                .map_err(HandleError::Transient);
        };
        match delivery.status() {
            DeliveryStatus::Scheduled => {
                let expected = delivery.version();
                let event = delivery
                    .cancel(self.stamps.now())
                    .map_err(|e| HandleError::Transient(Box::new(e)))?;
                tx.deliveries().update(&delivery, expected).await?;
                self.event_message(&event, Some(cause))
            }
            DeliveryStatus::Cancelled => self.answer_for_existing(&delivery, cause),
            DeliveryStatus::Shipped | DeliveryStatus::Delivered => cancellation_refused(
                self.stamps.envelope(Some(cause)),
                order_id,
                delivery.id(),
                delivery.status(),
            )
            .map_err(HandleError::Transient),
        }
    }

    /// The courier picked the parcel up.
    ///
    /// # Errors
    /// See [`DeliveryCommandError`].
    #[tracing::instrument(name = "delivery.ship", skip(self))]
    pub async fn ship(&self, id: DeliveryId) -> Result<Delivery, DeliveryCommandError> {
        self.progress(id, Delivery::ship).await
    }

    /// The parcel reached the recipient.
    ///
    /// # Errors
    /// See [`DeliveryCommandError`].
    #[tracing::instrument(name = "delivery.deliver", skip(self))]
    pub async fn deliver(&self, id: DeliveryId) -> Result<Delivery, DeliveryCommandError> {
        self.progress(id, Delivery::deliver).await
    }

    async fn progress(
        &self,
        id: DeliveryId,
        command: fn(
            &mut Delivery,
            chrono::DateTime<chrono::Utc>,
        ) -> Result<DeliveryEvent, InvalidTransition>,
    ) -> Result<Delivery, DeliveryCommandError> {
        let mut tx = self.uow.begin().await?;
        let mut delivery = tx
            .deliveries()
            .get(id)
            .await?
            .ok_or(DeliveryCommandError::NotFound)?;
        let expected = delivery.version();
        let event = command(&mut delivery, self.stamps.now())
            .map_err(DeliveryCommandError::InvalidTransition)?;
        tx.deliveries().update(&delivery, expected).await?;
        let message = self
            .event_message(&event, None)
            .map_err(|e| DeliveryCommandError::Unexpected(Box::new(e)))?;
        crate::outbox::append(tx.outbox(), std::slice::from_ref(&message)).await?;
        tx.commit().await?;
        Ok(delivery)
    }

    /// # Errors
    /// `NotFound`, or the store's failure.
    pub async fn get(&self, id: DeliveryId) -> Result<Delivery, GetDeliveryError> {
        let mut tx = self.uow.begin_read_only().await?;
        tx.deliveries()
            .get(id)
            .await?
            .ok_or(GetDeliveryError::NotFound)
    }

    /// The delivery of an order, if it has one.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn find_by_order(
        &self,
        order_id: OrderId,
    ) -> Result<Option<Delivery>, GetDeliveryError> {
        let mut tx = self.uow.begin_read_only().await?;
        Ok(tx.deliveries().get_by_order(order_id).await?)
    }
}

#[async_trait]
impl MessageHandler for DeliveryService {
    #[tracing::instrument(name = "delivery.command", skip_all, fields(message_type = %message.message_type))]
    async fn handle(&self, message: &Message) -> Result<HandleOutcome, HandleError> {
        let command = DeliveryCommand::decode(message)?;
        let mut tx = self.uow.begin().await?;
        if !tx
            .inbox()
            .record(CONSUMER, message.id, self.stamps.now())
            .await?
            && !planted::active(Bug::InboxSkipped)
        {
            return Ok(HandleOutcome::Duplicate);
        }
        let answer = match command {
            DeliveryCommand::Schedule(c) => self.schedule(tx.as_mut(), c, message.id).await?,
            DeliveryCommand::Cancel(c) => self.cancel(tx.as_mut(), &c, message.id).await?,
        };
        crate::outbox::append(tx.outbox(), std::slice::from_ref(&answer)).await?;
        tx.commit().await?;
        Ok(HandleOutcome::Applied)
    }
}
