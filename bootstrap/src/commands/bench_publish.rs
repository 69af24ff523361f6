//! `ordership bench-publish`: how fast the broker takes what a relay sends, with the relays'
//! producer, so a relay's rate can be judged against it.

use std::io::Write as _;

use anyhow::Context as _;
use ordership_domain::ports::MessagePublisher;
use ordership_domain::{Message, MessageId, topics};

use crate::cli::CommonArgs;
use crate::wiring::kafka;

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub messages: usize,
    pub keys: usize,
    pub payload_bytes: usize,
    pub batch: usize,
}

/// # Errors
/// No broker, or one that refuses the messages.
pub async fn run(args: &CommonArgs, shape: Shape) -> anyhow::Result<()> {
    let brokers = args
        .kafka_brokers
        .as_deref()
        .context("bench-publish needs --kafka-brokers (KAFKA_BROKERS)")?;
    let (_, publisher) = kafka::publisher(args, &kafka::connection(args, brokers)?).await?;
    let filler = "x".repeat(shape.payload_bytes.saturating_sub(40));
    let all: Vec<Message> = (0..shape.messages)
        .map(|i| Message {
            id: MessageId::from_uuid(uuid::Uuid::now_v7()),
            topic: topics::ORDER_EVENTS.to_owned(),
            key: format!("order-{}", i % shape.keys.max(1)),
            message_type: "ordership.bench.v1".to_owned(),
            source: "/bench".to_owned(),
            payload: serde_json::json!({ "n": i, "filler": filler }),
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            traceparent: None,
            occurred_at: chrono::Utc::now(),
        })
        .collect();
    let started = std::time::Instant::now();
    for chunk in all.chunks(shape.batch.max(1)) {
        publisher.publish(chunk).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "a rate")]
    let rate = shape.messages as f64 / seconds.max(1e-9);
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::json!({ "messages": shape.messages, "seconds": seconds, "per_second": rate })
    )?;
    Ok(())
}
