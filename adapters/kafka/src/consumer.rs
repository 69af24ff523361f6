//! Consumers in a consumer group, at least once: a message's offset is stored only after its
//! handler committed (or it was dead-lettered), so a crash anywhere before replays it and the
//! handler's inbox discards what was already done. Partitions are processed concurrently, each
//! in order, by one worker per partition, each running the application's one
//! [`ConsumerLoop`]: failed handler calls are retried with backoff without moving on, or sent to
//! `<topic>.dlq` with the reason in their headers, after which the partition moves on.
//!
//! Rebalances: when partitions are revoked, their workers are told to stop at once. Each
//! finishes the message in hand and drops its queue, so a partition's next owner is the only
//! one to start its messages; what was queued here is replayed there. A partition that comes
//! back starts a new worker only after the old one has finished, so it stays in order.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ordership_application::{
    ConsumerLoop, ConsumerStats, DeadLetterSink, Shutdown, ShutdownTrigger,
};
use ordership_domain::ports::{BoxError, MessageHandler};
use ordership_domain::{RetryPolicy, topics};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::envelope;
use crate::namespace::Namespace;

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    /// Where the topics and the group live on the cluster.
    pub namespace: Namespace,
    /// The logical consumer group.
    pub group: String,
    /// The logical topics.
    pub topics: Vec<String>,
    /// Retries and dead-lettering of failed handler calls.
    pub retry: RetryPolicy,
    /// UNSAFE, for the mutation test only: store the offset on receipt, *before* handling, which
    /// loses the messages received but not yet handled when the process dies. The crash test
    /// must go red with it.
    pub store_offset_before_handling: bool,
    /// Where the consumer reports whether it is a live member of its group (for readiness).
    pub health: Arc<ConsumerHealth>,
    /// Static group membership (KIP-345): this instance's stable identity (a pod or container
    /// name). A restarted instance with the same id gets its partitions back without a
    /// rebalance, if it returns within the session timeout (then 30 s). Unset: dynamic
    /// membership, a 6 s session timeout. Must be unique among the group's live members.
    pub instance_id: Option<String>,
}

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

    fn record(&self, statistics: &[u8]) {
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
    fn reset(&self) {
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
    fn out_of_group_for(&self) -> Duration {
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

impl ConsumerConfig {
    #[must_use]
    pub fn new(brokers: &str, group: &str, topics: &[&str]) -> Self {
        Self {
            brokers: brokers.to_owned(),
            namespace: Namespace::default(),
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            retry: RetryPolicy::default(),
            store_offset_before_handling: false,
            health: Arc::default(),
            instance_id: None,
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", self.namespace.group(&self.group))
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            // Offsets are stored by us, after the effect committed.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Incremental rebalances: a member joining or leaving moves only the partitions that
            // change owner; the others keep being consumed throughout.
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("heartbeat.interval.ms", "500")
            // Readiness reads the group state from these (see `ConsumerHealth`).
            .set("statistics.interval.ms", "1000")
            // Latency over batching: the broker answers a fetch after 10 ms even with little data.
            .set("fetch.wait.max.ms", "10");
        match &self.instance_id {
            // A restart within the session timeout keeps the member's partitions.
            Some(id) => config
                .set("group.instance.id", id)
                .set("session.timeout.ms", "30000"),
            // A crashed member's partitions move on after this long (6 s is the brokers'
            // minimum).
            None => config.set("session.timeout.ms", "6000"),
        };
        config
    }
}

type Partition = (String, i32);

/// A partition's worker: its queue, its stop signal, its task.
struct Worker {
    queue: mpsc::Sender<OwnedMessage>,
    stop: ShutdownTrigger,
    task: JoinHandle<()>,
}

/// The partition workers, shared between the intake loop and the rebalance callback.
#[derive(Default)]
struct Workers {
    live: HashMap<Partition, Worker>,
    /// Workers told to stop that may still be finishing the message in hand.
    retiring: HashMap<Partition, JoinHandle<()>>,
}

impl Workers {
    /// Tells the worker of `partition` to stop after the message in hand; its queue is dropped.
    fn retire(&mut self, partition: &Partition) {
        if let Some(worker) = self.live.remove(partition) {
            worker.stop.trigger();
            // A partition has at most one retiring worker: a new one takes over its predecessor.
            self.retiring.insert(partition.clone(), worker.task);
        }
    }

    fn retire_all(&mut self) -> Vec<JoinHandle<()>> {
        let partitions: Vec<Partition> = self.live.keys().cloned().collect();
        for partition in &partitions {
            self.retire(partition);
        }
        self.retiring.drain().map(|(_, task)| task).collect()
    }
}

/// Stops the workers of revoked partitions before the rebalance completes.
struct RebalanceContext {
    workers: Arc<Mutex<Workers>>,
    stats: Arc<ConsumerStats>,
    health: Arc<ConsumerHealth>,
    group: String,
}

impl ClientContext for RebalanceContext {
    fn stats_raw(&self, statistics: &[u8]) {
        self.health.record(statistics);
    }
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
            for element in revoked.elements() {
                self.stats
                    .partitions_revoked
                    .fetch_add(1, Ordering::Relaxed);
                workers.retire(&(element.topic().to_owned(), element.partition()));
            }
            tracing::info!(group = %self.group, partitions = revoked.count(), "partitions revoked");
        }
    }
}

struct Shared {
    consumer: StreamConsumer<RebalanceContext>,
    dlq: FutureProducer,
    handling: ConsumerLoop,
    config: ConsumerConfig,
}

/// Consumes until `shutdown` resolves, then lets each worker finish the message in hand and
/// commits the stored offsets.
///
/// A consumer that has not been a member of its group for [`REBUILD_AFTER`] (its broker went
/// away and came back elsewhere, its coordinator is gone) is closed and built again from the
/// bootstrap servers: the new member joins the group, and what the old one had not committed is
/// replayed (the inboxes discard it).
///
/// # Errors
/// An invalid configuration or subscription.
pub async fn consume(
    config: ConsumerConfig,
    handler: Arc<dyn MessageHandler>,
    stats: Arc<ConsumerStats>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KafkaError> {
    tokio::pin!(shutdown);
    loop {
        match run_client(
            &config,
            Arc::clone(&handler),
            Arc::clone(&stats),
            &mut shutdown,
        )
        .await?
        {
            Ended::Shutdown => return Ok(()),
            Ended::NotAMember => {
                stats.consumers_rebuilt.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(group = %config.group, after_s = REBUILD_AFTER.as_secs(),
                    "the consumer lost its group and did not get back in: building it again");
            }
        }
    }
}

/// A consumer not in its group for this long is built again.
const REBUILD_AFTER: Duration = Duration::from_secs(15);

/// Why one client's run ended.
enum Ended {
    Shutdown,
    NotAMember,
}

/// One client's life: subscribe, hand messages to the partition workers, and end on shutdown or
/// when the client has been out of its group for too long.
async fn run_client(
    config: &ConsumerConfig,
    handler: Arc<dyn MessageHandler>,
    stats: Arc<ConsumerStats>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Ended, KafkaError> {
    let workers = Arc::new(Mutex::new(Workers::default()));
    config.health.reset();
    let consumer: StreamConsumer<RebalanceContext> =
        config
            .client_config()
            .create_with_context(RebalanceContext {
                workers: Arc::clone(&workers),
                stats: Arc::clone(&stats),
                health: Arc::clone(&config.health),
                group: config.group.clone(),
            })?;
    let topics: Vec<String> = config
        .topics
        .iter()
        .map(|t| config.namespace.topic(t))
        .collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let dlq: FutureProducer = crate::publisher::ProducerConfig::new(&config.brokers)
        .client_config()
        .create()?;
    let handling = ConsumerLoop::new(&config.group, handler, config.retry.clone(), stats);
    let shared = Arc::new(Shared {
        consumer,
        dlq,
        handling,
        config: config.clone(),
    });
    let mut membership = tokio::time::interval(Duration::from_secs(1));
    let ended = loop {
        // Rebalance and statistics callbacks run inside `recv`, on this task.
        let received = tokio::select! {
            () = shutdown.as_mut() => break Ended::Shutdown,
            _ = membership.tick() => {
                if config.health.out_of_group_for() > REBUILD_AFTER {
                    break Ended::NotAMember;
                }
                continue;
            }
            received = shared.consumer.recv() => received.map(|m| m.detach()),
        };
        let message = match received {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, group = %shared.config.group, "consumer error");
                tokio::time::sleep(shared.config.retry.initial_backoff).await;
                continue;
            }
        };
        if shared.config.store_offset_before_handling {
            store(&shared, &message);
        }
        let queue = {
            let mut workers = workers.lock().unwrap_or_else(PoisonError::into_inner);
            let workers = &mut *workers;
            let partition = (message.topic().to_owned(), message.partition());
            let previous = workers.retiring.remove(&partition);
            workers
                .live
                .entry(partition)
                .or_insert_with(|| {
                    let (queue, rx) = mpsc::channel(256);
                    let (stop, stopped) = ShutdownTrigger::new();
                    let task = tokio::spawn(worker(Arc::clone(&shared), rx, stopped, previous));
                    Worker { queue, stop, task }
                })
                .queue
                .clone()
        };
        // A worker stuck on a failing message fills its queue; waiting here then pauses intake.
        if queue.send(message).await.is_err() {
            tracing::debug!(
                "a partition worker stopped; the message is replayed by the next owner"
            );
        }
    };
    // Workers finish the message in hand; queued ones are left unstored, to be replayed.
    let tasks = workers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retire_all();
    for task in tasks {
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "partition worker ended abnormally");
        }
    }
    close(shared, CLOSE_TIMEOUT).await;
    Ok(ended)
}

