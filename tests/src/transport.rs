//! The contract of a transport (the in-process bus, Kafka): what every consumer of ordership may
//! rely on, whichever carries its messages. Written once against [`TransportUnderTest`] and
//! instantiated for each transport with [`crate::transport_contract_tests!`].
//!
//! Every transport runs the application's one consumer loop; these checks make sure each wires it
//! the same way: one key's messages in order, outages waited out, a message that keeps failing or
//! can never succeed dead-lettered with its reason, and the partition moving on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use ordership_application::ConsumerStats;
use ordership_domain::RetryPolicy;
use ordership_domain::ports::{MessageHandler, MessagePublisher};

use crate::fakes::FakeHandler;
use crate::fixtures::{message, wait_until};

/// A transport, set up for one test with the retry policy the test gives.
#[async_trait]
pub trait TransportUnderTest: Send + Sync {
    /// A topic of this test's own, with its dead-letter queue.
    async fn topic(&self, name: &str) -> String;

    /// Where the test publishes.
    fn publisher(&self) -> Arc<dyn MessagePublisher>;

    /// Starts a consumer group of its own on `topic`, delivering to `handler`; returns its
    /// counters.
    async fn consume(&self, topic: &str, handler: Arc<dyn MessageHandler>) -> Arc<ConsumerStats>;

    /// The payloads and reasons of the first `count` messages dead-lettered from `topic`.
    async fn dead_letters(&self, topic: &str, count: usize) -> Vec<(serde_json::Value, String)>;

    /// Stops every consumer the test started.
    async fn stop(&self);
}

/// The retry policy of every check: fast, five attempts.
#[must_use]
pub fn policy() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_attempts: 5,
    }
}

/// Every message arrives, and one key's messages in the order they were published.
pub async fn messages_of_one_key_arrive_in_order(transport: &dyn TransportUnderTest) {
    let topic = transport.topic("order").await;
    let recorder = Arc::new(FakeHandler::default());
    transport.consume(&topic, recorder.clone()).await;
    let batch: Vec<_> = (0..200)
        .map(|n| message(&topic, &format!("k{}", n % 7), n))
        .collect();
    transport
        .publisher()
        .publish(&batch)
        .await
        .expect("publish");
    wait_until("every message is handled", || {
        recorder.seen_keys().len() >= 200
    })
    .await;
    let seen = recorder.seen_keys();
    for key in 0..7 {
        let ns: Vec<u64> = seen
            .iter()
            .filter(|(k, _)| *k == format!("k{key}"))
            .map(|(_, n)| *n)
            .collect();
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "key k{key} out of order: {ns:?}"
        );
    }
    transport.stop().await;
}

/// An outage is waited out however long it lasts, a conflict is retried, and neither moves on
/// to the next message nor dead-letters anything.
pub async fn failures_are_retried_without_moving_on(transport: &dyn TransportUnderTest) {
    let topic = transport.topic("retried").await;
    // 20 outage failures, more than max_attempts, then 4 conflicts, one fewer than it.
    let recorder = Arc::new(FakeHandler::failing(20, 4));
    let stats = transport.consume(&topic, recorder.clone()).await;
    let batch = [message(&topic, "k", 1), message(&topic, "k", 2)];
    transport
        .publisher()
        .publish(&batch)
        .await
        .expect("publish");
    wait_until("both messages are handled", || {
        recorder.seen_keys().len() >= 2
    })
    .await;
    assert_eq!(
        recorder.seen_keys(),
        [("k".to_owned(), 1), ("k".to_owned(), 2)]
    );
    assert_eq!(stats.transient_failures.load(Ordering::Relaxed), 24);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    transport.stop().await;
}

/// Publishes message `first` then message 2 on one key, and waits until message 2 is handled.
async fn publish_and_await_the_next(
    transport: &dyn TransportUnderTest,
    topic: &str,
    recorder: &FakeHandler,
    first: u64,
) {
    let batch = [message(topic, "k", first), message(topic, "k", 2)];
    transport
        .publisher()
        .publish(&batch)
        .await
        .expect("publish");
    wait_until("the next message is handled", || {
        !recorder.seen_keys().is_empty()
    })
    .await;
    assert_eq!(recorder.seen_keys(), [("k".to_owned(), 2)]);
}

/// A message that keeps failing is dead-lettered after the last attempt, with the reason, and
/// the next message of its key is handled.
pub async fn a_message_that_keeps_failing_is_dead_lettered_after_max_attempts(
    transport: &dyn TransportUnderTest,
) {
    let topic = transport.topic("failing").await;
    let recorder = Arc::new(FakeHandler::failing(0, 5));
    let stats = transport.consume(&topic, recorder.clone()).await;
    publish_and_await_the_next(transport, &topic, &recorder, 1).await;
    assert_eq!(
        (
            stats.transient_failures.load(Ordering::Relaxed),
            stats.dead_lettered.load(Ordering::Relaxed)
        ),
        (4, 1),
        "four retries, then the fifth failure dead-letters"
    );
    let dead = transport.dead_letters(&topic, 1).await;
    assert_eq!(
        dead,
        [(
            serde_json::json!({ "n": 1 }),
            "failed attempt 5 of 5: version conflict".to_owned()
        )]
    );
    transport.stop().await;
}

/// A message that can never succeed is dead-lettered at once, and the next one is handled.
pub async fn a_poison_message_is_dead_lettered_and_the_next_one_is_handled(
    transport: &dyn TransportUnderTest,
) {
    let topic = transport.topic("poison").await;
    let recorder = Arc::new(FakeHandler::default());
    let stats = transport.consume(&topic, recorder.clone()).await;
    publish_and_await_the_next(transport, &topic, &recorder, 999).await;
    assert_eq!(stats.transient_failures.load(Ordering::Relaxed), 0);
    let dead = transport.dead_letters(&topic, 1).await;
    assert_eq!(
        dead,
        [(serde_json::json!({ "n": 999 }), "poison".to_owned())]
    );
    transport.stop().await;
}

/// Instantiates the transport contract: one test per check, each on a transport made by
/// `$make` (an async expression of type `Box<dyn TransportUnderTest>`).
#[macro_export]
macro_rules! transport_contract_tests {
    ($make:expr) => {
        $crate::transport_contract_tests!(@each $make;
            messages_of_one_key_arrive_in_order,
            failures_are_retried_without_moving_on,
            a_message_that_keeps_failing_is_dead_lettered_after_max_attempts,
            a_poison_message_is_dead_lettered_and_the_next_one_is_handled
        );
    };
    (@each $make:expr; $($check:ident),+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let transport: Box<dyn $crate::transport::TransportUnderTest> = $make.await;
            $crate::transport::$check(transport.as_ref()).await;
        }
    )+};
}
