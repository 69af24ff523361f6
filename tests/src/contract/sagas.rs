//! The saga repository's contract.

use chrono::Duration;
use ordership_domain::ports::StoreError;
use ordership_domain::{FulfilmentSaga, SagaState};
use uuid::Uuid;

use super::{OrderStore, order, t0};

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

/// A saga's history: steps come back in `seq` order after a position, limited, with every field
/// as written; a second step with one `seq` is a duplicate; a rolled-back step is gone.
pub async fn a_sagas_history_keeps_its_steps_in_order(store: &OrderStore) {
    use ordership_domain::MessageId;
    use ordership_domain::saga::{SagaStepRecord, StepCause};

    let mut o = order();
    let mut saga = FulfilmentSaga::start(o.id(), t0() + Duration::minutes(1), t0());
    let mut tx = store.begin().await.expect("begin");
    tx.orders().insert(&o).await.expect("insert");
    tx.sagas().insert(&saga).await.expect("insert");
    let placed = SagaStepRecord::of(
        &o,
        &saga,
        StepCause::Placed,
        t0(),
        vec![MessageId::from_uuid(Uuid::now_v7())],
    );
    tx.sagas().record_step(&placed).await.expect("record");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    o.cancel(
        ordership_domain::CancellationReason::DeliveryRejected {
            reason: "full".into(),
        },
        t0(),
    )
    .expect("cancel");
    saga.fail("given up".into(), t0()).expect("fail");
    let reply = StepCause::Reply {
        message_id: MessageId::from_uuid(Uuid::now_v7()),
        message_type: "ordership.delivery.rejected.v1".into(),
    };
    let failed = SagaStepRecord::of(&o, &saga, reply, t0() + Duration::seconds(1), vec![]);
    tx.sagas().record_step(&failed).await.expect("record");
    assert!(matches!(
        tx.sagas().record_step(&failed).await,
        Err(StoreError::Duplicate)
    ));
    drop(tx);
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.sagas().history(o.id(), 0, 10).await.expect("history"),
        std::slice::from_ref(&placed),
        "the rolled-back step is gone"
    );
    tx.sagas().record_step(&failed).await.expect("record");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    let all = tx.sagas().history(o.id(), 0, 10).await.expect("history");
    assert_eq!(all, [placed.clone(), failed.clone()]);
    assert!(placed.seq < failed.seq);
    assert_eq!(
        tx.sagas()
            .history(o.id(), placed.seq, 10)
            .await
            .expect("after"),
        [failed]
    );
    assert_eq!(
        tx.sagas().history(o.id(), 0, 1).await.expect("limited"),
        [placed]
    );
    assert!(
        tx.sagas()
            .history(order().id(), 0, 10)
            .await
            .expect("none")
            .is_empty()
    );
}
