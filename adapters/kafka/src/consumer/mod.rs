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
use std::time::Duration;

use ordership_application::{ConsumerLoop, ConsumerStats, DeadLetterIndex, ShutdownTrigger};
use ordership_domain::RetryPolicy;
use ordership_domain::ports::MessageHandler;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message as _, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::connection::Connection;
use crate::namespace::Namespace;

mod health;
mod worker;

pub use health::ConsumerHealth;
use worker::{store, worker};

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The cluster, and the settings passed through to librdkafka.
    pub connection: Connection,
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
    /// Where what it dead-letters is also recorded (the consuming service's store).
    pub dead_letter_index: Option<DeadLetterIndex>,
}

impl ConsumerConfig {
    #[must_use]
    pub fn new(brokers: &str, group: &str, topics: &[&str]) -> Self {
        Self::on(Connection::new(brokers), group, topics)
    }

    /// Default settings on `connection`.
    #[must_use]
    pub fn on(connection: Connection, group: &str, topics: &[&str]) -> Self {
        Self {
            connection,
            namespace: Namespace::default(),
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            retry: RetryPolicy::default(),
            store_offset_before_handling: false,
            health: Arc::default(),
            instance_id: None,
            dead_letter_index: None,
        }
    }

    fn client_config(&self) -> ClientConfig {
        // A crashed member's partitions move on after its session timeout: 6 s (the brokers'
        // minimum) for a dynamic member; a static one keeps them for 30 s, so that a restart
        // within that gets them back without a rebalance.
        let session_timeout = if self.instance_id.is_some() {
            "30000"
        } else {
            "6000"
        };
        let mut config = ClientConfig::new();
        config
            // Tunables: the deployment may pass its own through.
            .set("session.timeout.ms", session_timeout)
            .set("auto.commit.interval.ms", "500")
            .set("auto.offset.reset", "earliest")
            .set("heartbeat.interval.ms", "500")
            // Latency over batching: the broker answers a fetch after 10 ms even with little data.
            .set("fetch.wait.max.ms", "10");
        let mut config = self.connection.over(config);
        // Guarantees, which `Connection` refuses to pass through.
        config
            .set("group.id", self.namespace.group(&self.group))
            // Offsets are stored by us, after the effect committed, and committed from there
            // in the background and on close.
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            // Incremental rebalances: a member joining or leaving moves only the partitions that
            // change owner; the others keep being consumed throughout.
            .set("partition.assignment.strategy", "cooperative-sticky")
            // Readiness reads the group state from these (see `ConsumerHealth`).
            .set("statistics.interval.ms", "1000");
        if let Some(id) = &self.instance_id {
            config.set("group.instance.id", id);
        }
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
    let dlq: FutureProducer = crate::publisher::ProducerConfig::on(config.connection.clone())
        .client_config()
        .create()?;
    let handling = ConsumerLoop::new(&config.group, handler, config.retry.clone(), stats)
        .with_dead_letter_index(config.dead_letter_index.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// At-least-once is these settings (with storing after the effect, which the crash tests
    /// check): a change here must be deliberate.
    #[test]
    fn offsets_are_stored_by_ordership_and_committed_by_librdkafka() {
        let config = ConsumerConfig {
            namespace: Namespace::new("ns."),
            ..ConsumerConfig::new("k:9092", "orders", &["t"])
        }
        .client_config();
        for (key, value) in [
            ("bootstrap.servers", "k:9092"),
            ("group.id", "ns.orders"),
            ("enable.auto.offset.store", "false"),
            ("enable.auto.commit", "true"),
            ("auto.offset.reset", "earliest"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("statistics.interval.ms", "1000"),
            ("session.timeout.ms", "6000"),
            ("allow.auto.create.topics", "false"),
        ] {
            assert_eq!(config.get(key), Some(value), "{key}");
        }
        assert_eq!(config.get("group.instance.id"), None);
        assert!(!ConsumerConfig::new("k", "g", &["t"]).store_offset_before_handling);
    }

    #[test]
    fn a_static_member_keeps_its_partitions_through_a_restart_of_up_to_30_s() {
        let config = ConsumerConfig {
            instance_id: Some("order-service-0".into()),
            ..ConsumerConfig::new("k:9092", "orders", &["t"])
        }
        .client_config();
        assert_eq!(config.get("group.instance.id"), Some("order-service-0"));
        assert_eq!(config.get("session.timeout.ms"), Some("30000"));
    }
}
