//! Tests where the calls matter or a failure is injected: mockall mocks of the ports, wrapped
//! around the real in-memory transaction.

use std::sync::Arc;

use async_trait::async_trait;
use ordership_application::{OrderService, OutboxRelay, PlaceOrderError, RelayConfig, RelayError};
use ordership_domain::ports::{
    DeadLetters, IdempotencyStore, Inbox, MockMessagePublisher, MockOutbox, OrderRepository,
    OrderTransaction, Outbox, PublishError, SagaRepository, StoreError, Transaction, UnitOfWork,
};
use ordership_memory::{MemoryStore, SystemClock, UuidV7Ids};

use crate::harness::{config, place, render};

/// A transaction of the memory store with an injected outbox and/or a commit that fails.
struct Injected {
    inner: Box<dyn OrderTransaction>,
    outbox: Option<MockOutbox>,
    fail_commit: bool,
}

#[async_trait]
impl Transaction for Injected {
    fn outbox(&mut self) -> &mut dyn Outbox {
        if let Some(mock) = self.outbox.as_mut() {
            return mock;
        }
        self.inner.outbox()
    }
    fn inbox(&mut self) -> &mut dyn Inbox {
        self.inner.inbox()
    }
    fn dead_letters(&mut self) -> &mut dyn DeadLetters {
        self.inner.dead_letters()
    }
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        if self.fail_commit {
            drop(self.inner);
            return Err(StoreError::Unavailable(
                "connection lost during commit".into(),
            ));
        }
        self.inner.commit().await
    }
}

impl OrderTransaction for Injected {
    fn orders(&mut self) -> &mut dyn OrderRepository {
        self.inner.orders()
    }
    fn sagas(&mut self) -> &mut dyn SagaRepository {
        self.inner.sagas()
    }
    fn idempotency_keys(&mut self) -> &mut dyn IdempotencyStore {
        self.inner.idempotency_keys()
    }
}

struct InjectingStore {
    store: MemoryStore,
    outbox: fn() -> Option<MockOutbox>,
    fail_commit: bool,
}

#[async_trait]
impl UnitOfWork<dyn OrderTransaction> for InjectingStore {
    async fn begin(&self) -> Result<Box<dyn OrderTransaction>, StoreError> {
        let inner = UnitOfWork::<dyn OrderTransaction>::begin(&self.store).await?;
        Ok(Box::new(Injected {
            inner,
            outbox: (self.outbox)(),
            fail_commit: self.fail_commit,
        }))
    }
}

fn service(uow: InjectingStore) -> OrderService {
    OrderService::new(
        Arc::new(uow),
        Arc::new(SystemClock),
        Arc::new(UuidV7Ids),
        config(),
    )
}

#[tokio::test]
async fn a_failing_commit_leaves_no_order_and_no_outbox_message() {
    let store = MemoryStore::new();
    let orders = service(InjectingStore {
        store: store.clone(),
        outbox: || None,
        fail_commit: true,
    });
    let err = orders
        .place_order(place("KR"), None, None, &render)
        .await
        .expect_err("commit fails");
    assert!(matches!(err, PlaceOrderError::Unavailable(_)));
    assert!(store.orders().await.is_empty());
    assert!(store.outbox_messages().await.is_empty());
}

#[tokio::test]
async fn an_outbox_failure_rolls_back_the_order_and_its_saga() {
    let store = MemoryStore::new();
    let orders = service(InjectingStore {
        store: store.clone(),
        outbox: || {
            let mut outbox = MockOutbox::new();
            outbox
                .expect_append_all()
                .times(1)
                .returning(|_| Err(StoreError::Unavailable("disk full".into())));
            Some(outbox)
        },
        fail_commit: false,
    });
    let err = orders
        .place_order(place("KR"), None, None, &render)
        .await
        .expect_err("append fails");
    assert!(matches!(err, PlaceOrderError::Unavailable(_)));
    assert!(
        store.orders().await.is_empty(),
        "the order must be rolled back"
    );
}

