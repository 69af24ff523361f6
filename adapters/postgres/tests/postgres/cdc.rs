//! The CDC relay mode: the outbox read from the write-ahead log through a logical replication
//! slot (needs `wal_level=logical`, which scripts/test.sh sets). Each test drops its slot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ordership_application::{CdcRelay, RelayConfig};
use ordership_domain::ports::{FeedBatch, OrderTransaction, OutboxFeed, StoreError, UnitOfWork};
use ordership_domain::{Message, MessageId};
use ordership_memory::SystemClock;
use ordership_postgres::testing::fresh_database;
use ordership_postgres::{ORDERS, OutboxMode, PgOrderStore, PgOutboxFeed, PgOutboxSignal};
use sqlx::PgPool;

use crate::harness::{FakePublisher, message};

async fn append(store: &PgOrderStore, messages: &[&Message]) -> Box<dyn OrderTransaction> {
    let mut tx = UnitOfWork::<dyn OrderTransaction>::begin(store)
        .await
        .expect("begin");
    for m in messages {
        tx.outbox().append(m).await.expect("append");
    }
    tx
}

async fn rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders.outbox")
        .fetch_one(pool)
        .await
        .expect("count")
}

fn ids(batch: &FeedBatch) -> Vec<MessageId> {
    batch.messages.iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn the_feed_yields_committed_messages_in_commit_order_until_confirmed_and_no_rows_remain() {
    let pool = fresh_database().await;
    let feed = PgOutboxFeed::open(pool.clone(), &ORDERS)
        .await
        .expect("feed");
    let store = PgOrderStore::new(pool.clone()).with_outbox_mode(OutboxMode::Cdc);
    let (m1, m2, m3) = (message(1), message(2), message(3));

    // A appends first but commits last: commit order, not append order, is the feed's order.
    let a = append(&store, &[&m1]).await;
    let b = append(&store, &[&m2, &m3]).await;
    let aborted = append(&store, &[&message(99)]).await;
    b.commit().await.expect("commit");
    a.commit().await.expect("commit");
    drop(aborted);
    assert_eq!(
        rows(&pool).await,
        0,
        "inserted and deleted in one transaction"
    );

    let batch = feed.peek(100).await.expect("peek");
    assert_eq!(batch.messages[0], m2, "every attribute survives the log");
    // Not confirmed: the same batch again (a crash before the broker acknowledged replays it).
    let again = feed.peek(100).await.expect("peek");
    assert_eq!(ids(&again), ids(&batch));

    // A batch ends with what has arrived once its first transaction has: A's may come in the
    // next one. Confirmed batch after batch, the feed is in commit order.
    let mut seen = ids(&batch);
    feed.confirm(batch.up_to.as_ref().expect("a position"))
        .await
        .expect("confirm");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "every commit within 10 s: {seen:?}"
        );
        let next = feed.peek(100).await.expect("peek");
        if let Some(up_to) = &next.up_to {
            seen.extend(ids(&next));
            feed.confirm(up_to).await.expect("confirm");
        }
    }
    assert_eq!(seen, [m2.id, m3.id, m1.id]);
    let empty = feed.peek(100).await.expect("peek");
    assert!(
        empty.messages.is_empty() && empty.up_to.is_none(),
        "{empty:?}"
    );
    let m4 = message(4);
    append(&store, &[&m4]).await.commit().await.expect("commit");
    assert_eq!(ids(&feed.peek(100).await.expect("peek")), [m4.id]);
    assert!(feed.lag_bytes().await.expect("lag") > 0);
    feed.drop_slot().await.expect("drop slot");
}

#[tokio::test]
async fn a_lost_slot_fails_loudly_instead_of_starting_afresh() {
    let pool = fresh_database().await;
    let feed = PgOutboxFeed::open(pool.clone(), &ORDERS)
        .await
        .expect("feed");
    let slot = feed.slot().to_owned();
    PgOutboxFeed::open(pool.clone(), &ORDERS)
        .await
        .expect("opening again finds the same slot")
        .drop_slot()
        .await
        .expect("drop");
    match PgOutboxFeed::open(pool.clone(), &ORDERS).await {
        Err(StoreError::Unexpected(e)) => {
            assert!(e.to_string().contains(&format!("{slot} was lost")), "{e}");
        }
        other => panic!("expected a loud failure, got {other:?}"),
    }
    drop(feed);
}

