//! Kafka, as the flags describe it: the namespace's topics made sure of, the producer the relays
//! publish with, and the consumers' settings.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ordership_application::ConsumerStats;
use ordership_domain::RetryPolicy;
use ordership_kafka::{Connection, KafkaPublisher, Namespace, ProducerConfig, ensure_topics};

use super::KafkaTransport;
use crate::cli::CommonArgs;

/// The cluster at `brokers` with the settings passed through (`--kafka-config`).
///
/// # Errors
/// A malformed setting, or one ordership reserves.
pub fn connection(args: &CommonArgs, brokers: &str) -> anyhow::Result<Connection> {
    Ok(Connection::new(brokers).with_settings(&args.kafka_config)?)
}

/// The topics of the configured namespace made sure of on the cluster, and the producer the
/// relays publish with.
///
/// # Errors
/// The cluster cannot be reached or refuses the topics; the producer cannot be made.
pub async fn publisher(
    args: &CommonArgs,
    connection: &Connection,
) -> anyhow::Result<(Namespace, KafkaPublisher)> {
    let namespace = Namespace::new(&args.kafka_namespace);
    let brokers = connection.brokers();
    ensure_topics(
        connection,
        &namespace.all_topics(),
        args.kafka_partitions,
        Duration::from_secs(30),
    )
    .await
    .with_context(|| format!("preparing the topics on the Kafka cluster at {brokers}"))?;
    let publisher = KafkaPublisher::new(&ProducerConfig {
        namespace: namespace.clone(),
        ..ProducerConfig::on(connection.clone())
    })
    .context("creating the Kafka producer")?;
    Ok((namespace, publisher))
}

/// Messaging over the cluster at `brokers`: the relays' producer and the consumers' settings.
pub(super) async fn transport(args: &CommonArgs, brokers: &str) -> anyhow::Result<KafkaTransport> {
    let connection = connection(args, brokers)?;
    let (namespace, publisher) = publisher(args, &connection).await?;
    if args.unsafe_store_offset_before_commit {
        tracing::warn!("UNSAFE: consumers store offsets before handling (mutation testing only)");
    }
    Ok(KafkaTransport {
        connection,
        namespace,
        retry: RetryPolicy {
            max_attempts: args.max_handler_attempts.max(1),
            ..RetryPolicy::default()
        },
        publisher,
        stats: Arc::new(ConsumerStats::default()),
        store_offset_before_handling: args.unsafe_store_offset_before_commit,
        instance_id: args.kafka_instance_id.clone(),
        members: Arc::default(),
    })
}
