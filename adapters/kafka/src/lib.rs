//! # ordership-kafka
//!
//! The Kafka adapter (rdkafka): a [`KafkaPublisher`] for the outbox relays (idempotent producer,
//! `acks=all`, lz4, batches awaited as a whole), consumers in consumer groups that run the
//! application's consumer loop and store a message's offset only after its handler committed
//! ([`consume`]), dead-letter topics with the
//! reason in the headers, CloudEvents 1.0 binary-mode envelopes, and the development broker
//! ([`DevBroker`]: librdkafka's mock cluster) used by `ordership dev-broker` and the tests.
//! Only this crate knows rdkafka.

mod connection;
mod consumer;
mod dev_broker;
pub mod envelope;
mod namespace;
mod publisher;
#[cfg(feature = "testing")]
pub mod testing;

pub use connection::{Connection, SettingError};
pub use consumer::{ConsumerConfig, ConsumerHealth, consume};
pub use dev_broker::{DevBroker, forward};
pub use namespace::{Namespace, ensure_topics};
pub use publisher::{KafkaPublisher, ProducerConfig};
