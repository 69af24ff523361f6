//! Whether a consumer is a live member of its group, judged from librdkafka's statistics.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long librdkafka's statistics may be missing before the consumer counts as no longer
/// polling (they arrive every second, on the consumer's own poll).
const STATS_STALE_AFTER: Duration = Duration::from_secs(10);

/// Whether a consumer is a live member of its group, from librdkafka's statistics (emitted
/// every second, and only while the consumer polls). A new client is live once it has *joined*
/// its group (state `up`, join state `steady`: the coordinator accepted it and the assignment
/// is in); it stays live through later rebalances while the coordinator is reachable, and stops
/// being live when it is not. A member that owns no partitions (more instances than
/// partitions) is live too: [`Self::assigned_partitions`] tells it apart.
#[derive(Debug, Default)]
pub struct ConsumerHealth(Mutex<Membership>);

/// What the statistics told so far, all under one lock.
#[derive(Debug, Default)]
struct Membership {
    /// When the last statistics arrived, and the group state they gave.
    last: Option<(Instant, String)>,
    /// When the consumer was last seen in touch with its group's coordinator, or was (re)built.
    seen_in_group: Option<Instant>,
    /// Since when the consumer has been in its group without a break (from its first steady
    /// join).
    up_since: Option<Instant>,
    /// How many partitions the last statistics said this member owns.
    assigned: u64,
    /// How many messages each of its partitions (topic, partition) holds past what it has
    /// consumed; partitions whose lag librdkafka does not know are left out.
    lags: std::collections::BTreeMap<(String, i32), u64>,
    /// How many rebalances (assignments or revocations) this client went through.
    rebalances: u64,
}

/// The part of librdkafka's statistics JSON that readiness reads.
#[derive(serde::Deserialize)]
struct GroupStats {
    cgrp: Option<GroupState>,
    #[serde(default)]
    topics: std::collections::HashMap<String, TopicStats>,
}

#[derive(serde::Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: std::collections::HashMap<String, PartitionStats>,
}

/// librdkafka says -1 for what it does not know (partitions it does not consume).
#[derive(serde::Deserialize)]
struct PartitionStats {
    #[serde(default)]
    consumer_lag: i64,
}

#[derive(serde::Deserialize)]
struct GroupState {
    state: String,
    #[serde(default)]
    join_state: String,
    #[serde(default)]
    assignment_size: u64,
    #[serde(default)]
    rebalance_cnt: u64,
}

impl ConsumerHealth {
    fn membership(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn record(&self, statistics: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<GroupStats>(statistics) else {
            return;
        };
        let lags = stats
            .topics
            .iter()
            .flat_map(|(topic, t)| {
                t.partitions.iter().filter_map(move |(partition, p)| {
                    // librdkafka's "-1" entry stands for messages not yet given a partition.
                    let partition = partition.parse::<i32>().ok().filter(|p| *p >= 0)?;
                    let lag = u64::try_from(p.consumer_lag).ok()?;
                    Some(((topic.clone(), partition), lag))
                })
            })
            .collect();
        let (state, joined, assigned, rebalances) =
            stats.cgrp.map_or((String::new(), false, 0, 0), |g| {
                let joined = g.state == "up" && g.join_state == "steady";
                (g.state, joined, g.assignment_size, g.rebalance_cnt)
            });
        let now = Instant::now();
        let mut m = self.membership();
        let previous = m.last.as_ref().map(|(_, s)| s.as_str());
        if previous != Some(state.as_str()) {
            tracing::info!(from = previous.unwrap_or("-"), to = %state, "consumer group state");
        }
        if state != "up" {
            m.up_since = None;
        } else if joined {
            m.up_since.get_or_insert(now);
        }
        if state == "up" {
            // In touch with its coordinator: joined, or on the way (a join may wait for the
            // group's other members to rejoin).
            m.seen_in_group = Some(now);
        }
        m.assigned = assigned;
        m.lags = lags;
        m.rebalances = rebalances;
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

    /// How many partitions this member owns, as of the last statistics.
    #[must_use]
    pub fn assigned_partitions(&self) -> u64 {
        self.membership().assigned
    }

    /// How many rebalances this member's client went through (from 0 again after a rebuild).
    #[must_use]
    pub fn rebalances(&self) -> u64 {
        self.membership().rebalances
    }

    /// How many messages this member's partitions hold past what it consumed, as of the last
    /// statistics.
    #[must_use]
    pub fn lag(&self) -> u64 {
        self.membership().lags.values().sum()
    }

    /// The lag of each partition this member consumes, `(topic, partition, messages)`, as of the
    /// last statistics (topic names as the broker knows them, namespace included).
    #[must_use]
    pub fn partition_lags(&self) -> Vec<(String, i32, u64)> {
        self.membership()
            .lags
            .iter()
            .map(|((topic, partition), lag)| (topic.clone(), *partition, *lag))
            .collect()
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
            Some((_, state)) if state != "up" => {
                Err("not a member of its group (broker unreachable?)")
            }
            Some(_) if m.up_since.is_none() => Err("joining its group"),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(state: &str) -> Vec<u8> {
        joining(state, "steady")
    }

    fn joining(state: &str, join_state: &str) -> Vec<u8> {
        format!(
            r#"{{"name": "c#1", "cgrp": {{"state": "{state}", "join_state": "{join_state}", "assignment_size": 2, "rebalance_cnt": 3}},
                "topics": {{"t": {{"partitions": {{"0": {{"consumer_lag": 5}}, "1": {{"consumer_lag": 2}}, "-1": {{"consumer_lag": -1}}}}}}}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_consumer_is_live_while_its_statistics_say_it_is_in_its_group() {
        let health = ConsumerHealth::default();
        assert_eq!(health.check(), Err("starting"));
        assert!(!health.in_group_for(Duration::ZERO));

        // The coordinator is reachable, but the member has not joined yet.
        health.record(&joining("up", "wait-join"));
        assert_eq!(health.check(), Err("joining its group"));
        health.record(&joining("up", "wait-sync"));
        assert_eq!(health.check(), Err("joining its group"));

        health.record(&stats("up"));
        assert_eq!(health.check(), Ok(()));
        assert_eq!(health.assigned_partitions(), 2);
        assert_eq!(health.lag(), 7, "unknown lags (-1) are left out");
        assert_eq!(
            health.partition_lags(),
            [("t".to_owned(), 0, 5), ("t".to_owned(), 1, 2)],
            "per partition, the unassigned entry (-1) left out"
        );
        assert_eq!(health.rebalances(), 3);
        health.record(&joining("up", "wait-join"));
        assert_eq!(
            health.check(),
            Ok(()),
            "a rebalance does not make a member unready"
        );
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
