//! The unit of work's contract: all or nothing.

use ordership_domain::FulfilmentSaga;
use ordership_domain::ports::Claim;

use super::{OrderStore, message, order, t0};

/// A dropped transaction leaves no order, saga, outbox message, inbox entry or key behind.
pub async fn a_rolled_back_unit_of_work_leaves_nothing(store: &OrderStore) {
    let order = order();
    let saga = FulfilmentSaga::start(order.id(), t0(), t0());
    let msg = message(order.id(), 1);
    {
        let mut tx = store.begin().await.expect("begin");
        tx.orders().insert(&order).await.expect("insert");
        tx.sagas().insert(&saga).await.expect("insert");
        tx.outbox().append(&msg).await.expect("append");
        assert!(tx.inbox().record("c", msg.id, t0()).await.expect("record"));
        tx.idempotency_keys()
            .claim("s", "k", "fp", t0())
            .await
            .expect("claim");
        // dropped without commit
    }
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(tx.orders().get(order.id()).await.expect("get"), None);
    assert_eq!(tx.sagas().get(order.id()).await.expect("get"), None);
    assert!(
        super::outbox::claim_every_shard(tx.outbox(), 10, &[])
            .await
            .is_empty()
    );
    assert!(
        tx.inbox().record("c", msg.id, t0()).await.expect("record"),
        "inbox entry rolled back"
    );
    assert_eq!(
        tx.idempotency_keys()
            .claim("s", "k", "fp", t0())
            .await
            .expect("claim"),
        Claim::Claimed
    );
}

/// After a failed call, commit MUST NOT commit part of the work.
pub async fn a_transaction_with_a_failed_call_does_not_commit_half(store: &OrderStore) {
    let existing = order();
    let mut tx = store.begin().await.expect("begin");
    tx.orders().insert(&existing).await.expect("insert");
    tx.commit().await.expect("commit");

    let fresh = order();
    let mut tx = store.begin().await.expect("begin");
    tx.orders().insert(&fresh).await.expect("insert");
    assert!(tx.orders().insert(&existing).await.is_err());
    // Either commit fails, or it succeeds only because the failed call left the rest intact.
    let committed = tx.commit().await.is_ok();
    let mut tx = store.begin().await.expect("begin");
    let stored = tx.orders().get(fresh.id()).await.expect("get");
    assert_eq!(
        stored.is_some(),
        committed,
        "commit reported {committed} but the order is {stored:?}"
    );
}
