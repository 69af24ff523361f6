//! A Kafka-protocol broker for development and tests: librdkafka's own mock cluster, with every
//! ordership topic (and its dead-letter topic) created up front, reachable on a fixed port.
//!
//! The mock listens on a port of its own choosing; a TCP forwarder on the fixed port is enough
//! for bootstrap, because clients then follow the addresses the mock advertises.

use std::net::SocketAddr;

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokio::net::{TcpListener, TcpStream};

use ordership_domain::topics;

/// The broker's id inside the mock cluster (it has one).
const BROKER: i32 = 1;

/// A running mock cluster. Not `Send`: keep it on the task that made it.
pub struct DevBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for DevBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevBroker")
            .field("bootstrap", &self.cluster.bootstrap_servers())
            .finish()
    }
}

impl DevBroker {
    /// Starts the cluster and creates the ordership topics with `partitions` partitions each.
    ///
    /// # Errors
    /// The mock cluster could not be created.
    pub fn start(partitions: i32) -> Result<Self, KafkaError> {
        let cluster = MockCluster::new(1)?;
        for topic in topics::ALL {
            cluster.create_topic(topic, partitions, 1)?;
            cluster.create_topic(&topics::dead_letter(topic), partitions, 1)?;
        }
        Ok(Self { cluster })
    }

    /// Creates another topic (the mock does not support the admin API's CreateTopics).
    ///
    /// # Errors
    /// The mock refused.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        self.cluster.create_topic(topic, partitions, 1)
    }

    /// Where the mock really listens.
    #[must_use]
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Takes the broker down: connections drop and clients cannot reach it until [`Self::up`].
    ///
    /// # Errors
    /// The mock refused.
    pub fn down(&self) -> Result<(), KafkaError> {
        self.cluster.broker_down(BROKER)
    }

    /// Brings the broker back.
    ///
    /// # Errors
    /// The mock refused.
    pub fn up(&self) -> Result<(), KafkaError> {
        self.cluster.broker_up(BROKER)
    }
}

/// Forwards every connection on `listener` to `target` until the task is dropped.
pub async fn forward(listener: TcpListener, target: SocketAddr) {
    loop {
        let (mut inbound, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        tokio::spawn(async move {
            match TcpStream::connect(target).await {
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => tracing::debug!(error = %e, "the mock broker refused a connection"),
            }
        });
    }
}
