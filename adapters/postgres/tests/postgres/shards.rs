//! The outbox in shards (ADR 0028): leases divide the shards among relay instances and pass a
//! dead instance's shards on; relays of different shards publish at once while each key stays
//! in order; resharding waits for the relays and keeps the order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ordership_application::{OutboxRelay, RelayConfig, ShutdownTrigger};
use ordership_domain::ports::{
    Committed, MessagePublisher, OrderTransaction, PublishError, RelayLeases, UnitOfWork,
};
use ordership_domain::{Message, OrderId};
use ordership_memory::SystemClock;
use ordership_postgres::testing::fresh_database;
use ordership_postgres::{ORDERS, PgOrderStore, PgOutboxSignal, PgRelayLeases};
use sqlx::PgPool;

use crate::harness::message;

/// Everything the relays of a test published, in the order the "broker" took it, with the
/// instance that sent it.
#[derive(Default)]
struct Broker(Mutex<Vec<(&'static str, Message)>>);

impl Broker {
    fn published(&self) -> Vec<(&'static str, Message)> {
        self.0.lock().expect("lock").clone()
    }
}

struct Instance {
    name: &'static str,
    broker: Arc<Broker>,
}

#[async_trait::async_trait]
impl MessagePublisher for Instance {
    async fn publish(&self, batch: &[Message]) -> Result<(), PublishError> {
        let mut log = self.broker.0.lock().expect("lock");
        log.extend(batch.iter().map(|m| (self.name, m.clone())));
        Ok(())
    }
}

/// Commits messages `n` in `numbers` for each of `keys` (payload `n`), one transaction per
/// number.
async fn append(store: &PgOrderStore, keys: &[String], numbers: std::ops::Range<u32>) {
    for n in numbers {
        let mut tx = UnitOfWork::<dyn OrderTransaction>::begin(store)
            .await
            .expect("begin");
        for key in keys {
            let mut m = message(n);
            m.key.clone_from(key);
            tx.outbox().append(&m).await.expect("append");
        }
        tx.commit().await.expect("commit");
    }
}

fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| OrderId::from_uuid(uuid::Uuid::now_v7()).to_string())
        .collect()
}

