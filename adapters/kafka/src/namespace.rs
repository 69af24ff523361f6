//! Where ordership's topics and consumer groups live on a cluster. One prefix is put before every
//! topic and group name, so that several deployments — or test runs — can share one cluster
//! without seeing each other's messages. The application only ever sees the logical topic names
//! of [`ordership_domain::topics`]; this adapter translates at the edge.

use std::time::Duration;

use ordership_domain::topics;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::util::Timeout;

use crate::connection::Connection;

/// A prefix for topic and consumer-group names; empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
}

impl Namespace {
    #[must_use]
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The cluster's name for a logical topic.
    #[must_use]
    pub fn topic(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }

    /// The cluster's name for a logical consumer group.
    #[must_use]
    pub fn group(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }

    /// The logical name of a topic of this namespace.
    #[must_use]
    pub fn logical<'a>(&self, topic: &'a str) -> &'a str {
        topic.strip_prefix(self.prefix.as_str()).unwrap_or(topic)
    }

    /// Every topic ordership uses, with its dead-letter topic, as the cluster names them.
    #[must_use]
    pub fn all_topics(&self) -> Vec<String> {
        topics::ALL
            .iter()
            .flat_map(|t| [self.topic(t), self.topic(&topics::dead_letter(t))])
            .collect()
    }
}

/// Makes sure the topics `names` exist, creating the missing ones through the admin API with
/// `partitions` partitions (and the cluster's default replication). Topics that exist are left
/// as they are. Nothing else in ordership creates topics: its clients have auto-creation off.
///
/// librdkafka's mock cluster (`ordership dev-broker`) has no admin API: it is asked instead for
/// the topics' metadata with auto-creation allowed, which is how that broker makes topics (with
/// its own partition count, 4).
///
/// # Errors
/// The cluster cannot be reached in `timeout`, or refuses to create a topic.
pub async fn ensure_topics(
    connection: &Connection,
    names: &[String],
    partitions: i32,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let missing = metadata(connection, names, false, timeout).await?;
    if missing.is_empty() {
        return Ok(());
    }
    if is_mock_cluster(connection, timeout).await? {
        tracing::info!("the broker has no admin API: creating the topics through metadata");
        return match metadata(connection, &missing, true, timeout).await?.first() {
            None => Ok(()),
            Some(_) => Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            )),
        };
    }
    let admin: AdminClient<DefaultClientContext> = connection.client_config().create()?;
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let created = admin.create_topics(&new, &options).await?;
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(%topic, error = %code, "cannot create topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    // Created topics take a moment to have leaders everywhere: wait until each answers.
    match metadata(connection, &missing, false, timeout)
        .await?
        .first()
    {
        None => Ok(()),
        Some(topic) => {
            tracing::error!(%topic, "created, but the cluster does not list it");
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            ))
        }
    }
}

/// Whether the cluster is librdkafka's mock (`ordership dev-broker`), which names itself
/// `mockCluster…` and does not answer the admin API's CreateTopics.
async fn is_mock_cluster(connection: &Connection, timeout: Duration) -> Result<bool, KafkaError> {
    let config = connection.client_config();
    tokio::task::spawn_blocking(move || {
        let client: BaseProducer = config.create()?;
        Ok(client
            .client()
            .fetch_cluster_id(Timeout::After(timeout))
            .is_some_and(|id| id.starts_with("mockCluster")))
    })
    .await
    .map_err(|_| KafkaError::Canceled)?
}

/// Asks for each topic's metadata (allowing auto-creation or not) until it has leaders; returns
/// the topics the cluster does not have.
async fn metadata(
    connection: &Connection,
    names: &[String],
    auto_create: bool,
    timeout: Duration,
) -> Result<Vec<String>, KafkaError> {
    let mut config = connection.client_config();
    config.set("allow.auto.create.topics", auto_create.to_string());
    let names = names.to_vec();
    tokio::task::spawn_blocking(move || missing(&config, &names, timeout))
        .await
        .map_err(|_| KafkaError::Canceled)?
}

fn missing(
    config: &ClientConfig,
    names: &[String],
    timeout: Duration,
) -> Result<Vec<String>, KafkaError> {
    let client: BaseProducer = config.create()?;
    let deadline = std::time::Instant::now() + timeout;
    let mut missing = Vec::new();
    for name in names {
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let metadata = client
                .client()
                .fetch_metadata(Some(name), Timeout::After(left))?;
            let topic = metadata.topics().first();
            let error = topic.and_then(|t| t.error());
            let leaderless = topic.is_some_and(|t| t.partitions().iter().any(|p| p.leader() < 0));
            match error.map(RDKafkaErrorCode::from) {
                None if !leaderless => break,
                Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                    missing.push(name.clone());
                    break;
                }
                // Being created: ask again.
                code if left > Duration::ZERO => {
                    tracing::debug!(topic = %name, error = ?code, "topic not ready yet");
                    std::thread::sleep(Duration::from_millis(50));
                }
                code => {
                    return Err(KafkaError::MetadataFetch(
                        code.unwrap_or(RDKafkaErrorCode::LeaderNotAvailable),
                    ));
                }
            }
        }
    }
    Ok(missing)
}
