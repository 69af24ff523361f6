//! One partition's worker: runs the application's consumer loop over the partition's records,
//! in order, stores each offset after its handler committed, and dead-letters what it must.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ordership_application::{DeadLetterSink, Shutdown};
use ordership_domain::ports::BoxError;
use ordership_domain::topics;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Shared;
use crate::envelope;

pub(super) async fn worker(
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
pub(super) fn store(shared: &Shared, record: &OwnedMessage) {
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
