//! Rebalances: a revoked partition is not worked on by its old owner.

use async_trait::async_trait;
use ordership_application::ConsumerStats;
use ordership_domain::Message;
use ordership_domain::ports::{HandleError, HandleOutcome, MessageHandler};
use ordership_kafka::ensure_topics;
use ordership_tests::fixtures::{message, wait_until};
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{brokers, start_consumer, start_consumer_with, unique};

/// Which consumer started which message (partition, number), and when.
type Timeline = Arc<Mutex<Vec<(&'static str, i64, i64, std::time::Instant)>>>;

/// Records each start on a shared timeline, then takes `delay`.
struct Timed {
    name: &'static str,
    delay: Duration,
    timeline: Timeline,
}

#[async_trait]
impl MessageHandler for Timed {
    async fn handle(&self, message: &Message) -> Result<HandleOutcome, HandleError> {
        let (p, n) = (
            message.payload["p"].as_i64().unwrap_or(-1),
            message.payload["n"].as_i64().unwrap_or(-1),
        );
        self.timeline
            .lock()
            .expect("lock")
            .push((self.name, p, n, std::time::Instant::now()));
        tokio::time::sleep(self.delay).await;
        Ok(HandleOutcome::Applied)
    }
}

/// Creates `topic` with `partitions` partitions through the admin API where the cluster has one
/// (the development broker has not: it creates topics on first use, with 4 partitions); returns
/// how many it has.
async fn topic_with_partitions(topic: &str, partitions: i32) -> i32 {
    ensure_topics(
        &ordership_kafka::Connection::new(&brokers()),
        &[topic.to_owned()],
        partitions,
        Duration::from_secs(30),
    )
    .await
    .expect("the topic exists");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    i32::try_from(metadata.topics()[0].partitions().len()).expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_partition_is_not_worked_on_by_its_old_owner() {
    let topic = unique("rebalance");
    let partitions = topic_with_partitions(&topic, 4).await;
    assert!(partitions >= 2, "the test needs at least two partitions");
    // 40 messages on every partition, each carrying its partition and number.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("producer");
    for p in 0..partitions {
        for n in 0..40 {
            let mut m = message(&topic, &format!("key-{p}"), 0);
            m.payload = serde_json::json!({ "p": p, "n": n });
            let payload = serde_json::to_vec(&m.payload).expect("json");
            producer
                .send(
                    FutureRecord::to(&topic)
                        .partition(p)
                        .key(&m.key)
                        .payload(&payload)
                        .headers(ordership_kafka::envelope::headers(&m)),
                    Duration::from_secs(10),
                )
                .await
                .expect("sent");
        }
    }
    // A takes 250 ms a message, so it still holds every partition's queue when B has joined.
    let group = unique("group");
    let timeline = Timeline::default();
    let a_stats = Arc::new(ConsumerStats::default());
    let slow: Arc<dyn MessageHandler> = Arc::new(Timed {
        name: "a",
        delay: Duration::from_millis(250),
        timeline: timeline.clone(),
    });
    let (stop_a, task_a) = start_consumer_with(&topic, &group, slow, a_stats.clone());
    wait_until("a started on every partition", || {
        let t = timeline.lock().expect("lock");
        (0..partitions).all(|p| t.iter().any(|e| e.1 == i64::from(p)))
    })
    .await;
    let fast: Arc<dyn MessageHandler> = Arc::new(Timed {
        name: "b",
        delay: Duration::ZERO,
        timeline: timeline.clone(),
    });
    let (stop_b, task_b) = start_consumer(&topic, &group, fast);
    wait_until("b took over a partition", || {
        timeline.lock().expect("lock").iter().any(|e| e.0 == "b")
    })
    .await;
    // Everything is handled at least once, by one or the other.
    let total = usize::try_from(partitions * 40).expect("count");
    wait_until("every message was handled", || {
        let t = timeline.lock().expect("lock");
        let mut done: Vec<(i64, i64)> = t.iter().map(|e| (e.1, e.2)).collect();
        done.sort_unstable();
        done.dedup();
        done.len() == total
    })
    .await;
    stop_a.send_replace(true);
    stop_b.send_replace(true);
    task_a.await.expect("a stops");
    task_b.await.expect("b stops");

    assert!(
        a_stats
            .partitions_revoked
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    // On every partition B worked on, A started nothing after B's first start there.
    let t = timeline.lock().expect("lock");
    for p in 0..i64::from(partitions) {
        let Some(b_first) = t
            .iter()
            .filter(|e| e.0 == "b" && e.1 == p)
            .map(|e| e.3)
            .min()
        else {
            continue;
        };
        let late: Vec<i64> = t
            .iter()
            .filter(|e| e.0 == "a" && e.1 == p && e.3 > b_first)
            .map(|e| e.2)
            .collect();
        assert!(
            late.is_empty(),
            "partition {p} was revoked from a, yet a started {late:?} after b took it over"
        );
    }
}
