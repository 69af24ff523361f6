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

/// Makes sure the topics `names` exist. Clusters that create topics on first use (Kafka's
/// default, and the development broker) create them, with their default partition count, when
/// asked for their metadata; on others the admin API creates them with `partitions` partitions.
/// Topics that exist are left as they are.
///
/// # Errors
/// The cluster cannot be reached in `timeout`, or refuses to create a topic.
pub async fn ensure_topics(
    brokers: &str,
    names: &[String],
    partitions: i32,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let (b, n) = (brokers.to_owned(), names.to_vec());
    let missing = tokio::task::spawn_blocking(move || auto_create(&b, &n, timeout))
        .await
        .map_err(|_| KafkaError::Canceled)??;
    if missing.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(%topic, error = %code, "cannot create topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}

/// Asks for each topic's metadata, allowing auto-creation; returns the topics still missing.
fn auto_create(
    brokers: &str,
    names: &[String],
    timeout: Duration,
) -> Result<Vec<String>, KafkaError> {
    let client: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("allow.auto.create.topics", "true")
        .create()?;
    let deadline = std::time::Instant::now() + timeout;
    let mut missing = Vec::new();
    for name in names {
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let metadata = client
                .client()
                .fetch_metadata(Some(name), Timeout::After(left))?;
            let error = metadata.topics().first().and_then(|t| t.error());
            match error.map(RDKafkaErrorCode::from) {
                None => break,
                // Auto-creation is off: the admin API has to do it.
                Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                    missing.push(name.clone());
                    break;
                }
                // Being created: ask again.
                Some(code) if left > Duration::ZERO => {
                    tracing::debug!(topic = %name, error = %code, "topic not ready yet");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Some(code) => return Err(KafkaError::MetadataFetch(code)),
            }
        }
    }
    Ok(missing)
}
