//! The JSON contract: request and response bodies, and their mapping to and from the domain.
//! Requests deserialize into these plain types first; the domain's constructors then validate.

use chrono::{DateTime, Utc};
use ordership_application::OrderView;
use ordership_domain::{
    CustomerId, Delivery, Order, OrderLine, PlaceOrder, ShippingAddress, ValidationErrors,
    parse_order_line,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// An amount in minor units (cents, won) and an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MoneyDto {
    /// Minor units; not negative.
    #[schema(example = 1250)]
    pub amount: i64,
    #[schema(example = "KRW")]
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AddressDto {
    #[schema(example = "Kim")]
    pub recipient: String,
    #[schema(example = "1 Sejong-daero")]
    pub line1: String,
    #[schema(example = "Seoul")]
    pub city: String,
    #[schema(example = "04524")]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    #[schema(example = "KR")]
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLineDto {
    #[schema(example = "ABC-123")]
    pub sku: String,
    /// 1 to 10 000.
    #[schema(example = 2)]
    pub quantity: i64,
    pub unit_price: MoneyDto,
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    #[schema(example = "c-42")]
    pub customer_id: String,
    pub lines: Vec<OrderLineDto>,
    pub shipping_address: AddressDto,
}

impl PlaceOrderRequest {
    /// Validates the request into the domain command, reporting every invalid field.
    ///
    /// # Errors
    /// Every invalid field, with its path.
    pub fn into_command(self) -> Result<PlaceOrder, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let customer = errors.check(CustomerId::parse(&self.customer_id));
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
        let (Some(customer), Some(address)) = (customer, address) else {
            return Err(errors);
        };
        if !errors.0.is_empty() {
            return Err(errors);
        }
        PlaceOrder::new(customer, lines, address).map_err(|e| ValidationErrors(vec![e]))
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
