use std::collections::HashSet;
use std::sync::Arc;

use ordership_application::messages::types;
use ordership_application::{IdempotentRequest, Outcome};
use ordership_domain::ports::{HandleOutcome, MessageHandler, OrderTransaction, UnitOfWork};
use ordership_domain::{
    CountryCode, DeliveryPolicy, FulfilmentSaga, OrderStatus, SagaState, topics,
};
use ordership_postgres::PgOrderStore;
use ordership_postgres::testing::fresh_database;

use crate::harness::{count, envelope, place, render, scheduled, services};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_requests_with_one_key_create_one_order() {
    let pool = fresh_database().await;
    let s = Arc::new(services(&pool, DeliveryPolicy::default()));
    let key = IdempotentRequest {
        scope: "POST /orders".into(),
        key: "double-click".into(),
        fingerprint: "fp".into(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (s, key) = (s.clone(), key.clone());
        tasks.spawn(async move {
            s.orders
                .place_order(place("KR"), None, Some(&key), &render)
                .await
        });
    }
    let mut bodies = HashSet::new();
    while let Some(result) = tasks.join_next().await {
        match result.expect("task").expect("placed") {
            Outcome::Done(view) => bodies.insert(render(&view).body),
            Outcome::Replayed(stored) => bodies.insert(stored.body),
        };
    }
    assert_eq!(bodies.len(), 1, "every caller got the same order");
    assert_eq!(count(&pool, "SELECT count(*) FROM orders.orders").await, 1);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM orders.outbox").await,
        2,
        "one OrderPlaced, one ScheduleDelivery"
    );
}

