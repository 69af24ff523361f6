//! A waiting room's configuration: the SKUs it gates, its admission rate, its timing and state.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Stock, millis};
use crate::error::{ValidationError, ValidationErrors};
use crate::money::Money;
use crate::product::Sku;

/// A room's name in URLs and keys: 1–64 characters of `a-z`, `0-9` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomId(String);

impl RoomId {
    /// # Errors
    /// [`ValidationError`] for anything else.
    pub fn parse(id: &str) -> Result<Self, ValidationError> {
        let ok = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(id.to_owned()))
        } else {
            Err(ValidationError::new(
                "room",
                "must be 1 to 64 characters of a-z, 0-9 and -",
            ))
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RoomId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// At most `admissions` buyers in any `interval` of the queue's clock, a sliding window: "10 every
/// 5 seconds" holds for every 5 seconds, not only for windows aligned on the clock (where 10 let in
/// late in one window and 10 early in the next would be 20 within moments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    admissions: u32,
    interval: Duration,
}

impl Rate {
    pub const MAX_ADMISSIONS: u32 = 100_000;

    /// # Errors
    /// Each of: admissions outside 1–100,000; an interval outside 100 ms–24 h or not in whole
    /// milliseconds.
    pub fn new(admissions: u32, interval: Duration) -> Result<Self, ValidationErrors> {
        let mut errors = Vec::new();
        if !(1..=Self::MAX_ADMISSIONS).contains(&admissions) {
            errors.push(ValidationError::new(
                "admissions",
                "must be between 1 and 100000",
            ));
        }
        let whole_ms = interval.subsec_nanos().is_multiple_of(1_000_000);
        if !(Duration::from_millis(100)..=Duration::from_secs(86_400)).contains(&interval)
            || !whole_ms
        {
            errors.push(ValidationError::new(
                "interval",
                "must be whole milliseconds between 100 ms and 24 h",
            ));
        }
        if !errors.is_empty() {
            return Err(ValidationErrors(errors));
        }
        Ok(Self {
            admissions,
            interval,
        })
    }

    #[must_use]
    pub const fn admissions(&self) -> u32 {
        self.admissions
    }

    #[must_use]
    pub const fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether an admission at `admitted_at_ms` still counts against the rate at `now_ms`: it
    /// does for one interval (and when the clock went back).
    #[must_use]
    pub fn still_counts(&self, admitted_at_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(admitted_at_ms) < millis(self.interval)
    }
}

impl Default for Rate {
    /// 10 buyers every 5 seconds.
    fn default() -> Self {
        Self {
            admissions: 10,
            interval: Duration::from_secs(5),
        }
    }
}

/// The state an operator sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomState {
    /// Gating, not admitting yet.
    Scheduled,
    Open,
    /// Gating, admitting nobody for now.
    Paused,
    /// Not gating any more.
    Closed,
}

impl RoomState {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Open => "open",
            Self::Paused => "paused",
            Self::Closed => "closed",
        }
    }

    /// # Errors
    /// [`ValidationError`] for an unknown state.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        [Self::Scheduled, Self::Open, Self::Paused, Self::Closed]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new("state", "must be scheduled, open, paused or closed")
            })
    }
}

/// What a room does at a given moment: its state, with the times applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Gating; admits from `opens_at` (or when an operator opens it).
    Scheduled,
    /// Gating and admitting.
    Open,
    /// Gating, admitting nobody.
    Paused,
    /// Closed, or past its end: its SKUs are sold like any other.
    Closed,
}

/// A flash-sale waiting room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingRoom {
    id: RoomId,
    skus: BTreeSet<Sku>,
    rate: Rate,
    admission_validity: Duration,
    heartbeat_timeout: Duration,
    state: RoomState,
    opens_at: Option<DateTime<Utc>>,
    closes_at: Option<DateTime<Utc>>,
    /// The price of one unit of its SKUs, set by the shop: an order of them at another price is
    /// refused. `None`: the order's price is taken as given.
    unit_price: Option<Money>,
    /// The units on sale, if the room counts them; `None`: as many as are ordered.
    stock: Option<Stock>,
    /// The most buyers who may hold an unexpired admission they have not ordered with:
    /// admissions pause while this many do. `None`: no such limit.
    max_unordered: Option<u32>,
}

