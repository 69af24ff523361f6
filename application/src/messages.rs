//! The wire contracts between the services: what each message type's JSON `data` holds, and the
//! factory that wraps payloads in [`Message`] envelopes.
//!
//! Types are versioned (`ordership.delivery.scheduled.v1`). A consumer accepts the major versions
//! it knows; anything else is a permanent error (dead-lettered), never a guess.

use chrono::{DateTime, Utc};
use ordership_domain::ports::{BoxError, Clock, HandleError, IdGenerator};
use ordership_domain::{
    Message, MessageId, OrderId, ShippingAddress, ValidationErrors, versioned_type,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// Message types (name and major version) exchanged by the services.
pub mod types {
    pub const SCHEDULE_DELIVERY: &str = "ordership.delivery.schedule.v1";
    pub const CANCEL_DELIVERY: &str = "ordership.delivery.cancel.v1";
    pub const DELIVERY_SCHEDULED: &str = "ordership.delivery.scheduled.v1";
    pub const DELIVERY_REJECTED: &str = "ordership.delivery.rejected.v1";
    pub const DELIVERY_CANCELLED: &str = "ordership.delivery.cancelled.v1";
    pub const DELIVERY_CANCELLATION_REFUSED: &str = "ordership.delivery.cancellation_refused.v1";
    pub const DELIVERY_SHIPPED: &str = "ordership.delivery.shipped.v1";
    pub const DELIVERY_DELIVERED: &str = "ordership.delivery.delivered.v1";
}

/// A shipping address on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressV1 {
    pub recipient: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

impl From<&ShippingAddress> for AddressV1 {
    fn from(a: &ShippingAddress) -> Self {
        Self {
            recipient: a.recipient().to_owned(),
            line1: a.line1().to_owned(),
            city: a.city().to_owned(),
            postal_code: a.postal_code().to_owned(),
            country: a.country().as_str().to_owned(),
        }
    }
}

impl AddressV1 {
    /// # Errors
    /// The address's validation errors.
    pub fn parse(&self) -> Result<ShippingAddress, ValidationErrors> {
        ShippingAddress::new(
            &self.recipient,
            &self.line1,
            &self.city,
            &self.postal_code,
            &self.country,
        )
    }
}

/// Saga → delivery service: schedule a delivery for this order (idempotent by order id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleDeliveryV1 {
    pub order_id: Uuid,
    pub shipping_address: AddressV1,
}

/// Saga → delivery service: cancel the delivery of this order, if there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelDeliveryV1 {
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryScheduledV1 {
    pub order_id: Uuid,
    pub delivery_id: Uuid,
    pub eta: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRejectedV1 {
    pub order_id: Uuid,
    /// Machine-readable: `country_not_served` or `capacity_exhausted`.
    pub reason_kind: String,
    /// For humans.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCancelledV1 {
    pub order_id: Uuid,
    /// `None` when there was nothing to cancel.
    pub delivery_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCancellationRefusedV1 {
    pub order_id: Uuid,
    pub delivery_id: Uuid,
    /// The delivery's status, which allows no cancellation (`shipped`, `delivered`).
    pub status: String,
}

/// `ordership.delivery.shipped.v1` and `ordership.delivery.delivered.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryProgressV1 {
    pub order_id: Uuid,
    pub delivery_id: Uuid,
}

/// `ordership.order.*.v1`: what happened, and the order's version and status after it, so
/// consumers can check they see one order's events in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEventV1 {
    pub order_id: Uuid,
    pub version: u64,
    pub status: String,
    pub event: serde_json::Value,
}

/// Decodes a payload, or says why it is permanently undecodable.
///
/// # Errors
/// [`HandleError::Permanent`] with the decoding error.
pub fn decode<T: for<'de> Deserialize<'de>>(message: &Message) -> Result<T, HandleError> {
    T::deserialize(&message.payload).map_err(|e| {
        HandleError::Permanent(format!(
            "cannot decode {} payload: {e}",
            message.message_type
        ))
    })
}

/// Builds message envelopes: fresh id, time, source, correlation (saga id = order id),
/// causation and a W3C `traceparent` whose trace id is the saga's, so one trace spans a saga.
#[derive(Clone)]
pub struct MessageFactory {
    source: String,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

impl std::fmt::Debug for MessageFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageFactory")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl MessageFactory {
    #[must_use]
    pub fn new(source: &str, clock: Arc<dyn Clock>, ids: Arc<dyn IdGenerator>) -> Self {
        Self {
            source: source.to_owned(),
            clock,
            ids,
        }
    }

    /// A message about `order_id` on `topic`.
    ///
    /// # Errors
    /// Only if `payload` cannot be represented as JSON (a bug).
    pub fn build(
        &self,
        topic: &str,
        message_type: &str,
        order_id: OrderId,
        payload: &impl Serialize,
        causation_id: Option<MessageId>,
    ) -> Result<Message, BoxError> {
        let id = MessageId::from_uuid(self.ids.new_id());
        let span = id.as_uuid().simple().to_string();
        Ok(Message {
            id,
            topic: topic.to_owned(),
            key: order_id.to_string(),
            message_type: message_type.to_owned(),
            source: self.source.clone(),
            payload: serde_json::to_value(payload)?,
            correlation_id: *order_id.as_uuid(),
            causation_id,
            traceparent: Some(format!(
                "00-{}-{}-01",
                order_id.as_uuid().simple(),
                &span[span.len() - 16..]
            )),
            occurred_at: self.clock.now(),
        })
    }

    /// `ordership.order.*.v1` for an order event.
    ///
    /// # Errors
    /// Only if the event cannot be represented as JSON (a bug).
    pub fn order_event(
        &self,
        order: &ordership_domain::Order,
        event: &ordership_domain::OrderEvent,
        causation_id: Option<MessageId>,
    ) -> Result<Message, BoxError> {
        let payload = OrderEventV1 {
            order_id: *order.id().as_uuid(),
            version: order.version(),
            status: order.status().as_str().to_owned(),
            event: serde_json::to_value(event)?,
        };
        let message_type = versioned_type(
            event.event_type(),
            ordership_domain::OrderEvent::SCHEMA_VERSION,
        );
        self.build(
            ordership_domain::topics::ORDER_EVENTS,
            &message_type,
            order.id(),
            &payload,
            causation_id,
        )
    }

    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    #[must_use]
    pub fn new_id(&self) -> Uuid {
        self.ids.new_id()
    }
}
