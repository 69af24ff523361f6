//! The message envelope that leaves through the outbox and arrives at consumers. Adapters map it
//! onto their transport (Kafka: CloudEvents 1.0 binary mode); the domain only fixes its fields.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::ids::MessageId;

/// Topic names. Every message is keyed by order id, so all of one order's messages share a
/// partition and keep their order.
pub mod topics {
    /// Commands from the order service's saga to the delivery service.
    pub const DELIVERY_COMMANDS: &str = "ordership.delivery.commands";
    /// Replies and progress events of the delivery service.
    pub const DELIVERY_EVENTS: &str = "ordership.delivery.events";
    /// What happened to orders, for anyone who wants to know.
    pub const ORDER_EVENTS: &str = "ordership.order.events";

    /// Every topic ordership uses.
    pub const ALL: [&str; 3] = [DELIVERY_COMMANDS, DELIVERY_EVENTS, ORDER_EVENTS];

    /// Where messages of `topic` that cannot be processed are parked.
    #[must_use]
    pub fn dead_letter(topic: &str) -> String {
        format!("{topic}.dlq")
    }
}

/// Builds a versioned message type: `ordership.delivery.scheduled` + 1 →
/// `ordership.delivery.scheduled.v1`.
#[must_use]
pub fn versioned_type(event_type: &str, version: u32) -> String {
    format!("{event_type}.v{version}")
}

/// One message: a command, a reply or an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Unique per message; consumers deduplicate on it.
    pub id: MessageId,
    pub topic: String,
    /// Partition key: the order id.
    pub key: String,
    /// Versioned type, e.g. `ordership.delivery.scheduled.v1`.
    pub message_type: String,
    /// Which service produced it (CloudEvents `source`), e.g. `/ordership/order-service`.
    pub source: String,
    /// The JSON body.
    pub payload: serde_json::Value,
    /// The saga this message belongs to (saga id = order id).
    pub correlation_id: Uuid,
    /// The message whose handling produced this one, if any.
    pub causation_id: Option<MessageId>,
    /// W3C trace context, carried across the broker.
    pub traceparent: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// A message waiting in the outbox. `position` is the outbox's own sequence: the publish order.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub position: i64,
    pub message: Message,
    pub created_at: DateTime<Utc>,
}
