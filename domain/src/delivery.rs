//! The Delivery aggregate and the policy that decides whether a delivery can be scheduled.
//!
//! ```text
//! (requested) ──policy refuses──▶ rejected (no aggregate)
//!      │
//!      └──schedule──▶ Scheduled ──ship──▶ Shipped ──deliver──▶ Delivered
//!                         │
//!                         └──cancel──▶ Cancelled            (cancel once shipped is refused)
//! ```

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::address::{CountryCode, ShippingAddress};
use crate::error::{InvalidTransition, ValidationError};
use crate::ids::{DeliveryId, OrderId};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Scheduled,
    Shipped,
    Delivered,
    Cancelled,
}

impl DeliveryStatus {
    pub const ALL: [Self; 4] = [
        Self::Scheduled,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
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
            .ok_or_else(|| ValidationError::new("status", "unknown delivery status"))
    }

    /// A live delivery is one that has not been cancelled.
    #[must_use]
    pub const fn is_live(self) -> bool {
        !matches!(self, Self::Cancelled)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a delivery request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RejectionReason {
    CountryNotServed { country: CountryCode },
    CapacityExhausted { country: CountryCode },
}

impl fmt::Display for RejectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CountryNotServed { country } => write!(f, "country {country} is not served"),
            Self::CapacityExhausted { country } => {
                write!(f, "today's delivery capacity for {country} is exhausted")
            }
        }
    }
}

/// Which destinations the delivery service serves, and how many deliveries a day per region
/// (a region is a country here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    served: BTreeSet<CountryCode>,
    daily_capacity: Option<u32>,
    lead_time: chrono::Duration,
}

impl Default for DeliveryPolicy {
    /// `KR, JP, US, DE, GB, FR`, unlimited capacity, two days' lead time.
    fn default() -> Self {
        let served = ["KR", "JP", "US", "DE", "GB", "FR"]
            .into_iter()
            .filter_map(|c| CountryCode::parse(c).ok())
            .collect();
        Self {
            served,
            daily_capacity: None,
            lead_time: chrono::Duration::days(2),
        }
    }
}

impl DeliveryPolicy {
    #[must_use]
    pub fn new(served: impl IntoIterator<Item = CountryCode>, daily_capacity: Option<u32>) -> Self {
        Self {
            served: served.into_iter().collect(),
            daily_capacity,
            ..Self::default()
        }
    }

    pub fn served_countries(&self) -> impl Iterator<Item = CountryCode> + '_ {
        self.served.iter().copied()
    }

    /// Whether deliveries to `country` are accepted at all.
    #[must_use]
    pub fn serves(&self, country: CountryCode) -> bool {
        self.served.contains(&country)
    }

    #[must_use]
    pub const fn daily_capacity(&self) -> Option<u32> {
        self.daily_capacity
    }

    /// Decides a request, given how many deliveries the destination's region already has today.
    ///
    /// # Errors
    /// The [`RejectionReason`] when the country is not served or today's capacity is used up.
    pub fn admit(
        &self,
        address: &ShippingAddress,
        scheduled_today_in_region: u64,
    ) -> Result<(), RejectionReason> {
        let country = address.country();
        if !self.serves(country) {
            return Err(RejectionReason::CountryNotServed { country });
        }
        if let Some(capacity) = self.daily_capacity
            && scheduled_today_in_region >= u64::from(capacity)
        {
            return Err(RejectionReason::CapacityExhausted { country });
        }
        Ok(())
    }

    /// When a delivery scheduled now is expected.
    #[must_use]
    pub fn eta(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.lead_time
    }
}

/// What happened to a delivery. Serialized as the `data` of `ordership.delivery.*` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryEvent {
    Scheduled {
        delivery_id: DeliveryId,
        order_id: OrderId,
        eta: DateTime<Utc>,
    },
    Shipped {
        delivery_id: DeliveryId,
        order_id: OrderId,
    },
    Delivered {
        delivery_id: DeliveryId,
        order_id: OrderId,
    },
    Cancelled {
        delivery_id: DeliveryId,
        order_id: OrderId,
    },
}

impl DeliveryEvent {
    pub const SCHEMA_VERSION: u32 = 1;

    #[must_use]
    pub const fn event_type(&self) -> &'static str {
        match self {
            Self::Scheduled { .. } => "ordership.delivery.scheduled",
            Self::Shipped { .. } => "ordership.delivery.shipped",
            Self::Delivered { .. } => "ordership.delivery.delivered",
            Self::Cancelled { .. } => "ordership.delivery.cancelled",
        }
    }
}

/// The Delivery aggregate: at most one per order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    id: DeliveryId,
    order_id: OrderId,
    address: ShippingAddress,
    status: DeliveryStatus,
    eta: DateTime<Utc>,
    version: u64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Everything an adapter needs to rebuild a delivery it stored.
