//! `ordership.order.*.v1`: what happened to an order, for whoever follows orders.

use ordership_domain::ports::BoxError;
use ordership_domain::{Message, Order, OrderEvent, topics, versioned_type};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Envelope;

/// An order event, with the order's version and status after it, so consumers can check they
/// see one order's events in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEventV1 {
    pub order_id: Uuid,
    pub version: u64,
    pub status: String,
    pub event: serde_json::Value,
}

/// The message of `event`, which `order` (as it is now) decided.
///
/// # Errors
/// Only if the event cannot be represented as JSON (a bug).
pub fn order_event(
    envelope: Envelope,
    order: &Order,
    event: &OrderEvent,
) -> Result<Message, BoxError> {
    let payload = OrderEventV1 {
        order_id: *order.id().as_uuid(),
        version: order.version(),
        status: order.status().as_str().to_owned(),
        event: serde_json::to_value(event)?,
    };
    let message_type = versioned_type(event.event_type(), OrderEvent::SCHEMA_VERSION);
    envelope.wrap(topics::ORDER_EVENTS, &message_type, order.id(), &payload)
}