impl WaitingRoom {
    /// How long an admission may be used, unless configured.
    pub const DEFAULT_ADMISSION_VALIDITY: Duration = Duration::from_secs(300);
    /// How long a waiting buyer may be silent before being dropped, unless configured.
    pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);

    /// A room; `opens_at`/`closes_at` bound when it admits and gates.
    ///
    /// # Errors
    /// Every field that is wrong: no SKU, an admission validity or heartbeat timeout outside
    /// 1 s–24 h, a close before the open.
    #[allow(clippy::too_many_arguments, reason = "a room has this many settings")]
    pub fn new(
        id: RoomId,
        skus: BTreeSet<Sku>,
        rate: Rate,
        admission_validity: Duration,
        heartbeat_timeout: Duration,
        state: RoomState,
        opens_at: Option<DateTime<Utc>>,
        closes_at: Option<DateTime<Utc>>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = Vec::new();
        if skus.is_empty() {
            errors.push(ValidationError::new("skus", "must name at least one SKU"));
        }
        let bounds = Duration::from_secs(1)..=Duration::from_secs(86_400);
        if !bounds.contains(&admission_validity) {
            errors.push(ValidationError::new(
                "admission_validity",
                "must be between 1 s and 24 h",
            ));
        }
        if !bounds.contains(&heartbeat_timeout) {
            errors.push(ValidationError::new(
                "heartbeat_timeout",
                "must be between 1 s and 24 h",
            ));
        }
        if let (Some(open), Some(close)) = (opens_at, closes_at)
            && close <= open
        {
            errors.push(ValidationError::new("closes_at", "must be after opens_at"));
        }
        if !errors.is_empty() {
            return Err(ValidationErrors(errors));
        }
        Ok(Self {
            id,
            skus,
            rate,
            admission_validity,
            heartbeat_timeout,
            state,
            opens_at,
            closes_at,
            unit_price: None,
            stock: None,
            max_unordered: None,
        })
    }

    /// The same room, selling its SKUs at `unit_price` (or at the order's price: `None`).
    #[must_use]
    pub const fn with_unit_price(mut self, unit_price: Option<Money>) -> Self {
        self.unit_price = unit_price;
        self
    }

    /// The same room, counting `stock` (or not: `None`). In a room's configuration only
    /// [`Stock::total`] counts; the order store keeps `sold`.
    #[must_use]
    pub const fn with_stock(mut self, stock: Option<Stock>) -> Self {
        self.stock = stock;
        self
    }

    #[must_use]
    pub const fn stock(&self) -> Option<Stock> {
        self.stock
    }

    /// The same room, pausing admissions while `max_unordered` admitted buyers have not ordered
    /// yet (or never: `None`).
    ///
    /// # Errors
    /// A limit of 0 (it would admit nobody) or above [`Rate::MAX_ADMISSIONS`].
    pub fn with_max_unordered(
        mut self,
        max_unordered: Option<u32>,
    ) -> Result<Self, ValidationError> {
        if let Some(max) = max_unordered
            && !(1..=Rate::MAX_ADMISSIONS).contains(&max)
        {
            return Err(ValidationError::new(
                "max_unordered",
                format!("must be between 1 and {}", Rate::MAX_ADMISSIONS),
            ));
        }
        self.max_unordered = max_unordered;
        Ok(self)
    }

    #[must_use]
    pub const fn max_unordered(&self) -> Option<u32> {
        self.max_unordered
    }

    /// The most buyers who may hold an admission they have not ordered with, as the room stands:
    /// its own limit, and no more than the units left (each order takes one at least), so a
    /// sale does not admit buyers it has no units for. `None`: no limit.
    #[must_use]
    pub fn holding_limit(&self) -> Option<u32> {
        let left = self.stock.map(|stock| stock.left());
        match (self.max_unordered, left) {
            (Some(max), Some(left)) => Some(max.min(left)),
            (max, left) => max.or(left),
        }
    }

    /// Whether every unit on sale is held by an order (as of when the room was read).
    #[must_use]
    pub fn sold_out(&self) -> bool {
        self.stock.is_some_and(|stock| stock.sold_out())
    }

    #[must_use]
    pub const fn unit_price(&self) -> Option<Money> {
        self.unit_price
    }

    /// Whether a line of `sku` at `price` keeps to the room's price: always when it has none.
    #[must_use]
    pub fn sells_at(&self, price: Money) -> bool {
        self.unit_price.is_none_or(|own| own == price)
    }

    #[must_use]
    pub const fn id(&self) -> &RoomId {
        &self.id
    }
    #[must_use]
    pub const fn skus(&self) -> &BTreeSet<Sku> {
        &self.skus
    }
    #[must_use]
    pub const fn rate(&self) -> &Rate {
        &self.rate
    }
    #[must_use]
    pub const fn admission_validity(&self) -> Duration {
        self.admission_validity
    }
    #[must_use]
    pub const fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }
    #[must_use]
    pub const fn state(&self) -> RoomState {
        self.state
    }
    #[must_use]
    pub const fn opens_at(&self) -> Option<DateTime<Utc>> {
        self.opens_at
    }
    #[must_use]
    pub const fn closes_at(&self) -> Option<DateTime<Utc>> {
        self.closes_at
    }

    /// What the room does at `now`.
    #[must_use]
    pub fn phase(&self, now: DateTime<Utc>) -> Phase {
        if self.state == RoomState::Closed || self.closes_at.is_some_and(|close| now >= close) {
            Phase::Closed
        } else if self.state == RoomState::Paused {
            Phase::Paused
        } else if self.state == RoomState::Scheduled && self.opens_at.is_none_or(|open| now < open)
        {
            Phase::Scheduled
        } else if self.opens_at.is_some_and(|open| now < open) {
            // Opened by an operator ahead of its time: it waits for its time.
            Phase::Scheduled
        } else {
            Phase::Open
        }
    }

    /// Whether an order for `sku` needs an admission of this room at `now`. A room gates while
    /// scheduled, open or paused (fail closed); only a closed or ended room lets its SKUs through.
    #[must_use]
    pub fn gates(&self, sku: &Sku, now: DateTime<Utc>) -> bool {
        self.skus.contains(sku) && self.phase(now) != Phase::Closed
    }

    /// Whether the room lets buyers in at `now`.
    #[must_use]
    pub fn admits(&self, now: DateTime<Utc>) -> bool {
        self.phase(now) == Phase::Open
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, 0, 0)
            .single()
            .expect("time")
    }

    fn room(state: RoomState, opens: Option<u32>, closes: Option<u32>) -> WaitingRoom {
        let skus = BTreeSet::from([Sku::parse("HOT-1").expect("sku")]);
        WaitingRoom::new(
            RoomId::parse("black-friday").expect("id"),
            skus,
            Rate::default(),
            WaitingRoom::DEFAULT_ADMISSION_VALIDITY,
            WaitingRoom::DEFAULT_HEARTBEAT_TIMEOUT,
            state,
            opens.map(at),
            closes.map(at),
        )
        .expect("room")
    }

    #[test]
    fn a_room_gates_its_skus_until_it_is_closed_or_over() {
        let hot = Sku::parse("HOT-1").expect("sku");
        let other = Sku::parse("COLD-1").expect("sku");
        for state in [RoomState::Scheduled, RoomState::Open, RoomState::Paused] {
            let r = room(state, None, Some(12));
            assert!(r.gates(&hot, at(11)), "{state:?} gates (fail closed)");
            assert!(!r.gates(&other, at(11)), "only its own SKUs");
            assert!(!r.gates(&hot, at(12)), "over at its end");
        }
        assert!(!room(RoomState::Closed, None, None).gates(&hot, at(11)));
    }

    #[test]
    fn a_room_admits_only_while_open_within_its_times() {
        let open = room(RoomState::Open, Some(10), Some(12));
        assert_eq!(open.phase(at(9)), Phase::Scheduled, "not before its time");
        assert!(open.admits(at(10)));
        assert!(!open.admits(at(12)));
        let scheduled = room(RoomState::Scheduled, Some(10), None);
        assert!(!scheduled.admits(at(9)));
        assert!(
            scheduled.admits(at(10)),
            "a scheduled room opens at its time"
        );
        assert!(
            !room(RoomState::Scheduled, None, None).admits(at(10)),
            "no time: an operator opens it"
        );
        assert!(!room(RoomState::Paused, Some(10), None).admits(at(11)));
    }

    #[test]
    fn a_room_is_sold_out_when_every_unit_is_held_and_only_if_it_counts_stock() {
        let r = room(RoomState::Open, None, None);
        assert!(!r.sold_out(), "no stock counted: never sold out");
        let counted = |total, sold| Stock::counted(total, sold).expect("stock");
        let r = r.with_stock(Some(counted(3, 2)));
        assert_eq!(r.stock().map(|s| s.left()), Some(1));
        assert!(!r.sold_out());
        assert!(r.with_stock(Some(counted(3, 3))).sold_out());
        assert!(
            Stock::counted(3, 4).is_err(),
            "never more sold than on sale"
        );
        assert!(Stock::of(0).sold_out(), "nothing on sale");
    }

    #[test]
    fn a_room_with_a_price_sells_only_at_it() {
        let krw = crate::money::Currency::parse("KRW").expect("currency");
        let price = |amount| Money::new(amount, krw).expect("money");
        let r = room(RoomState::Open, None, None);
        assert!(r.sells_at(price(1)), "no price: the order's");
        let r = r.with_unit_price(Some(price(9_900)));
        assert_eq!(r.unit_price(), Some(price(9_900)));
        assert!(r.sells_at(price(9_900)));
        assert!(!r.sells_at(price(1)));
        let usd = crate::money::Currency::parse("USD").expect("currency");
        assert!(!r.sells_at(Money::new(9_900, usd).expect("money")));
    }

    #[test]
    fn a_room_with_bad_settings_reports_every_one() {
        let errors = WaitingRoom::new(
            RoomId::parse("r").expect("id"),
            BTreeSet::new(),
            Rate::default(),
            Duration::ZERO,
            Duration::from_secs(100_000),
            RoomState::Open,
            Some(at(12)),
            Some(at(11)),
        )
        .expect_err("invalid");
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "skus",
                "admission_validity",
                "heartbeat_timeout",
                "closes_at"
            ]
        );
    }

    #[test]
    fn rates_and_room_ids_are_validated() {
        assert!(Rate::new(0, Duration::from_secs(5)).is_err());
        assert!(Rate::new(10, Duration::from_millis(50)).is_err());
        assert!(
            Rate::new(10, Duration::from_micros(100_500)).is_err(),
            "whole milliseconds"
        );
        assert!(Rate::new(100_000, Duration::from_secs(86_400)).is_ok());
        assert!(RoomId::parse("Black Friday").is_err());
        assert!(RoomId::parse("").is_err());
        assert_eq!(
            RoomId::parse("sale-2026").expect("id").as_str(),
            "sale-2026"
        );
        assert_eq!(RoomState::parse("paused"), Ok(RoomState::Paused));
        assert!(RoomState::parse("gone").is_err());
    }

    #[test]
    fn an_admission_counts_for_one_interval_of_the_queue_clock() {
        let rate = Rate::default();
        assert!(rate.still_counts(1_000, 1_000));
        assert!(rate.still_counts(1_000, 5_999));
        assert!(!rate.still_counts(1_000, 6_000), "an interval later");
        assert!(rate.still_counts(7_000, 6_000), "a clock that went back");
    }
}
