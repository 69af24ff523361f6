//! The Order aggregate: what the customer bought and where its fulfilment stands.
//!
//! ```text
//! Pending ──confirm──▶ Confirmed ──ship──▶ Shipped ──deliver──▶ Delivered
//!    │                     │
//!    └──────cancel─────────┴──▶ Cancelled(reason)      (cancel after Shipped is refused)
//! ```

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::address::ShippingAddress;
use crate::error::{InvalidTransition, ValidationError};
use crate::ids::{DeliveryId, OrderId};
use crate::money::Money;

mod lines;

pub use lines::{AdmissionRef, CustomerId, OrderLine, PlaceOrder, Quantity, parse_order_line};

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Confirmed,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    /// # Errors
    /// [`ValidationError`] for anything but the lower-case names.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    "status",
                    "must be one of pending, confirmed, shipped, delivered, cancelled",
                )
            })
    }

    /// Nothing further happens to an order in this state.
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Delivered | Self::Cancelled)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an order was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CancellationReason {
    /// The delivery service refused to schedule it.
    DeliveryRejected { reason: String },
    /// No answer from the delivery service after every retry.
    DeliveryTimedOut,
    /// The customer asked.
    CustomerRequested,
    /// An operator forced the saga to compensate, saying why.
    OperatorRequested { reason: String },
}

impl CancellationReason {
    /// Rebuilds a reason from its stored `kind` and detail.
    #[must_use]
    pub fn from_parts(kind: &str, detail: Option<&str>) -> Option<Self> {
        match kind {
            "delivery_rejected" => Some(Self::DeliveryRejected {
                reason: detail.unwrap_or_default().to_owned(),
            }),
            "delivery_timed_out" => Some(Self::DeliveryTimedOut),
            "customer_requested" => Some(Self::CustomerRequested),
            "operator_requested" => Some(Self::OperatorRequested {
                reason: detail.unwrap_or_default().to_owned(),
            }),
            _ => None,
        }
    }

    /// Stable machine-readable kind.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::DeliveryRejected { .. } => "delivery_rejected",
            Self::DeliveryTimedOut => "delivery_timed_out",
            Self::CustomerRequested => "customer_requested",
            Self::OperatorRequested { .. } => "operator_requested",
        }
    }

    /// The detail of a rejection, if any.
    #[must_use]
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::DeliveryRejected { reason } | Self::OperatorRequested { reason } => Some(reason),
            _ => None,
        }
    }
}

impl fmt::Display for CancellationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeliveryRejected { reason } => write!(f, "delivery rejected: {reason}"),
            Self::DeliveryTimedOut => f.write_str("delivery could not be scheduled in time"),
            Self::CustomerRequested => f.write_str("cancelled by the customer"),
            Self::OperatorRequested { reason } => write!(f, "cancelled by an operator: {reason}"),
        }
    }
}

/// What happened to an order. Serialized as the `data` of `ordership.order.*` messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEvent {
    Placed {
        customer_id: CustomerId,
        lines: Vec<OrderLine>,
        total: Money,
        shipping_address: ShippingAddress,
    },
    Confirmed {
        delivery_id: DeliveryId,
    },
    Shipped,
    Delivered,
    Cancelled {
        reason: CancellationReason,
    },
}

impl OrderEvent {
    /// Schema version of the payload; bump on an incompatible change.
    pub const SCHEMA_VERSION: u32 = 1;

    /// The event's type without version (`ordership.order.confirmed`).
    #[must_use]
    pub const fn event_type(&self) -> &'static str {
        match self {
            Self::Placed { .. } => "ordership.order.placed",
            Self::Confirmed { .. } => "ordership.order.confirmed",
            Self::Shipped => "ordership.order.shipped",
            Self::Delivered => "ordership.order.delivered",
            Self::Cancelled { .. } => "ordership.order.cancelled",
        }
    }
}

