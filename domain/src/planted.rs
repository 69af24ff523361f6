//! Known bugs planted on purpose, so that the deterministic simulator (`sim/`) can show it catches
//! them. Compiled in only with the test-only feature `planted-bugs`; without it [`active`] is a
//! constant `false` and every planted branch vanishes from the build.
//!
//! One bug at a time is chosen at run time, per thread ([`plant`]): a simulation runs on one
//! thread, so runs side by side can plant different bugs.

/// The bugs that can be planted, each where such a bug would really live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bug {
    /// The transport stores a message's offset before its handler committed the effect
    /// (the simulator's transport, `sim/src/broker.rs`).
    OffsetBeforeEffect,
    /// The handlers do not consult their inbox: a redelivered message takes effect again
    /// (`application/src/saga.rs`, `application/src/deliveries.rs`).
    InboxSkipped,
    /// The polling relay marks a batch published although the broker did not acknowledge it
    /// (`application/src/relay/poll.rs`).
    MarkBeforeAck,
    /// The saga takes a delivery's confirmation that arrives while it is cancelling as the end
    /// of the saga (`domain/src/saga/decide.rs`).
    StaleReply,
    /// A cancellation reply that reaches a compensated saga announces the order's cancellation
    /// again (`application/src/saga.rs`).
    CompensationTwice,
    /// An order placed with an admission does not take its units from the room's stock
    /// (`application/src/orders.rs`): the sale is oversold.
    StockNotTaken,
    /// The queue forgets the admissions of its current window (the memory queue,
    /// `adapters/memory/src/waiting_room.rs`): it admits beyond the room's rate.
    RateWindowForgotten,
}

impl Bug {
    /// Every plantable bug.
    pub const ALL: [Self; 7] = [
        Self::OffsetBeforeEffect,
        Self::InboxSkipped,
        Self::MarkBeforeAck,
        Self::StaleReply,
        Self::CompensationTwice,
        Self::StockNotTaken,
        Self::RateWindowForgotten,
    ];

    /// The bug's name on the command line (`offset-before-effect`, …).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::OffsetBeforeEffect => "offset-before-effect",
            Self::InboxSkipped => "inbox-skipped",
            Self::MarkBeforeAck => "mark-before-ack",
            Self::StaleReply => "stale-reply",
            Self::CompensationTwice => "compensation-twice",
            Self::StockNotTaken => "stock-not-taken",
            Self::RateWindowForgotten => "rate-window-forgotten",
        }
    }

    /// The bug named `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|bug| bug.name() == name)
    }
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    static PLANTED: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Plants `bug` (or none) for what runs on this thread from now on.
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Option<Bug>) {
    PLANTED.with(|planted| planted.set(bug));
}

/// Whether `bug` is planted on this thread.
#[cfg(feature = "planted-bugs")]
#[must_use]
pub fn active(bug: Bug) -> bool {
    PLANTED.with(|planted| planted.get() == Some(bug))
}

/// Plants nothing: a build without the feature `planted-bugs` has no bugs to plant.
#[cfg(not(feature = "planted-bugs"))]
pub const fn plant(_bug: Option<Bug>) {}

/// Whether `bug` is planted: never, in a build without the feature `planted-bugs`.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
#[must_use]
pub const fn active(_bug: Bug) -> bool {
    false
}

/// Whether this build can plant bugs (the feature `planted-bugs`).
pub const AVAILABLE: bool = cfg!(feature = "planted-bugs");

#[cfg(all(test, feature = "planted-bugs"))]
mod tests {
    use super::*;

    #[test]
    fn a_planted_bug_is_active_on_its_thread_only() {
        plant(Some(Bug::StaleReply));
        assert!(active(Bug::StaleReply));
        assert!(!active(Bug::InboxSkipped));
        let elsewhere = std::thread::spawn(|| active(Bug::StaleReply)).join();
        assert_eq!(elsewhere.ok(), Some(false));
        plant(None);
        assert!(!active(Bug::StaleReply));
    }

    #[test]
    fn every_bug_is_found_by_its_name() {
        for bug in Bug::ALL {
            assert_eq!(Bug::parse(bug.name()), Some(bug));
        }
    }
}
