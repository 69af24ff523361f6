//! An in-process message bus with Kafka's delivery semantics, for the embedded mode and tests.
//!
//! Each topic has a fixed number of partitions; a message goes to the partition of its key, so
//! messages with one key are handled in order. Every subscription (a consumer group) has one
//! worker per partition: partitions are processed concurrently, each in order. A failed handler
//! call is judged by the [`RetryPolicy`] every transport shares: retried with backoff without
//! moving on, or the message is parked in the dead-letter list and the partition moves on. With `redelivery_probability > 0` the bus delivers
//! messages a second time at random, as Kafka does after a crash or rebalance, so consumers
//! must be idempotent.
//!
//! The bus keeps nothing: a message it holds is lost if the process dies. Over durable stores
//! set `acknowledge_after_handling`, so that `publish` returns only once every subscriber has
//! handled the batch: the relay then marks a message published only after its effect committed,
//! and a crash leaves it in the outbox to be sent again.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use ordership_application::{
    ConsumerLoop, ConsumerStats, DeadLetterIndex, DeadLetterSink, Shutdown, ShutdownTrigger,
};
use ordership_domain::ports::{BoxError, MessageHandler, MessagePublisher, PublishError};
use ordership_domain::{Message, RetryPolicy};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How the bus behaves.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Partitions per topic.
    pub partitions: usize,
    /// Chance (0.0–1.0) that a handled message is delivered once more.
    pub redelivery_probability: f64,
    /// Retries and dead-lettering of failed handler calls.
    pub retry: RetryPolicy,
    /// `publish` waits until every subscriber has handled (or dead-lettered) the batch.
    pub acknowledge_after_handling: bool,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            partitions: 4,
            redelivery_probability: 0.0,
            retry: RetryPolicy {
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_secs(1),
                ..RetryPolicy::default()
            },
            acknowledge_after_handling: false,
        }
    }
}

/// Counters of what the bus itself did; what its consumers did is in [`InProcessBus::consumer_stats`].
#[derive(Debug, Default)]
pub struct BusStats {
    pub published: AtomicU64,
    pub redelivered: AtomicU64,
}

/// A message that could not be processed, with the reason.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub group: String,
    pub message: Message,
    pub reason: String,
}

/// A message on its way to a worker, with whom to tell when it was handled.
type Envelope = (Message, Option<oneshot::Sender<()>>);

struct Subscription {
    partitions: Vec<mpsc::UnboundedSender<Envelope>>,
    workers: Vec<JoinHandle<()>>,
}

struct Inner {
    config: BusConfig,
    /// Pulled by `close`: workers stop after the message in hand.
    closing: ShutdownTrigger,
    closed: Shutdown,
    subscriptions: RwLock<HashMap<String, Vec<Subscription>>>,
    stats: BusStats,
    consumer_stats: Arc<ConsumerStats>,
    dead_letters: Mutex<Vec<DeadLetter>>,
}

/// The bus. Cheap to clone.
#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBus")
            .field("config", &self.inner.config)
            .field("stats", &self.inner.stats)
            .finish_non_exhaustive()
    }
}

impl InProcessBus {
    #[must_use]
    pub fn new(mut config: BusConfig) -> Self {
        config.partitions = config.partitions.max(1);
        let (closing, closed) = ShutdownTrigger::new();
        Self {
            inner: Arc::new(Inner {
                config,
                closing,
                closed,
                subscriptions: RwLock::default(),
                stats: BusStats::default(),
                consumer_stats: Arc::default(),
                dead_letters: Mutex::default(),
            }),
        }
    }

    /// Delivers every later message of `topic` to `handler`, as consumer group `group`.
    /// Must be called inside a Tokio runtime.
    pub fn subscribe(&self, topic: &str, group: &str, handler: &Arc<dyn MessageHandler>) {
        self.subscribe_indexed(topic, group, handler, None);
    }

