//! The wire contracts between the services: for each message type, its JSON `data`, how it is
//! built from the domain and how it is decoded back, kept together in one module per family
//! ([`delivery_commands`], [`delivery_events`], [`order_events`]).
//!
//! Types are versioned (`ordership.delivery.scheduled.v1`). A consumer accepts the major versions
//! it knows; anything else is a permanent error (dead-lettered), never a guess.

use chrono::{DateTime, Utc};
use ordership_domain::ports::{BoxError, HandleError};
use ordership_domain::{Message, MessageId, OrderId};
use serde::{Deserialize, Serialize};

pub mod delivery_commands;
pub mod delivery_events;
pub mod order_events;

pub use delivery_commands::{AddressV1, CancelDeliveryV1, DeliveryCommand, ScheduleDeliveryV1};
pub use delivery_events::{
    DeliveryCancellationRefusedV1, DeliveryCancelledV1, DeliveryProgressV1, DeliveryRejectedV1,
    DeliveryScheduledV1,
};
pub use order_events::OrderEventV1;

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

/// The error of a message type nobody here knows.
pub(crate) fn unknown_type(message: &Message) -> HandleError {
    HandleError::Permanent(format!(
        "unknown message type {:?} on {}",
        message.message_type, message.topic
    ))
}

/// What every message about an order carries besides its payload: a fresh id, its source, the
/// time, and what caused it. The correlation id (saga id = order id) follows from the order; the
/// W3C `traceparent` is the current span's when traces are recorded ([`crate::trace`]), else one
/// whose trace id is the saga's, so that a saga's messages still share a trace id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: MessageId,
    pub source: &'static str,
    pub at: DateTime<Utc>,
    pub causation: Option<MessageId>,
}

impl Envelope {
    /// The message about `order_id` with this `payload`.
    ///
    /// # Errors
    /// Only if `payload` cannot be represented as JSON (a bug).
    pub fn wrap(
        self,
        topic: &str,
        message_type: &str,
        order_id: OrderId,
        payload: &impl Serialize,
    ) -> Result<Message, BoxError> {
        let span = self.id.as_uuid().simple().to_string();
        Ok(Message {
            id: self.id,
            topic: topic.to_owned(),
            key: order_id.to_string(),
            message_type: message_type.to_owned(),
            source: self.source.to_owned(),
            payload: serde_json::to_value(payload)?,
            correlation_id: *order_id.as_uuid(),
            causation_id: self.causation,
            traceparent: crate::trace::current().or_else(|| {
                Some(format!(
                    "00-{}-{}-01",
                    order_id.as_uuid().simple(),
                    &span[span.len() - 16..]
                ))
            }),
            occurred_at: self.at,
        })
    }
}
