//! The contract of the storage ports (`docs/design.md`, *Transactions, outbox, inbox*), as
//! functions over a fresh store, one module per port. An adapter's test binary runs each check against a new, empty store (see [`crate::contract_tests!`]).
//!
//! Every check states what the port's documentation promises; an adapter that breaks one fails
//! here, not in production.

mod dead_letters;
mod deliveries;
mod idempotency;
mod inbox;
mod orders;
mod outbox;
mod sagas;
mod unit_of_work;

pub use dead_letters::*;
pub use deliveries::*;
pub use idempotency::*;
pub use inbox::*;
pub use orders::*;
pub use outbox::*;
pub use sagas::*;
pub use unit_of_work::*;

use chrono::{DateTime, Duration, TimeZone, Utc};
use ordership_domain::ports::{DeliveryTransaction, OrderTransaction, UnitOfWork};
use ordership_domain::{
    CustomerId, Delivery, DeliveryId, Message, MessageId, Order, OrderId, PlaceOrder,
    ShippingAddress, parse_order_line, topics,
};
use uuid::Uuid;

/// The order service's store under test.
pub type OrderStore = dyn UnitOfWork<dyn OrderTransaction>;
/// The delivery service's store under test.
pub type DeliveryStore = dyn UnitOfWork<dyn DeliveryTransaction>;

/// A fixed time in whole seconds (what every store keeps exactly).
pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

pub(crate) fn address(country: &str) -> ShippingAddress {
    ShippingAddress::new("Kim", "1 Sejong-daero", "Seoul", "04524", country).expect("address")
}

pub(crate) fn order() -> Order {
    order_of("c-42")
}

pub(crate) fn order_of(customer: &str) -> Order {
    let line = parse_order_line(0, "ABC-123", 2, 1250, "KRW").expect("line");
    let place = PlaceOrder::new(
        CustomerId::parse(customer).expect("id"),
        vec![line],
        address("KR"),
    )
    .expect("order");
    Order::place(OrderId::from_uuid(Uuid::now_v7()), place, t0()).0
}

pub(crate) fn message(order_id: OrderId, n: u32) -> Message {
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

pub(crate) fn delivery(order_id: OrderId, country: &str, at: DateTime<Utc>) -> Delivery {
    let id = DeliveryId::from_uuid(Uuid::now_v7());
    Delivery::schedule(id, order_id, address(country), at + Duration::days(2), at).0
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
            a_customer_lists_only_their_own_orders,
            an_admission_buys_one_order_and_a_buyer_orders_once_per_room,
            sagas_round_trip_and_come_due_by_deadline,
            a_sagas_history_keeps_its_steps_in_order,
            dead_letters_are_indexed_redriven_and_purged,
            the_outbox_publishes_in_order_and_purges_only_published,
            a_parked_message_holds_back_only_its_key,
            parked_messages_can_be_listed_redriven_and_purged,
            each_key_s_messages_are_in_one_shard,
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