async fn store_with_two_messages() -> MemoryStore {
    let store = MemoryStore::new();
    service(InjectingStore {
        store: store.clone(),
        outbox: || None,
        fail_commit: false,
    })
    .place_order(place("KR"), None, None, &render)
    .await
    .expect("placed");
    store
}

fn relay(
    store: &MemoryStore,
    publisher: MockMessagePublisher,
) -> OutboxRelay<dyn OrderTransaction> {
    OutboxRelay::new(
        Arc::new(store.clone()),
        Arc::new(publisher),
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        RelayConfig::default(),
    )
}

#[tokio::test]
async fn the_relay_publishes_a_batch_once_and_marks_it() {
    let store = store_with_two_messages().await;
    let mut publisher = MockMessagePublisher::new();
    publisher
        .expect_publish()
        .withf(|batch| batch.len() == 2)
        .times(1)
        .returning(|_| Ok(()));
    let relay = relay(&store, publisher);
    assert_eq!(relay.relay_once().await.expect("relay"), 2);
    assert_eq!(
        relay.relay_once().await.expect("relay"),
        0,
        "nothing left to publish"
    );
    assert!(
        store
            .outbox_messages()
            .await
            .iter()
            .all(|(_, published)| *published)
    );
}

#[tokio::test]
async fn a_batch_the_broker_did_not_acknowledge_stays_in_the_outbox() {
    let store = store_with_two_messages().await;
    let mut publisher = MockMessagePublisher::new();
    let mut sequence = mockall::Sequence::new();
    publisher
        .expect_publish()
        .times(1)
        .in_sequence(&mut sequence)
        .returning(|_| Err(PublishError::Unavailable("broker down".into())));
    publisher
        .expect_publish()
        .withf(|batch| batch.len() == 2)
        .times(1)
        .in_sequence(&mut sequence)
        .returning(|_| Ok(()));
    let relay = relay(&store, publisher);
    assert!(matches!(
        relay.relay_once().await,
        Err(RelayError::Publish(_))
    ));
    assert!(
        store
            .outbox_messages()
            .await
            .iter()
            .all(|(_, published)| !published)
    );
    assert_eq!(relay.relay_once().await.expect("relay"), 2);
}

#[tokio::test]
async fn a_refused_message_is_parked_and_holds_back_its_key() {
    // Both messages of a placed order share its key: OrderPlaced, then ScheduleDelivery.
    let store = store_with_two_messages().await;
    let second = store.outbox_messages().await[1].0.id;
    let mut publisher = MockMessagePublisher::new();
    publisher.expect_publish().times(1).returning(move |_| {
        Err(PublishError::Refused {
            message_id: second,
            reason: "too large".into(),
        })
    });
    let relay = relay(&store, publisher);
    assert_eq!(relay.relay_once().await.expect("relay"), 1);
    let published: Vec<bool> = store
        .outbox_messages()
        .await
        .iter()
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(published, [true, false]);
    // Parked: not offered to the broker again (the mock allows one call only).
    assert_eq!(relay.relay_once().await.expect("relay"), 0);
}

/// A signal that never fires: only the relay's own "more" can make it read again before the
/// poll interval.
struct Silent;

