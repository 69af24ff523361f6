//! Time, identity and chance in a run: all from the seed. Simulated time moves only when the
//! driver moves it; each process reads it through its own clock, which a fault can skew.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use chrono::{DateTime, Duration, Utc};
use ordership_domain::SeededRandom;
use ordership_domain::ports::{Clock, IdGenerator, RandomSource};
use uuid::Uuid;

/// The seed's draws. One per run: every choice of the run comes from it, in the order the run
/// makes them, which is what makes a run replay exactly.
#[derive(Debug)]
pub struct Dice(SeededRandom);

impl Dice {
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(SeededRandom::new(seed))
    }

    #[must_use]
    pub fn next_u64(&self) -> u64 {
        self.0.next_u64()
    }

    /// A draw in `0..n` (`0` when `n` is 0).
    #[must_use]
    pub fn below(&self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// `true` with probability `p`.
    #[must_use]
    pub fn chance(&self, p: f64) -> bool {
        self.0.jitter().fraction() < p
    }

    /// An index into `weights`, drawn in proportion to them (`None` if they are all 0).
    #[must_use]
    pub fn weighted(&self, weights: &[u64]) -> Option<usize> {
        let total: u64 = weights.iter().sum();
        if total == 0 {
            return None;
        }
        let mut draw = self.below(total);
        weights.iter().position(|&w| {
            if draw < w {
                true
            } else {
                draw -= w;
                false
            }
        })
    }
}

impl RandomSource for Dice {
    fn jitter(&self) -> ordership_domain::Jitter {
        self.0.jitter()
    }
}

/// The simulated time, in microseconds since the run's epoch (2026-01-01).
#[derive(Debug, Default)]
pub struct WorldTime(AtomicI64);

impl WorldTime {
    #[must_use]
    pub fn micros(&self) -> i64 {
        self.0.load(Relaxed)
    }

    pub fn advance(&self, micros: i64) {
        self.0.fetch_add(micros.max(0), Relaxed);
    }

    fn at(&self, skew: i64) -> DateTime<Utc> {
        epoch() + Duration::microseconds(self.micros() + skew)
    }
}

fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default()
}

/// One process's clock: the world's time plus its skew (a clock jump moves the skew).
#[derive(Debug)]
pub struct ProcessClock {
    world: Arc<WorldTime>,
    skew: AtomicI64,
}

impl ProcessClock {
    #[must_use]
    pub fn new(world: Arc<WorldTime>) -> Self {
        Self {
            world,
            skew: AtomicI64::new(0),
        }
    }

    /// Moves this clock `micros` away from the world's time (negative: behind it).
    pub fn jump_to_skew(&self, micros: i64) {
        self.skew.store(micros, Relaxed);
    }
}

impl Clock for ProcessClock {
    fn now(&self) -> DateTime<Utc> {
        self.world.at(self.skew.load(Relaxed))
    }
}

/// Ids from the seed: UUID v7 with the process's time and the seed's bits.
#[derive(Debug)]
pub struct SeededIds {
    clock: Arc<ProcessClock>,
    dice: Arc<Dice>,
}

impl SeededIds {
    #[must_use]
    pub const fn new(clock: Arc<ProcessClock>, dice: Arc<Dice>) -> Self {
        Self { clock, dice }
    }
}

impl IdGenerator for SeededIds {
    fn new_id(&self) -> Uuid {
        let millis = u64::try_from(self.clock.now().timestamp_millis()).unwrap_or_default();
        let mut bytes = [0_u8; 10];
        bytes[..8].copy_from_slice(&self.dice.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.dice.next_u64().to_le_bytes()[..2]);
        uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_draws_never_pick_a_zero_weight() {
        let dice = Dice::new(3);
        for _ in 0..1000 {
            assert_ne!(dice.weighted(&[2, 0, 5]), Some(1));
        }
        assert_eq!(dice.weighted(&[0, 0]), None);
    }

    #[test]
    fn ids_and_skewed_clocks_follow_the_seed() {
        let ids = |seed| {
            let world = Arc::new(WorldTime::default());
            let clock = Arc::new(ProcessClock::new(Arc::clone(&world)));
            clock.jump_to_skew(-5_000_000);
            let ids = SeededIds::new(Arc::clone(&clock), Arc::new(Dice::new(seed)));
            world.advance(1_000);
            (clock.now(), ids.new_id(), ids.new_id())
        };
        assert_eq!(ids(1), ids(1));
        assert_ne!(ids(1).1, ids(2).1);
        assert!(ids(1).0 < epoch());
    }
}
