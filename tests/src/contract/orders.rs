//! The order repository's contract.

use ordership_domain::ports::{OrderQuery, StoreError};
use ordership_domain::{CancellationReason, DeliveryId, Order, OrderId, OrderStatus};
use uuid::Uuid;

use super::{OrderStore, order, t0};

/// An order written and read back is the same order.
pub async fn orders_round_trip(store: &OrderStore) {
    let mut order = order();
    let mut tx = store.begin().await.expect("begin");
    tx.orders().insert(&order).await.expect("insert");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.orders().get(order.id()).await.expect("get"),
        Some(order.clone())
    );
    order
        .cancel(
            CancellationReason::DeliveryRejected {
                reason: "country BR is not served".into(),
            },
            t0(),
        )
        .expect("cancel");
    tx.orders().update(&order, 1).await.expect("update");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.orders().get(order.id()).await.expect("get"),
        Some(order.clone())
    );
    assert_eq!(
        tx.orders()
            .get(OrderId::from_uuid(Uuid::now_v7()))
            .await
            .expect("get"),
        None
    );
}

/// Inserting an existing id MUST fail with `Duplicate`.
pub async fn inserting_an_order_twice_is_a_duplicate(store: &OrderStore) {
    let order = order();
    let mut tx = store.begin().await.expect("begin");
    tx.orders().insert(&order).await.expect("insert");
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    assert!(matches!(
        tx.orders().insert(&order).await,
        Err(StoreError::Duplicate)
    ));
}

/// An update against a stale version MUST fail with `Conflict` and change nothing.
pub async fn a_stale_order_update_is_a_conflict(store: &OrderStore) {
    let order = order();
    let mut tx = store.begin().await.expect("begin");
    tx.orders().insert(&order).await.expect("insert");
    tx.commit().await.expect("commit");

    let mut first = order.clone();
    first
        .confirm(DeliveryId::from_uuid(Uuid::now_v7()), t0())
        .expect("confirm");
    let mut tx = store.begin().await.expect("begin");
    tx.orders()
        .update(&first, 1)
        .await
        .expect("first writer wins");
    tx.commit().await.expect("commit");

    let mut second = order.clone();
    second
        .cancel(CancellationReason::CustomerRequested, t0())
        .expect("cancel");
    let mut tx = store.begin().await.expect("begin");
    assert!(matches!(
        tx.orders().update(&second, 1).await,
        Err(StoreError::Conflict)
    ));
    drop(tx);
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(tx.orders().get(order.id()).await.expect("get"), Some(first));
}

/// Listing filters by status and pages by id.
pub async fn orders_are_listed_by_status_after_a_cursor(store: &OrderStore) {
    let mut ids = Vec::new();
    let mut tx = store.begin().await.expect("begin");
    for i in 0..5 {
        let mut o = order();
        if i % 2 == 1 {
            o.cancel(CancellationReason::CustomerRequested, t0())
                .expect("cancel");
        } else {
            ids.push(o.id());
        }
        tx.orders().insert(&o).await.expect("insert");
    }
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    let query = |after| OrderQuery {
        status: Some(OrderStatus::Pending),
        after,
        limit: 2,
    };
    let page1 = tx.orders().list(&query(None)).await.expect("list");
    let page2 = tx
        .orders()
        .list(&query(page1.last().map(Order::id)))
        .await
        .expect("list");
    let seen: Vec<_> = page1.iter().chain(&page2).map(Order::id).collect();
    assert_eq!(seen, ids);
    let all = tx
        .orders()
        .list(&OrderQuery {
            status: None,
            after: None,
            limit: 100,
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 5);
}
