//! Property tests: random command sequences never panic, never reach a state the diagrams do
//! not allow, and a refused command never changes the aggregate.

use chrono::Utc;
use proptest::prelude::*;

use crate::order::tests::place_order;
use crate::*;

#[derive(Debug, Clone)]
enum OrderCommand {
    Confirm,
    Ship,
    Deliver,
    Cancel,
}

fn order_command() -> impl Strategy<Value = OrderCommand> {
    prop_oneof![
        Just(OrderCommand::Confirm),
        Just(OrderCommand::Ship),
        Just(OrderCommand::Deliver),
        Just(OrderCommand::Cancel),
    ]
}

/// The transitions of the order diagram, and nothing else.
fn order_edge_allowed(from: OrderStatus, to: OrderStatus) -> bool {
    use OrderStatus::*;
    matches!(
        (from, to),
        (Pending, Confirmed)
            | (Confirmed, Shipped)
            | (Shipped, Delivered)
            | (Pending | Confirmed, Cancelled)
    )
}

#[derive(Debug, Clone)]
enum SagaCommand {
    Retry,
    Complete,
    Compensate,
    Compensated,
    Fail,
    Reopen,
}

fn saga_command() -> impl Strategy<Value = SagaCommand> {
    prop_oneof![
        Just(SagaCommand::Retry),
        Just(SagaCommand::Complete),
        Just(SagaCommand::Compensate),
        Just(SagaCommand::Compensated),
        Just(SagaCommand::Fail),
        Just(SagaCommand::Reopen),
    ]
}

proptest! {
    #[test]
    fn an_order_only_moves_along_the_diagram(commands in prop::collection::vec(order_command(), 0..40)) {
        let now = Utc::now();
        let (mut order, _) = Order::place(OrderId::from_uuid(uuid::Uuid::now_v7()), place_order("KR"), now);
        for command in commands {
            let before = order.clone();
            let result = match command {
                OrderCommand::Confirm => order.confirm(DeliveryId::from_uuid(uuid::Uuid::now_v7()), now),
                OrderCommand::Ship => order.ship(now),
                OrderCommand::Deliver => order.deliver(now),
                OrderCommand::Cancel => order.cancel(CancellationReason::CustomerRequested, now),
            };
            match result {
                Ok(event) => {
                    prop_assert!(order_edge_allowed(before.status(), order.status()),
                        "{} -> {}", before.status(), order.status());
                    prop_assert_eq!(order.version(), before.version() + 1);
                    // The command's event, applied to the order as it was, is the whole change.
                    let mut replayed = before.clone();
                    replayed.apply(&event, now);
                    prop_assert_eq!(&replayed, &order);
                }
                Err(_) => prop_assert_eq!(&order, &before),
            }
            // Invariants of every reachable state.
            prop_assert_eq!(order.status() == OrderStatus::Cancelled, order.cancellation_reason().is_some());
            let needs_delivery = matches!(order.status(), OrderStatus::Confirmed | OrderStatus::Shipped | OrderStatus::Delivered);
            prop_assert!(!needs_delivery || order.delivery_id().is_some());
        }
    }

    #[test]
    fn a_delivery_never_leaves_a_final_state(ops in prop::collection::vec(0u8..3, 0..30)) {
        let now = Utc::now();
        let address = ShippingAddress::new("Kim", "1", "Seoul", "1", "KR").expect("valid");
        let (mut d, _) = Delivery::schedule(
            DeliveryId::from_uuid(uuid::Uuid::now_v7()),
            OrderId::from_uuid(uuid::Uuid::now_v7()),
            address, now, now);
        for op in ops {
            let before = d.clone();
            let result = match op { 0 => d.ship(now), 1 => d.deliver(now), _ => d.cancel(now) };
            match result {
                Ok(event) => {
                    // The command's event, applied to the delivery as it was, is the whole change.
                    let mut replayed = before.clone();
                    replayed.apply(&event, now);
                    prop_assert_eq!(&replayed, &d);
                }
                Err(_) => prop_assert_eq!(&d, &before),
            }
            if matches!(before.status(), DeliveryStatus::Delivered | DeliveryStatus::Cancelled) {
                prop_assert_eq!(d.status(), before.status());
            }
        }
    }

    #[test]
    fn a_saga_never_leaves_compensated_and_leaves_failed_only_when_reopened_or_compensated(commands in prop::collection::vec(saga_command(), 0..40)) {
        let now = Utc::now();
        let mut saga = FulfilmentSaga::start(OrderId::from_uuid(uuid::Uuid::now_v7()), now, now);
        for command in commands {
            let before = saga.clone();
            let reopen = matches!(command, SagaCommand::Reopen);
            let result = match command {
                SagaCommand::Retry => saga.retry(now, now),
                SagaCommand::Complete => saga.complete(now),
                SagaCommand::Compensate => saga.begin_compensation(now, now),
                SagaCommand::Compensated => saga.compensated(now),
                SagaCommand::Fail => saga.fail("gave up".into(), now),
                SagaCommand::Reopen => saga.reopen(now, now),
            };
            match result {
                Ok(event) => {
                    prop_assert_eq!(saga.version(), before.version() + 1);
                    // The command's event, applied to the saga as it was, is the whole change.
                    let mut replayed = before.clone();
                    replayed.apply(&event, now);
                    prop_assert_eq!(&replayed, &saga);
                }
                Err(_) => prop_assert_eq!(&saga, &before),
            }
            if before.state() == SagaState::Compensated {
                prop_assert_eq!(saga.state(), before.state());
            }
            // Out of failed only by an operator's retry (back to cancelling) or a late
            // confirmation that the delivery is cancelled (compensated).
            if before.state() == SagaState::Failed && saga.state() != SagaState::Failed {
                match saga.state() {
                    SagaState::Cancelling => prop_assert!(reopen),
                    state => prop_assert_eq!(state, SagaState::Compensated),
                }
                prop_assert_eq!(saga.failure_reason(), None);
            }
            // Only a saga that waits for a reply has a deadline.
            prop_assert_eq!(saga.deadline().is_some(), saga.state().is_waiting());
            prop_assert!(saga.attempts() >= 1);
        }
    }
}