/// The Order aggregate. Fields are private: state changes only through its commands, which
/// decide an [`OrderEvent`] and apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    id: OrderId,
    customer_id: CustomerId,
    lines: Vec<OrderLine>,
    total: Money,
    shipping_address: ShippingAddress,
    status: OrderStatus,
    delivery_id: Option<DeliveryId>,
    cancellation_reason: Option<CancellationReason>,
    admission: Option<AdmissionRef>,
    version: u64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Everything an adapter needs to rebuild an order it stored.
#[derive(Debug, Clone)]
pub struct OrderSnapshot {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub lines: Vec<OrderLine>,
    pub shipping_address: ShippingAddress,
    pub status: OrderStatus,
    pub delivery_id: Option<DeliveryId>,
    pub cancellation_reason: Option<CancellationReason>,
    pub admission: Option<AdmissionRef>,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// Places a new order: `Pending`, version 1.
    #[must_use]
    pub fn place(id: OrderId, command: PlaceOrder, now: DateTime<Utc>) -> (Self, OrderEvent) {
        let event = OrderEvent::Placed {
            customer_id: command.customer_id.clone(),
            lines: command.lines.clone(),
            total: command.total,
            shipping_address: command.shipping_address.clone(),
        };
        let order = Self {
            id,
            customer_id: command.customer_id,
            lines: command.lines,
            total: command.total,
            shipping_address: command.shipping_address,
            status: OrderStatus::Pending,
            delivery_id: None,
            cancellation_reason: None,
            admission: command.admission,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        (order, event)
    }

    /// Rebuilds an order from storage.
    ///
    /// # Errors
    /// [`ValidationError`] if the stored lines do not form a valid order (no lines, mixed
    /// currencies), i.e. the storage was corrupted.
    pub fn restore(s: OrderSnapshot) -> Result<Self, ValidationError> {
        let command = PlaceOrder::new(s.customer_id, s.lines, s.shipping_address)?;
        Ok(Self {
            admission: s.admission,
            id: s.id,
            customer_id: command.customer_id,
            lines: command.lines,
            total: command.total,
            shipping_address: command.shipping_address,
            status: s.status,
            delivery_id: s.delivery_id,
            cancellation_reason: s.cancellation_reason,
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
        })
    }

    /// Delivery was scheduled: `Pending → Confirmed`.
    ///
    /// # Errors
    /// [`InvalidTransition`] unless `Pending`.
    pub fn confirm(
        &mut self,
        delivery_id: DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<OrderEvent, InvalidTransition> {
        self.require(&[OrderStatus::Pending], "confirm")?;
        Ok(self.record(OrderEvent::Confirmed { delivery_id }, now))
    }

    /// The courier picked it up: `Confirmed → Shipped`.
    ///
    /// # Errors
    /// [`InvalidTransition`] unless `Confirmed`.
    pub fn ship(&mut self, now: DateTime<Utc>) -> Result<OrderEvent, InvalidTransition> {
        self.require(&[OrderStatus::Confirmed], "ship")?;
        Ok(self.record(OrderEvent::Shipped, now))
    }

    /// Handed to the recipient: `Shipped → Delivered`.
    ///
    /// # Errors
    /// [`InvalidTransition`] unless `Shipped`.
    pub fn deliver(&mut self, now: DateTime<Utc>) -> Result<OrderEvent, InvalidTransition> {
        self.require(&[OrderStatus::Shipped], "deliver")?;
        Ok(self.record(OrderEvent::Delivered, now))
    }

    /// `Pending | Confirmed → Cancelled`.
    ///
    /// # Errors
    /// [`InvalidTransition`] once shipped, delivered or already cancelled.
    pub fn cancel(
        &mut self,
        reason: CancellationReason,
        now: DateTime<Utc>,
    ) -> Result<OrderEvent, InvalidTransition> {
        self.require(&[OrderStatus::Pending, OrderStatus::Confirmed], "cancel")?;
        Ok(self.record(OrderEvent::Cancelled { reason }, now))
    }

    /// Whether a customer may still ask to cancel.
    #[must_use]
    pub const fn is_cancellable(&self) -> bool {
        matches!(self.status, OrderStatus::Pending | OrderStatus::Confirmed)
    }

    fn require(
        &self,
        allowed: &[OrderStatus],
        action: &'static str,
    ) -> Result<(), InvalidTransition> {
        InvalidTransition::unless(allowed.contains(&self.status), action, self.status.as_str())
    }

    fn record(&mut self, event: OrderEvent, now: DateTime<Utc>) -> OrderEvent {
        self.apply(&event, now);
        event
    }

    /// Evolves the state by one event (decided earlier by a command). Bumps the version.
    pub fn apply(&mut self, event: &OrderEvent, at: DateTime<Utc>) {
        match event {
            OrderEvent::Placed { .. } => return,
            OrderEvent::Confirmed { delivery_id } => {
                self.status = OrderStatus::Confirmed;
                self.delivery_id = Some(*delivery_id);
            }
            OrderEvent::Shipped => self.status = OrderStatus::Shipped,
            OrderEvent::Delivered => self.status = OrderStatus::Delivered,
            OrderEvent::Cancelled { reason } => {
                self.status = OrderStatus::Cancelled;
                self.cancellation_reason = Some(reason.clone());
            }
        }
        self.version += 1;
        self.updated_at = at;
    }

    #[must_use]
    pub const fn id(&self) -> OrderId {
        self.id
    }
    #[must_use]
    pub const fn customer_id(&self) -> &CustomerId {
        &self.customer_id
    }
    /// The waiting-room admission it was placed with, if its product was gated.
    #[must_use]
    pub const fn admission(&self) -> Option<&AdmissionRef> {
        self.admission.as_ref()
    }
    #[must_use]
    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
    }
    #[must_use]
    pub const fn total(&self) -> Money {
        self.total
    }
    #[must_use]
    pub const fn shipping_address(&self) -> &ShippingAddress {
        &self.shipping_address
    }
    #[must_use]
    pub const fn status(&self) -> OrderStatus {
        self.status
    }
    #[must_use]
    pub const fn delivery_id(&self) -> Option<DeliveryId> {
        self.delivery_id
    }
    #[must_use]
    pub const fn cancellation_reason(&self) -> Option<&CancellationReason> {
        self.cancellation_reason.as_ref()
    }
    /// Optimistic-concurrency version: 1 when placed, +1 per event.
    #[must_use]
    pub const fn version(&self) -> u64 {
        self.version
    }
    #[must_use]
    pub const fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    #[must_use]
    pub const fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn place_order(country: &str) -> PlaceOrder {
        let line = parse_order_line(0, "ABC-123", 2, 1250, "KRW").unwrap_or_else(|e| panic!("{e}"));
        let address = ShippingAddress::new("Kim", "1 Sejong-daero", "Seoul", "04524", country)
            .unwrap_or_else(|e| panic!("{e}"));
        let customer = CustomerId::parse("c-42").unwrap_or_else(|e| panic!("{e}"));
        PlaceOrder::new(customer, vec![line], address).unwrap_or_else(|e| panic!("{e}"))
    }

    fn pending() -> Order {
        Order::place(
            OrderId::from_uuid(uuid::Uuid::now_v7()),
            place_order("KR"),
            Utc::now(),
        )
        .0
    }

    fn delivery() -> DeliveryId {
        DeliveryId::from_uuid(uuid::Uuid::now_v7())
    }

    #[test]
    fn a_placed_order_is_pending_at_version_one_with_its_total() {
        let order = pending();
        assert_eq!(order.status(), OrderStatus::Pending);
        assert_eq!(order.version(), 1);
        assert_eq!(order.total().amount(), 2500);
    }

    #[test]
    fn confirming_a_pending_order_records_the_delivery() -> Result<(), InvalidTransition> {
        let mut order = pending();
        let d = delivery();
        assert_eq!(
            order.confirm(d, Utc::now())?,
            OrderEvent::Confirmed { delivery_id: d }
        );
        assert_eq!(order.status(), OrderStatus::Confirmed);
        assert_eq!(order.delivery_id(), Some(d));
        assert_eq!(order.version(), 2);
        Ok(())
    }

    #[test]
    fn the_happy_path_runs_to_delivered() -> Result<(), InvalidTransition> {
        let mut order = pending();
        order.confirm(delivery(), Utc::now())?;
        order.ship(Utc::now())?;
        order.deliver(Utc::now())?;
        assert_eq!(order.status(), OrderStatus::Delivered);
        assert_eq!(order.version(), 4);
        Ok(())
    }

    #[test]
    fn cancelling_a_pending_or_confirmed_order_is_allowed() -> Result<(), InvalidTransition> {
        let mut order = pending();
        order.cancel(CancellationReason::CustomerRequested, Utc::now())?;
        assert_eq!(order.status(), OrderStatus::Cancelled);
        let mut order = pending();
        order.confirm(delivery(), Utc::now())?;
        order.cancel(CancellationReason::DeliveryTimedOut, Utc::now())?;
        assert_eq!(
            order.cancellation_reason(),
            Some(&CancellationReason::DeliveryTimedOut)
        );
        Ok(())
    }

    #[test]
    fn cancelling_a_shipped_order_is_refused() -> Result<(), InvalidTransition> {
        let mut order = pending();
        order.confirm(delivery(), Utc::now())?;
        order.ship(Utc::now())?;
        let before = order.clone();
        let err = order.cancel(CancellationReason::CustomerRequested, Utc::now());
        assert_eq!(
            err,
            Err(InvalidTransition {
                action: "cancel",
                state: "shipped"
            })
        );
        assert_eq!(order, before, "a refused command must not change the order");
        Ok(())
    }

    #[test]
    fn refused_transitions_leave_the_order_unchanged() -> Result<(), InvalidTransition> {
        let mut order = pending();
        assert!(order.ship(Utc::now()).is_err());
        assert!(order.deliver(Utc::now()).is_err());
        order.cancel(CancellationReason::CustomerRequested, Utc::now())?;
        let cancelled = order.clone();
        assert!(order.confirm(delivery(), Utc::now()).is_err());
        assert!(
            order
                .cancel(CancellationReason::CustomerRequested, Utc::now())
                .is_err()
        );
        assert!(order.ship(Utc::now()).is_err());
        assert_eq!(order, cancelled);
        Ok(())
    }

    #[test]
    fn an_order_needs_lines_in_one_currency() {
        let address =
            ShippingAddress::new("Kim", "1", "Seoul", "1", "KR").unwrap_or_else(|e| panic!("{e}"));
        let customer = CustomerId::parse("c").unwrap_or_else(|e| panic!("{e}"));
        assert!(PlaceOrder::new(customer.clone(), vec![], address.clone()).is_err());
        let krw = parse_order_line(0, "A", 1, 1, "KRW").unwrap_or_else(|e| panic!("{e}"));
        let usd = parse_order_line(1, "B", 1, 1, "USD").unwrap_or_else(|e| panic!("{e}"));
        let err = PlaceOrder::new(customer, vec![krw, usd], address).err();
        assert_eq!(
            err.map(|e| e.field),
            Some("lines[1].unit_price.currency".to_owned())
        );
    }

    #[test]
    fn a_bad_line_names_each_offending_field() {
        let Err(errors) = parse_order_line(3, "bad sku!", 0, -5, "won") else {
            panic!("accepted");
        };
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.clone()).collect();
        assert_eq!(
            fields,
            [
                "lines[3].sku",
                "lines[3].quantity",
                "lines[3].unit_price.currency"
            ]
        );
    }

    #[test]
    fn a_restored_order_equals_the_original() -> Result<(), ValidationError> {
        let order = pending();
        let restored = Order::restore(OrderSnapshot {
            id: order.id(),
            customer_id: order.customer_id().clone(),
            lines: order.lines().to_vec(),
            shipping_address: order.shipping_address().clone(),
            status: order.status(),
            delivery_id: order.delivery_id(),
            cancellation_reason: order.cancellation_reason().cloned(),
            admission: order.admission().cloned(),
            version: order.version(),
            created_at: order.created_at(),
            updated_at: order.updated_at(),
        })?;
        assert_eq!(restored, order);
        Ok(())
    }
}
