//! The outbox's contract: position order, no high-water mark, parking, purging.

use chrono::Duration;
use ordership_domain::ports::{Outbox, StoreError};
use ordership_domain::relay_shards::{Shards, WantedShards};
use ordership_domain::{MessageId, OutboxEntry};

use super::{OrderStore, message, order, t0};

/// The outbox hands out unpublished messages in append order, forgets published ones, keeps
/// stats, and purges only published messages older than the cut-off.
pub async fn the_outbox_publishes_in_order_and_purges_only_published(store: &OrderStore) {
    let o = order();
    let messages: Vec<_> = (1..=5).map(|n| message(o.id(), n)).collect();
    // One at a time, then several at once: one order either way.
    let mut tx = store.begin().await.expect("begin");
    for m in &messages[..2] {
        tx.outbox().append(m).await.expect("append");
    }
    tx.outbox()
        .append_all(&messages[2..])
        .await
        .expect("append all");
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    assert!(matches!(
        tx.outbox().append(&messages[0]).await,
        Err(StoreError::Duplicate)
    ));
    drop(tx);
    let mut tx = store.begin().await.expect("begin");
    let fresh = message(o.id(), 6);
    assert!(
        matches!(
            tx.outbox().append_all(&[fresh, messages[1].clone()]).await,
            Err(StoreError::Duplicate)
        ),
        "a duplicate among several is a duplicate"
    );
    drop(tx);

    let mut tx = store.begin().await.expect("begin");
    let stats = tx.outbox().stats().await.expect("stats");
    assert_eq!(
        (stats.pending, stats.oldest_pending_at),
        (5, Some(messages[0].occurred_at))
    );
    let batch = claim_every_shard(tx.outbox(), 3, &[]).await;
    let got: Vec<_> = batch.iter().map(|e| e.message.clone()).collect();
    assert_eq!(got, messages[..3], "in append order, every field intact");
    assert!(batch.windows(2).all(|w| w[0].position < w[1].position));
    let positions: Vec<i64> = batch.iter().map(|e| e.position).collect();
    tx.outbox()
        .mark_published(&positions, t0() + Duration::minutes(1))
        .await
        .expect("mark");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    let rest = claim_every_shard(tx.outbox(), 10, &[]).await;
    assert_eq!(
        rest.iter().map(|e| e.message.id).collect::<Vec<_>>(),
        [messages[3].id, messages[4].id]
    );
    // Claimed in this transaction and still in flight: skipped by the next claim of the batch
    // after it, which the relay makes while the broker acknowledges this one.
    let after = claim_every_shard(tx.outbox(), 10, &[rest[0].position]).await;
    assert_eq!(
        after.iter().map(|e| e.message.id).collect::<Vec<_>>(),
        [messages[4].id]
    );
    assert_eq!(
        tx.outbox().stats().await.expect("stats").oldest_pending_at,
        Some(messages[3].occurred_at)
    );
    assert_eq!(
        tx.outbox().purge_published(t0()).await.expect("purge"),
        0,
        "published after the cut-off"
    );
    assert_eq!(
        tx.outbox()
            .purge_published(t0() + Duration::minutes(2))
            .await
            .expect("purge"),
        3
    );
    assert_eq!(
        claim_every_shard(tx.outbox(), 10, &[]).await.len(),
        2,
        "pending ones stay"
    );
}

/// A parked message is not claimed again and holds back the later messages of its key only.
pub async fn a_parked_message_holds_back_only_its_key(store: &OrderStore) {
    let (k1, k2) = (order().id(), order().id());
    let (first, second, other) = (message(k1, 1), message(k1, 2), message(k2, 3));
    let mut tx = store.begin().await.expect("begin");
    for m in [&first, &second, &other] {
        tx.outbox().append(m).await.expect("append");
    }
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    let batch = claim_every_shard(tx.outbox(), 10, &[]).await;
    assert_eq!(batch.len(), 3);
    tx.outbox()
        .park(batch[0].position, "message too large", t0())
        .await
        .expect("park");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    let ids = claimable_ids(tx.outbox()).await;
    assert_eq!(
        ids,
        [other.id],
        "the parked message's key waits; the other key flows"
    );
    let stats = tx.outbox().stats().await.expect("stats");
    assert_eq!((stats.pending, stats.parked), (2, 1));
}

