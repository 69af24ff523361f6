//! The waiting rooms' store contract, with the rooms' stock: what every store of rooms (memory,
//! PostgreSQL) must do, checked against the order store of the same database, since orders take
//! a room's stock in their own transactions.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use ordership_domain::ports::{StockTake, StoreError, WaitingRoomStore};
use ordership_domain::waiting_room::{Rate, RoomId, RoomState, Stock, WaitingRoom};
use ordership_domain::{Currency, Money, Sku};

use crate::contract::OrderStore;

/// The rooms and the orders of one fresh database.
pub struct RoomsAndOrders {
    pub rooms: Arc<dyn WaitingRoomStore>,
    pub orders: Arc<OrderStore>,
}

fn room(id: &str, state: RoomState) -> WaitingRoom {
    WaitingRoom::new(
        RoomId::parse(id).expect("id"),
        ["HOT-1", "HOT-2"]
            .into_iter()
            .map(|s| Sku::parse(s).expect("sku"))
            .collect(),
        Rate::new(50, Duration::from_millis(1_500)).expect("rate"),
        Duration::from_secs(120),
        Duration::from_secs(20),
        state,
        Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).single(),
        None,
    )
    .expect("room")
}

/// A room written and read back is the same room (its price and stock too); writing it again
/// replaces it.
pub async fn rooms_round_trip(stores: RoomsAndOrders) {
    let store = stores.rooms;
    let scheduled = room("black-friday", RoomState::Scheduled);
    assert_eq!(store.get(scheduled.id()).await.expect("get"), None);
    store.put(&scheduled).await.expect("put");
    assert_eq!(
        store.get(scheduled.id()).await.expect("get"),
        Some(scheduled.clone())
    );
    // With the shop's price, a stock and a holding limit, then without them again.
    let krw = Currency::parse("KRW").expect("currency");
    let priced = room("black-friday", RoomState::Open)
        .with_unit_price(Some(Money::new(9_900, krw).expect("money")))
        .with_stock(Some(Stock::of(100)))
        .with_max_unordered(Some(7))
        .expect("a holding limit");
    store.put(&priced).await.expect("put again");
    assert_eq!(store.get(priced.id()).await.expect("get"), Some(priced));
    let open = room("black-friday", RoomState::Open);
    store.put(&open).await.expect("put again");
    assert_eq!(store.get(open.id()).await.expect("get"), Some(open.clone()));
    assert_eq!(store.all().await.expect("all"), [open]);
}

async fn take(stores: &RoomsAndOrders, room: &RoomId, units: u32, commit: bool) -> StockTake {
    let mut tx = stores.orders.begin().await.expect("begin");
    let taken = tx.orders().take_stock(room, units).await.expect("take");
    if commit {
        tx.commit().await.expect("commit");
    }
    taken
}

async fn give_back(stores: &RoomsAndOrders, room: &RoomId, units: u32) {
    let mut tx = stores.orders.begin().await.expect("begin");
    tx.orders()
        .give_back_stock(room, units)
        .await
        .expect("give back");
    tx.commit().await.expect("commit");
}

async fn stock(stores: &RoomsAndOrders, room: &RoomId) -> Option<Stock> {
    stores
        .rooms
        .get(room)
        .await
        .expect("get")
        .expect("the room")
        .stock()
}

/// Units are taken all or none, only with the transaction's commit, never past the total; they
/// come back when given back; the total cannot go below what is sold; a room that stops counting
/// keeps the count of what its orders hold.
pub async fn a_rooms_stock_is_taken_with_the_order_and_never_oversold(stores: RoomsAndOrders) {
    let counted = |total, sold| Some(Stock::counted(total, sold).expect("stock"));
    let sale = room("sale", RoomState::Open).with_stock(Some(Stock::of(3)));
    let id = sale.id().clone();
    stores.rooms.put(&sale).await.expect("put");
    assert_eq!(stock(&stores, &id).await, counted(3, 0));

    assert_eq!(take(&stores, &id, 2, false).await, StockTake::Taken);
    assert_eq!(stock(&stores, &id).await, counted(3, 0), "rolled back");
    assert_eq!(take(&stores, &id, 2, true).await, StockTake::Taken);
    assert_eq!(stock(&stores, &id).await, counted(3, 2));
    assert_eq!(
        take(&stores, &id, 2, true).await,
        StockTake::SoldOut { left: 1 },
        "all or none"
    );
    assert_eq!(take(&stores, &id, 1, true).await, StockTake::Taken);
    let read = stores.rooms.get(&id).await.expect("get").expect("room");
    assert!(read.sold_out());

    let below = sale.clone().with_stock(Some(Stock::of(2)));
    assert!(
        matches!(stores.rooms.put(&below).await, Err(StoreError::Conflict)),
        "not below what is sold"
    );
    assert_eq!(stock(&stores, &id).await, counted(3, 3), "nothing changed");

    give_back(&stores, &id, 1).await;
    assert_eq!(stock(&stores, &id).await, counted(3, 2));
    stores
        .rooms
        .put(&sale.clone().with_stock(Some(Stock::of(5))))
        .await
        .expect("more on sale");
    assert_eq!(
        stock(&stores, &id).await,
        counted(5, 2),
        "sold stays counted"
    );

    stores
        .rooms
        .put(&sale.clone().with_stock(None))
        .await
        .expect("stop counting");
    assert_eq!(stock(&stores, &id).await, None);
    assert_eq!(take(&stores, &id, 1, true).await, StockTake::Uncounted);
    stores.rooms.put(&sale).await.expect("count again");
    assert_eq!(
        stock(&stores, &id).await,
        counted(3, 2),
        "the units orders hold are still counted"
    );
    give_back(&stores, &id, 5).await;
    assert_eq!(stock(&stores, &id).await, counted(3, 0), "never below zero");

    let unknown = RoomId::parse("no-such-room").expect("id");
    assert_eq!(take(&stores, &unknown, 1, true).await, StockTake::Uncounted);
    give_back(&stores, &unknown, 1).await;
}

/// Many transactions taking one room's units at once sell exactly the units on sale.
pub async fn concurrent_orders_never_oversell(stores: RoomsAndOrders) {
    const UNITS: u32 = 10;
    const BUYERS: usize = 40;
    let sale = room("rush", RoomState::Open).with_stock(Some(Stock::of(UNITS)));
    stores.rooms.put(&sale).await.expect("put");
    let stores = Arc::new(stores);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..BUYERS {
        let stores = Arc::clone(&stores);
        let id = sale.id().clone();
        tasks.spawn(async move { take(&stores, &id, 1, true).await });
    }
    let mut taken = 0;
    while let Some(result) = tasks.join_next().await {
        match result.expect("task") {
            StockTake::Taken => taken += 1,
            // `left` is as of the statement's start: another take may have been waited for.
            StockTake::SoldOut { .. } => {}
            StockTake::Uncounted => panic!("the room counts its stock"),
        }
    }
    assert_eq!(taken, UNITS, "exactly the units on sale");
    assert_eq!(
        stock(&stores, sale.id()).await,
        Some(Stock::counted(UNITS, UNITS).expect("stock"))
    );
}

/// Declares the waiting-room store's contract tests; `$make` gives a [`RoomsAndOrders`].
#[macro_export]
macro_rules! room_store_contract_tests {
    ($make:expr) => {
        $crate::room_store_contract_tests!(@each $make;
            rooms_round_trip,
            a_rooms_stock_is_taken_with_the_order_and_never_oversold,
            concurrent_orders_never_oversell
        );
    };
    (@each $make:expr; $($check:ident),+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            $crate::rooms::$check($make.await).await;
        }
    )+};
}
