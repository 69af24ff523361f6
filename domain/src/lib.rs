//! # ordership-domain
//!
//! The centre of the hexagon: the Order and Delivery aggregates with their state machines, the
//! state of the fulfilment saga, the message envelope, and the **ports** — the traits through
//! which the application reaches storage, the broker, the clock and id generation.
//!
//! Nothing here performs I/O or depends on a runtime, a database driver, a broker client or a
//! web framework, so the crate can be embedded in any service. Value objects validate in their
//! constructors and have private fields: a value of type [`ShippingAddress`] is a valid address.
//! With the feature `mocks`, every port that can be mocked gets a `mockall` mock (`MockOutbox`…).

pub mod address;
pub mod delivery;
pub mod error;
pub mod ids;
pub mod message;
pub mod money;
pub mod order;
pub mod ports;
pub mod retry;
pub mod saga;

pub use address::{CountryCode, ShippingAddress};
pub use delivery::{
    Delivery, DeliveryEvent, DeliveryPolicy, DeliverySnapshot, DeliveryStatus, RejectionReason,
};
pub use error::{InvalidTransition, ValidationError, ValidationErrors};
pub use ids::{DeliveryId, MessageId, OrderId};
pub use message::{Message, OutboxEntry, topics, versioned_type};
pub use money::{Currency, Money};
pub use order::{
    CancellationReason, CustomerId, Order, OrderEvent, OrderLine, OrderSnapshot, OrderStatus,
    PlaceOrder, Quantity, Sku, parse_order_line,
};
pub use retry::{Attempts, RetryPolicy, Verdict};
pub use saga::{FulfilmentSaga, SagaPolicy, SagaSnapshot, SagaState};

#[cfg(test)]
mod proptests;
