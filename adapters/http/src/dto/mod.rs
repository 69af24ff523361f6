//! The JSON contract: request and response bodies, and their mapping to and from the domain.
//! Requests deserialize into these plain types first; the domain's constructors then validate.

use chrono::{DateTime, Utc};
use ordership_application::OrderView;
use ordership_domain::{
    CustomerId, Delivery, Order, OrderLine, PlaceOrder, ShippingAddress, ValidationError,
    ValidationErrors, parse_order_line,
};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use uuid::Uuid;

use crate::problem::{ApiError, FieldError};

mod waiting_room;

pub use waiting_room::{
    EntryResponse, QueueFigures, RoomRequest, RoomResponse, SkuName, StateName, StockFigures,
};

/// JSON Schema's `integer` is any number without a fractional part: `2` and `2.0` alike.
///
/// A number written with a fraction or an exponent is read as a double; above 2^53 not every
/// whole number is one, so `9007199254740993.0` would become another amount. Those are refused:
/// large amounts are written as plain integers, which are read exactly.
pub(crate) fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(deserializer)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    // 2^53: below it, every whole number is exactly a double (2^53 itself may be a rounded
    // 2^53 + 1).
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match n.as_f64() {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "whole and within ±2^53, checked"
        )]
        Some(f) if f.fract() == 0.0 && (-EXACT + 1.0..EXACT).contains(&f) => Ok(f as i64),
        Some(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.3e18 => {
            Err(de::Error::custom(format!(
                "invalid value {n}: a whole number above 2^53 must be written without a fraction or exponent"
            )))
        }
        _ => Err(de::Error::custom(format!(
            "invalid value {n}: expected a whole number that fits in 64 bits"
        ))),
    }
}

/// [`integer`], for an optional field (absent or `null`: `None`).
pub(crate) fn optional_integer<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Whole(#[serde(deserialize_with = "integer")] i64);
    Option::<Whole>::deserialize(deserializer).map(|whole| whole.map(|Whole(n)| n))
}

/// An amount in minor units (cents, won) and an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyDto {
    /// Minor units; not negative.
    #[schema(example = 1250, minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    #[serde(deserialize_with = "integer")]
    pub amount: i64,
    /// ISO 4217: three upper-case letters.
    #[schema(example = "KRW", pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// The free-text rule of names and addresses, as the domain applies it: 1 to `MAX` characters,
/// no control characters, and not only white space.
fn free_text<const MAX: usize>() -> Object {
    const FREE_TEXT: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$";
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX))
        .pattern(Some(FREE_TEXT))
        .build()
}

/// A shipping address; the destination country decides whether it is served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "recipient": "Kim", "line1": "1 Sejong-daero", "city": "Seoul", "postal_code": "04524",
    "country": "KR"
}))]
pub struct AddressDto {
    #[schema(schema_with = free_text::<200>)]
    pub recipient: String,
    #[schema(schema_with = free_text::<200>)]
    pub line1: String,
    #[schema(schema_with = free_text::<100>)]
    pub city: String,
    #[schema(schema_with = free_text::<20>)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2: two upper-case letters.
    #[schema(example = "KR", pattern = "^[A-Z]{2}$")]
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineDto {
    /// 1–64 letters, digits, `-`, `_` or `.`.
    #[schema(example = "ABC-123", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub sku: String,
    #[schema(example = 2, minimum = 1, maximum = 10_000)]
    #[serde(deserialize_with = "integer")]
    pub quantity: i64,
    pub unit_price: MoneyDto,
}

/// The body of `POST /orders`. The customer is the caller: the subject of their token.
///
/// Every field constraint is in this schema; a body it refuses is answered 400. Two rules of the
/// order as a whole are business rules, answered 422: all lines in one currency, and a total that
/// fits in 64 bits of minor units.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<OrderLineDto>,
    pub shipping_address: AddressDto,
}

impl PlaceOrderRequest {
    /// Validates the request into the domain command.
    ///
    /// # Errors
    /// [`ApiError::Validation`] with every field the schema refuses, with its path (400), or
    /// [`ApiError::BusinessRule`] when the order as a whole breaks a rule (422).
    pub(crate) fn into_command(self, customer: CustomerId) -> Result<PlaceOrder, ApiError> {
        let mut errors = ValidationErrors::default();
        if !(1..=PlaceOrder::MAX_LINES).contains(&self.lines.len()) {
            errors.0.push(ValidationError::new(
                "lines",
                format!("must hold 1 to {} lines", PlaceOrder::MAX_LINES),
            ));
        }
        let mut lines = Vec::with_capacity(self.lines.len());
        for (i, l) in self.lines.iter().enumerate() {
            match parse_order_line(
                i,
                &l.sku,
                l.quantity,
                l.unit_price.amount,
                &l.unit_price.currency,
            ) {
                Ok(line) => lines.push(line),
                Err(e) => errors.0.extend(e.0),
            }
        }
        let a = &self.shipping_address;
        let address =
            match ShippingAddress::new(&a.recipient, &a.line1, &a.city, &a.postal_code, &a.country)
            {
                Ok(address) => Some(address),
                Err(e) => {
                    errors
                        .0
                        .extend(e.0.into_iter().map(|e| e.within("shipping_address")));
                    None
                }
            };
        let Some(address) = address else {
            return Err(errors.into());
        };
        if !errors.0.is_empty() {
            return Err(errors.into());
        }
        // Every field is valid: what is left are the rules of the order as a whole.
        PlaceOrder::new(customer, lines, address)
            .map_err(|e| ApiError::BusinessRule(vec![FieldError::from(e)]))
    }
}

