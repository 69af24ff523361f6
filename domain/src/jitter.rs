//! Jitter: spreading waits at random so that retries which began together do not end together.
//!
//! After an outage every partition's consumer and every overdue saga would otherwise retry on the
//! same schedule, in lockstep, and hit the recovering dependency all at once ("full jitter": the
//! wait is drawn uniformly between nothing and its exponential ceiling). The draws come from a
//! [`RandomSource`](crate::ports::RandomSource) handed in, never from a global generator, so a
//! test or a deterministic simulation decides them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A draw in `[0, 1]`: the share of a wait's ceiling that is waited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter(f64);

impl Jitter {
    /// No spreading: the whole ceiling is waited (the schedule without jitter).
    pub const NONE: Self = Self(1.0);

    /// The share `fraction` of a ceiling, clamped to `[0, 1]` (NaN: the whole ceiling).
    #[must_use]
    pub const fn new(fraction: f64) -> Self {
        if fraction.is_nan() {
            Self::NONE
        } else {
            Self(fraction.clamp(0.0, 1.0))
        }
    }

    #[must_use]
    pub const fn fraction(self) -> f64 {
        self.0
    }

    /// This draw's share of `ceiling`.
    #[must_use]
    pub fn of(self, ceiling: Duration) -> Duration {
        ceiling.mul_f64(self.0)
    }
}

/// A small, fast generator of draws (SplitMix64), seeded by whoever makes it: the same seed
/// gives the same draws on every machine. Not for secrets.
#[derive(Debug)]
pub struct SeededRandom {
    state: AtomicU64,
}

impl SeededRandom {
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// Seeded from the process's random hashing keys (which the standard library takes from the
    /// operating system): different in every process, so instances do not retry in step.
    #[must_use]
    pub fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u64(0x6f72_6465_7273_6869);
        Self::new(hasher.finish())
    }

    /// Starts the draws again from `seed` (a service made with its own generator, handed the
    /// seed of a test or a simulation).
    pub fn reseed(&self, seed: u64) {
        self.state.store(seed, Ordering::Relaxed);
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next draw, uniform in `[0, 1)`.
    pub fn jitter(&self) -> Jitter {
        // The top 53 bits: every value a f64 in [0, 1) can hold at that spacing.
        Jitter::new((self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_draws_and_another_seed_others() {
        let draws = |seed| {
            let random = SeededRandom::new(seed);
            (0..5).map(|_| random.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn draws_spread_over_the_whole_range() {
        let random = SeededRandom::new(42);
        let draws: Vec<f64> = (0..10_000).map(|_| random.jitter().fraction()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        for decile in 0..10 {
            let low = f64::from(decile) / 10.0;
            let n = draws
                .iter()
                .filter(|d| (low..low + 0.1).contains(*d))
                .count();
            assert!((800..1200).contains(&n), "decile {decile}: {n} of 10,000");
        }
    }

    #[test]
    fn a_jitter_is_a_share_of_the_ceiling() {
        let ceiling = Duration::from_millis(800);
        assert_eq!(Jitter::new(0.25).of(ceiling), Duration::from_millis(200));
        assert_eq!(Jitter::NONE.of(ceiling), ceiling);
        assert_eq!(Jitter::new(-3.0).of(ceiling), Duration::ZERO);
        assert_eq!(Jitter::new(f64::NAN), Jitter::NONE);
    }
}
