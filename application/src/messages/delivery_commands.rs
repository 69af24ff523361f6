//! The saga's commands to the delivery service: `ScheduleDelivery` and `CancelDelivery`.

use ordership_domain::ports::{BoxError, HandleError};
use ordership_domain::{Message, Order, OrderId, ShippingAddress, ValidationErrors, topics};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Envelope, decode, types, unknown_type};

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

/// `ScheduleDelivery` for `order`.
///
/// # Errors
/// Only if the payload cannot be represented as JSON (a bug).
pub fn schedule_delivery(envelope: Envelope, order: &Order) -> Result<Message, BoxError> {
    let payload = ScheduleDeliveryV1 {
        order_id: *order.id().as_uuid(),
        shipping_address: AddressV1::from(order.shipping_address()),
    };
    envelope.wrap(
        topics::DELIVERY_COMMANDS,
        types::SCHEDULE_DELIVERY,
        order.id(),
        &payload,
    )
}

/// `CancelDelivery` for `order_id`.
///
/// # Errors
/// Only if the payload cannot be represented as JSON (a bug).
pub fn cancel_delivery(envelope: Envelope, order_id: OrderId) -> Result<Message, BoxError> {
    let payload = CancelDeliveryV1 {
        order_id: *order_id.as_uuid(),
    };
    envelope.wrap(
        topics::DELIVERY_COMMANDS,
        types::CANCEL_DELIVERY,
        order_id,
        &payload,
    )
}

/// A command the delivery service received, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryCommand {
    Schedule(ScheduleDeliveryV1),
    Cancel(CancelDeliveryV1),
}

impl DeliveryCommand {
    /// # Errors
    /// [`HandleError::Permanent`] for an unknown type or an undecodable payload.
    pub fn decode(message: &Message) -> Result<Self, HandleError> {
        match message.message_type.as_str() {
            types::SCHEDULE_DELIVERY => Ok(Self::Schedule(decode(message)?)),
            types::CANCEL_DELIVERY => Ok(Self::Cancel(decode(message)?)),
            _ => Err(unknown_type(message)),
        }
    }
}