    /// As [`InProcessBus::subscribe`], also recording what it dead-letters in `index`.
    pub fn subscribe_indexed(
        &self,
        topic: &str,
        group: &str,
        handler: &Arc<dyn MessageHandler>,
        index: Option<&DeadLetterIndex>,
    ) {
        let mut partitions = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..self.inner.config.partitions {
            let (tx, rx) = mpsc::unbounded_channel();
            partitions.push(tx);
            let worker = Worker {
                bus: Arc::clone(&self.inner),
                consumer: ConsumerLoop::new(
                    group,
                    Arc::clone(handler),
                    self.inner.config.retry.clone(),
                    Arc::clone(&self.inner.consumer_stats),
                )
                .with_dead_letter_index(index.cloned()),
                stop: self.inner.closed.clone(),
            };
            workers.push(tokio::spawn(worker.run(rx)));
        }
        self.inner
            .subscriptions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(topic.to_owned())
            .or_default()
            .push(Subscription {
                partitions,
                workers,
            });
    }

    #[must_use]
    pub fn stats(&self) -> &BusStats {
        &self.inner.stats
    }

    /// What the bus's consumers did (every subscription together).
    #[must_use]
    pub fn consumer_stats(&self) -> &Arc<ConsumerStats> {
        &self.inner.consumer_stats
    }

    #[must_use]
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.inner
            .dead_letters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops accepting messages, lets every worker finish the message in hand, and waits for
    /// them. Queued messages are dropped unhandled; their publishers (if they wait for the
    /// acknowledgement) see the bus closed and keep them for later.
    pub async fn close(&self) {
        self.inner.closing.trigger();
        let subscriptions = std::mem::take(
            &mut *self
                .inner
                .subscriptions
                .write()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for subscription in subscriptions.into_values().flatten() {
            drop(subscription.partitions);
            for worker in subscription.workers {
                if let Err(e) = worker.await {
                    tracing::warn!(error = %e, "bus worker ended abnormally");
                }
            }
        }
    }

    fn partition_of(&self, key: &str) -> usize {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        // The modulo result is below `partitions`, a usize.
        (hasher.finish() % self.inner.config.partitions as u64) as usize
    }
}

#[async_trait]
impl MessagePublisher for InProcessBus {
    async fn publish(&self, batch: &[Message]) -> Result<(), PublishError> {
        let closed = || PublishError::Unavailable("the bus is closed".into());
        let mut handled = Vec::new();
        {
            let subscriptions = self
                .inner
                .subscriptions
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for message in batch {
                let partition = self.partition_of(&message.key);
                for subscription in subscriptions.get(&message.topic).into_iter().flatten() {
                    let ack = self.inner.config.acknowledge_after_handling.then(|| {
                        let (tx, rx) = oneshot::channel();
                        handled.push(rx);
                        tx
                    });
                    subscription.partitions[partition]
                        .send((message.clone(), ack))
                        .map_err(|_| closed())?;
                }
                self.inner.stats.published.fetch_add(1, Ordering::Relaxed);
            }
        }
        for ack in handled {
            ack.await.map_err(|_| closed())?;
        }
        Ok(())
    }
}

struct Worker {
    bus: Arc<Inner>,
    consumer: ConsumerLoop,
    stop: Shutdown,
}

/// The bus's dead-letter list, for the message in hand.
struct DeadLetterList<'a> {
    bus: &'a Inner,
    group: &'a str,
    message: &'a Message,
}

#[async_trait]
impl DeadLetterSink for DeadLetterList<'_> {
    async fn park(&self, reason: &str) -> Result<(), BoxError> {
        self.bus
            .dead_letters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(DeadLetter {
                group: self.group.to_owned(),
                message: self.message.clone(),
                reason: reason.to_owned(),
            });
        Ok(())
    }
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Envelope>) {
        while let Some((message, ack)) = rx.recv().await {
            if self.stop.is_requested() {
                return;
            }
            if !self.deliver(&message).await {
                // Closing while the message was failing: unacknowledged, so it stays in the outbox.
                return;
            }
            let again = self.bus.config.redelivery_probability > 0.0
                && rand::rng().random_bool(self.bus.config.redelivery_probability.min(1.0));
            if again {
                self.bus.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                // The first delivery succeeded, so the message is acknowledged either way.
                let _ = self.deliver(&message).await;
            }
            if let Some(ack) = ack {
                // The publisher may have given up waiting; nothing to tell then.
                let _ = ack.send(());
            }
        }
    }

    /// Runs the consumer loop on the message: `true` once handled or dead-lettered.
    async fn deliver(&mut self, message: &Message) -> bool {
        let dead_letters = DeadLetterList {
            bus: &self.bus,
            group: self.consumer.group(),
            message,
        };
        self.consumer
            .process(Ok(message), &mut self.stop, &dead_letters)
            .await
    }
}

