//! A flash sale's units through the saga: the step that cancels an order gives its units back,
//! once, whatever steps follow on the cancelled order (compensation replies, redeliveries).

use std::collections::BTreeSet;

use ordership_application::{OrderAccess, Outcome};
use ordership_domain::ports::{OrderTransaction, StockTake, UnitOfWork, WaitingRoomStore};
use ordership_domain::waiting_room::{Rate, RoomId, RoomState, Stock, WaitingRoom};
use ordership_domain::{
    AdmissionRef, CustomerId, OrderId, OrderStatus, PlaceOrder, SagaState, Sku,
};

use crate::harness::{World, place, render};

fn sale() -> WaitingRoom {
    WaitingRoom::new(
        RoomId::parse("sale").expect("room"),
        BTreeSet::from([Sku::parse("ABC-123").expect("sku")]),
        Rate::default(),
        WaitingRoom::DEFAULT_ADMISSION_VALIDITY,
        WaitingRoom::DEFAULT_HEARTBEAT_TIMEOUT,
        RoomState::Open,
        None,
        None,
    )
    .expect("room")
    .with_stock(Some(Stock::of(10)))
}

async fn sold(world: &World) -> u32 {
    world
        .order_store
        .get(sale().id())
        .await
        .expect("get")
        .and_then(|room| room.stock())
        .map_or(0, |stock| stock.sold())
}

/// An order to `country` that holds `units` of the sale, as the gate and the stock leave it:
/// the units taken in the order's transaction (the gate itself is the waiting room's tests').
async fn place_holding(world: &World, country: &str, admission: &str, units: u32) -> OrderId {
    let mut tx = UnitOfWork::<dyn OrderTransaction>::begin(&world.order_store)
        .await
        .expect("begin");
    let taken = tx
        .orders()
        .take_stock(sale().id(), units)
        .await
        .expect("take");
    assert_eq!(taken, StockTake::Taken);
    tx.commit().await.expect("commit");
    // One order per buyer and room: a buyer of its own for each.
    let template = place(country);
    let command = PlaceOrder::new(
        CustomerId::parse(admission).expect("customer"),
        template.lines().to_vec(),
        template.shipping_address().clone(),
    )
    .expect("command")
    .with_admission(AdmissionRef {
        room: sale().id().clone(),
        id: admission.to_owned(),
        units,
    });
    match world.orders.place_order(command, None, None, &render).await {
        Ok(Outcome::Done(view)) => view.order.id(),
        other => panic!("place_order: {other:?}"),
    }
}

#[tokio::test]
async fn a_cancelled_order_gives_its_units_back_once_through_every_later_step() {
    let mut world = World::new();
    world.order_store.put(&sale()).await.expect("room");
    let kept = place_holding(&world, "KR", "a-1", 2).await;
    let cancelled = place_holding(&world, "KR", "a-2", 3).await;
    assert_eq!(sold(&world).await, 5);

    // Cancelled while pending: the units come back in the cancel's transaction.
    world
        .orders
        .cancel_order(cancelled, &OrderAccess::All, None, &render)
        .await
        .expect("cancel");
    assert_eq!(sold(&world).await, 2);
    // The delivery was scheduled meanwhile and is cancelled: steps on the cancelled order,
    // replies delivered twice, and a second cancel give nothing more.
    let commands = world.commands().await;
    world.to_delivery(&commands).await;
    let replies = world.replies().await;
    world.to_saga(&replies).await;
    world.to_saga(&replies).await;
    world.settle().await;
    world
        .orders
        .cancel_order(cancelled, &OrderAccess::All, None, &render)
        .await
        .expect("cancel again");
    let view = world.view(cancelled).await;
    assert_eq!(view.order.status(), OrderStatus::Cancelled);
    assert_eq!(view.saga.expect("saga").state(), SagaState::Compensated);
    assert_eq!(
        world.view(kept).await.order.status(),
        OrderStatus::Confirmed
    );
    assert_eq!(sold(&world).await, 2, "the kept order's units only");
}

#[tokio::test]
async fn an_order_the_delivery_service_rejects_gives_its_units_back_with_its_compensation() {
    let mut world = World::new();
    world.order_store.put(&sale()).await.expect("room");
    place_holding(&world, "KR", "a-1", 1).await;
    let rejected = place_holding(&world, "BR", "a-2", 4).await;
    world.settle().await;
    assert_eq!(
        world.view(rejected).await.order.status(),
        OrderStatus::Cancelled
    );
    assert_eq!(sold(&world).await, 1);
    // Sweeping past every deadline gives nothing back on a settled saga.
    world.time_out().await;
    world.settle().await;
    assert_eq!(sold(&world).await, 1);
}
