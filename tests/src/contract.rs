//! The contract of the storage ports (DESIGN §4), as functions over a fresh store. An adapter's
//! test binary runs each check against a new, empty store (see [`crate::contract_tests!`]).
//!
//! Every check states what the port's documentation promises; an adapter that breaks one fails
//! here, not in production.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ordership_domain::ports::{
    Claim, DeliveryTransaction, OrderQuery, OrderTransaction, StoreError, StoredResponse,
    UnitOfWork,
};
use ordership_domain::{
    CancellationReason, CustomerId, Delivery, DeliveryId, FulfilmentSaga, Message, MessageId,
    Order, OrderId, OrderStatus, PlaceOrder, SagaState, ShippingAddress, parse_order_line, topics,
};
use uuid::Uuid;

/// The order service's store under test.
pub type OrderStore = dyn UnitOfWork<dyn OrderTransaction>;
/// The delivery service's store under test.
pub type DeliveryStore = dyn UnitOfWork<dyn DeliveryTransaction>;

/// A fixed time in whole seconds (what every store keeps exactly).
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

fn address(country: &str) -> ShippingAddress {
    ShippingAddress::new("Kim", "1 Sejong-daero", "Seoul", "04524", country).expect("address")
}

fn order() -> Order {
    let line = parse_order_line(0, "ABC-123", 2, 1250, "KRW").expect("line");
    let place = PlaceOrder::new(
        CustomerId::parse("c-42").expect("id"),
        vec![line],
        address("KR"),
    )
    .expect("order");
    Order::place(OrderId::from_uuid(Uuid::now_v7()), place, t0()).0
}

fn message(order_id: OrderId, n: u32) -> Message {
    Message {
        id: MessageId::from_uuid(Uuid::now_v7()),
        topic: topics::DELIVERY_COMMANDS.to_owned(),
        key: order_id.to_string(),
        message_type: "ordership.test.v1".to_owned(),
        source: "/contract".to_owned(),
        payload: serde_json::json!({ "n": n }),
        correlation_id: *order_id.as_uuid(),
        causation_id: None,
        traceparent: Some(format!(
            "00-{}-0000000000000001-01",
            order_id.as_uuid().simple()
        )),
        occurred_at: t0() + Duration::seconds(i64::from(n)),
    }
}

fn delivery(order_id: OrderId, country: &str, at: DateTime<Utc>) -> Delivery {
    let id = DeliveryId::from_uuid(Uuid::now_v7());
    Delivery::schedule(id, order_id, address(country), at + Duration::days(2), at).0
}

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
        tx.outbox()
            .claim_unpublished(10)
            .await
            .expect("claim")
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

/// Sagas: round trip, stale update conflicts, overdue ones come by deadline, counts by state.
pub async fn sagas_round_trip_and_come_due_by_deadline(store: &OrderStore) {
    let mut sagas = Vec::new();
    let mut tx = store.begin().await.expect("begin");
    for minutes in [3, 1, 2, 10] {
        let o = order();
        tx.orders().insert(&o).await.expect("insert");
        let saga = FulfilmentSaga::start(o.id(), t0() + Duration::minutes(minutes), t0());
        tx.sagas().insert(&saga).await.expect("insert");
        sagas.push(saga);
    }
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    assert!(matches!(
        tx.sagas().insert(&sagas[0]).await,
        Err(StoreError::Duplicate)
    ));
    drop(tx);

    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.sagas()
            .get_for_update(sagas[0].order_id())
            .await
            .expect("get"),
        Some(sagas[0].clone())
    );
    let due = tx
        .sagas()
        .claim_overdue(t0() + Duration::minutes(5), 2)
        .await
        .expect("claim");
    let due: Vec<_> = due.iter().map(FulfilmentSaga::order_id).collect();
    assert_eq!(
        due,
        [sagas[1].order_id(), sagas[2].order_id()],
        "earliest deadline first, limited"
    );
    // Several at once: the ones asked for, none for an order without a saga.
    let unknown = order().id();
    let mut many = tx
        .sagas()
        .get_many(&[sagas[3].order_id(), unknown, sagas[0].order_id()])
        .await
        .expect("get many");
    many.sort_by_key(|s| *s.order_id().as_uuid());
    let mut expected = vec![sagas[3].clone(), sagas[0].clone()];
    expected.sort_by_key(|s| *s.order_id().as_uuid());
    assert_eq!(many, expected);
    assert!(tx.sagas().get_many(&[]).await.expect("none").is_empty());
    let mut done = sagas[1].clone();
    done.complete(t0()).expect("complete");
    tx.sagas().update(&done, 1).await.expect("update");
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    assert!(matches!(
        tx.sagas().update(&done, 1).await,
        Err(StoreError::Conflict)
    ));
    drop(tx);

    let mut tx = store.begin().await.expect("begin");
    let due = tx
        .sagas()
        .claim_overdue(t0() + Duration::minutes(5), 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 2, "a completed saga has no deadline");
    let mut counts = tx.sagas().count_by_state().await.expect("count");
    counts.retain(|(_, n)| *n > 0);
    counts.sort();
    assert_eq!(
        counts,
        [(SagaState::AwaitingDelivery, 3), (SagaState::Completed, 1)]
    );
}