#[cfg(test)]
mod tests {
    //! What only the bus does. What every transport does (order, retries, dead letters) is the
    //! transport contract in `tests/src/transport.rs`, run against the bus and Kafka alike.

    use ordership_domain::ports::{HandleError, HandleOutcome};
    use ordership_domain::{MessageId, OrderId};
    use tokio::sync::Notify;

    use super::*;

    fn message(key: &str, n: u64) -> Message {
        Message {
            id: MessageId::from_uuid(uuid::Uuid::now_v7()),
            topic: "t".into(),
            key: key.into(),
            message_type: "test.v1".into(),
            source: "/test".into(),
            payload: serde_json::json!({ "n": n }),
            correlation_id: *OrderId::from_uuid(uuid::Uuid::now_v7()).as_uuid(),
            causation_id: None,
            traceparent: None,
            occurred_at: chrono::Utc::now(),
        }
    }

    /// Waits for the gate before handling each message.
    struct Gated(Arc<Notify>);

    #[async_trait]
    impl MessageHandler for Gated {
        async fn handle(&self, _: &Message) -> Result<HandleOutcome, HandleError> {
            self.0.notified().await;
            Ok(HandleOutcome::Applied)
        }
    }

    fn fast() -> BusConfig {
        BusConfig {
            retry: RetryPolicy {
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(5),
                max_attempts: 5,
            },
            ..BusConfig::default()
        }
    }

    /// Takes a while per message.
    struct Slow;

    #[async_trait]
    impl MessageHandler for Slow {
        async fn handle(&self, _: &Message) -> Result<HandleOutcome, HandleError> {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(HandleOutcome::Applied)
        }
    }

    #[tokio::test]
    async fn closing_finishes_the_message_in_hand_without_draining_the_queue() {
        let bus = InProcessBus::new(BusConfig {
            partitions: 1,
            ..fast()
        });
        let handler: Arc<dyn MessageHandler> = Arc::new(Slow);
        bus.subscribe("t", "g", &handler);
        let batch: Vec<_> = (0..500).map(|n| message("k", n)).collect();
        bus.publish(&batch).await.expect("publish");
        tokio::time::timeout(Duration::from_secs(2), bus.close())
            .await
            .expect("closing does not wait for 500 x 20 ms");
        assert!(bus.consumer_stats().handled.load(Ordering::Relaxed) < 100);
        assert!(
            bus.publish(&[message("k", 1)]).await.is_ok(),
            "no subscriber left: nothing to send to"
        );
    }

    #[tokio::test]
    async fn with_acknowledge_after_handling_publish_waits_for_the_handler() {
        for acknowledge_after_handling in [false, true] {
            let bus = InProcessBus::new(BusConfig {
                acknowledge_after_handling,
                ..fast()
            });
            let gate = Arc::new(Notify::new());
            let handler: Arc<dyn MessageHandler> = Arc::new(Gated(gate.clone()));
            bus.subscribe("t", "g", &handler);
            let batch = [message("k", 1)];
            let publish = bus.publish(&batch);
            let returned_early = tokio::time::timeout(Duration::from_millis(100), publish)
                .await
                .is_ok();
            // Without the acknowledgement, a crash now would lose a message already "published".
            assert_eq!(
                returned_early, !acknowledge_after_handling,
                "acknowledge_after_handling = {acknowledge_after_handling}"
            );
            gate.notify_one();
            if acknowledge_after_handling {
                tokio::time::timeout(Duration::from_secs(5), bus.publish(&[]))
                    .await
                    .expect("an empty batch needs no acknowledgement")
                    .expect("publish");
            }
        }
    }
}
