//! The inbox's contract.

use chrono::Duration;
use ordership_domain::MessageId;
use uuid::Uuid;

use super::{OrderStore, t0};

/// The inbox says yes once per (consumer, message) and no afterwards, also across transactions.
pub async fn the_inbox_recognises_a_duplicate(store: &OrderStore) {
    let id = MessageId::from_uuid(Uuid::now_v7());
    let mut tx = store.begin().await.expect("begin");
    assert!(tx.inbox().record("saga", id, t0()).await.expect("record"));
    assert!(!tx.inbox().record("saga", id, t0()).await.expect("record"));
    assert!(
        tx.inbox()
            .record("other-consumer", id, t0())
            .await
            .expect("record")
    );
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    assert!(!tx.inbox().record("saga", id, t0()).await.expect("record"));
    assert_eq!(
        tx.inbox()
            .purge(t0() + Duration::seconds(1))
            .await
            .expect("purge"),
        2
    );
    assert!(
        tx.inbox().record("saga", id, t0()).await.expect("record"),
        "forgotten after purge"
    );
}
