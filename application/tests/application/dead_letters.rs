//! The full circle of a poison message: it fails for good and is dead-lettered and indexed; the
//! bug is fixed; an operator re-drives it; it comes back through the outbox and the relay with
//! its own id and key; its effect happens once, and a redelivery of it has none.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ordership_application::dead_letters::{list, purge, redrive, show};
use ordership_application::messages::delivery_commands::schedule_delivery;
use ordership_application::{DeadLetterIndex, DeliveryService, OutboxRelay, RelayConfig};
use ordership_domain::ports::{
    DeadLetterQuery, DeadLetterSelection, DeliveryTransaction, HandleError, HandleOutcome,
    MessageHandler, MessagePublisher, Transaction, UnitOfWork,
};
use ordership_domain::{DeliveryPolicy, Message, Order, OrderId, topics};
use ordership_memory::{BusConfig, InProcessBus, MemoryStore, SystemClock, UuidV7Ids};
use tokio::time::Instant;

const CONSUMER: &str = ordership_application::deliveries::CONSUMER;

/// The delivery service with a bug that refuses every message until it is fixed.
struct Buggy {
    inner: DeliveryService,
    broken: AtomicBool,
}

#[async_trait]
impl MessageHandler for Buggy {
    async fn handle(&self, message: &Message) -> Result<HandleOutcome, HandleError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(HandleError::Permanent("a bug refuses this message".into()));
        }
        self.inner.handle(message).await
    }
}

/// Polls `check` until it holds, failing after 5 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn everything() -> DeadLetterQuery {
    DeadLetterQuery {
        consumer: Some(CONSUMER.to_owned()),
        include_redriven: true,
        after: None,
        limit: 100,
    }
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_fixed_redriven_and_takes_effect_once() {
    let store = MemoryStore::new();
    let uow: Arc<dyn UnitOfWork<dyn Transaction>> = Arc::new(store.clone());
    let bus = InProcessBus::new(BusConfig::default());
    let buggy = Arc::new(Buggy {
        inner: DeliveryService::new(
            Arc::new(store.clone()),
            Arc::new(SystemClock),
            Arc::new(UuidV7Ids),
            DeliveryPolicy::default(),
        ),
        broken: AtomicBool::new(true),
    });
    let index = DeadLetterIndex {
        store: Arc::clone(&uow),
        clock: Arc::new(SystemClock),
    };
    let handler: Arc<dyn MessageHandler> = buggy.clone();
    bus.subscribe_indexed(topics::DELIVERY_COMMANDS, CONSUMER, &handler, Some(&index));

    let order_id = OrderId::from_uuid(uuid::Uuid::now_v7());
    let (order, _) = Order::place(
        order_id,
        ordership_tests::fixtures::place_order("KR"),
        chrono::Utc::now(),
    );
    let poison = schedule_delivery(ordership_tests::fixtures::envelope(), &order).expect("message");
    bus.publish(std::slice::from_ref(&poison))
        .await
        .expect("published");

    // Dead-lettered, and indexed with its reason and message.
    eventually("the message is dead-lettered", || async {
        !list(uow.as_ref(), &everything())
            .await
            .expect("list")
            .is_empty()
    })
    .await;
    let dead = list(uow.as_ref(), &everything()).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message, poison, "the message as it came");
    assert!(
        dead[0].reason.contains("a bug refuses"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].attempts, 1, "a permanent failure is not retried");
    assert_eq!(
        show(uow.as_ref(), dead[0].id).await.expect("show").as_ref(),
        Some(&dead[0])
    );
    assert!(store.deliveries().await.is_empty(), "no effect yet");

    // Fixed, then re-driven: back through the outbox and the relay, to its topic and key.
    buggy.broken.store(false, Ordering::SeqCst);
    let sent = redrive(
        uow.as_ref(),
        Some(CONSUMER),
        &DeadLetterSelection::All,
        chrono::Utc::now(),
    )
    .await
    .expect("redrive");
    assert_eq!(sent.len(), 1);
    let again = redrive(
        uow.as_ref(),
        Some(CONSUMER),
        &DeadLetterSelection::All,
        chrono::Utc::now(),
    )
    .await
    .expect("redrive");
    assert!(
        again.is_empty(),
        "a re-driven letter is not re-driven twice"
    );
    let relay = OutboxRelay::<dyn DeliveryTransaction>::new(
        Arc::new(store.clone()),
        Arc::new(bus.clone()),
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        RelayConfig::default(),
    );
    assert_eq!(relay.relay_once().await.expect("relayed"), 1);
    eventually("the re-driven message takes effect", || async {
        store.deliveries().await.len() == 1
    })
    .await;
    let published: Vec<Message> = store
        .outbox_messages()
        .await
        .into_iter()
        .map(|(m, _)| m)
        .filter(|m| m.id == poison.id)
        .collect();
    assert_eq!(
        published,
        std::slice::from_ref(&poison),
        "same id, topic, key and headers"
    );

    // A redelivery of it has no effect: the inbox knows it.
    bus.publish(std::slice::from_ref(&poison))
        .await
        .expect("published");
    eventually("the duplicate is discarded", || async {
        bus.consumer_stats()
            .duplicates_discarded
            .load(Ordering::SeqCst)
            == 1
    })
    .await;
    let deliveries = store.deliveries().await;
    assert_eq!(deliveries.len(), 1, "one delivery");
    assert_eq!(deliveries[0].order_id(), order_id);
    let letters = list(uow.as_ref(), &everything()).await.expect("list");
    assert!(letters[0].redriven_at.is_some(), "marked re-driven");
    assert_eq!(
        purge(uow.as_ref(), Some(CONSUMER), &DeadLetterSelection::All)
            .await
            .expect("purge"),
        0,
        "only dead letters are purged"
    );
}
