//! Consumers in a consumer group, at least once: a message's offset is stored only after its
//! handler committed (or it was dead-lettered), so a crash anywhere before replays it and the
//! handler's inbox discards what was already done. Partitions are processed concurrently, each
//! in order, by one worker per partition. Transient failures are retried with backoff without
//! moving on; undecodable, unknown or permanently failing messages go to `<topic>.dlq` with the
//! reason in their headers, and the partition moves on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ordership_domain::ports::{HandleError, HandleOutcome, MessageHandler};
use ordership_domain::topics;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::envelope;

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    pub group: String,
    pub topics: Vec<String>,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// UNSAFE, for the mutation test only: store the offset on receipt, *before* handling, which
    /// loses the messages received but not yet handled when the process dies. The crash test
    /// must go red with it.
    pub store_offset_before_handling: bool,
}

impl ConsumerConfig {
    #[must_use]
    pub fn new(brokers: &str, group: &str, topics: &[&str]) -> Self {
        Self {
            brokers: brokers.to_owned(),
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            store_offset_before_handling: false,
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            // Offsets are stored by us, after the effect committed.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A crashed member's partitions move on after this long (6 s is the brokers' minimum).
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            // Latency over batching: the broker answers a fetch after 10 ms even with little data.
            .set("fetch.wait.max.ms", "10");
        config
    }
}

/// What consumers did, for metrics.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub handled: AtomicU64,
    pub duplicates_discarded: AtomicU64,
    pub transient_failures: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Sum of handling times, for the mean.
    pub processing_micros: AtomicU64,
}

type Partition = (String, i32);

struct Shared {
    closing: std::sync::atomic::AtomicBool,
    consumer: StreamConsumer,
    dlq: FutureProducer,
    handler: Arc<dyn MessageHandler>,
    stats: Arc<ConsumerStats>,
    config: ConsumerConfig,
}

/// Consumes until `shutdown` resolves, then lets each worker finish the message in hand and
/// commits the stored offsets.
///
/// # Errors
/// An invalid configuration or subscription.
pub async fn consume(
    config: ConsumerConfig,
    handler: Arc<dyn MessageHandler>,
    stats: Arc<ConsumerStats>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KafkaError> {
    let consumer: StreamConsumer = config.client_config().create()?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let dlq: FutureProducer = crate::publisher::ProducerConfig::new(&config.brokers)
        .client_config()
        .create()?;
    let shared = Arc::new(Shared {
        closing: std::sync::atomic::AtomicBool::new(false),
        consumer,
        dlq,
        handler,
        stats,
        config,
    });
    let mut workers: HashMap<Partition, (mpsc::Sender<OwnedMessage>, JoinHandle<()>)> =
        HashMap::new();
    tokio::pin!(shutdown);
    loop {
        let received = tokio::select! {
            () = &mut shutdown => break,
            received = shared.consumer.recv() => received.map(|m| m.detach()),
        };
        let message = match received {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, group = %shared.config.group, "consumer error");
                tokio::time::sleep(shared.config.initial_backoff).await;
                continue;
            }
        };
        if shared.config.store_offset_before_handling {
            store(&shared, &message);
        }
        let partition = (message.topic().to_owned(), message.partition());
        let (sender, _) = workers.entry(partition).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(256);
            (tx, tokio::spawn(worker(Arc::clone(&shared), rx)))
        });
        // A worker stuck on a transient failure fills its queue; waiting here then pauses intake.
        if sender.send(message).await.is_err() {
            tracing::error!("a partition worker stopped unexpectedly");
        }
    }
    // Workers finish the message in hand; queued ones are left unstored, to be replayed.
    shared.closing.store(true, Ordering::SeqCst);
    for (_, (sender, handle)) in workers.drain() {
        drop(sender);
        if let Err(e) = handle.await {
            tracing::warn!(error = %e, "partition worker ended abnormally");
        }
    }
    match shared.consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "final offset commit failed; the next owner replays"),
    }
    Ok(())
}

async fn worker(shared: Arc<Shared>, mut rx: mpsc::Receiver<OwnedMessage>) {
    while let Some(record) = rx.recv().await {
        if shared.closing.load(Ordering::SeqCst) {
            return;
        }
        let started = Instant::now();
        let decoded = envelope::decode(
            record.topic(),
            record.key(),
            record.headers(),
            record.payload(),
        );
        match decoded {
            Err(e) => dead_letter(&shared, &record, &e.to_string()).await,
            Ok(message) => {
                let mut backoff = shared.config.initial_backoff;
                loop {
                    match shared.handler.handle(&message).await {
                        Ok(outcome) => {
                            shared.stats.handled.fetch_add(1, Ordering::Relaxed);
                            if outcome == HandleOutcome::Duplicate {
                                shared
                                    .stats
                                    .duplicates_discarded
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            break;
                        }
                        Err(HandleError::Transient(error)) => {
                            shared
                                .stats
                                .transient_failures
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(group = %shared.config.group, message_id = %message.id, error = %error,
                                retry_in_ms = backoff.as_millis(), "transient failure, retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(shared.config.max_backoff);
                        }
                        Err(HandleError::Permanent(reason)) => {
                            dead_letter(&shared, &record, &reason).await;
                            break;
                        }
                    }
                }
            }
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        shared
            .stats
            .processing_micros
            .fetch_add(micros, Ordering::Relaxed);
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

/// Parks a record on `<topic>.dlq` with the reason, retrying until the broker has it.
async fn dead_letter(shared: &Shared, record: &OwnedMessage, reason: &str) {
    let dlq_topic = topics::dead_letter(record.topic());
    let partition = record.partition().to_string();
    let offset = record.offset().to_string();
    let mut backoff = shared.config.initial_backoff;
    tracing::error!(
        topic = record.topic(),
        partition = record.partition(),
        offset = record.offset(),
        reason,
        "message dead-lettered"
    );
    loop {
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
                value: Some(shared.config.group.as_str()),
            });
        let mut out = FutureRecord::to(&dlq_topic).headers(headers);
        if let Some(key) = record.key() {
            out = out.key(key);
        }
        if let Some(payload) = record.payload() {
            out = out.payload(payload);
        }
        match shared.dlq.send(out, Duration::from_secs(10)).await {
            Ok(_) => {
                shared.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err((e, _)) => {
                tracing::warn!(error = %e, "cannot write to the dead-letter topic, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(shared.config.max_backoff);
            }
        }
    }
}