/// Where the order's fulfilment saga stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SagaDto {
    /// `awaiting_delivery`, `cancelling`, `completed`, `compensated` or `failed`.
    #[schema(example = "awaiting_delivery")]
    pub state: String,
    /// Commands sent in the current step.
    pub attempts: u32,
    /// Why the saga failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderResponse {
    pub id: Uuid,
    /// `pending`, `confirmed`, `shipped`, `delivered` or `cancelled`.
    #[schema(example = "pending")]
    pub status: String,
    pub customer_id: String,
    pub lines: Vec<OrderLineDto>,
    pub total: MoneyDto,
    pub shipping_address: AddressDto,
    pub delivery_id: Option<Uuid>,
    pub cancellation_reason: Option<String>,
    pub saga: Option<SagaDto>,
    /// Incremented by every change.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn address(a: &ShippingAddress) -> AddressDto {
    AddressDto {
        recipient: a.recipient().to_owned(),
        line1: a.line1().to_owned(),
        city: a.city().to_owned(),
        postal_code: a.postal_code().to_owned(),
        country: a.country().as_str().to_owned(),
    }
}

fn money(m: ordership_domain::Money) -> MoneyDto {
    MoneyDto {
        amount: m.amount(),
        currency: m.currency().as_str().to_owned(),
    }
}

fn line(l: &OrderLine) -> OrderLineDto {
    OrderLineDto {
        sku: l.sku().as_str().to_owned(),
        quantity: i64::from(l.quantity().get()),
        unit_price: money(l.unit_price()),
    }
}

impl From<&OrderView> for OrderResponse {
    fn from(view: &OrderView) -> Self {
        let o: &Order = &view.order;
        Self {
            id: *o.id().as_uuid(),
            status: o.status().as_str().to_owned(),
            customer_id: o.customer_id().as_str().to_owned(),
            lines: o.lines().iter().map(line).collect(),
            total: money(o.total()),
            shipping_address: address(o.shipping_address()),
            delivery_id: o.delivery_id().map(|d| *d.as_uuid()),
            cancellation_reason: o.cancellation_reason().map(ToString::to_string),
            saga: view.saga.as_ref().map(|s| SagaDto {
                state: s.state().as_str().to_owned(),
                attempts: s.attempts(),
                failure_reason: s.failure_reason().map(str::to_owned),
            }),
            version: o.version(),
            created_at: o.created_at(),
            updated_at: o.updated_at(),
        }
    }
}

/// A page of orders.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderResponse>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// A delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeliveryResponse {
    pub id: Uuid,
    pub order_id: Uuid,
    /// `scheduled`, `shipped`, `delivered` or `cancelled`.
    #[schema(example = "scheduled")]
    pub status: String,
    pub shipping_address: AddressDto,
    pub eta: DateTime<Utc>,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Delivery> for DeliveryResponse {
    fn from(d: &Delivery) -> Self {
        Self {
            id: *d.id().as_uuid(),
            order_id: *d.order_id().as_uuid(),
            status: d.status().as_str().to_owned(),
            shipping_address: address(d.address()),
            eta: d.eta(),
            version: d.version(),
            created_at: d.created_at(),
            updated_at: d.updated_at(),
        }
    }
}

/// Deliveries matching a query.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryResponse>,
}

/// Health of one dependency.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    /// `false` for a dependency whose outage degrades the service without making it unready
    /// (the waiting rooms' queue: orders for other products still flow).
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer of the health endpoints.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` or `unavailable`.
    pub status: String,
    pub checks: Vec<CheckResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(json: &str) -> Result<i64, String> {
        let money: Result<MoneyDto, _> =
            serde_json::from_str(&format!(r#"{{"amount": {json}, "currency": "KRW"}}"#));
        money.map(|m| m.amount).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_are_read_exactly_however_they_are_written() {
        assert_eq!(amount("2"), Ok(2));
        assert_eq!(amount("2.0"), Ok(2));
        assert_eq!(amount("2e3"), Ok(2000));
        // One below 2^51: the nearest double, not one a rounding step away.
        assert_eq!(amount("2251799813685247.0"), Ok(2_251_799_813_685_247));
        assert_eq!(amount("9007199254740991.0"), Ok(9_007_199_254_740_991));
        assert_eq!(amount("9223372036854775807"), Ok(i64::MAX));
    }

    #[test]
    fn numbers_that_are_not_exactly_a_whole_amount_are_refused() {
        assert!(amount("1.5").is_err());
        assert!(amount("9223372036854775808").is_err());
        // Not a double: read as one, it would be another amount.
        for inexact in [
            "9007199254740993.0",
            "9007199254740992.0",
            "-9007199254740993.0",
        ] {
            let e = amount(inexact).expect_err(inexact);
            assert!(e.contains("without a fraction or exponent"), "{e}");
        }
        assert!(amount("1e300").is_err());
    }
}