#[tokio::test]
async fn the_cdc_relay_confirms_after_publishing_and_parks_what_the_broker_refuses() {
    let pool = fresh_database().await;
    let feed = Arc::new(
        PgOutboxFeed::open(pool.clone(), &ORDERS)
            .await
            .expect("feed"),
    );
    let store = PgOrderStore::new(pool.clone()).with_outbox_mode(OutboxMode::Cdc);
    let (m1, m2, m3) = (message(1), message(2), message(3));
    append(&store, &[&m1, &m2, &m3])
        .await
        .commit()
        .await
        .expect("commit");
    // The broker is down: nothing is confirmed, the batch comes again.
    let down = CdcRelay::new(
        feed.clone(),
        Arc::new(FakePublisher::down()),
        Arc::new(PgOutboxSignal::new(pool.clone(), &ORDERS)),
        Arc::new(SystemClock),
        RelayConfig::default(),
    );
    assert!(down.relay_once().await.is_err());
    assert_eq!(feed.peek(100).await.expect("peek").messages.len(), 3);

    let captured = Arc::new(FakePublisher::refusing(m2.id));
    let relay = CdcRelay::new(
        feed.clone(),
        captured.clone(),
        Arc::new(PgOutboxSignal::new(pool.clone(), &ORDERS)),
        Arc::new(SystemClock),
        RelayConfig::default(),
    );
    assert_eq!(relay.relay_once().await.expect("relay"), 3);
    assert_eq!(
        captured.take().iter().map(|m| m.id).collect::<Vec<_>>(),
        [m1.id, m3.id]
    );
    let parked: (uuid::Uuid, String) = sqlx::query_as(
        "SELECT message_id, parked_reason FROM orders.outbox WHERE parked_at IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .expect("the refused message, parked");
    assert_eq!(parked, (*m2.id.as_uuid(), "message too large".to_owned()));
    // Confirmed: nothing comes again, and the parked row is not sent either.
    assert_eq!(relay.relay_once().await.expect("relay"), 0);
    assert!(captured.take().is_empty());
    feed.drop_slot().await.expect("drop slot");
}

/// Peeks until the feed yields messages (a standby's or a reconnecting reader's next session
/// needs a moment); errors on the way are the session being restarted.
async fn next_messages(feed: &PgOutboxFeed) -> FeedBatch {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(batch) = feed.peek(100).await
            && !batch.messages.is_empty()
        {
            return batch;
        }
        assert!(
            Instant::now() < deadline,
            "the feed yielded nothing in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pid of the session streaming `slot`, once it holds it.
async fn streaming_pid(pool: &PgPool, slot: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND active",
        )
        .bind(slot)
        .fetch_optional(pool)
        .await
        .expect("slot")
        .flatten();
        if let Some(pid) = pid {
            return pid;
        }
        assert!(Instant::now() < deadline, "nobody streams {slot}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the slot's confirmed position reached `lsn` (the server learnt it).
async fn wait_until_the_slot_confirmed(pool: &PgPool, slot: &str, lsn: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reached: bool = sqlx::query_scalar(
            "SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(slot)
        .bind(lsn)
        .fetch_one(pool)
        .await
        .expect("slot");
        if reached {
            return;
        }
        assert!(Instant::now() < deadline, "the slot never confirmed {lsn}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh database, its order outbox's feed, and a store writing that outbox in CDC mode.
async fn cdc_setup() -> (PgPool, PgOutboxFeed, PgOrderStore) {
    let pool = fresh_database().await;
    let feed = PgOutboxFeed::open(pool.clone(), &ORDERS)
        .await
        .expect("feed");
    let store = PgOrderStore::new(pool.clone()).with_outbox_mode(OutboxMode::Cdc);
    (pool, feed, store)
}

#[tokio::test]
async fn one_reader_streams_the_slot_and_a_standby_takes_over_the_unconfirmed_batch_when_it_dies() {
    let pool = fresh_database().await;
    let active = PgOutboxFeed::open(pool.clone(), &ORDERS)
        .await
        .expect("feed");
    let standby = PgOutboxFeed::open(pool.clone(), &ORDERS)
        .await
        .expect("feed");
    let store = PgOrderStore::new(pool.clone()).with_outbox_mode(OutboxMode::Cdc);
    let (m1, m2) = (message(1), message(2));
    append(&store, &[&m1, &m2])
        .await
        .commit()
        .await
        .expect("commit");

    let batch = next_messages(&active).await;
    assert_eq!(ids(&batch), [m1.id, m2.id]);
    // The batch is on its way to the broker, unconfirmed: the standby must not send it too.
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        let peeked = standby.peek(100).await.expect("a standby's peek");
        assert!(
            peeked.messages.is_empty() && peeked.up_to.is_none(),
            "a second reader got the batch the first one holds: {peeked:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The active reader dies before confirming: the standby takes the slot over and sends it.
    drop(active);
    let taken_over = next_messages(&standby).await;
    assert_eq!(ids(&taken_over), [m1.id, m2.id]);
    standby.drop_slot().await.expect("drop slot");
}

#[tokio::test]
async fn a_broken_session_is_started_again_from_the_confirmed_position() {
    let (pool, feed, store) = cdc_setup().await;
    let (m1, m2) = (message(1), message(2));
    append(&store, &[&m1]).await.commit().await.expect("commit");
    let first = next_messages(&feed).await;
    assert_eq!(ids(&first), [m1.id]);
    feed.confirm(first.up_to.as_ref().expect("position"))
        .await
        .expect("confirm");
    // The server ends the session (a restart, a failover, an operator), and m2 commits meanwhile.
    let pid = streaming_pid(&pool, feed.slot()).await;
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&pool)
        .await
        .expect("terminate");
    append(&store, &[&m2]).await.commit().await.expect("commit");
    // The feed notices, starts a new session from its confirmed position (before the server
    // may have heard of it) and yields m2, and only m2.
    let again = next_messages(&feed).await;
    assert_ne!(streaming_pid(&pool, feed.slot()).await, pid);
    assert_eq!(ids(&again), [m2.id]);
    feed.drop_slot().await.expect("drop slot");
}

#[tokio::test]
async fn a_confirmed_position_reaches_the_server_so_a_new_reader_starts_after_it() {
    let (pool, feed, store) = cdc_setup().await;
    let (m1, m2) = (message(1), message(2));
    append(&store, &[&m1]).await.commit().await.expect("commit");
    let batch = next_messages(&feed).await;
    let up_to = batch.up_to.clone().expect("position");
    feed.confirm(&up_to).await.expect("confirm");
    // The standby status update carries it to the slot.
    wait_until_the_slot_confirmed(&pool, feed.slot(), &up_to.0).await;
    append(&store, &[&m2]).await.commit().await.expect("commit");
    drop(feed);
    let next = PgOutboxFeed::open(pool.clone(), &ORDERS)
        .await
        .expect("feed");
    assert_eq!(ids(&next_messages(&next).await), [m2.id]);
    next.drop_slot().await.expect("drop slot");
}

#[tokio::test]
async fn an_idle_feed_lets_its_slot_move_past_log_written_by_other_tables() {
    let pool = fresh_database().await;
    let feed = PgOutboxFeed::open(pool.clone(), &ORDERS)
        .await
        .expect("feed");
    assert!(feed.peek(100).await.expect("peek").up_to.is_none());
    // Log the outbox has no part in: the slot must not hold it back for ever.
    sqlx::query("CREATE TABLE public.elsewhere (n int)")
        .execute(&pool)
        .await
        .expect("table");
    for n in 0..100 {
        sqlx::query("INSERT INTO public.elsewhere VALUES ($1)")
            .bind(n)
            .execute(&pool)
            .await
            .expect("insert");
    }
    let written: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&pool)
        .await
        .expect("lsn");
    // The feed confirms what keepalives report while nothing of its own is in flight; it reads
    // them as the relay reads it.
    let reading = async {
        loop {
            assert!(feed.peek(100).await.expect("peek").up_to.is_none());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        () = wait_until_the_slot_confirmed(&pool, feed.slot(), &written) => {}
        () = reading => {}
    }
    feed.drop_slot().await.expect("drop slot");
}