/// The outbox hands out unpublished messages in append order, forgets published ones, keeps
/// stats, and purges only published messages older than the cut-off.
pub async fn the_outbox_publishes_in_order_and_purges_only_published(store: &OrderStore) {
    let o = order();
    let messages: Vec<_> = (1..=5).map(|n| message(o.id(), n)).collect();
    let mut tx = store.begin().await.expect("begin");
    for m in &messages {
        tx.outbox().append(m).await.expect("append");
    }
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    assert!(matches!(
        tx.outbox().append(&messages[0]).await,
        Err(StoreError::Duplicate)
    ));
    drop(tx);

    let mut tx = store.begin().await.expect("begin");
    let stats = tx.outbox().stats().await.expect("stats");
    assert_eq!(
        (stats.pending, stats.oldest_pending_at),
        (5, Some(messages[0].occurred_at))
    );
    let batch = tx.outbox().claim_unpublished(3).await.expect("claim");
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
    let rest = tx.outbox().claim_unpublished(10).await.expect("claim");
    assert_eq!(
        rest.iter().map(|e| e.message.id).collect::<Vec<_>>(),
        [messages[3].id, messages[4].id]
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
        tx.outbox()
            .claim_unpublished(10)
            .await
            .expect("claim")
            .len(),
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
    let batch = tx.outbox().claim_unpublished(10).await.expect("claim");
    assert_eq!(batch.len(), 3);
    tx.outbox()
        .park(batch[0].position, "message too large", t0())
        .await
        .expect("park");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    let ids: Vec<MessageId> = tx
        .outbox()
        .claim_unpublished(10)
        .await
        .expect("claim")
        .iter()
        .map(|e| e.message.id)
        .collect();
    assert_eq!(
        ids,
        [other.id],
        "the parked message's key waits; the other key flows"
    );
    let stats = tx.outbox().stats().await.expect("stats");
    assert_eq!((stats.pending, stats.parked), (2, 1));
}

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

/// A claimed key is seen by later claims with its fingerprint and, once completed, its response.
pub async fn idempotency_keys_remember_fingerprint_and_response(store: &OrderStore) {
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.idempotency_keys()
            .claim("POST /orders", "k1", "fp", t0())
            .await
            .expect("claim"),
        Claim::Claimed
    );
    assert_eq!(
        tx.idempotency_keys()
            .claim("POST /other", "k1", "fp", t0())
            .await
            .expect("claim"),
        Claim::Claimed,
        "scopes are separate"
    );
    let response = StoredResponse {
        status: 201,
        body: b"{\"id\":1}".to_vec(),
    };
    tx.idempotency_keys()
        .complete("POST /orders", "k1", &response)
        .await
        .expect("complete");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    match tx
        .idempotency_keys()
        .claim("POST /orders", "k1", "other", t0())
        .await
        .expect("claim")
    {
        Claim::Existing(record) => {
            assert_eq!(record.fingerprint, "fp");
            assert_eq!(record.response, Some(response));
            assert_eq!(record.created_at, t0());
        }
        Claim::Claimed => panic!("a used key was claimed again"),
    }
    match tx
        .idempotency_keys()
        .claim("POST /other", "k1", "fp", t0())
        .await
        .expect("claim")
    {
        Claim::Existing(record) => assert_eq!(record.response, None, "claimed, not completed"),
        Claim::Claimed => panic!("a used key was claimed again"),
    }
    assert_eq!(tx.idempotency_keys().purge(t0()).await.expect("purge"), 0);
    assert_eq!(
        tx.idempotency_keys()
            .purge(t0() + Duration::hours(25))
            .await
            .expect("purge"),
        2
    );
}

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

/// Declares one `#[tokio::test]` per contract check for an adapter. `$order` and `$delivery` are
/// async expressions that give a fresh store as `Box<OrderStore>` / `Box<DeliveryStore>`.
#[macro_export]
macro_rules! contract_tests {
    ($order:expr, $delivery:expr) => {
        $crate::contract_tests!(@order $order;
            orders_round_trip,
            inserting_an_order_twice_is_a_duplicate,
            a_stale_order_update_is_a_conflict,
            a_rolled_back_unit_of_work_leaves_nothing,
            a_transaction_with_a_failed_call_does_not_commit_half,
            orders_are_listed_by_status_after_a_cursor,
            sagas_round_trip_and_come_due_by_deadline,
            the_outbox_publishes_in_order_and_purges_only_published,
            a_parked_message_holds_back_only_its_key,
            the_inbox_recognises_a_duplicate,
            idempotency_keys_remember_fingerprint_and_response
        );
        $crate::contract_tests!(@delivery $delivery; deliveries_are_one_per_order_and_counted_per_day);
    };
    (@order $store:expr; $($check:ident),+) => {$(
        #[tokio::test]
        async fn $check() {
            let store: Box<$crate::contract::OrderStore> = $store.await;
            $crate::contract::$check(store.as_ref()).await;
        }
    )+};
    (@delivery $store:expr; $($check:ident),+) => {$(
        #[tokio::test]
        async fn $check() {
            let store: Box<$crate::contract::DeliveryStore> = $store.await;
            $crate::contract::$check(store.as_ref()).await;
        }
    )+};
}
