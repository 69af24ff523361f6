use ordership_application::{
    CancelOrderError, GetOrderError, IdempotentRequest, OrderAccess, Outcome, PlaceOrderError,
};
use ordership_domain::ports::OrderQuery;
use ordership_domain::{CancellationReason, DeliveryStatus, OrderStatus, SagaState};

use crate::harness::{World, of_type, place, render};
use ordership_application::messages::types;

fn key(k: &str, fingerprint: &str) -> IdempotentRequest {
    IdempotentRequest {
        scope: "POST /orders".into(),
        key: k.into(),
        fingerprint: fingerprint.into(),
    }
}

#[tokio::test]
async fn placing_an_order_writes_order_saga_and_two_messages_at_once() {
    let world = World::new();
    let id = world.place("KR").await;
    let view = world.view(id).await;
    assert_eq!(view.order.status(), OrderStatus::Pending);
    let saga = view.saga.expect("saga");
    assert_eq!(
        (saga.state(), saga.attempts()),
        (SagaState::AwaitingDelivery, 1)
    );
    let outbox: Vec<_> = world.order_store.outbox_messages().await;
    let types_: Vec<_> = outbox
        .iter()
        .map(|(m, _)| m.message_type.as_str())
        .collect();
    assert_eq!(
        types_,
        ["ordership.order.placed.v1", types::SCHEDULE_DELIVERY]
    );
    assert!(
        outbox
            .iter()
            .all(|(m, _)| m.key == id.to_string() && m.correlation_id == *id.as_uuid())
    );
    assert_eq!(outbox[1].0.causation_id, Some(outbox[0].0.id));
}

