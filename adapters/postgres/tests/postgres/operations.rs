//! Operators' actions race the saga's own steps: each action is one locked step, so one of two
//! racing steps goes first and the other sees what it did — never a lost update, never twice.

use std::sync::Arc;

use ordership_application::messages::types;
use ordership_application::{OrderAccess, SagaAction, SagaActionError, SagaOperations};
use ordership_domain::ports::{HandleOutcome, MessageHandler};
use ordership_domain::saga::{OperatorAction, OperatorError, StepCause};
use ordership_domain::{DeliveryPolicy, OrderId, OrderStatus, SagaPolicy, SagaState, topics};
use ordership_postgres::PgOrderStore;
use ordership_postgres::testing::fresh_database;

use crate::harness::{Services, clock, envelope, ids, scheduled, services};

fn operations(s: &Services) -> SagaOperations {
    SagaOperations::new(
        Arc::new(PgOrderStore::new(s.pool.clone())),
        clock(),
        ids(),
        SagaPolicy::default(),
    )
}

fn action(action: OperatorAction, actor: &'static str) -> SagaAction<'static> {
    SagaAction {
        action,
        actor,
        reason: "on call",
    }
}

/// An order whose saga failed: cancelled while pending, and the delivery service answers that
/// its parcel had already left.
async fn failed(s: &Services) -> OrderId {
    let id = s.place("KR").await;
    s.orders
        .cancel_order(id, &OrderAccess::All, None, &crate::harness::render)
        .await
        .expect("cancelled");
    let payload = ordership_application::messages::DeliveryCancellationRefusedV1 {
        order_id: *id.as_uuid(),
        delivery_id: uuid::Uuid::now_v7(),
        status: "shipped".into(),
    };
    let refused = envelope()
        .wrap(
            topics::DELIVERY_EVENTS,
            types::DELIVERY_CANCELLATION_REFUSED,
            id,
            &payload,
        )
        .expect("message");
    s.saga.handle(&refused).await.expect("handled");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_retrying_one_failed_saga_at_once_retry_it_once() {
    let pool = fresh_database().await;
    let s = services(&pool, DeliveryPolicy::default());
    let ops = operations(&s);
    for _ in 0..10 {
        let id = failed(&s).await;
        let (a, b) = tokio::join!(
            ops.act(id, action(OperatorAction::Retry, "ops-1")),
            ops.act(id, action(OperatorAction::Retry, "ops-2"))
        );
        let (won, lost) = match (a, b) {
            (Ok(view), Err(e)) | (Err(e), Ok(view)) => (view, e),
            (a, b) => panic!("exactly one retry: {a:?} / {b:?}"),
        };
        assert_eq!(won.saga.map(|s| s.state()), Some(SagaState::Cancelling));
        assert!(
            matches!(
                lost,
                SagaActionError::NotAllowed(OperatorError::NotRetryable {
                    state: SagaState::Cancelling
                })
            ),
            "{lost:?}"
        );
        let (_, history) = ops.history(id).await.expect("history");
        let retries = history
            .iter()
            .filter(|step| matches!(step.cause, StepCause::Operator { .. }))
            .count();
        assert_eq!(retries, 1, "{history:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_compensation_racing_a_reply_makes_one_transition_each_in_one_order() {
    let pool = fresh_database().await;
    let s = services(&pool, DeliveryPolicy::default());
    let ops = operations(&s);
    for _ in 0..10 {
        let id = s.place("KR").await;
        let reply = scheduled(id, uuid::Uuid::now_v7());
        let (forced, replied) = tokio::join!(
            ops.act(id, action(OperatorAction::ForceCompensation, "ops-1")),
            s.saga.handle(&reply)
        );
        forced.expect("a saga awaiting or completed can be forced to compensate");
        let replied = replied.expect("handled");
        let (view, history) = ops.history(id).await.expect("history");
        let causes: Vec<&str> = history.iter().map(|step| step.cause.kind()).collect();
        // The reply first (then the operator cancels a confirmed order), or the operator first
        // (then the reply is stale): each acted once, on what the other left.
        match replied {
            HandleOutcome::Applied => {
                assert_eq!(causes, ["placed", "reply", "operator_force_compensation"]);
                assert_eq!(view.order.version(), 3, "placed, confirmed, cancelled");
            }
            HandleOutcome::Ignored => {
                assert_eq!(causes, ["placed", "operator_force_compensation"]);
                assert_eq!(view.order.version(), 2, "placed, cancelled");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(view.order.status(), OrderStatus::Cancelled);
        assert_eq!(view.saga.map(|s| s.state()), Some(SagaState::Cancelling));
        let seqs: Vec<u64> = history.iter().map(|step| step.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
}
