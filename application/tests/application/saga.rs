use ordership_application::messages::types;
use ordership_domain::ports::{HandleError, HandleOutcome, MessageHandler};
use ordership_domain::{
    CancellationReason, CountryCode, DeliveryPolicy, DeliveryStatus, OrderStatus, SagaState,
};

use crate::harness::{World, of_type};

#[tokio::test]
async fn an_order_to_a_served_country_is_confirmed_and_its_saga_completes() {
    let mut world = World::new();
    let id = world.place("KR").await;
    world.settle().await;

    let view = world.view(id).await;
    let saga = view.saga.expect("saga");
    assert_eq!(view.order.status(), OrderStatus::Confirmed);
    assert_eq!(saga.state(), SagaState::Completed);
    let delivery = world.delivery_of(id).await.expect("a delivery");
    assert_eq!(view.order.delivery_id(), Some(delivery.id()));
    assert_eq!(delivery.status(), DeliveryStatus::Scheduled);
}

#[tokio::test]
async fn a_rejected_delivery_cancels_the_order_with_the_reason_and_compensates() {
    let mut world = World::new();
    let id = world.place("BR").await;
    world.settle().await;

    let view = world.view(id).await;
    assert_eq!(view.order.status(), OrderStatus::Cancelled);
    assert_eq!(
        view.order.cancellation_reason(),
        Some(&CancellationReason::DeliveryRejected {
            reason: "country BR is not served".into()
        })
    );
    assert_eq!(view.saga.expect("saga").state(), SagaState::Compensated);
    assert!(
        world.delivery_of(id).await.is_none(),
        "no delivery for a rejected order"
    );
}

#[tokio::test]
async fn a_region_at_capacity_rejects_the_next_order() {
    let kr = CountryCode::parse("KR").expect("KR");
    let mut world = World::with_policy(DeliveryPolicy::new([kr], Some(1)));
    let first = world.place("KR").await;
    let second = world.place("KR").await;
    world.settle().await;
    assert_eq!(
        world.view(first).await.order.status(),
        OrderStatus::Confirmed
    );
    let second = world.view(second).await.order;
    assert_eq!(second.status(), OrderStatus::Cancelled);
    assert!(matches!(
        second.cancellation_reason(),
        Some(CancellationReason::DeliveryRejected { reason }) if reason.contains("capacity")
    ));
}

#[tokio::test]
async fn a_lost_command_is_sent_again_after_the_deadline_and_then_confirmed() {
    let mut world = World::new();
    let id = world.place("KR").await;
    let lost = world.commands().await;
    assert_eq!(of_type(&lost, types::SCHEDULE_DELIVERY).len(), 1);

    let report = world.time_out().await;
    assert_eq!(report.retried, 1);
    assert_eq!(world.view(id).await.saga.expect("saga").attempts(), 2);

    world.settle().await;
    assert_eq!(world.view(id).await.order.status(), OrderStatus::Confirmed);
}

#[tokio::test]
async fn without_any_reply_the_saga_retries_then_compensates() {
    let mut world = World::new();
    let id = world.place("KR").await;
    let mut lost = world.commands().await;
    for attempt in 2..=world.config.max_schedule_attempts {
        assert_eq!(world.time_out().await.retried, 1);
        assert_eq!(world.view(id).await.saga.expect("saga").attempts(), attempt);
        lost.extend(world.commands().await);
    }
    assert_eq!(of_type(&lost, types::SCHEDULE_DELIVERY).len(), 3);

    let report = world.time_out().await;
    assert_eq!(report.compensated, 1);
    let view = world.view(id).await;
    assert_eq!(view.order.status(), OrderStatus::Cancelled);
    assert_eq!(
        view.order.cancellation_reason(),
        Some(&CancellationReason::DeliveryTimedOut)
    );
    assert_eq!(
        view.saga.as_ref().map(|s| s.state()),
        Some(SagaState::Cancelling)
    );

    // The lost schedules arrive late, before the cancellation: a delivery is created, then
    // cancelled by the compensation, and the late "scheduled" reply changes nothing.
    world.to_delivery(&lost).await;
    world.settle().await;
    let view = world.view(id).await;
    assert_eq!(view.order.status(), OrderStatus::Cancelled);
    assert_eq!(view.saga.expect("saga").state(), SagaState::Compensated);
    let delivery = world.delivery_of(id).await.expect("delivery");
    assert_eq!(delivery.status(), DeliveryStatus::Cancelled);
}

#[tokio::test]
async fn a_compensation_that_is_never_confirmed_ends_failed() {
    let mut world = World::new();
    let id = world.place("KR").await;
    for _ in 0..world.config.max_schedule_attempts {
        world.commands().await;
        world.time_out().await;
    }
    assert_eq!(
        world.view(id).await.saga.expect("saga").state(),
        SagaState::Cancelling
    );
    for _ in 1..world.config.max_cancel_attempts {
        world.commands().await;
        assert_eq!(world.time_out().await.retried, 1);
    }
    world.commands().await;
    assert_eq!(world.time_out().await.failed, 1);
    let saga = world.view(id).await.saga.expect("saga");
    assert_eq!(saga.state(), SagaState::Failed);
    assert!(
        saga.failure_reason()
            .is_some_and(|r| r.contains("did not confirm"))
    );
    assert_eq!(
        world.time_out().await,
        Default::default(),
        "a failed saga is not swept again"
    );
}

