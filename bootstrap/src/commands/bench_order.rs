//! `ordership bench-check-order`: reads what the relays published from the start of the given
//! topics, as a downstream consumer would, and checks that each key's messages came in the order
//! they were written (their payload's `n` rising), for the relay benchmarks.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use ordership_application::ConsumerStats;
use ordership_domain::Message;
use ordership_domain::ports::{HandleError, HandleOutcome, MessageHandler};
use ordership_kafka::{ConsumerConfig, Namespace, consume};
use tokio::sync::Notify;

use crate::cli::CommonArgs;
use crate::wiring::kafka;

/// What was read so far.
#[derive(Default)]
struct Tally {
    seen: HashSet<ordership_domain::MessageId>,
    duplicates: u64,
    /// The last `n` of each (topic, key).
    last: HashMap<(String, String), i64>,
    out_of_order: u64,
}

struct Checker {
    tally: Mutex<Tally>,
    wanted: usize,
    enough: Notify,
}

#[async_trait]
impl MessageHandler for Checker {
    async fn handle(&self, message: &Message) -> Result<HandleOutcome, HandleError> {
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        if !tally.seen.insert(message.id) {
            tally.duplicates += 1;
            return Ok(HandleOutcome::Duplicate);
        }
        let n = message.payload["n"].as_i64().unwrap_or(-1);
        let key = (message.topic.clone(), message.key.clone());
        if tally.last.insert(key, n).is_some_and(|before| before >= n) {
            tally.out_of_order += 1;
        }
        if tally.seen.len() >= self.wanted {
            self.enough.notify_one();
        }
        Ok(HandleOutcome::Applied)
    }
}

/// # Errors
/// No broker, or not `messages` messages within `patience`; exits non-zero (after printing)
/// when a key's messages came out of order.
pub async fn run(
    args: &CommonArgs,
    topics: &[String],
    messages: usize,
    patience: Duration,
) -> anyhow::Result<()> {
    let brokers = args
        .kafka_brokers
        .as_deref()
        .context("bench-check-order needs --kafka-brokers (KAFKA_BROKERS)")?;
    let checker = Arc::new(Checker {
        tally: Mutex::default(),
        wanted: messages,
        enough: Notify::new(),
    });
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let config = ConsumerConfig {
        namespace: Namespace::new(&args.kafka_namespace),
        ..ConsumerConfig::on(
            kafka::connection(args, brokers)?,
            &format!("order-check-{}", uuid::Uuid::now_v7().simple()),
            &topics,
        )
    };
    let enough = Arc::clone(&checker);
    let read = tokio::time::timeout(
        patience,
        consume(
            config,
            Arc::clone(&checker) as Arc<dyn MessageHandler>,
            Arc::new(ConsumerStats::default()),
            async move { enough.enough.notified().await },
        ),
    )
    .await;
    let tally = checker.tally.lock().unwrap_or_else(PoisonError::into_inner);
    let report = serde_json::json!({
        "messages": tally.seen.len(), "duplicates": tally.duplicates, "keys": tally.last.len(),
        "out_of_order": tally.out_of_order,
    });
    writeln!(std::io::stdout().lock(), "{report}")?;
    read.map_err(|_| {
        anyhow::anyhow!(
            "read {} of {messages} messages in {patience:?}",
            tally.seen.len()
        )
    })??;
    anyhow::ensure!(
        tally.out_of_order == 0,
        "{} messages came after a later one of their key",
        tally.out_of_order
    );
    Ok(())
}
