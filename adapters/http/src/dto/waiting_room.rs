//! The waiting room's bodies: a buyer's entry, and a room's configuration as operators send it
//! and as anyone reads it.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ordership_application::{Entry, RoomView};
use ordership_domain::waiting_room::{Phase, Rate, RoomId, RoomState, Stock, WaitingRoom, millis};
use ordership_domain::{Currency, Money, Sku, ValidationError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{MoneyDto, optional_integer};
use crate::problem::{ApiError, FieldError};

/// Where a buyer stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EntryResponse {
    pub room: String,
    /// `waiting`, `admitted`, `expired` (admitted, but not used in time), or `sold_out` (every
    /// unit is held by an order; the buyer keeps their ticket, and units that cancelled orders
    /// give back reopen the queue in ticket order).
    #[schema(example = "waiting")]
    pub status: String,
    /// The buyer's place in joining order.
    pub ticket: u64,
    /// Waiting: 1 is next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// Waiting: how many wait in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<u64>,
    /// Waiting: expected wait at the room's rate, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_wait_ms: Option<u64>,
    /// Waiting or sold out: when to ask again, in milliseconds (also `Retry-After`, in seconds).
    /// Asking is the heartbeat: a buyer silent for the room's heartbeat timeout is dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_after_ms: Option<u64>,
    /// Waiting or sold out, in the answer to joining: send it back in the `Queue-Token` header when joining
    /// again, to be put back at this ticket if the queue lost you.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_token: Option<String>,
    /// Admitted: send it in the `Admission-Token` header of `POST /orders`; it buys one order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_token: Option<String>,
    /// Admitted: until when the admission token may be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl EntryResponse {
    pub(crate) fn new(room: &RoomId, entry: &Entry) -> Self {
        let mut response = Self {
            room: room.as_str().to_owned(),
            status: String::new(),
            ticket: 0,
            position: None,
            waiting: None,
            estimated_wait_ms: None,
            poll_after_ms: None,
            queue_token: None,
            admission_token: None,
            expires_at: None,
        };
        match entry {
            Entry::Waiting {
                ticket,
                position,
                waiting,
                estimated_wait,
                poll_after,
                queue_token,
            } => {
                response.status = "waiting".into();
                response.ticket = ticket.0;
                response.position = Some(*position);
                response.waiting = Some(*waiting);
                response.estimated_wait_ms = Some(millis(*estimated_wait));
                response.poll_after_ms = Some(millis(*poll_after));
                response.queue_token.clone_from(queue_token);
            }
            Entry::Admitted {
                ticket,
                admission,
                token,
            } => {
                response.status = "admitted".into();
                response.ticket = ticket.0;
                response.admission_token = Some(token.clone());
                response.expires_at = Some(admission.expires_at);
            }
            Entry::Expired { ticket } => {
                response.status = "expired".into();
                response.ticket = ticket.0;
            }
            Entry::SoldOut {
                ticket,
                poll_after,
                queue_token,
            } => {
                response.status = "sold_out".into();
                response.ticket = ticket.0;
                response.poll_after_ms = Some(millis(*poll_after));
                response.queue_token.clone_from(queue_token);
            }
        }
        response
    }
}

/// A SKU: 1–64 letters, digits, `-`, `_` or `.`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(value_type = String, pattern = "^[A-Za-z0-9._-]{1,64}$", example = "FLASH-1")]
pub struct SkuName(String);

/// The state an operator sets: gating in all but `closed`; admitting only while `open` (and
/// within its times).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateName {
    Scheduled,
    Open,
    Paused,
    Closed,
}

impl From<StateName> for RoomState {
    fn from(state: StateName) -> Self {
        match state {
            StateName::Scheduled => Self::Scheduled,
            StateName::Open => Self::Open,
            StateName::Paused => Self::Paused,
            StateName::Closed => Self::Closed,
        }
    }
}

