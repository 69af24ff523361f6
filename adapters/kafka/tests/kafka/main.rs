//! The Kafka adapter against a real Kafka-protocol broker: `KAFKA_BROKERS` (scripts/test.sh starts
//! `ordership dev-broker`; any real cluster with topic auto-creation works too). Without a broker
//! these tests fail; they never skip. Every test uses its own topics and consumer group.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ordership_domain::ports::{HandleError, HandleOutcome, MessageHandler, MessagePublisher};
use ordership_domain::{Message, MessageId, topics};
use ordership_kafka::{ConsumerConfig, ConsumerStats, KafkaPublisher, ProducerConfig, consume};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;
use uuid::Uuid;

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("KAFKA_BROKERS is not set: these tests need a Kafka-protocol broker (scripts/test.sh starts `ordership dev-broker`)")
    })
}

fn unique(name: &str) -> String {
    format!("test.{name}.{}", Uuid::now_v7().simple())
}

fn message(topic: &str, key: &str, n: u32) -> Message {
    Message {
        id: MessageId::from_uuid(Uuid::now_v7()),
        topic: topic.to_owned(),
        key: key.to_owned(),
        message_type: "ordership.test.v1".to_owned(),
        source: "/test".to_owned(),
        payload: serde_json::json!({ "n": n }),
        correlation_id: Uuid::now_v7(),
        causation_id: Some(MessageId::from_uuid(Uuid::now_v7())),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
        occurred_at: chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6),
    }
}

/// Records what it handles; fails transiently while `failing` is set.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Message>>,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl MessageHandler for Recorder {
    async fn handle(&self, message: &Message) -> Result<HandleOutcome, HandleError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(HandleError::Transient("database down".into()));
        }
        self.seen.lock().expect("lock").push(message.clone());
        Ok(HandleOutcome::Applied)
    }
}

/// A consumer running in the background until the returned sender says stop.
fn start_consumer(
    topic: &str,
    group: &str,
    handler: Arc<Recorder>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let config = ConsumerConfig {
        initial_backoff: Duration::from_millis(20),
        ..ConsumerConfig::new(&brokers(), group, &[topic])
    };
    let task = tokio::spawn(async move {
        consume(
            config,
            handler,
            Arc::new(ConsumerStats::default()),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        )
        .await
        .expect("consumer runs");
    });
    (stop, task)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_batch_arrives_in_order_with_its_cloudevents_headers() {
    let topic = unique("roundtrip");
    let publisher = KafkaPublisher::new(&ProducerConfig::new(&brokers())).expect("producer");
    let batch: Vec<Message> = (0..5).map(|n| message(&topic, "order-1", n)).collect();
    publisher
        .publish(&batch)
        .await
        .expect("published and acknowledged");

    let recorder = Arc::new(Recorder::default());
    let (stop, task) = start_consumer(&topic, &unique("group"), recorder.clone());
    wait_until("all five arrived", || {
        recorder.seen.lock().expect("lock").len() >= 5
    })
    .await;
    assert_eq!(
        *recorder.seen.lock().expect("lock"),
        batch,
        "same messages, same order, every attribute"
    );
    stop.send_replace(true);
    task.await.expect("consumer stops");

    // The raw record carries the CloudEvents binary-mode headers.
    let raw: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("raw"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    raw.subscribe(&[topic.as_str()]).expect("subscribe");
    let record = tokio::time::timeout(Duration::from_secs(30), raw.recv())
        .await
        .expect("a record")
        .expect("ok");
    let headers: Vec<String> = record
        .headers()
        .expect("headers")
        .iter()
        .map(|h| h.key.to_owned())
        .collect();
    for h in [
        "ce_specversion",
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "ce_subject",
        "content-type",
        "traceparent",
        "correlation_id",
        "causation_id",
    ] {
        assert!(
            headers.iter().any(|k| k == h),
            "{h} missing from {headers:?}"
        );
    }
    assert_eq!(record.key(), Some(&b"order-1"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_handler_fails_is_not_acknowledged() {
    let topic = unique("unacked");
    let group = unique("group");
    let publisher = KafkaPublisher::new(&ProducerConfig::new(&brokers())).expect("producer");
    let sent = message(&topic, "order-1", 1);
    publisher
        .publish(std::slice::from_ref(&sent))
        .await
        .expect("published");

    // The first consumer keeps failing, then stops (as if the process went down).
    let failing = Arc::new(Recorder::default());
    failing
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (stop, task) = start_consumer(&topic, &group, failing.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.send_replace(true);
    task.await.expect("stops");
    assert!(failing.seen.lock().expect("lock").is_empty());

    // The next member of the group gets the same message: its offset was never stored.
    let healthy = Arc::new(Recorder::default());
    let (stop, task) = start_consumer(&topic, &group, healthy.clone());
    wait_until("the message is delivered again", || {
        !healthy.seen.lock().expect("lock").is_empty()
    })
    .await;
    assert_eq!(healthy.seen.lock().expect("lock")[0].id, sent.id);
    stop.send_replace(true);
    task.await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_goes_to_the_dead_letter_topic_and_the_next_one_is_processed() {
    let topic = unique("poison");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("producer");
    // Same key, so same partition: the poison record comes first.
    producer
        .send(
            FutureRecord::to(&topic)
                .key("order-1")
                .payload("not json, no headers"),
            Duration::from_secs(10),
        )
        .await
        .expect("sent");
    let good = message(&topic, "order-1", 2);
    KafkaPublisher::new(&ProducerConfig::new(&brokers()))
        .expect("producer")
        .publish(std::slice::from_ref(&good))
        .await
        .expect("published");

    let recorder = Arc::new(Recorder::default());
    let (stop, task) = start_consumer(&topic, &unique("group"), recorder.clone());
    wait_until("the good message is processed", || {
        !recorder.seen.lock().expect("lock").is_empty()
    })
    .await;
    assert_eq!(recorder.seen.lock().expect("lock")[0].id, good.id);
    stop.send_replace(true);
    task.await.expect("stops");

    let dlq: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let dlq_topic = topics::dead_letter(&topic);
    dlq.subscribe(&[dlq_topic.as_str()]).expect("subscribe");
    let parked = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
        .await
        .expect("a parked record")
        .expect("ok");
    assert_eq!(parked.payload(), Some(&b"not json, no headers"[..]));
    let reason = parked
        .headers()
        .expect("headers")
        .iter()
        .find(|h| h.key == "dlq_reason")
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(reason.as_deref(), Some("missing header ce_specversion"));
}
