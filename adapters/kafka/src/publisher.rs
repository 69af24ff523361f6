//! The publisher port on a Kafka producer: idempotent, `acks=all`, batched and compressed. A
//! batch is sent as a whole and its delivery reports awaited together — never one round trip per
//! message.

use std::time::Duration;

use async_trait::async_trait;
use ordership_domain::ports::{MessagePublisher, PublishError};
use ordership_domain::{Message, MessageId};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::connection::Connection;
use crate::envelope;
use crate::namespace::Namespace;

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The cluster, and the settings passed through to librdkafka.
    pub connection: Connection,
    /// Where the logical topics of the messages live on the cluster.
    pub namespace: Namespace,
    /// How long a message may wait for batching.
    pub linger: Duration,
    /// How long librdkafka keeps trying to deliver one message before reporting failure.
    pub delivery_timeout: Duration,
}

impl ProducerConfig {
    #[must_use]
    pub fn new(brokers: &str) -> Self {
        Self::on(Connection::new(brokers))
    }

    /// Default settings on `connection`.
    #[must_use]
    pub fn on(connection: Connection) -> Self {
        Self {
            connection,
            namespace: Namespace::default(),
            linger: Duration::from_millis(1),
            delivery_timeout: Duration::from_secs(30),
        }
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            // Tunables: the deployment may pass its own through.
            .set("compression.type", "lz4")
            .set("linger.ms", self.linger.as_millis().to_string())
            .set(
                "delivery.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            );
        let mut config = self.connection.over(config);
        // Guarantees: a retried batch is neither duplicated nor reordered, and a message counts
        // as published once every in-sync replica has it. `Connection` refuses to pass these.
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5");
        config
    }
}

/// Publishes outbox batches to Kafka.
#[derive(Clone)]
pub struct KafkaPublisher {
    producer: FutureProducer,
    namespace: Namespace,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher").finish_non_exhaustive()
    }
}

/// Errors the broker will never accept on a retry.
fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

impl KafkaPublisher {
    /// # Errors
    /// An invalid configuration.
    pub fn new(config: &ProducerConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: config.client_config().create()?,
            namespace: config.namespace.clone(),
        })
    }

    /// Sends every message not yet acknowledged, waiting for all outstanding deliveries.
    ///
    /// # Errors
    /// Whatever librdkafka reports after its own retries.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }

    /// Whether the cluster answers a metadata request in time.
    pub async fn reachable(&self, timeout: Duration) -> Result<(), String> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Timeout::After(timeout))
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// A message the cluster did not take, named by the step and the message: what a log shows of an
/// outage points at one place.
#[derive(Debug, thiserror::Error)]
#[error("Kafka, {step} of message {message_id}")]
struct Failed {
    step: &'static str,
    message_id: MessageId,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

fn unavailable(
    step: &'static str,
    message_id: MessageId,
    source: impl std::error::Error + Send + Sync + 'static,
) -> PublishError {
    PublishError::Unavailable(Box::new(Failed {
        step,
        message_id,
        source: Box::new(source),
    }))
}

/// Waits for every delivery report, in batch order: the first failure decides.
async fn acknowledged(deliveries: Vec<(MessageId, DeliveryFuture)>) -> Result<(), PublishError> {
    for (message_id, delivery) in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) if is_permanent(&error) => {
                return Err(PublishError::Refused {
                    message_id,
                    reason: error.to_string(),
                });
            }
            Ok(Err((error, _))) => return Err(unavailable("delivery", message_id, error)),
            Err(canceled) => return Err(unavailable("delivery report", message_id, canceled)),
        }
    }
    Ok(())
}

#[async_trait]
impl MessagePublisher for KafkaPublisher {
    async fn publish(&self, batch: &[Message]) -> Result<(), PublishError> {
        let mut deliveries = Vec::with_capacity(batch.len());
        for message in batch {
            // A message refused before it is even sent is reported only once every message
            // ahead of it is acknowledged: the caller takes those as published.
            let refused = |reason: String| PublishError::Refused {
                message_id: message.id,
                reason,
            };
            let payload = match serde_json::to_vec(&message.payload) {
                Ok(payload) => payload,
                Err(e) => {
                    acknowledged(deliveries).await?;
                    return Err(refused(format!("payload is not serializable: {e}")));
                }
            };
            let topic = self.namespace.topic(&message.topic);
            let mut record = FutureRecord::to(&topic)
                .key(message.key.as_bytes())
                .payload(&payload)
                .headers(envelope::headers(message));
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push((message.id, delivery));
                        break;
                    }
                    // The local queue is full: let it drain, then enqueue again.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) if is_permanent(&error) => {
                        acknowledged(deliveries).await?;
                        return Err(refused(error.to_string()));
                    }
                    Err((error, _)) => return Err(unavailable("enqueueing", message.id, error)),
                }
            }
        }
        acknowledged(deliveries).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relays' delivery guarantee is these settings: a change here must be deliberate.
    #[test]
    fn the_producer_is_idempotent_waits_for_every_replica_and_batches_briefly() {
        let config = ProducerConfig::new("k:9092").client_config();
        for (key, value) in [
            ("bootstrap.servers", "k:9092"),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("max.in.flight.requests.per.connection", "5"),
            ("compression.type", "lz4"),
            ("linger.ms", "1"),
            ("delivery.timeout.ms", "30000"),
            ("allow.auto.create.topics", "false"),
        ] {
            assert_eq!(config.get(key), Some(value), "{key}");
        }
    }
}