#[async_trait]
impl ordership_domain::ports::OutboxSignal for Silent {
    async fn committed(&self) -> ordership_domain::ports::Committed {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_cdc_relay_reads_again_at_once_while_the_feed_stops_at_its_limit() {
    use ordership_application::{CdcRelay, ShutdownTrigger};
    use ordership_domain::ports::{FeedBatch, FeedPosition, MockOutboxFeed};

    // Three reads that stopped at the feed's limit — with fewer messages than the batch size,
    // as a log's begin/commit records make them — then nothing.
    let mut feed = MockOutboxFeed::new();
    let mut sequence = mockall::Sequence::new();
    for n in 0..3 {
        feed.expect_peek()
            .times(1)
            .in_sequence(&mut sequence)
            .returning(move |_| {
                Ok(FeedBatch {
                    messages: vec![ordership_tests::fixtures::message("t", "k", n)],
                    up_to: Some(FeedPosition(format!("0/{n}"))),
                    more: true,
                })
            });
    }
    feed.expect_peek().returning(|_| Ok(FeedBatch::default()));
    let confirmed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&confirmed);
    feed.expect_confirm().returning(move |position| {
        seen.lock().expect("lock").push(position.0.clone());
        Ok(())
    });
    let mut publisher = MockMessagePublisher::new();
    publisher.expect_publish().returning(|_| Ok(()));
    let relay = CdcRelay::new(
        Arc::new(feed),
        Arc::new(publisher),
        Arc::new(Silent),
        Arc::new(SystemClock),
        RelayConfig {
            // Were the loop to wait for the next poll, this test would wait an hour.
            poll_interval: std::time::Duration::from_secs(3_600),
            ..RelayConfig::default()
        },
    );
    let (trigger, shutdown) = ShutdownTrigger::new();
    let running = tokio::spawn(async move { relay.run(shutdown).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while confirmed.lock().expect("lock").len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay waited for a poll with more in the feed: confirmed {:?}",
            confirmed.lock().expect("lock")
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    trigger.trigger();
    running.await.expect("relay stopped");
    assert_eq!(*confirmed.lock().expect("lock"), ["0/0", "0/1", "0/2"]);
}

/// Claims the mocked outbox below has answered (one test uses it).
static CLAIMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The positions it was asked to mark, call by call.
static MARKED: std::sync::Mutex<Vec<Vec<i64>>> = std::sync::Mutex::new(Vec::new());

/// An outbox with two full batches of two messages (positions 1–2 and 3–4), then nothing.
fn two_full_batches() -> Option<MockOutbox> {
    use ordership_domain::OutboxEntry;
    let entry = |position: i64| OutboxEntry {
        position,
        message: ordership_tests::fixtures::message("t", "k", position.unsigned_abs()),
        created_at: chrono::Utc::now(),
    };
    let mut outbox = MockOutbox::new();
    // One shard.
    outbox.expect_try_lock_relay().returning(|_| {
        use ordership_domain::relay_shards::{Shard, Shards};
        Ok(Shards::one(Shard { index: 0, count: 1 }))
    });
    outbox
        .expect_claim_unpublished()
        .returning(move |_shards, limit, skip| {
            assert_eq!(limit, 2);
            let n = CLAIMS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(match n {
                0 => vec![entry(1), entry(2)],
                1 => {
                    assert_eq!(skip, [1, 2], "the batch in flight is skipped");
                    vec![entry(3), entry(4)]
                }
                _ => Vec::new(),
            })
        });
    outbox.expect_mark_published().returning(|positions, _| {
        MARKED.lock().expect("lock").push(positions.to_vec());
        Ok(())
    });
    Some(outbox)
}

/// Holds the first batch until the relay has claimed the next one (or gives up after 5 s).
struct WaitsForTheNextClaim;

#[async_trait]
impl ordership_domain::ports::MessagePublisher for WaitsForTheNextClaim {
    async fn publish(&self, batch: &[ordership_domain::Message]) -> Result<(), PublishError> {
        if batch[0].payload["n"] == 1 {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while CLAIMS.load(std::sync::atomic::Ordering::SeqCst) < 2 {
                if std::time::Instant::now() > deadline {
                    return Err(PublishError::Unavailable(
                        "the relay did not claim the next batch while this one was in flight"
                            .into(),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_relay_claims_the_next_batch_while_the_broker_takes_this_one_and_marks_only_what_it_acknowledged()
 {
    let relay = OutboxRelay::<dyn OrderTransaction>::new(
        Arc::new(InjectingStore {
            store: MemoryStore::new(),
            outbox: two_full_batches,
            fail_commit: false,
        }),
        Arc::new(WaitsForTheNextClaim),
        Arc::new(Silent),
        Arc::new(SystemClock),
        RelayConfig {
            batch_size: 2,
            ..RelayConfig::default()
        },
    );
    assert_eq!(relay.relay_once().await.expect("relay"), 4);
    assert_eq!(
        *MARKED.lock().expect("lock"),
        [vec![1, 2], vec![3, 4]],
        "each batch marked once, after its acknowledgement"
    );
}
