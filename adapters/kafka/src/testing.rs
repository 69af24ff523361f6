//! Helpers for the tests of crates that use this adapter (feature `testing`).

use std::time::Duration;

use ordership_domain::topics;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};

/// A record parked on a dead-letter topic: its payload as it came, and the `dlq_reason` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub payload: Vec<u8>,
    pub reason: String,
}

/// Reads the first `count` records of `<topic>.dlq` from the beginning, in a consumer group of
/// its own, waiting at most `patience` for each.
///
/// # Errors
/// The consumer cannot be created, or a record did not come in time (`KafkaError::NoMessageReceived`).
pub async fn dead_letters(
    brokers: &str,
    topic: &str,
    count: usize,
    patience: Duration,
) -> Result<Vec<DeadLetter>, KafkaError> {
    let group = format!("dlq-reader.{}", uuid::Uuid::now_v7().simple());
    let dlq: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .create()?;
    let dlq_topic = topics::dead_letter(topic);
    dlq.subscribe(&[dlq_topic.as_str()])?;
    let mut parked = Vec::with_capacity(count);
    while parked.len() < count {
        let record = tokio::time::timeout(patience, dlq.recv())
            .await
            .map_err(|_| KafkaError::NoMessageReceived)??;
        let reason = record
            .headers()
            .and_then(|headers| headers.iter().find(|h| h.key == "dlq_reason"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        parked.push(DeadLetter {
            payload: record.payload().unwrap_or_default().to_vec(),
            reason,
        });
    }
    Ok(parked)
}

/// Where group `group` stands on each of `partitions` partitions of `topic`: the offsets it
/// committed (-1 where none), read without joining the group, and the high watermarks (the offset
/// the next record will get).
///
/// # Errors
/// The cluster cannot be reached in `timeout`.
pub fn positions(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(Vec<i64>, Vec<i64>), KafkaError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()?;
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(wanted, timeout)?
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => -1,
        })
        .collect();
    let high = (0..partitions)
        .map(|partition| {
            consumer
                .fetch_watermarks(topic, partition, timeout)
                .map(|(_, high)| high)
        })
        .collect::<Result<_, _>>()?;
    Ok((committed, high))
}
