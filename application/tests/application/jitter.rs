//! Jitter reaches the waits it is for: two consumers with different random sources wait
//! differently after the same failures, and two sweepers set different deadlines for the same
//! re-send. Each goes red if its loop stopped drawing (a fixed share gives equal waits).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use ordership_application::consumer::DeadLetterSink;
use ordership_application::{ConsumerLoop, ShutdownTrigger};
use ordership_domain::ports::{HandleError, HandleOutcome, MessageHandler};
use ordership_domain::{Message, MessageId, RetryPolicy, SeededRandom};

use crate::harness::World;

/// Fails every time, noting when it was called (Tokio's paused clock).
#[derive(Default)]
struct AlwaysFailing(Mutex<Vec<tokio::time::Instant>>);

#[async_trait]
impl MessageHandler for AlwaysFailing {
    async fn handle(&self, _: &Message) -> Result<HandleOutcome, HandleError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tokio::time::Instant::now());
        Err(HandleError::Transient("not yet".into()))
    }
}

struct Parked;

#[async_trait]
impl DeadLetterSink for Parked {
    async fn park(&self, _: &str) -> Result<(), ordership_domain::ports::BoxError> {
        Ok(())
    }
}

fn message() -> Message {
    Message {
        id: MessageId::from_uuid(uuid::Uuid::now_v7()),
        topic: "t".into(),
        key: "k".into(),
        message_type: "ordership.test.v1".into(),
        source: "/test".into(),
        payload: serde_json::json!({}),
        correlation_id: uuid::Uuid::now_v7(),
        causation_id: None,
        traceparent: None,
        occurred_at: chrono::Utc::now(),
    }
}

/// The waits between the attempts of one message that always fails, drawn from `seed`.
async fn consumer_waits(seed: u64) -> Vec<Duration> {
    let handler = Arc::new(AlwaysFailing::default());
    let policy = RetryPolicy {
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
        max_attempts: 5,
    };
    let consumer = ConsumerLoop::new("g", handler.clone(), policy, Arc::default())
        .with_random(Arc::new(SeededRandom::new(seed)));
    let (_trigger, mut stop) = ShutdownTrigger::new();
    assert!(consumer.process(Ok(&message()), &mut stop, &Parked).await);
    let calls = handler.0.lock().unwrap_or_else(PoisonError::into_inner);
    calls.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn two_consumers_wait_differently_after_the_same_failures() {
    let (a, b) = (consumer_waits(1).await, consumer_waits(2).await);
    assert_eq!(a.len(), 4, "five attempts, four waits");
    assert_ne!(a, b, "the waits are drawn, not fixed");
    for (i, wait) in a.iter().chain(&b).enumerate() {
        let ceiling = Duration::from_secs(1) * 2u32.pow(u32::try_from(i % 4).expect("small"));
        assert!(
            *wait <= ceiling + Duration::from_millis(5),
            "{wait:?} > {ceiling:?}"
        );
    }
}

/// How long after the sweep the re-sent command's reply is due, with the sweeper drawing from
/// `seed`.
async fn resend_deadline(seed: u64) -> chrono::Duration {
    let mut world = World::new();
    world.saga = world
        .saga
        .clone()
        .with_random(Arc::new(SeededRandom::new(seed)));
    let id = world.place("KR").await;
    let _lost = world.commands().await;
    assert_eq!(world.time_out().await.retried, 1);
    let saga = world.view(id).await.saga.expect("saga");
    saga.deadline().expect("a deadline") - ordership_domain::ports::Clock::now(&world.clock)
}

#[tokio::test]
async fn two_sweepers_set_different_deadlines_for_the_same_resend() {
    let (a, b) = (resend_deadline(1).await, resend_deadline(2).await);
    assert_ne!(a, b, "the re-send's deadline is drawn, not fixed");
    let reply_timeout = chrono::Duration::seconds(10);
    assert!(a >= reply_timeout && b >= reply_timeout, "{a} {b}");
}