/// Polls `done` every 20 ms until it holds; fails after `within`.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each key's messages, first sends only (a message sent again after a crash is a duplicate
/// the inbox discards), must come in the order they were appended.
fn assert_each_key_in_order(published: &[(&'static str, Message)]) {
    let mut seen = std::collections::HashSet::new();
    let mut last: HashMap<&str, i64> = HashMap::new();
    for (_, m) in published {
        if !seen.insert(m.id) {
            continue;
        }
        let n = m.payload["n"].as_i64().expect("n");
        let before = last.insert(m.key.as_str(), n);
        assert!(
            before.is_none_or(|b| b + 1 == n),
            "key {} went from {before:?} to {n}",
            m.key
        );
    }
}

fn relay(
    store: &PgOrderStore,
    name: &'static str,
    broker: &Arc<Broker>,
) -> Arc<OutboxRelay<dyn OrderTransaction>> {
    Arc::new(OutboxRelay::new(
        Arc::new(store.clone()),
        Arc::new(Instance {
            name,
            broker: Arc::clone(broker),
        }),
        Arc::new(PgOutboxSignal::new(store.pool().clone(), &ORDERS)),
        Arc::new(SystemClock),
        RelayConfig {
            batch_size: 16,
            lease_term: Duration::from_millis(900),
            ..RelayConfig::default()
        },
    ))
}

async fn owners(pool: &PgPool) -> Vec<Option<String>> {
    ORDERS
        .relay_leases(pool)
        .await
        .expect("leases")
        .into_iter()
        .map(|l| l.owner)
        .collect()
}

#[tokio::test]
async fn renewals_divide_the_shards_and_pass_those_of_a_silent_instance_on() {
    let pool = fresh_database().await;
    let leases = PgRelayLeases::new(pool.clone(), &ORDERS);
    let term = Duration::from_millis(600);
    assert_eq!(
        leases.renew("a", term).await.expect("a").indexes,
        [0, 1, 2, 3]
    );
    // b announces itself and finds nothing free; a then gives two up, which b takes.
    assert!(leases.renew("b", term).await.expect("b").indexes.is_empty());
    let silent = Instant::now();
    assert_eq!(leases.renew("a", term).await.expect("a").indexes, [0, 1]);
    let b = leases.renew("b", term).await.expect("b");
    assert_eq!((b.indexes, b.count), (vec![2, 3], 4));
    // a goes silent after that renewal: once its leases expire, b's renewal takes its shards.
    eventually("b takes a's shards", Duration::from_secs(5), || async {
        leases.renew("b", term).await.expect("b").indexes == [0, 1, 2, 3]
    })
    .await;
    assert!(silent.elapsed() >= term, "not before a's leases expired");
    // A release hands every shard on at once.
    leases.release("b").await.expect("release");
    assert_eq!(owners(&pool).await, [None, None, None, None]);
    assert_eq!(
        leases.renew("c", term).await.expect("c").indexes,
        [0, 1, 2, 3]
    );
}

#[tokio::test]
async fn the_wake_up_names_the_keys_that_committed() {
    let pool = fresh_database().await;
    let store = PgOrderStore::new(pool.clone());
    let woken = crate::harness::listening_to_the_outbox(&pool).await;
    append(&store, &keys(1), 0..1).await;
    let hash: i32 = sqlx::query_scalar("SELECT key_hash FROM orders.outbox")
        .fetch_one(&pool)
        .await
        .expect("hash");
    let committed = tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("woken")
        .expect("task");
    assert_eq!(committed, Committed::Keys(vec![hash.unsigned_abs()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_shards_keep_each_key_in_order_and_one_takes_over_when_the_other_dies()
 {
    let pool = fresh_database().await;
    let store = PgOrderStore::new(pool.clone());
    let broker = Arc::new(Broker::default());
    let leases: Arc<dyn RelayLeases> = Arc::new(PgRelayLeases::new(pool.clone(), &ORDERS));
    let (stop, shutdown) = ShutdownTrigger::new();
    let a = tokio::spawn(relay(&store, "a", &broker).run_sharded(
        Arc::clone(&leases),
        "a".into(),
        shutdown.clone(),
    ));
    let b = tokio::spawn(relay(&store, "b", &broker).run_sharded(
        Arc::clone(&leases),
        "b".into(),
        shutdown.clone(),
    ));
    eventually("two shards each", Duration::from_secs(10), || async {
        let owners = owners(&pool).await;
        ["a", "b"]
            .iter()
            .all(|name| owners.iter().filter(|o| o.as_deref() == Some(name)).count() == 2)
    })
    .await;

    let first = keys(40);
    append(&store, &first, 0..5).await;
    eventually(
        "the first 200 published",
        Duration::from_secs(10),
        || async { broker.published().len() >= 200 },
    )
    .await;
    let published = broker.published();
    for name in ["a", "b"] {
        let sent = published.iter().filter(|(by, _)| *by == name).count();
        assert!(
            sent >= 20,
            "{name} published only {sent} of 200: {:?}",
            owners(&pool).await
        );
    }

    // a dies without giving its leases up: b takes its shards once they expire, and publishes
    // what a would have.
    a.abort();
    let died = Instant::now();
    let second = keys(40);
    append(&store, &second, 0..5).await;
    eventually("b owns every shard", Duration::from_secs(10), || async {
        owners(&pool)
            .await
            .iter()
            .all(|o| o.as_deref() == Some("b"))
    })
    .await;
    let took_over = died.elapsed();
    eventually("everything published", Duration::from_secs(10), || async {
        let ids: std::collections::HashSet<_> =
            broker.published().into_iter().map(|(_, m)| m.id).collect();
        ids.len() == 400
    })
    .await;
    assert!(
        took_over < Duration::from_millis(900 + 300 + 1000),
        "take-over took {took_over:?}: more than a term and a renewal"
    );
    assert_each_key_in_order(&broker.published());
    stop.trigger();
    b.await.expect("b stops");
    assert_eq!(
        owners(&pool).await,
        [None, None, None, None],
        "b gave its leases up"
    );
}

/// A transaction of another relay that holds shard 2's right (of 4) until it ends.
async fn hold_shard_2(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut holder = pool.begin().await.expect("begin");
    let held: Option<i32> = sqlx::query_scalar("SELECT orders.lock_relay_shard(2)")
        .fetch_one(&mut *holder)
        .await
        .expect("lock");
    assert_eq!(held, Some(4), "shard 2 of 4 held");
    holder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_waits_for_a_publishing_relay_and_every_key_stays_in_order() {
    let pool = fresh_database().await;
    let store = PgOrderStore::new(pool.clone());
    let all = keys(30);
    append(&store, &all, 0..4).await;
    let holder = hold_shard_2(&pool).await;
    let resharding = {
        let pool = pool.clone();
        tokio::spawn(async move { ORDERS.reshard(&pool, 7).await })
    };
    eventually(
        "the resharding waits for the relay",
        Duration::from_secs(5),
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%reshard_outbox%' \
             AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
            )
            .fetch_one(&pool)
            .await
            .expect("activity");
            waiting == 1
        },
    )
    .await;
    assert_eq!(ORDERS.relay_shards(&pool).await.expect("count"), 4);
    holder.commit().await.expect("commit");
    resharding.await.expect("task").expect("resharded");
    assert_eq!(ORDERS.relay_shards(&pool).await.expect("count"), 7);

    append(&store, &all, 4..8).await;
    let broker = Arc::new(Broker::default());
    let relay = relay(&store, "a", &broker);
    // One transaction carries 8 batches of 16: relay until the outbox is empty.
    let mut published = 0;
    loop {
        match relay.relay_once().await.expect("relay") {
            0 => break,
            n => published += n,
        }
    }
    assert_eq!(published, 240);
    // Each key's messages from before the resharding (0..4), then those after it (4..8).
    assert_each_key_in_order(&broker.published());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_transaction_publishes_every_free_shard_and_leaves_a_busy_one_to_its_holder() {
    let pool = fresh_database().await;
    let store = PgOrderStore::new(pool.clone());
    let all = keys(60);
    append(&store, &all, 0..2).await;
    let in_shard = |index: i32| {
        let pool = pool.clone();
        async move {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM orders.outbox WHERE key_hash % 4 = $1")
                    .bind(index)
                    .fetch_one(&pool)
                    .await
                    .expect("count");
            usize::try_from(n).expect("a count")
        }
    };
    let busy = in_shard(2).await;
    assert!(
        busy > 0,
        "60 keys leave no shard empty (but once in 7 million)"
    );
    let holder = hold_shard_2(&pool).await;
    let broker = Arc::new(Broker::default());
    let relay = relay(&store, "a", &broker);
    assert_eq!(
        relay.relay_once().await.expect("relay"),
        120 - busy,
        "shards 0, 1 and 3 in one transaction"
    );
    assert_eq!(in_shard(2).await, busy, "shard 2 is left to its holder");
    holder.commit().await.expect("commit");
    assert_eq!(relay.relay_once().await.expect("relay"), busy);
    assert_each_key_in_order(&broker.published());
}