/// Parked messages are listed with their reasons; re-driven, one is relayed again before the
/// later messages of its key; purged, it is gone and its key flows on.
pub async fn parked_messages_can_be_listed_redriven_and_purged(store: &OrderStore) {
    let (k1, k2) = (order().id(), order().id());
    let (first, second, lone) = (message(k1, 1), message(k1, 2), message(k2, 3));
    let mut tx = store.begin().await.expect("begin");
    for m in [&first, &second, &lone] {
        tx.outbox().append(m).await.expect("append");
    }
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    let batch = claim_every_shard(tx.outbox(), 10, &[]).await;
    let (p_first, p_lone) = (batch[0].position, batch[2].position);
    tx.outbox()
        .park(p_first, "message too large", t0())
        .await
        .expect("park");
    tx.outbox()
        .park(p_lone, "topic authorization failed", t0())
        .await
        .expect("park");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    let parked = tx.outbox().parked(10).await.expect("parked");
    let listed: Vec<(MessageId, &str)> = parked
        .iter()
        .map(|p| (p.entry.message.id, p.reason.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            (first.id, "message too large"),
            (lone.id, "topic authorization failed")
        ]
    );
    assert_eq!(
        tx.outbox()
            .redrive_parked(&[p_first, -1])
            .await
            .expect("redrive"),
        1,
        "only parked positions count"
    );
    assert_eq!(tx.outbox().purge_parked(&[p_lone]).await.expect("purge"), 1);
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    let ids = claimable_ids(tx.outbox()).await;
    assert_eq!(ids, [first.id, second.id], "re-driven first, in its place");
    assert!(tx.outbox().parked(10).await.expect("parked").is_empty());
    let stats = tx.outbox().stats().await.expect("stats");
    assert_eq!((stats.pending, stats.parked), (2, 0));
}

/// The ids of what a relay would claim from this outbox now, in order.
pub async fn claimable_ids(outbox: &mut dyn Outbox) -> Vec<MessageId> {
    claim_every_shard(outbox, 10, &[])
        .await
        .iter()
        .map(|e| e.message.id)
        .collect()
}

/// What a relay would claim from every shard of the outbox (every shard's relay right taken,
/// one claim over all of them), in position order, at most `limit`.
pub async fn claim_every_shard(
    outbox: &mut dyn Outbox,
    limit: u32,
    skip: &[i64],
) -> Vec<OutboxEntry> {
    let shards = shards(outbox).await;
    outbox
        .claim_unpublished(&shards, limit, skip)
        .await
        .expect("claim")
}

/// Every shard of the outbox, each one's relay right taken.
async fn shards(outbox: &mut dyn Outbox) -> Shards {
    let shards = outbox
        .try_lock_relay(WantedShards::Every)
        .await
        .expect("relay rights");
    assert!(!shards.is_empty(), "an outbox has at least one shard");
    assert_eq!(
        shards.indexes.len(),
        shards.count as usize,
        "nobody else relays here, yet a shard is busy"
    );
    shards
}

/// Every message is in exactly one shard, all of a key's messages in the same one, in position
/// order there.
pub async fn each_key_s_messages_are_in_one_shard(store: &OrderStore) {
    let keys: Vec<_> = (0..12).map(|_| order().id()).collect();
    let mut tx = store.begin().await.expect("begin");
    let mut all = Vec::new();
    for n in 0..3 {
        for key in &keys {
            let m = message(*key, n * 100 + all.len() as u32);
            tx.outbox().append(&m).await.expect("append");
            all.push(m.id);
        }
    }
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    let mut claimed = std::collections::HashMap::new();
    let mut key_shard = std::collections::HashMap::new();
    for shard in shards(tx.outbox()).await.each() {
        let batch = tx
            .outbox()
            .claim_unpublished(&Shards::one(shard), 100, &[])
            .await
            .expect("claim");
        assert!(batch.windows(2).all(|w| w[0].position < w[1].position));
        for entry in batch {
            assert!(
                claimed.insert(entry.message.id, shard).is_none(),
                "in one shard"
            );
            let first = *key_shard.entry(entry.message.key.clone()).or_insert(shard);
            assert_eq!(first, shard, "key {} in two shards", entry.message.key);
        }
    }
    assert_eq!(claimed.len(), all.len(), "every message in a shard");
}
