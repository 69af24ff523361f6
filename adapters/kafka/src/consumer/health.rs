//! Whether a consumer is a live member of its group, judged from librdkafka's statistics.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long librdkafka's statistics may be missing before the consumer counts as no longer
/// polling (they arrive every second, on the consumer's own poll).
const STATS_STALE_AFTER: Duration = Duration::from_secs(10);

/// Whether a consumer is a live member of its group, from librdkafka's statistics (emitted
/// every second, and only while the consumer polls): ready while the group state is `up`, which
/// it is also when the member owns no partitions.
#[derive(Debug, Default)]
pub struct ConsumerHealth(Mutex<Membership>);

/// What the statistics told so far, all under one lock.
#[derive(Debug, Default)]
struct Membership {
    /// When the last statistics arrived, and the group state they gave.
    last: Option<(Instant, String)>,
    /// When the consumer was last seen in its group, or was (re)built.
    seen_in_group: Option<Instant>,
    /// Since when the consumer has been in its group without a break.
    up_since: Option<Instant>,
}

/// The part of librdkafka's statistics JSON that readiness reads.
#[derive(serde::Deserialize)]
struct GroupStats {
    cgrp: Option<GroupState>,
}

#[derive(serde::Deserialize)]
struct GroupState {
    state: String,
}

impl ConsumerHealth {
    fn membership(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn record(&self, statistics: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<GroupStats>(statistics) else {
            return;
        };
        let state = stats.cgrp.map_or_else(String::new, |g| g.state);
        let now = Instant::now();
        let mut m = self.membership();
        let previous = m.last.as_ref().map(|(_, s)| s.as_str());
        if previous != Some(state.as_str()) {
            tracing::info!(from = previous.unwrap_or("-"), to = %state, "consumer group state");
        }
        if state == "up" {
            m.seen_in_group = Some(now);
            m.up_since.get_or_insert(now);
        } else {
            m.up_since = None;
        }
        m.last = Some((now, state));
    }

    /// A new client starts: not yet in its group, and not yet out of it either.
    pub(super) fn reset(&self) {
        *self.membership() = Membership {
            seen_in_group: Some(Instant::now()),
            ..Membership::default()
        };
    }

    /// Whether the consumer has been in its group, polling, for at least `settled` without a
    /// break (long enough to have taken in what waited for it).
    #[must_use]
    pub fn in_group_for(&self, settled: Duration) -> bool {
        let m = self.membership();
        Self::judge(&m).is_ok() && m.up_since.is_some_and(|at| at.elapsed() >= settled)
    }

    /// How long since the consumer was last seen in its group (or was built).
    pub(super) fn out_of_group_for(&self) -> Duration {
        self.membership()
            .seen_in_group
            .map_or(Duration::ZERO, |at| at.elapsed())
    }

    /// `Ok` while the consumer polls and is a member of its group; else why not, in words safe
    /// to show.
    ///
    /// # Errors
    /// The reason the consumer is not live.
    pub fn check(&self) -> Result<(), &'static str> {
        Self::judge(&self.membership())
    }

    fn judge(m: &Membership) -> Result<(), &'static str> {
        match &m.last {
            None => Err("starting"),
            Some((at, _)) if at.elapsed() > STATS_STALE_AFTER => Err("not polling"),
            Some((_, state)) if state == "up" => Ok(()),
            Some(_) => Err("not a member of its group (broker unreachable?)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(state: &str) -> Vec<u8> {
        format!(r#"{{"name": "c#1", "cgrp": {{"state": "{state}", "join_state": "steady"}}}}"#)
            .into_bytes()
    }

    #[test]
    fn a_consumer_is_live_while_its_statistics_say_it_is_in_its_group() {
        let health = ConsumerHealth::default();
        assert_eq!(health.check(), Err("starting"));
        assert!(!health.in_group_for(Duration::ZERO));

        health.record(&stats("up"));
        assert_eq!(health.check(), Ok(()));
        assert!(health.in_group_for(Duration::ZERO));
        assert!(
            !health.in_group_for(Duration::from_secs(3600)),
            "just joined"
        );

        health.record(&stats("query-coord"));
        assert!(health.check().is_err());
        assert!(!health.in_group_for(Duration::ZERO), "out of the group");
        assert!(health.out_of_group_for() < Duration::from_secs(60));

        health.record(&stats("up"));
        assert!(health.in_group_for(Duration::ZERO), "back in");
        health.record(b"not json");
        assert_eq!(
            health.check(),
            Ok(()),
            "unreadable statistics change nothing"
        );
    }
}
