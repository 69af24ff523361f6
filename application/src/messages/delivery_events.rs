//! The delivery service's replies and progress events, which the saga consumes.

use chrono::{DateTime, Utc};
use ordership_domain::ports::{BoxError, HandleError};
use ordership_domain::saga::DeliveryReply;
use ordership_domain::{
    DeliveryEvent, DeliveryId, DeliveryStatus, Message, OrderId, RejectionReason, topics,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Envelope, decode, types, unknown_type};

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

fn reply(
    envelope: Envelope,
    message_type: &str,
    order_id: OrderId,
    payload: &impl Serialize,
) -> Result<Message, BoxError> {
    envelope.wrap(topics::DELIVERY_EVENTS, message_type, order_id, payload)
}

/// The message announcing a delivery event.
///
/// # Errors
/// Only if the payload cannot be represented as JSON (a bug).
pub fn delivery_event(envelope: Envelope, event: &DeliveryEvent) -> Result<Message, BoxError> {
    match *event {
        DeliveryEvent::Scheduled {
            delivery_id,
            order_id,
            eta,
        } => {
            let payload = DeliveryScheduledV1 {
                order_id: *order_id.as_uuid(),
                delivery_id: *delivery_id.as_uuid(),
                eta,
            };
            reply(envelope, types::DELIVERY_SCHEDULED, order_id, &payload)
        }
        DeliveryEvent::Cancelled {
            delivery_id,
            order_id,
        } => cancelled(envelope, order_id, Some(delivery_id)),
        DeliveryEvent::Shipped {
            delivery_id,
            order_id,
        }
        | DeliveryEvent::Delivered {
            delivery_id,
            order_id,
        } => {
            let payload = DeliveryProgressV1 {
                order_id: *order_id.as_uuid(),
                delivery_id: *delivery_id.as_uuid(),
            };
            let message_type = if matches!(event, DeliveryEvent::Shipped { .. }) {
                types::DELIVERY_SHIPPED
            } else {
                types::DELIVERY_DELIVERED
            };
            reply(envelope, message_type, order_id, &payload)
        }
    }
}

/// `DeliveryCancelled`; `delivery_id` is `None` when the order had no delivery to cancel.
///
/// # Errors
/// Only if the payload cannot be represented as JSON (a bug).
pub fn cancelled(
    envelope: Envelope,
    order_id: OrderId,
    delivery_id: Option<DeliveryId>,
) -> Result<Message, BoxError> {
    let payload = DeliveryCancelledV1 {
        order_id: *order_id.as_uuid(),
        delivery_id: delivery_id.map(|id| *id.as_uuid()),
    };
    reply(envelope, types::DELIVERY_CANCELLED, order_id, &payload)
}

/// `DeliveryRejected` with the policy's reason.
///
/// # Errors
/// Only if the payload cannot be represented as JSON (a bug).
pub fn rejected(
    envelope: Envelope,
    order_id: OrderId,
    reason: &RejectionReason,
) -> Result<Message, BoxError> {
    let kind = match reason {
        RejectionReason::CountryNotServed { .. } => "country_not_served",
        RejectionReason::CapacityExhausted { .. } => "capacity_exhausted",
    };
    let payload = DeliveryRejectedV1 {
        order_id: *order_id.as_uuid(),
        reason_kind: kind.to_owned(),
        reason: reason.to_string(),
    };
    reply(envelope, types::DELIVERY_REJECTED, order_id, &payload)
}

/// `DeliveryCancellationRefused`: the delivery is past cancelling.
///
/// # Errors
/// Only if the payload cannot be represented as JSON (a bug).
pub fn cancellation_refused(
    envelope: Envelope,
    order_id: OrderId,
    delivery_id: DeliveryId,
    status: DeliveryStatus,
) -> Result<Message, BoxError> {
    let payload = DeliveryCancellationRefusedV1 {
        order_id: *order_id.as_uuid(),
        delivery_id: *delivery_id.as_uuid(),
        status: status.as_str().to_owned(),
    };
    reply(
        envelope,
        types::DELIVERY_CANCELLATION_REFUSED,
        order_id,
        &payload,
    )
}

/// A reply or progress event of the delivery service, decoded for the saga.
///
/// # Errors
/// [`HandleError::Permanent`] for an unknown type or an undecodable payload.
pub fn decode_reply(message: &Message) -> Result<(OrderId, DeliveryReply), HandleError> {
    let (order_id, reply) = match message.message_type.as_str() {
        types::DELIVERY_SCHEDULED => {
            let m: DeliveryScheduledV1 = decode(message)?;
            let id = DeliveryId::from_uuid(m.delivery_id);
            (m.order_id, DeliveryReply::Scheduled(id))
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
                delivery_id: DeliveryId::from_uuid(m.delivery_id),
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
        _ => return Err(unknown_type(message)),
    };
    Ok((OrderId::from_uuid(order_id), reply))
}
