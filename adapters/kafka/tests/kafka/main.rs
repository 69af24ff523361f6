//! The Kafka adapter against a real Kafka-protocol broker: `KAFKA_BROKERS` (scripts/test.sh starts
//! `ordership dev-broker`; any real cluster works too). Without a broker these tests fail; they
//! never skip. Every test creates its own topics and uses its own consumer groups. What every
//! transport must do (order, retries, dead letters) is the transport contract (`tests/contract`);
//! here is what only Kafka does: CloudEvents headers, replay after a stop, raw poison records,
//! rebalances.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use ordership_application::ConsumerStats;
use ordership_domain::ports::{MessageHandler, MessagePublisher, PublishError};
use ordership_domain::{Message, RetryPolicy, topics};
use ordership_kafka::{ConsumerConfig, KafkaPublisher, ProducerConfig, consume, ensure_topics};
use ordership_tests::fakes::FakeHandler;
use ordership_tests::fixtures::{PATIENCE, message, wait_until};
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

/// A topic of the test's own, with its dead-letter topic, created on the cluster.
async fn fresh_topic(name: &str) -> String {
    let topic = unique(name);
    ensure_topics(
        &ordership_kafka::Connection::new(&brokers()),
        &[topic.clone(), topics::dead_letter(&topic)],
        4,
        Duration::from_secs(30),
    )
    .await
    .expect("topics created");
    topic
}

/// A consumer running in the background until the returned sender says stop.
fn start_consumer(
    topic: &str,
    group: &str,
    handler: Arc<dyn MessageHandler>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    start_consumer_with(topic, group, handler, Arc::new(ConsumerStats::default()))
}

fn start_consumer_with(
    topic: &str,
    group: &str,
    handler: Arc<dyn MessageHandler>,
    stats: Arc<ConsumerStats>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let config = ConsumerConfig {
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            max_attempts: 3,
        },
        ..ConsumerConfig::new(&brokers(), group, &[topic])
    };
    let task = tokio::spawn(async move {
        consume(config, handler, stats, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
        .expect("consumer runs");
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_batch_arrives_in_order_with_its_cloudevents_headers() {
    let topic = fresh_topic("roundtrip").await;
    let publisher = KafkaPublisher::new(&ProducerConfig::new(&brokers())).expect("producer");
    let batch: Vec<Message> = (0..5).map(|n| message(&topic, "order-1", n)).collect();
    publisher
        .publish(&batch)
        .await
        .expect("published and acknowledged");

    let recorder = Arc::new(FakeHandler::default());
    let (stop, task) = start_consumer(&topic, &unique("group"), recorder.clone());
    wait_until("all five arrived", || recorder.seen().len() >= 5).await;
    assert_eq!(
        recorder.seen(),
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
    let topic = fresh_topic("unacked").await;
    let group = unique("group");
    let publisher = KafkaPublisher::new(&ProducerConfig::new(&brokers())).expect("producer");
    let sent = message(&topic, "order-1", 1);
    publisher
        .publish(std::slice::from_ref(&sent))
        .await
        .expect("published");

    // The first consumer keeps failing (the database is down: more failures than max_attempts,
    // yet never dead-lettered), then stops (as if the process went down).
    let failing = Arc::new(FakeHandler::default());
    failing
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (stop, task) = start_consumer(&topic, &group, failing.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.send_replace(true);
    task.await.expect("stops");
    assert!(failing.seen().is_empty());

    // The next member of the group gets the same message: its offset was never stored.
    let healthy = Arc::new(FakeHandler::default());
    let (stop, task) = start_consumer(&topic, &group, healthy.clone());
    wait_until("the message is delivered again", || {
        !healthy.seen().is_empty()
    })
    .await;
    assert_eq!(healthy.seen()[0].id, sent.id);
    stop.send_replace(true);
    task.await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_goes_to_the_dead_letter_topic_and_the_next_one_is_processed() {
    let topic = fresh_topic("poison").await;
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

    let recorder = Arc::new(FakeHandler::default());
    let (stop, task) = start_consumer(&topic, &unique("group"), recorder.clone());
    wait_until("the good message is processed", || {
        !recorder.seen().is_empty()
    })
    .await;
    assert_eq!(recorder.seen()[0].id, good.id);
    stop.send_replace(true);
    task.await.expect("stops");

    let (payload, reason) = first_dead_letter(&topic).await;
    assert_eq!(payload, b"not json, no headers");
    assert_eq!(reason, "missing header ce_specversion");
}

/// The payload and `dlq_reason` of the first record on `<topic>.dlq`.
async fn first_dead_letter(topic: &str) -> (Vec<u8>, String) {
    let parked = ordership_kafka::testing::dead_letters(&brokers(), topic, 1, PATIENCE)
        .await
        .expect("a parked record");
    (parked[0].payload.clone(), parked[0].reason.clone())
}

mod rebalance;

/// A message refused as it is handed to the producer (larger than `message.max.bytes`) must not
/// be reported before the messages ahead of it in the batch are acknowledged: the relay marks
/// those published on a refusal. With no broker to deliver them, the answer is "unavailable".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_mid_batch_waits_for_the_messages_before_it() {
    // Nothing listens on port 1: nothing can be delivered.
    let publisher = KafkaPublisher::new(&ProducerConfig {
        delivery_timeout: Duration::from_secs(2),
        ..ProducerConfig::new("127.0.0.1:1")
    })
    .expect("producer");
    let first = message("test.refusal", "k", 1);
    let mut huge = message("test.refusal", "k", 2);
    huge.payload = serde_json::json!({ "blob": "x".repeat(2_000_000) });
    let last = message("test.refusal", "k", 3);
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        publisher.publish(&[first, huge, last]),
    )
    .await
    .expect("an answer once the first message's delivery timed out");
    assert!(
        matches!(result, Err(PublishError::Unavailable(_))),
        "the first message was never acknowledged, so this is no refusal yet: {result:?}"
    );
}