fn rejected(order: ordership_domain::OrderId) -> ordership_domain::Message {
    let payload = ordership_application::messages::DeliveryRejectedV1 {
        order_id: *order.as_uuid(),
        reason_kind: "capacity_exhausted".into(),
        reason: "full".into(),
    };
    envelope()
        .wrap(
            topics::DELIVERY_EVENTS,
            types::DELIVERY_REJECTED,
            order,
            &payload,
        )
        .expect("message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replies_for_one_order_at_once_make_exactly_one_transition() {
    let pool = fresh_database().await;
    let s = Arc::new(services(&pool, DeliveryPolicy::default()));
    for round in 0..20 {
        let id = s.place("KR").await;
        // Two different replies (a retry's answer and a conflicting one) race for the saga.
        let (a, b) = if round % 2 == 0 {
            (
                scheduled(id, uuid::Uuid::now_v7()),
                scheduled(id, uuid::Uuid::now_v7()),
            )
        } else {
            (scheduled(id, uuid::Uuid::now_v7()), rejected(id))
        };
        let (ra, rb) = tokio::join!(
            {
                let s = s.clone();
                async move { s.saga.handle(&a).await }
            },
            {
                let s = s.clone();
                async move { s.saga.handle(&b).await }
            }
        );
        let outcomes = [ra.expect("a handled"), rb.expect("b handled")];
        assert!(
            outcomes.contains(&HandleOutcome::Applied)
                && outcomes.contains(&HandleOutcome::Ignored),
            "{outcomes:?}"
        );
        let view = s
            .orders
            .get_order(id, &ordership_application::OrderAccess::All)
            .await
            .expect("order");
        assert_eq!(
            view.order.version(),
            2,
            "exactly one transition, no lost update"
        );
        let saga = view.saga.expect("saga");
        match view.order.status() {
            OrderStatus::Confirmed => assert_eq!(saga.state(), SagaState::Completed),
            OrderStatus::Cancelled => assert_eq!(saga.state(), SagaState::Compensated),
            other => panic!("unexpected {other}"),
        }
    }
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders.outbox WHERE message_type IN ('ordership.order.confirmed.v1', 'ordership.order.cancelled.v1')",
    )
    .fetch_one(&s.pool)
    .await
    .expect("count");
    assert_eq!(events, 20, "one outcome event per order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_schedules_never_overbook_a_regions_capacity() {
    let pool = fresh_database().await;
    let kr = CountryCode::parse("KR").expect("KR");
    let s = Arc::new(services(&pool, DeliveryPolicy::new([kr], Some(5))));
    let mut commands = Vec::new();
    for _ in 0..20 {
        let Outcome::Done(view) = s
            .orders
            .place_order(place("KR"), None, None, &render)
            .await
            .expect("placed")
        else {
            panic!("placed")
        };
        let payload = ordership_application::messages::ScheduleDeliveryV1 {
            order_id: *view.order.id().as_uuid(),
            shipping_address: ordership_application::messages::AddressV1::from(
                view.order.shipping_address(),
            ),
        };
        commands.push(
            envelope()
                .wrap(
                    topics::DELIVERY_COMMANDS,
                    types::SCHEDULE_DELIVERY,
                    view.order.id(),
                    &payload,
                )
                .expect("message"),
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for command in commands {
        let s = s.clone();
        tasks.spawn(async move { s.deliveries.handle(&command).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("handled");
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM delivery.deliveries").await,
        5
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM delivery.outbox WHERE message_type = 'ordership.delivery.rejected.v1'").await,
        15
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweepers_never_handle_the_same_saga() {
    let pool = fresh_database().await;
    let s = Arc::new(services(&pool, DeliveryPolicy::default()));
    let store = PgOrderStore::new(pool.clone());
    for _ in 0..60 {
        s.orders
            .place_order(place("KR"), None, None, &render)
            .await
            .expect("placed");
    }
    // Make every saga overdue.
    sqlx::query("UPDATE orders.sagas SET deadline = now() - interval '1 minute'")
        .execute(&pool)
        .await
        .expect("update");
    let sweep = |s: Arc<crate::harness::Services>| async move {
        s.saga.sweep_overdue(10).await.expect("sweep")
    };
    let mut retried = 0;
    loop {
        let (a, b) = tokio::join!(sweep(s.clone()), sweep(s.clone()));
        retried += a.retried + b.retried;
        if a.retried + b.retried == 0 {
            break;
        }
    }
    assert_eq!(retried, 60, "each overdue saga retried once");
    let mut tx = UnitOfWork::<dyn OrderTransaction>::begin(&store)
        .await
        .expect("begin");
    let far = chrono::Utc::now() + chrono::Duration::hours(1);
    let sagas: Vec<FulfilmentSaga> = tx.sagas().claim_overdue(far, 100).await.expect("claim");
    assert_eq!(sagas.len(), 60);
    assert!(
        sagas.iter().all(|saga| saga.attempts() == 2),
        "no saga was retried twice"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM orders.outbox WHERE message_type = 'ordership.delivery.schedule.v1'").await,
        120
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_and_its_saga_are_always_read_from_one_snapshot() {
    let pool = fresh_database().await;
    let s = Arc::new(services(&pool, DeliveryPolicy::default()));
    let mut skewed = Vec::new();
    for _ in 0..100 {
        let Outcome::Done(view) = s
            .orders
            .place_order(place("KR"), None, None, &render)
            .await
            .expect("placed")
        else {
            panic!("placed")
        };
        let id = view.order.id();
        let reader = {
            let s = s.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let view = s
                        .orders
                        .get_order(id, &ordership_application::OrderAccess::All)
                        .await
                        .expect("read");
                    let pair = (view.order.status(), view.saga.expect("saga").state());
                    seen.push(pair);
                    if pair.0 == OrderStatus::Confirmed {
                        return seen;
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        s.saga
            .handle(&scheduled(id, uuid::Uuid::now_v7()))
            .await
            .expect("handled");
        for pair in reader.await.expect("reader") {
            let consistent = matches!(
                pair,
                (OrderStatus::Pending, SagaState::AwaitingDelivery)
                    | (OrderStatus::Confirmed, SagaState::Completed)
            );
            if !consistent {
                skewed.push(pair);
            }
        }
    }
    assert!(
        skewed.is_empty(),
        "order and saga read from different moments: {skewed:?}"
    );
}