#[tokio::test]
async fn the_same_idempotency_key_and_request_replays_the_stored_response() {
    let world = World::new();
    let first = world
        .orders
        .place_order(place("KR"), None, Some(&key("k1", "fp")), &render)
        .await
        .expect("first");
    let Outcome::Done(view) = first else {
        panic!("first must execute")
    };
    let second = world
        .orders
        .place_order(place("KR"), None, Some(&key("k1", "fp")), &render)
        .await
        .expect("second");
    assert_eq!(second, Outcome::Replayed(render(&view)));
    assert_eq!(world.order_store.orders().await.len(), 1);
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_request_is_refused() {
    let world = World::new();
    world
        .orders
        .place_order(place("KR"), None, Some(&key("k1", "fp-a")), &render)
        .await
        .expect("first");
    let err = world
        .orders
        .place_order(place("JP"), None, Some(&key("k1", "fp-b")), &render)
        .await
        .expect_err("must refuse");
    assert!(matches!(err, PlaceOrderError::KeyReused));
    assert_eq!(world.order_store.orders().await.len(), 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_order() {
    let world = std::sync::Arc::new(World::new());
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let world = world.clone();
        tasks.push(tokio::spawn(async move {
            world
                .orders
                .place_order(place("KR"), None, Some(&key("same", "fp")), &render)
                .await
        }));
    }
    let mut bodies = std::collections::HashSet::new();
    for t in tasks {
        match t.await.expect("task").expect("placed") {
            Outcome::Done(view) => bodies.insert(render(&view).body),
            Outcome::Replayed(r) => bodies.insert(r.body),
        };
    }
    assert_eq!(bodies.len(), 1, "every caller saw the same response");
    assert_eq!(world.order_store.orders().await.len(), 1);
}

#[tokio::test]
async fn cancelling_a_pending_order_cancels_at_once_and_still_cancels_the_delivery() {
    let mut world = World::new();
    let id = world.place("KR").await;
    let Outcome::Done(view) = world
        .orders
        .cancel_order(id, &OrderAccess::All, None, &render)
        .await
        .expect("cancel")
    else {
        panic!("executes")
    };
    assert_eq!(view.order.status(), OrderStatus::Cancelled);
    assert_eq!(
        view.saga.as_ref().map(|s| s.state()),
        Some(SagaState::Cancelling)
    );
    let commands = world.commands().await;
    assert_eq!(of_type(&commands, types::SCHEDULE_DELIVERY).len(), 1);
    assert_eq!(of_type(&commands, types::CANCEL_DELIVERY).len(), 1);
    // The schedule was in flight: it is processed, then undone.
    world.to_delivery(&commands).await;
    world.settle().await;
    let view = world.view(id).await;
    assert_eq!(view.order.status(), OrderStatus::Cancelled);
    assert_eq!(view.saga.expect("saga").state(), SagaState::Compensated);
    assert_eq!(
        world.delivery_of(id).await.map(|d| d.status()),
        Some(DeliveryStatus::Cancelled)
    );
}

#[tokio::test]
async fn cancelling_a_confirmed_order_waits_for_the_delivery_to_be_cancelled() {
    let mut world = World::new();
    let id = world.place("KR").await;
    world.settle().await;
    let Outcome::Done(view) = world
        .orders
        .cancel_order(id, &OrderAccess::All, None, &render)
        .await
        .expect("cancel")
    else {
        panic!("executes")
    };
    assert_eq!(view.order.status(), OrderStatus::Confirmed);
    assert_eq!(
        view.saga.as_ref().map(|s| s.state()),
        Some(SagaState::Cancelling)
    );
    // Asking again while cancelling changes nothing.
    world
        .orders
        .cancel_order(id, &OrderAccess::All, None, &render)
        .await
        .expect("again");
    let commands = world.commands().await;
    assert_eq!(of_type(&commands, types::CANCEL_DELIVERY).len(), 1);
    world.to_delivery(&commands).await;
    world.settle().await;
    let replies = world.view(id).await;
    assert_eq!(replies.order.status(), OrderStatus::Cancelled);
    assert_eq!(
        replies.order.cancellation_reason(),
        Some(&CancellationReason::CustomerRequested)
    );
    assert_eq!(replies.saga.expect("saga").state(), SagaState::Compensated);
    assert_eq!(
        world.delivery_of(id).await.map(|d| d.status()),
        Some(DeliveryStatus::Cancelled)
    );
}

#[tokio::test]
async fn cancelling_a_cancelled_order_changes_nothing() {
    let mut world = World::new();
    let id = world.place("BR").await;
    world.settle().await;
    let before = world.view(id).await;
    world
        .orders
        .cancel_order(id, &OrderAccess::All, None, &render)
        .await
        .expect("cancel");
    assert_eq!(world.view(id).await, before);
    assert!(world.commands().await.is_empty());
}

#[tokio::test]
async fn cancelling_a_shipped_order_is_refused() {
    let mut world = World::new();
    let id = world.place("KR").await;
    world.settle().await;
    let delivery = world.delivery_of(id).await.expect("delivery");
    world.deliveries.ship(delivery.id()).await.expect("ship");
    world.settle().await;
    let err = world
        .orders
        .cancel_order(id, &OrderAccess::All, None, &render)
        .await
        .expect_err("refused");
    assert!(matches!(
        err,
        CancelOrderError::NotCancellable {
            status: OrderStatus::Shipped
        }
    ));
}

#[tokio::test]
async fn a_cancel_that_loses_the_race_with_shipping_completes_the_saga() {
    let mut world = World::new();
    let id = world.place("KR").await;
    world.settle().await;
    world
        .orders
        .cancel_order(id, &OrderAccess::All, None, &render)
        .await
        .expect("cancel");
    // The courier ships before the delivery service sees the cancellation.
    let delivery = world.delivery_of(id).await.expect("delivery");
    world.deliveries.ship(delivery.id()).await.expect("ship");
    world.settle().await;
    let view = world.view(id).await;
    assert_eq!(view.order.status(), OrderStatus::Shipped);
    assert_eq!(view.saga.expect("saga").state(), SagaState::Completed);
}

#[tokio::test]
async fn cancelling_an_unknown_order_is_not_found() {
    let world = World::new();
    let err = world
        .orders
        .cancel_order(
            ordership_domain::OrderId::from_uuid(uuid::Uuid::now_v7()),
            &OrderAccess::All,
            None,
            &render,
        )
        .await
        .expect_err("unknown");
    assert!(matches!(err, CancelOrderError::NotFound));
}

#[tokio::test]
async fn orders_are_listed_by_status_with_a_cursor() {
    let mut world = World::new();
    let mut served = Vec::new();
    for i in 0..5 {
        served.push(world.place("KR").await);
        if i % 2 == 0 {
            world.place("BR").await;
        }
    }
    world.settle().await;
    let query = |after| OrderQuery {
        customer: None,
        status: Some(OrderStatus::Confirmed),
        after,
        limit: 2,
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = world
            .orders
            .list_orders(&OrderAccess::All, query(after))
            .await
            .expect("list");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|v| v.order.id());
        seen.extend(page.into_iter().map(|v| v.order.id()));
    }
    assert_eq!(seen, served);
}

#[tokio::test]
async fn a_customer_sees_and_cancels_only_their_own_orders() {
    let world = World::new();
    let id = world.place("KR").await;
    let owner = OrderAccess::Own(ordership_domain::CustomerId::parse("c-42").expect("id"));
    let other = OrderAccess::Own(ordership_domain::CustomerId::parse("c-7").expect("id"));

    assert!(world.orders.get_order(id, &owner).await.is_ok());
    assert!(matches!(
        world.orders.get_order(id, &other).await,
        Err(GetOrderError::NotFound)
    ));
    let everything = OrderQuery {
        customer: None,
        status: None,
        after: None,
        limit: 10,
    };
    let listed = |access| world.orders.list_orders(access, everything.clone());
    assert_eq!(listed(&owner).await.expect("list").len(), 1);
    assert!(listed(&other).await.expect("list").is_empty());
    assert!(matches!(
        world.orders.cancel_order(id, &other, None, &render).await,
        Err(CancelOrderError::NotFound)
    ));
    let view = world.orders.get_order(id, &owner).await.expect("order");
    assert_eq!(
        view.order.status(),
        OrderStatus::Pending,
        "the other customer changed nothing"
    );
    world
        .orders
        .cancel_order(id, &owner, None, &render)
        .await
        .expect("the owner cancels");
}
