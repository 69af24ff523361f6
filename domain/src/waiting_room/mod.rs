//! The flash-sale waiting room: which SKUs a room gates, how fast it admits buyers, and the
//! decisions every queue adapter applies the same way (inside Redis, or in memory).
//!
//! Time here is the queue's own clock in milliseconds (Redis `TIME` on Redis), never an
//! application server's: several service instances tick one room, and only one clock may decide
//! which admission window it is.

mod room;
mod stock;

pub use room::{Phase, Rate, RoomId, RoomState, WaitingRoom};
pub use stock::Stock;

use std::time::Duration;

/// A buyer's place in a room's queue, handed out by the queue in joining order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// Where a buyer stands in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStatus {
    /// In the queue: `position` 1 is next; `waiting` buyers in all.
    Waiting {
        ticket: Ticket,
        position: u64,
        waiting: u64,
    },
    /// Let in, at `admitted_at_ms` of the queue's clock.
    Admitted { ticket: Ticket, admitted_at_ms: u64 },
}

impl EntryStatus {
    #[must_use]
    pub const fn ticket(&self) -> Ticket {
        match self {
            Self::Waiting { ticket, .. } | Self::Admitted { ticket, .. } => *ticket,
        }
    }
}

/// How many buyers may be admitted now: what the rate leaves after the admissions of the last
/// interval, and no more than wait.
#[must_use]
pub fn admissions_now(rate: &Rate, admitted_in_window: u32, waiting: u64, holders: Holders) -> u32 {
    let left = rate
        .admissions()
        .saturating_sub(admitted_in_window)
        .min(holders.room());
    u32::try_from(waiting).map_or(left, |waiting| left.min(waiting))
}

/// The buyers who hold an unexpired admission they have not ordered with, and the most that may
/// ([`WaitingRoom::holding_limit`]): admissions pause while the limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holders {
    pub holding: u32,
    pub limit: Option<u32>,
}

impl Holders {
    /// No limit.
    pub const UNLIMITED: Self = Self {
        holding: 0,
        limit: None,
    };

    /// How many more buyers may be admitted before the limit is reached.
    #[must_use]
    pub fn room(&self) -> u32 {
        self.limit
            .map_or(u32::MAX, |limit| limit.saturating_sub(self.holding))
    }
}

/// A buyer joining is let in at once when the room admits, nobody waits before them, and the
/// last interval's admissions leave room.
#[must_use]
pub fn admitted_on_joining(
    admitting: bool,
    rate: &Rate,
    admitted_in_window: u32,
    waiting_before: u64,
    holders: Holders,
) -> bool {
    admitting && waiting_before == 0 && admitted_in_window < rate.admissions() && holders.room() > 0
}

/// A waiting buyer not heard from within the heartbeat timeout has left: dropped, never admitted.
#[must_use]
pub fn abandoned(last_seen_ms: u64, now_ms: u64, heartbeat_timeout: Duration) -> bool {
    now_ms.saturating_sub(last_seen_ms) > millis(heartbeat_timeout)
}

/// How long the buyer at `position` (1: next) should expect to wait at `rate`: the windows it
/// takes to reach them, a whole window each.
#[must_use]
pub fn estimated_wait(rate: &Rate, position: u64) -> Duration {
    let windows = position.div_ceil(u64::from(rate.admissions()));
    rate.interval()
        .saturating_mul(u32::try_from(windows).unwrap_or(u32::MAX))
}

/// The modulus of the draw's generator (Lehmer's minimal standard, 2^31 - 1): every product
/// stays below 2^47, exact in the doubles Redis's Lua computes with, so the Redis scripts and
/// the memory adapter draw the same order from the same seed.
const DRAW_MODULUS: u64 = 2_147_483_647;