#[tokio::test]
async fn a_duplicate_reply_is_acknowledged_without_effect() {
    let mut world = World::new();
    let id = world.place("KR").await;
    let commands = world.commands().await;
    world.to_delivery(&commands).await;
    let replies = world.replies().await;
    assert_eq!(world.to_saga(&replies).await, [HandleOutcome::Applied]);
    let after_first = world.view(id).await;

    assert_eq!(world.to_saga(&replies).await, [HandleOutcome::Duplicate]);
    assert_eq!(world.view(id).await, after_first);
    assert_eq!(world.commands().await.len(), 0, "nothing new was sent");
}

#[tokio::test]
async fn a_duplicate_command_creates_no_second_delivery() {
    let mut world = World::new();
    let id = world.place("KR").await;
    let commands = world.commands().await;
    world.to_delivery(&commands).await;
    assert_eq!(
        world.to_delivery(&commands).await,
        [HandleOutcome::Duplicate]
    );
    assert_eq!(world.delivery_store.deliveries().await.len(), 1);
    // A retried command (new message id) is answered with the existing delivery.
    world.time_out().await;
    let retry = world.commands().await;
    assert_eq!(world.to_delivery(&retry).await, [HandleOutcome::Applied]);
    assert_eq!(world.delivery_store.deliveries().await.len(), 1);
    world.settle().await;
    let view = world.view(id).await;
    assert_eq!(view.order.status(), OrderStatus::Confirmed);
    assert_eq!(view.order.version(), 2, "confirmed once");
}

#[tokio::test]
async fn a_stale_reply_is_ignored() {
    let mut world = World::new();
    let id = world.place("KR").await;
    world.settle().await;
    let confirmed = world.view(id).await;

    // A rejection arriving after the confirmation (e.g. from an old retry) changes nothing.
    let stale = world.saga.clone();
    let rejection = {
        let payload = ordership_application::messages::DeliveryRejectedV1 {
            order_id: *id.as_uuid(),
            reason_kind: "capacity_exhausted".into(),
            reason: "late".into(),
        };
        ordership_tests::fixtures::envelope()
            .wrap(
                ordership_domain::topics::DELIVERY_EVENTS,
                types::DELIVERY_REJECTED,
                id,
                &payload,
            )
            .expect("message")
    };
    assert_eq!(
        stale.handle(&rejection).await.expect("handled"),
        HandleOutcome::Ignored
    );
    assert_eq!(world.view(id).await, confirmed);
}

#[tokio::test]
async fn an_unknown_message_type_is_a_permanent_error() {
    let mut world = World::new();
    let _ = world.place("KR").await;
    let mut commands = world.commands().await;
    let mut message = commands.remove(0);
    message.message_type = "ordership.delivery.scheduled.v2".into();
    let err = world.saga.handle(&message).await.expect_err("must refuse");
    assert!(
        matches!(err, HandleError::Permanent(reason) if reason.contains("unknown message type"))
    );
    message.message_type = types::DELIVERY_SCHEDULED.into();
    message.payload = serde_json::json!({"order_id": "not a uuid"});
    let err = world.saga.handle(&message).await.expect_err("must refuse");
    assert!(matches!(err, HandleError::Permanent(reason) if reason.contains("cannot decode")));
}

#[tokio::test]
async fn per_order_events_are_published_in_version_order() {
    let mut world = World::new();
    let id = world.place("KR").await;
    world.settle().await;
    let delivery = world.delivery_of(id).await.expect("delivery");
    world.deliveries.ship(delivery.id()).await.expect("ship");
    world.settle().await;
    world
        .deliveries
        .deliver(delivery.id())
        .await
        .expect("deliver");
    world.settle().await;
    assert_eq!(world.view(id).await.order.status(), OrderStatus::Delivered);

    let seen: Vec<(String, u64)> = world
        .order_events
        .iter()
        .map(|m| {
            (
                m.message_type.clone(),
                m.payload["version"].as_u64().expect("version"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ordership.order.placed.v1".to_owned(), 1),
            ("ordership.order.confirmed.v1".to_owned(), 2),
            ("ordership.order.shipped.v1".to_owned(), 3),
            ("ordership.order.delivered.v1".to_owned(), 4),
        ]
    );
}

/// While replies cannot reach the saga (its consumer is not back in its group), deadlines are not
/// judged: nothing is re-sent. Once they can, the overdue saga is re-sent as usual.
#[tokio::test]
async fn deadlines_are_held_back_while_replies_cannot_arrive() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    let world = World::new();
    let id = world.place("KR").await;
    world.clock.advance(chrono::Duration::seconds(
        i64::try_from(world.config.max_backoff.as_secs()).expect("secs") + 1,
    ));
    let (flowing, asked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let gate = {
        let (flowing, asked) = (Arc::clone(&flowing), Arc::clone(&asked));
        Arc::new(move || {
            asked.fetch_add(1, Ordering::SeqCst);
            flowing.load(Ordering::SeqCst)
        })
    };
    let (trigger, shutdown) = ordership_application::ShutdownTrigger::new();
    let sweeper = tokio::spawn(ordership_application::background::run_sweeper(
        world.saga.clone(),
        Duration::from_millis(5),
        100,
        gate,
        shutdown,
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while asked.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the sweeper never asked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        world.view(id).await.saga.expect("saga").attempts(),
        1,
        "held back"
    );

    flowing.store(true, Ordering::SeqCst);
    while world.view(id).await.saga.expect("saga").attempts() < 2 {
        assert!(
            Instant::now() < deadline,
            "never re-sent once replies could arrive"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    trigger.trigger();
    sweeper.await.expect("sweeper stops");
}