/// How long a stopping consumer may take to commit its offsets and leave its group.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Commits the stored offsets and leaves the group, on a thread of its own: librdkafka blocks
/// while it does, and without a reachable broker it would block for good. After `timeout` the
/// process goes on without it: the group notices the member is gone after its session timeout,
/// and the uncommitted messages are replayed (the inboxes discard them).
async fn close(shared: Arc<Shared>, timeout: Duration) {
    let (done, closed) = tokio::sync::oneshot::channel();
    let group = shared.config.group.clone();
    let spawned = std::thread::Builder::new()
        .name("kafka-consumer-close".into())
        .spawn(move || {
            match shared.consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(())
                | Err(KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "final offset commit failed; the next owner replays");
                }
            }
            drop(shared);
            let _ = done.send(());
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to close the consumer");
        return;
    }
    if tokio::time::timeout(timeout, closed).await.is_err() {
        tracing::warn!(%group, timeout_s = timeout.as_secs(),
            "the consumer did not leave its group in time (broker unreachable?); going on without");
    }
}

async fn worker(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<OwnedMessage>,
    mut stop: Shutdown,
    previous: Option<JoinHandle<()>>,
) {
    // The partition's previous worker may still be finishing a message: keep the order.
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    loop {
        let record = tokio::select! {
            record = queue.recv() => record,
            () = stop.requested() => None,
        };
        let Some(record) = record else { return };
        if stop.is_requested() {
            return;
        }
        let topic = shared.config.namespace.logical(record.topic());
        let decoded = envelope::decode(topic, record.key(), record.headers(), record.payload())
            .map_err(|e| e.to_string());
        let dead_letters = DeadLetterTopic {
            shared: &shared,
            record: &record,
        };
        if !shared
            .handling
            .process(
                decoded.as_ref().map_err(String::as_str),
                &mut stop,
                &dead_letters,
            )
            .await
        {
            // Stopped while the message kept failing: not stored, so it is replayed.
            return;
        }
        if !shared.config.store_offset_before_handling {
            store(&shared, &record);
        }
    }
}

