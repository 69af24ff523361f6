//! The order repository's contract.

use chrono::Duration;
use ordership_domain::ports::{OrderQuery, StoreError};
use ordership_domain::{
    CancellationReason, DeliveryId, FulfilmentSaga, Order, OrderId, OrderStatus,
};
use uuid::Uuid;

use super::{OrderStore, order, order_of, t0};

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
    drop(tx);

    // With its saga, in one read (outside a transaction where the store can).
    let mut tx = store.begin_single_read().await.expect("begin");
    assert_eq!(
        tx.orders().get_with_saga(order.id()).await.expect("get"),
        Some((order.clone(), None)),
        "no saga yet"
    );
    drop(tx);
    let saga = FulfilmentSaga::start(order.id(), t0() + Duration::minutes(1), t0());
    let mut tx = store.begin().await.expect("begin");
    tx.sagas().insert(&saga).await.expect("insert saga");
    tx.commit().await.expect("commit");
    for single in [true, false] {
        // One at a time: a store may serialize its units of work.
        let mut tx = if single {
            store.begin_single_read().await
        } else {
            store.begin_read_only().await
        }
        .expect("begin");
        assert_eq!(
            tx.orders().get_with_saga(order.id()).await.expect("get"),
            Some((order.clone(), Some(saga.clone())))
        );
        assert_eq!(
            tx.orders()
                .get_with_saga(OrderId::from_uuid(Uuid::now_v7()))
                .await
                .expect("get"),
            None
        );
    }
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
        customer: None,
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
            customer: None,
            status: None,
            after: None,
            limit: 100,
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 5);
}

/// Listing by customer shows that customer's orders only, with the other filters still applied.
pub async fn a_customer_lists_only_their_own_orders(store: &OrderStore) {
    let mut tx = store.begin().await.expect("begin");
    let mine = [order_of("c-mine"), order_of("c-mine")];
    for o in mine
        .iter()
        .chain(&[order_of("c-other"), order_of("c-mine-too")])
    {
        tx.orders().insert(o).await.expect("insert");
    }
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    let query = |status| OrderQuery {
        customer: Some(ordership_domain::CustomerId::parse("c-mine").expect("id")),
        status,
        after: None,
        limit: 100,
    };
    let listed: Vec<_> = tx
        .orders()
        .list(&query(None))
        .await
        .expect("list")
        .iter()
        .map(Order::id)
        .collect();
    assert_eq!(listed, mine.iter().map(Order::id).collect::<Vec<_>>());
    let cancelled = tx
        .orders()
        .list(&query(Some(OrderStatus::Cancelled)))
        .await
        .expect("list");
    assert!(cancelled.is_empty());
}

/// An order keeps the admission it was placed with; an admission buys one order, and a buyer
/// orders once per room.
pub async fn an_admission_buys_one_order_and_a_buyer_orders_once_per_room(store: &OrderStore) {
    use ordership_domain::waiting_room::RoomId;
    use ordership_domain::{AdmissionRef, PlaceOrder};

    let admitted = |customer: &str, room: &str, id: &str| {
        let template = order_of(customer);
        let command = PlaceOrder::new(
            template.customer_id().clone(),
            template.lines().to_vec(),
            template.shipping_address().clone(),
        )
        .expect("command")
        .with_admission(AdmissionRef {
            room: RoomId::parse(room).expect("room"),
            id: id.to_owned(),
            units: 2,
        });
        Order::place(OrderId::from_uuid(Uuid::now_v7()), command, t0()).0
    };
    let first = admitted("c-1", "sale", "adm-1");
    let mut tx = store.begin().await.expect("begin");
    tx.orders().insert(&first).await.expect("insert");
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    let read = tx
        .orders()
        .get(first.id())
        .await
        .expect("get")
        .expect("found");
    assert_eq!(read.admission(), first.admission());
    drop(tx);

    for (again, why) in [
        (admitted("c-2", "sale", "adm-1"), "the same admission"),
        (admitted("c-1", "sale", "adm-2"), "the same buyer and room"),
    ] {
        let mut tx = store.begin().await.expect("begin");
        assert!(
            matches!(tx.orders().insert(&again).await, Err(StoreError::Duplicate)),
            "{why}"
        );
    }
    let mut tx = store.begin().await.expect("begin");
    tx.orders()
        .insert(&admitted("c-1", "other-sale", "adm-3"))
        .await
        .expect("another room");
    tx.orders()
        .insert(&order_of("c-1"))
        .await
        .expect("an ungated order");
    tx.commit().await.expect("commit");
}