#[derive(Debug, Clone)]
pub struct DeliverySnapshot {
    pub id: DeliveryId,
    pub order_id: OrderId,
    pub address: ShippingAddress,
    pub status: DeliveryStatus,
    pub eta: DateTime<Utc>,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Delivery {
    /// Schedules a delivery that the policy admitted.
    #[must_use]
    pub fn schedule(
        id: DeliveryId,
        order_id: OrderId,
        address: ShippingAddress,
        eta: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (Self, DeliveryEvent) {
        let delivery = Self {
            id,
            order_id,
            address,
            status: DeliveryStatus::Scheduled,
            eta,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let event = DeliveryEvent::Scheduled {
            delivery_id: id,
            order_id,
            eta,
        };
        (delivery, event)
    }

    #[must_use]
    pub fn restore(s: DeliverySnapshot) -> Self {
        Self {
            id: s.id,
            order_id: s.order_id,
            address: s.address,
            status: s.status,
            eta: s.eta,
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }

    /// `Scheduled → Shipped`.
    ///
    /// # Errors
    /// [`InvalidTransition`] unless `Scheduled`.
    pub fn ship(&mut self, now: DateTime<Utc>) -> Result<DeliveryEvent, InvalidTransition> {
        self.require(DeliveryStatus::Scheduled, "ship")?;
        Ok(self.record(
            DeliveryEvent::Shipped {
                delivery_id: self.id,
                order_id: self.order_id,
            },
            now,
        ))
    }

    /// `Shipped → Delivered`.
    ///
    /// # Errors
    /// [`InvalidTransition`] unless `Shipped`.
    pub fn deliver(&mut self, now: DateTime<Utc>) -> Result<DeliveryEvent, InvalidTransition> {
        self.require(DeliveryStatus::Shipped, "deliver")?;
        Ok(self.record(
            DeliveryEvent::Delivered {
                delivery_id: self.id,
                order_id: self.order_id,
            },
            now,
        ))
    }

    /// `Scheduled → Cancelled`.
    ///
    /// # Errors
    /// [`InvalidTransition`] unless `Scheduled` (a shipped parcel cannot be called back).
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<DeliveryEvent, InvalidTransition> {
        self.require(DeliveryStatus::Scheduled, "cancel")?;
        Ok(self.record(
            DeliveryEvent::Cancelled {
                delivery_id: self.id,
                order_id: self.order_id,
            },
            now,
        ))
    }

    fn require(&self, from: DeliveryStatus, action: &'static str) -> Result<(), InvalidTransition> {
        InvalidTransition::unless(self.status == from, action, self.status.as_str())
    }

    fn record(&mut self, event: DeliveryEvent, now: DateTime<Utc>) -> DeliveryEvent {
        self.apply(&event, now);
        event
    }

    /// Evolves the state by one event (decided earlier by a command). Bumps the version.
    pub fn apply(&mut self, event: &DeliveryEvent, at: DateTime<Utc>) {
        self.status = match event {
            DeliveryEvent::Scheduled { .. } => return,
            DeliveryEvent::Shipped { .. } => DeliveryStatus::Shipped,
            DeliveryEvent::Delivered { .. } => DeliveryStatus::Delivered,
            DeliveryEvent::Cancelled { .. } => DeliveryStatus::Cancelled,
        };
        self.version += 1;
        self.updated_at = at;
    }

    #[must_use]
    pub const fn id(&self) -> DeliveryId {
        self.id
    }
    #[must_use]
    pub const fn order_id(&self) -> OrderId {
        self.order_id
    }
    #[must_use]
    pub const fn address(&self) -> &ShippingAddress {
        &self.address
    }
    #[must_use]
    pub const fn status(&self) -> DeliveryStatus {
        self.status
    }
    #[must_use]
    pub const fn eta(&self) -> DateTime<Utc> {
        self.eta
    }
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
mod tests {
    use super::*;

    fn address(country: &str) -> ShippingAddress {
        ShippingAddress::new("Kim", "1 Sejong-daero", "Seoul", "04524", country).expect("valid")
    }

    fn scheduled() -> Delivery {
        let now = Utc::now();
        Delivery::schedule(
            DeliveryId::from_uuid(uuid::Uuid::now_v7()),
            OrderId::from_uuid(uuid::Uuid::now_v7()),
            address("KR"),
            now,
            now,
        )
        .0
    }

    #[test]
    fn the_default_policy_serves_six_countries_without_a_capacity_limit() {
        let policy = DeliveryPolicy::default();
        for c in ["KR", "JP", "US", "DE", "GB", "FR"] {
            assert_eq!(policy.admit(&address(c), u64::MAX), Ok(()), "{c}");
        }
        assert!(matches!(
            policy.admit(&address("BR"), 0),
            Err(RejectionReason::CountryNotServed { .. })
        ));
    }

    #[test]
    fn a_region_at_capacity_rejects_further_deliveries() {
        let kr = CountryCode::parse("KR").expect("valid");
        let policy = DeliveryPolicy::new([kr], Some(2));
        assert_eq!(policy.admit(&address("KR"), 1), Ok(()));
        assert_eq!(
            policy.admit(&address("KR"), 2),
            Err(RejectionReason::CapacityExhausted { country: kr })
        );
    }

    #[test]
    fn a_delivery_runs_from_scheduled_to_delivered() {
        let mut d = scheduled();
        assert!(d.ship(Utc::now()).is_ok());
        assert!(d.deliver(Utc::now()).is_ok());
        assert_eq!(d.status(), DeliveryStatus::Delivered);
        assert_eq!(d.version(), 3);
    }

    #[test]
    fn cancelling_a_shipped_delivery_is_refused() {
        let mut d = scheduled();
        d.ship(Utc::now()).expect("ship");
        let before = d.clone();
        assert!(d.cancel(Utc::now()).is_err());
        assert_eq!(d, before);
    }

    #[test]
    fn a_cancelled_delivery_cannot_be_shipped() {
        let mut d = scheduled();
        d.cancel(Utc::now()).expect("cancel");
        assert!(!d.status().is_live());
        assert!(d.ship(Utc::now()).is_err());
        assert!(d.deliver(Utc::now()).is_err());
    }
}
