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
//!
//! Where to look: [`order`] and [`delivery`] (the aggregates), [`saga`] (the fulfilment saga's
//! state and its decisions in [`saga::decide`]), [`ports`] (one module per port, with its error
//! contract), [`retry`] (how a transport judges a failed handler), [`message`] (the envelope).
//!
//! # Placing and confirming an order with the domain alone
//!
//! ```
//! use chrono::Utc;
//! use ordership_domain::saga::{DeliveryReply, Outgoing, SagaCommand, Step, decide};
//! use ordership_domain::{
//!     CustomerId, DeliveryId, Order, OrderEvent, OrderId, OrderStatus, PlaceOrder, SagaPolicy,
//!     SagaState, ShippingAddress, parse_order_line,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = Utc::now();
//! // The customer's input, validated into a command: every value checks itself.
//! let line = parse_order_line(0, "ABC-123", 2, 1250, "KRW")?;
//! let address = ShippingAddress::new("Kim", "1 Sejong-daero", "Seoul", "04524", "KR")?;
//! let command = PlaceOrder::new(CustomerId::parse("c-42")?, vec![line], address)?;
//!
//! // Placed: the order is pending and its saga asks the delivery service for a delivery.
//! let id = OrderId::from_uuid(uuid::Uuid::now_v7());
//! let (mut order, placed) = Order::place(id, command, now);
//! assert!(matches!(placed, OrderEvent::Placed { .. }));
//! let policy = SagaPolicy::default();
//! let (mut saga, first) = decide::start(&policy, id, now);
//! assert_eq!(first, SagaCommand::ScheduleDelivery);
//!
//! // The delivery service scheduled it: the saga confirms the order and completes, and the
//! // order service announces the confirmation (your adapters save both and send the event).
//! let delivery_id = DeliveryId::from_uuid(uuid::Uuid::now_v7());
//! let step = decide::on_reply(&policy, &mut order, &mut saga, DeliveryReply::Scheduled(delivery_id), now)?;
//! assert_eq!(
//!     step,
//!     Step::Changed(vec![Outgoing::Event(OrderEvent::Confirmed { delivery_id })])
//! );
//! assert_eq!(order.status(), OrderStatus::Confirmed);
//! assert_eq!(saga.state(), SagaState::Completed);
//!
//! // A late rejection of the same order is ignored: nothing changes.
//! let late = decide::on_reply(&policy, &mut order, &mut saga, DeliveryReply::Rejected("late".into()), now)?;
//! assert!(matches!(late, Step::Ignored(_)));
//! # Ok(())
//! # }
//! ```

pub mod address;

pub mod delivery;
pub mod error;
pub mod ids;
pub mod jitter;
pub mod message;
pub mod money;
pub mod order;
pub mod planted;
pub mod ports;
pub mod product;
pub mod rate_limit;
pub mod relay_shards;
pub mod retry;
pub mod saga;
pub mod waiting_room;

pub use address::{CountryCode, ShippingAddress};
pub use delivery::{
    Delivery, DeliveryEvent, DeliveryPolicy, DeliverySnapshot, DeliveryStatus, RejectionReason,
};
pub use error::{InvalidTransition, ValidationError, ValidationErrors};
pub use ids::{DeliveryId, MessageId, OrderId};
pub use jitter::{Jitter, SeededRandom};
pub use message::{Message, OutboxEntry, topics, versioned_type};
pub use money::{Currency, Money};
pub use order::{
    AdmissionRef, CancellationReason, CustomerId, Order, OrderEvent, OrderLine, OrderSnapshot,
    OrderStatus, PlaceOrder, Quantity, parse_order_line,
};
pub use product::Sku;
pub use rate_limit::{RateDecision, RateLimitPolicy};
pub use retry::{Attempts, RetryPolicy, Verdict};
pub use saga::{FulfilmentSaga, SagaPolicy, SagaSnapshot, SagaState};

#[cfg(test)]
mod proptests;