/// A waiting room's configuration, as an operator sends it. Every constraint on a field is in
/// this schema (a body it refuses is a 400); `closes_at` after `opens_at` is a rule of the room
/// as a whole (422).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomRequest {
    /// The SKUs the room gates: ordering them needs an admission.
    #[schema(min_items = 1, max_items = 100)]
    pub skus: Vec<SkuName>,
    /// Admissions per interval (default 10).
    #[schema(minimum = 1, maximum = 100_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub admissions: Option<i64>,
    /// The interval, in milliseconds (default 5000): no span of it admits more than
    /// `admissions` (a sliding window on the queue's clock).
    #[schema(minimum = 100, maximum = 86_400_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub interval_ms: Option<i64>,
    /// How long an admission may be used, in milliseconds (default 300000).
    #[schema(minimum = 1000, maximum = 86_400_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub admission_validity_ms: Option<i64>,
    /// How long a waiting buyer may be silent before being dropped, in milliseconds (default
    /// 30000).
    #[schema(minimum = 1000, maximum = 86_400_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub heartbeat_timeout_ms: Option<i64>,
    pub state: StateName,
    /// Admits from then on (a scheduled or open room).
    pub opens_at: Option<DateTime<Utc>>,
    /// Closed from then on: its SKUs are sold without a queue.
    pub closes_at: Option<DateTime<Utc>>,
    /// The price of one unit of the room's SKUs: an order of them at another price is refused
    /// (422). Without it, the order's price is taken as given (ordership has no catalog).
    pub unit_price: Option<MoneyDto>,
    /// The units on sale (of all the room's SKUs together). Each order of them takes its units
    /// in its own transaction and never past this count; a cancelled order gives them back.
    /// Without it, the room counts no stock. Below the units already sold: 409.
    #[schema(minimum = 0, maximum = 100_000_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub stock: Option<i64>,
    /// The most admitted buyers who may hold an unexpired admission they have not ordered
    /// with: admissions pause while this many do (buyers who never order stop holding others
    /// up when their admission expires). Without it, no such limit; a room that counts stock
    /// never has more such buyers than units left.
    #[schema(minimum = 1, maximum = 100_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub max_unordered: Option<i64>,
}

/// The request's name of a field the domain names otherwise.
fn request_field(e: ValidationError) -> FieldError {
    let field = match e.field.as_str() {
        "interval" => "interval_ms",
        "admission_validity" => "admission_validity_ms",
        "heartbeat_timeout" => "heartbeat_timeout_ms",
        other => other,
    };
    FieldError::new(field, e.message)
}

impl RoomRequest {
    pub(crate) fn into_room(self, id: RoomId) -> Result<WaitingRoom, ApiError> {
        let mut errors = Vec::new();
        if !(1..=100).contains(&self.skus.len()) {
            errors.push(FieldError::new("skus", "must name 1 to 100 SKUs"));
        }
        let mut skus = BTreeSet::new();
        for (i, sku) in self.skus.iter().enumerate() {
            match Sku::parse(&sku.0) {
                Ok(sku) => {
                    skus.insert(sku);
                }
                Err(e) => errors.push(FieldError::new(format!("skus[{i}]"), e.message)),
            }
        }
        // Out of range for the type is out of range for the field: 0 fails its check below.
        let ms = |v: Option<i64>, default: Duration| {
            v.map_or(default, |ms| {
                Duration::from_millis(u64::try_from(ms).unwrap_or(0))
            })
        };
        let defaults = Rate::default();
        let admissions = self
            .admissions
            .map_or(defaults.admissions(), |n| u32::try_from(n).unwrap_or(0));
        let rate = Rate::new(admissions, ms(self.interval_ms, defaults.interval()))
            .map_err(|e| errors.extend(e.0.into_iter().map(request_field)))
            .ok();
        let unit_price = match &self.unit_price {
            None => None,
            Some(price) => Currency::parse(&price.currency)
                .and_then(|currency| Money::new(price.amount, currency))
                .map_err(|e| {
                    errors.push(FieldError::new(
                        format!("unit_price.{}", e.field),
                        e.message,
                    ));
                })
                .ok(),
        };
        let stock = match self.stock.map(u32::try_from) {
            None => None,
            Some(Ok(total)) if total <= Stock::MAX => Some(Stock::of(total)),
            Some(_) => {
                errors.push(FieldError::new("stock", "must be between 0 and 100000000"));
                None
            }
        };
        let max_unordered = match self.max_unordered.map(u32::try_from) {
            None => None,
            Some(Ok(max)) if (1..=Rate::MAX_ADMISSIONS).contains(&max) => Some(max),
            Some(_) => {
                errors.push(FieldError::new(
                    "max_unordered",
                    format!("must be between 1 and {}", Rate::MAX_ADMISSIONS),
                ));
                None
            }
        };
        // Built with the default rate when the rate is wrong, so every other error is named too.
        let room = WaitingRoom::new(
            id,
            skus,
            rate.unwrap_or_default(),
            ms(
                self.admission_validity_ms,
                WaitingRoom::DEFAULT_ADMISSION_VALIDITY,
            ),
            ms(
                self.heartbeat_timeout_ms,
                WaitingRoom::DEFAULT_HEARTBEAT_TIMEOUT,
            ),
            self.state.into(),
            self.opens_at,
            self.closes_at,
        );
        let mut business = Vec::new();
        if let Err(e) = &room {
            for error in &e.0 {
                match error.field.as_str() {
                    // A rule of the room as a whole, which no schema can state.
                    "closes_at" => business.push(request_field(error.clone())),
                    "skus" => {} // named above
                    _ => errors.push(request_field(error.clone())),
                }
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        if !business.is_empty() {
            return Err(ApiError::BusinessRule(business));
        }
        let room = room.map_err(ApiError::from)?;
        let room = room
            .with_max_unordered(max_unordered)
            .map_err(|e| ApiError::Validation(vec![request_field(e)]))?;
        Ok(room.with_unit_price(unit_price).with_stock(stock))
    }
}

/// The queue's figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueFigures {
    pub waiting: u64,
    /// Admitted since the queue began.
    pub admitted: u64,
    /// Admitted within the last interval (the rate holds in every interval: a sliding window).
    pub admitted_in_window: u32,
    /// Admitted buyers whose admission is unexpired and who have not ordered with it yet.
    pub holding: u32,
}

/// A room's stock as counted now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StockFigures {
    /// The units on sale.
    pub total: u32,
    /// The units live orders hold.
    pub sold: u32,
    pub left: u32,
}