/// Marks the record done; auto-commit sends the stored offsets to the broker.
fn store(shared: &Shared, record: &OwnedMessage) {
    if let Err(e) =
        shared
            .consumer
            .store_offset(record.topic(), record.partition(), record.offset())
    {
        // The partition was revoked meanwhile: its next owner replays the record (the inbox
        // discards it), so nothing is lost.
        tracing::debug!(error = %e, topic = record.topic(), partition = record.partition(), "offset not stored");
    }
}

/// `<topic>.dlq`, for the record in hand: the record as it came, with the reason and its
/// original position in the headers.
struct DeadLetterTopic<'a> {
    shared: &'a Shared,
    record: &'a OwnedMessage,
}

#[async_trait]
impl DeadLetterSink for DeadLetterTopic<'_> {
    async fn park(&self, reason: &str) -> Result<(), BoxError> {
        let (shared, record) = (self.shared, self.record);
        let dlq_topic = topics::dead_letter(record.topic());
        let partition = record.partition().to_string();
        let offset = record.offset().to_string();
        let group = shared.config.namespace.group(&shared.config.group);
        let mut headers = OwnedHeaders::new();
        if let Some(original) = record.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let headers = headers
            .insert(Header {
                key: "dlq_reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "dlq_original_topic",
                value: Some(record.topic()),
            })
            .insert(Header {
                key: "dlq_original_partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "dlq_original_offset",
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: "dlq_consumer_group",
                value: Some(group.as_str()),
            });
        let mut out = FutureRecord::to(&dlq_topic).headers(headers);
        if let Some(key) = record.key() {
            out = out.key(key);
        }
        if let Some(payload) = record.payload() {
            out = out.payload(payload);
        }
        shared
            .dlq
            .send(out, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(e, _)| Box::new(e) as BoxError)
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
