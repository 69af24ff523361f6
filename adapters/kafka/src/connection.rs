//! How every client of this adapter reaches the cluster: the bootstrap servers, and any other
//! librdkafka setting the deployment needs (TLS, SASL, timeouts), passed through as given. The
//! settings ordership's guarantees rest on are set by the adapter alone: passing one through is
//! refused, so no deployment can weaken them by accident.

use rdkafka::ClientConfig;

/// The librdkafka settings that only the adapter sets, and why: each is part of a guarantee.
const OWN: &[(&str, &str)] = &[
    ("bootstrap.servers", "it is --kafka-brokers"),
    ("metadata.broker.list", "it is --kafka-brokers"),
    (
        "enable.idempotence",
        "the relays' producer must not duplicate or reorder a retried batch",
    ),
    (
        "acks",
        "a message counts as published only once every in-sync replica has it",
    ),
    (
        "request.required.acks",
        "a message counts as published only once every in-sync replica has it",
    ),
    (
        "max.in.flight.requests.per.connection",
        "the idempotent producer keeps per-partition order only with at most 5 in flight",
    ),
    (
        "transactional.id",
        "ordership's producers are idempotent, not transactional",
    ),
    (
        "enable.auto.offset.store",
        "a consumer stores an offset only after the message's effect committed",
    ),
    (
        "enable.auto.commit",
        "stored offsets are committed in the background and on close",
    ),
    (
        "group.id",
        "it is the service's consumer group, under --kafka-namespace",
    ),
    ("group.instance.id", "it is --kafka-instance-id"),
    (
        "partition.assignment.strategy",
        "partitions move incrementally (cooperative-sticky)",
    ),
    (
        "statistics.interval.ms",
        "readiness is judged from the consumer's statistics",
    ),
    (
        "allow.auto.create.topics",
        "topics are created at start with --kafka-partitions, never on first use",
    ),
];

/// A setting that cannot be passed through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("Kafka setting {0:?} is not of the form key=value")]
    Malformed(String),
    #[error("Kafka setting {key:?} is ordership's own and cannot be overridden: {why}")]
    Reserved { key: String, why: &'static str },
}

/// The cluster's bootstrap servers and the librdkafka settings passed through to every client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    brokers: String,
    passthrough: Vec<(String, String)>,
}

impl Connection {
    #[must_use]
    pub fn new(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            passthrough: Vec::new(),
        }
    }

    /// Adds librdkafka settings, each written `key=value` (`security.protocol=SSL`,
    /// `ssl.ca.location=/etc/kafka/ca.pem`, `sasl.mechanism=SCRAM-SHA-512`…). A later setting of
    /// the same key wins.
    ///
    /// # Errors
    /// A setting without `=`, or one of the settings ordership's guarantees depend on.
    pub fn with_settings<S: AsRef<str>>(mut self, settings: &[S]) -> Result<Self, SettingError> {
        for setting in settings {
            let setting = setting.as_ref();
            let Some((key, value)) = setting.split_once('=') else {
                return Err(SettingError::Malformed(setting.to_owned()));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(SettingError::Malformed(setting.to_owned()));
            }
            if let Some((_, why)) = OWN.iter().find(|(own, _)| own.eq_ignore_ascii_case(key)) {
                return Err(SettingError::Reserved {
                    key: key.to_owned(),
                    why,
                });
            }
            self.passthrough.retain(|(k, _)| k != key);
            self.passthrough
                .push((key.to_owned(), value.trim().to_owned()));
        }
        Ok(self)
    }

    /// The bootstrap servers.
    #[must_use]
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// A client configuration with only the servers and the passed-through settings.
    pub(crate) fn client_config(&self) -> ClientConfig {
        self.over(ClientConfig::new())
    }

    /// `config` (a client's own settings) with the servers and the passed-through settings laid
    /// over it: a passed-through tunable (`linger.ms`, `fetch.wait.max.ms`) replaces the
    /// client's default; the reserved settings cannot be passed through, so the client's stand.
    pub(crate) fn over(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.passthrough {
            config.set(key, value);
        }
        config
            .set("bootstrap.servers", &self.brokers)
            // Topics exist because ordership created them; a missing one is an error, not a
            // topic made on the fly with the broker's defaults.
            .set("allow.auto.create.topics", "false");
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_pass_through_to_every_client() {
        let connection = Connection::new("k1:9093,k2:9093")
            .with_settings(&[
                "security.protocol=SSL",
                "ssl.ca.location = /etc/ca.pem",
                "security.protocol=SASL_SSL",
            ])
            .expect("allowed");
        let config = connection.client_config();
        assert_eq!(config.get("bootstrap.servers"), Some("k1:9093,k2:9093"));
        assert_eq!(
            config.get("security.protocol"),
            Some("SASL_SSL"),
            "the last one wins"
        );
        assert_eq!(config.get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(config.get("allow.auto.create.topics"), Some("false"));

        let mut own = ClientConfig::new();
        own.set("linger.ms", "1").set("acks", "all");
        let tuned = Connection::new("k:9092")
            .with_settings(&["linger.ms=20"])
            .expect("a tunable")
            .over(own);
        assert_eq!(tuned.get("linger.ms"), Some("20"), "a tunable is replaced");
        assert_eq!(tuned.get("acks"), Some("all"), "a guarantee stands");
    }

    #[test]
    fn the_settings_the_guarantees_rest_on_cannot_be_passed_through() {
        for key in [
            "acks",
            "enable.idempotence",
            "enable.auto.offset.store",
            "group.instance.id",
            "ACKS",
        ] {
            let error = Connection::new("k:9092")
                .with_settings(&[format!("{key}=x")])
                .expect_err(key);
            assert!(
                matches!(error, SettingError::Reserved { .. }),
                "{key}: {error}"
            );
            assert!(
                error.to_string().contains("cannot be overridden"),
                "{error}"
            );
        }
        assert_eq!(
            Connection::new("k:9092").with_settings(&["linger.ms"]),
            Err(SettingError::Malformed("linger.ms".into()))
        );
    }
}