/// A waiting room: its configuration, what it does now, and its queue's figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoomResponse {
    pub id: String,
    pub skus: Vec<String>,
    pub admissions: u32,
    pub interval_ms: u64,
    pub admission_validity_ms: u64,
    pub heartbeat_timeout_ms: u64,
    /// As set by an operator.
    pub state: String,
    /// What it does now (the state with its times applied): `scheduled`, `open`, `paused` or
    /// `closed`.
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<DateTime<Utc>>,
    /// The price the room's SKUs are sold at; left out when the order's price is taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<MoneyDto>,
    /// Left out when the room counts no stock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock: Option<StockFigures>,
    /// Left out when the room sets no such limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_unordered: Option<u32>,
    /// Whether every unit is held by an order: joins answer `sold_out`, nobody is admitted.
    pub sold_out: bool,
    /// Left out while the queue cannot be reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueFigures>,
}

const fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Scheduled => "scheduled",
        Phase::Open => "open",
        Phase::Paused => "paused",
        Phase::Closed => "closed",
    }
}

impl From<&RoomView> for RoomResponse {
    fn from(view: &RoomView) -> Self {
        let room = &view.room;
        Self {
            id: room.id().as_str().to_owned(),
            skus: room.skus().iter().map(|s| s.as_str().to_owned()).collect(),
            admissions: room.rate().admissions(),
            interval_ms: millis(room.rate().interval()),
            admission_validity_ms: millis(room.admission_validity()),
            heartbeat_timeout_ms: millis(room.heartbeat_timeout()),
            state: room.state().as_str().to_owned(),
            phase: phase_name(view.phase).to_owned(),
            opens_at: room.opens_at(),
            closes_at: room.closes_at(),
            unit_price: room.unit_price().map(super::money),
            stock: room.stock().map(|stock| StockFigures {
                total: stock.total(),
                sold: stock.sold(),
                left: stock.left(),
            }),
            max_unordered: room.max_unordered(),
            sold_out: room.sold_out(),
            queue: view.queue.map(|q| QueueFigures {
                waiting: q.waiting,
                admitted: q.admitted,
                admitted_in_window: q.admitted_in_window,
                holding: q.holding,
            }),
        }
    }
}