/// Puts `items` (the buyers queued before a room first admits, in ticket order) in a random
/// order drawn from `seed`: a Fisher–Yates shuffle. Each index is the generator's next value
/// modulo the span, whose bias is below span / 2^31 (a 50,000-buyer queue: 0.002 %).
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed % (DRAW_MODULUS - 1) + 1;
    for i in (1..items.len()).rev() {
        state = state * 48_271 % DRAW_MODULUS;
        // i + 1 fits: there are fewer than 2^31 items in any queue this draws.
        let j = usize::try_from(state % (i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
}

/// A duration in whole milliseconds, saturating.
#[must_use]
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ten_per_5s() -> Rate {
        Rate::new(10, Duration::from_secs(5)).expect("rate")
    }

    #[test]
    fn a_window_admits_at_most_its_rate_and_no_more_than_wait() {
        let rate = ten_per_5s();
        let any = Holders::UNLIMITED;
        assert_eq!(admissions_now(&rate, 0, 1_000, any), 10);
        assert_eq!(admissions_now(&rate, 7, 1_000, any), 3);
        assert_eq!(admissions_now(&rate, 10, 1_000, any), 0);
        assert_eq!(admissions_now(&rate, 12, 1_000, any), 0, "never negative");
        assert_eq!(admissions_now(&rate, 0, 4, any), 4);
        assert_eq!(admissions_now(&rate, 0, u64::MAX, any), 10);
    }

    #[test]
    fn admissions_pause_while_the_holding_limit_is_reached() {
        let rate = ten_per_5s();
        let holders = |holding, limit| Holders {
            holding,
            limit: Some(limit),
        };
        assert_eq!(admissions_now(&rate, 0, 1_000, holders(3, 5)), 2);
        assert_eq!(admissions_now(&rate, 0, 1_000, holders(5, 5)), 0);
        assert_eq!(
            admissions_now(&rate, 0, 1_000, holders(7, 5)),
            0,
            "a lowered limit"
        );
        assert_eq!(
            admissions_now(&rate, 9, 1_000, holders(0, 5)),
            1,
            "and the rate"
        );
        assert!(admitted_on_joining(true, &rate, 0, 0, holders(4, 5)));
        assert!(!admitted_on_joining(true, &rate, 0, 0, holders(5, 5)));
    }

    #[test]
    fn a_buyer_who_need_not_wait_is_admitted_on_joining() {
        let rate = ten_per_5s();
        let any = Holders::UNLIMITED;
        assert!(admitted_on_joining(true, &rate, 0, 0, any));
        assert!(admitted_on_joining(true, &rate, 9, 0, any));
        assert!(
            !admitted_on_joining(true, &rate, 10, 0, any),
            "the window is used up"
        );
        assert!(
            !admitted_on_joining(true, &rate, 0, 1, any),
            "someone waits before them"
        );
        assert!(
            !admitted_on_joining(false, &rate, 0, 0, any),
            "the room is not admitting"
        );
    }

    #[test]
    fn silence_longer_than_the_heartbeat_timeout_is_abandonment() {
        let timeout = Duration::from_secs(30);
        assert!(!abandoned(1_000, 31_000, timeout));
        assert!(abandoned(1_000, 31_001, timeout));
        assert!(
            !abandoned(5_000, 1_000, timeout),
            "a clock that went back is not silence"
        );
    }

    #[test]
    fn a_draw_is_a_permutation_fixed_by_its_seed() {
        let drawn = |seed| {
            let mut items: Vec<u32> = (0..20).collect();
            shuffle(&mut items, seed);
            items
        };
        let mut sorted = drawn(7);
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>(), "every buyer once");
        assert_eq!(drawn(7), drawn(7), "the seed decides");
        assert_ne!(drawn(7), drawn(8));
        assert_ne!(drawn(7), (0..20).collect::<Vec<_>>());
        let mut one = [1];
        shuffle(&mut one, 3);
        assert_eq!(one, [1]);
    }

    #[test]
    fn the_wait_is_the_windows_it_takes_to_reach_the_buyer() {
        let rate = ten_per_5s();
        assert_eq!(estimated_wait(&rate, 1), Duration::from_secs(5));
        assert_eq!(estimated_wait(&rate, 10), Duration::from_secs(5));
        assert_eq!(estimated_wait(&rate, 11), Duration::from_secs(10));
        assert_eq!(estimated_wait(&rate, 1_000), Duration::from_secs(500));
    }
}
