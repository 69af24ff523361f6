//! The delivery repository's contract.

use chrono::Duration;
use ordership_domain::OrderId;
use ordership_domain::ports::StoreError;
use uuid::Uuid;

use super::{DeliveryStore, delivery, t0};

/// Deliveries: round trip, one per order, stale updates conflict, live count per country and day.
pub async fn deliveries_are_one_per_order_and_counted_per_day(store: &DeliveryStore) {
    let order_id = OrderId::from_uuid(Uuid::now_v7());
    let mut d = delivery(order_id, "KR", t0());
    let mut tx = store.begin().await.expect("begin");
    tx.deliveries().insert(&d).await.expect("insert");
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    let second = tx
        .deliveries()
        .insert(&delivery(order_id, "KR", t0()))
        .await;
    assert!(
        matches!(second, Err(StoreError::Duplicate)),
        "a second delivery for one order"
    );
    drop(tx);
    let mut tx = store.begin().await.expect("begin");
    let other_day = delivery(
        OrderId::from_uuid(Uuid::now_v7()),
        "KR",
        t0() - Duration::days(1),
    );
    let other_country = delivery(OrderId::from_uuid(Uuid::now_v7()), "JP", t0());
    let mut cancelled = delivery(OrderId::from_uuid(Uuid::now_v7()), "KR", t0());
    cancelled.cancel(t0()).expect("cancel");
    for x in [&other_day, &other_country, &cancelled] {
        tx.deliveries().insert(x).await.expect("insert");
    }
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.deliveries().get(d.id()).await.expect("get"),
        Some(d.clone())
    );
    assert_eq!(
        tx.deliveries().get_by_order(order_id).await.expect("get"),
        Some(d.clone())
    );
    let kr = ordership_domain::CountryCode::parse("KR").expect("KR");
    assert_eq!(
        tx.deliveries()
            .count_live_on(kr, t0().date_naive())
            .await
            .expect("count"),
        1
    );
    d.ship(t0()).expect("ship");
    tx.deliveries().update(&d, 1).await.expect("update");
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    assert!(matches!(
        tx.deliveries().update(&d, 1).await,
        Err(StoreError::Conflict)
    ));
    drop(tx);
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.deliveries()
            .get(d.id())
            .await
            .expect("get")
            .map(|d| d.version()),
        Some(2)
    );
}
