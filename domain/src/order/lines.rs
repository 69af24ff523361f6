//! What an order is made of: the customer, its lines (SKU, quantity, unit price) and the command
//! that places it, each validated in its constructor.

use serde::Serialize;

use crate::address::{ShippingAddress, text};
use crate::error::{ValidationError, ValidationErrors};
use crate::money::{Currency, Money};
use crate::product::Sku;

/// Who placed the order: an opaque customer reference from the caller's identity system.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CustomerId(String);

impl CustomerId {
    /// # Errors
    /// [`ValidationError`] if empty, longer than 64 characters or containing control characters.
    pub fn parse(id: &str) -> Result<Self, ValidationError> {
        text("customer_id", id, 64).map(Self)
    }
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many units of one line: 1 to [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 10_000;

    /// # Errors
    /// [`ValidationError`] unless `1 <= n <= MAX`.
    pub fn new(n: i64) -> Result<Self, ValidationError> {
        match u32::try_from(n) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(ValidationError::new(
                "quantity",
                format!("must be between 1 and {}", Self::MAX),
            )),
        }
    }
    #[must_use]
    pub const fn get(&self) -> u32 {
        self.0
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLine {
    sku: Sku,
    quantity: Quantity,
    unit_price: Money,
}

impl OrderLine {
    #[must_use]
    pub const fn new(sku: Sku, quantity: Quantity, unit_price: Money) -> Self {
        Self {
            sku,
            quantity,
            unit_price,
        }
    }
    #[must_use]
    pub const fn sku(&self) -> &Sku {
        &self.sku
    }
    #[must_use]
    pub const fn quantity(&self) -> Quantity {
        self.quantity
    }
    #[must_use]
    pub const fn unit_price(&self) -> Money {
        self.unit_price
    }
}

/// The validated request to place an order (the command, not the entity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrder {
    pub(super) customer_id: CustomerId,
    pub(super) lines: Vec<OrderLine>,
    pub(super) shipping_address: ShippingAddress,
    pub(super) total: Money,
    pub(super) admission: Option<AdmissionRef>,
}

/// The waiting-room admission an order was placed with: stored with the order, under unique
/// constraints, so one admission buys one order and a buyer orders once per room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AdmissionRef {
    pub room: crate::waiting_room::RoomId,
    pub id: String,
    /// The units of the room's stock the order holds (given back if it is cancelled); 0 when
    /// the room counts no stock.
    pub units: u32,
}

impl PlaceOrder {
    pub const MAX_LINES: usize = 100;

    /// # Errors
    /// No lines, more than [`Self::MAX_LINES`], lines in different currencies, or a total that
    /// overflows.
    pub fn new(
        customer_id: CustomerId,
        lines: Vec<OrderLine>,
        shipping_address: ShippingAddress,
    ) -> Result<Self, ValidationError> {
        let Some(first) = lines.first() else {
            return Err(ValidationError::new("lines", "must hold at least one line"));
        };
        if lines.len() > Self::MAX_LINES {
            return Err(ValidationError::new(
                "lines",
                format!("must hold at most {} lines", Self::MAX_LINES),
            ));
        }
        let currency = first.unit_price.currency();
        let mut total = Money::zero(currency);
        for (i, line) in lines.iter().enumerate() {
            if line.unit_price.currency() != currency {
                return Err(ValidationError::new(
                    format!("lines[{i}].unit_price.currency"),
                    format!("all lines of an order must be in one currency ({currency})"),
                ));
            }
            total = line
                .unit_price
                .checked_mul(line.quantity.get())
                .and_then(|line_total| total.checked_add(line_total))
                .ok_or_else(|| ValidationError::new("lines", "the order total is too large"))?;
        }
        Ok(Self {
            customer_id,
            lines,
            shipping_address,
            total,
            admission: None,
        })
    }

    /// The same order, placed with this waiting-room admission.
    #[must_use]
    pub fn with_admission(self, admission: AdmissionRef) -> Self {
        Self {
            admission: Some(admission),
            ..self
        }
    }

    #[must_use]
    pub const fn admission(&self) -> Option<&AdmissionRef> {
        self.admission.as_ref()
    }

    #[must_use]
    pub const fn customer_id(&self) -> &CustomerId {
        &self.customer_id
    }
    #[must_use]
    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
    }
    #[must_use]
    pub const fn shipping_address(&self) -> &ShippingAddress {
        &self.shipping_address
    }
    #[must_use]
    pub const fn total(&self) -> Money {
        self.total
    }
    #[must_use]
    pub const fn currency(&self) -> Currency {
        self.total.currency()
    }
}

/// Validates raw input into a [`PlaceOrder`], collecting every problem with its field path.
///
/// # Errors
/// Every invalid field.
pub fn parse_order_line(
    index: usize,
    sku: &str,
    quantity: i64,
    amount: i64,
    currency: &str,
) -> Result<OrderLine, ValidationErrors> {
    let prefix = format!("lines[{index}]");
    let mut errors = ValidationErrors::default();
    let sku = errors.check(Sku::parse(sku).map_err(|e| e.within(&prefix)));
    let quantity = errors.check(Quantity::new(quantity).map_err(|e| e.within(&prefix)));
    let price_prefix = format!("{prefix}.unit_price");
    let currency = errors.check(Currency::parse(currency).map_err(|e| e.within(&price_prefix)));
    let unit_price = currency
        .and_then(|c| errors.check(Money::new(amount, c).map_err(|e| e.within(&price_prefix))));
    errors.finish(|| Some(OrderLine::new(sku?, quantity?, unit_price?)))
}
