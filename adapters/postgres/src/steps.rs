//! The statements of a saga step that span an order and its saga, one round trip each: the lock
//! a step starts with, which reads both, and the write of both with the step's history row.

use async_trait::async_trait;
use ordership_domain::ports::{
    IdempotencyStore, OrderRepository, OrderTransaction, SagaRepository, StoreError,
};
use ordership_domain::saga::SagaStepRecord;
use ordership_domain::{FulfilmentSaga, Order, OrderId};

use crate::error::corrupt;
use crate::history::{bind_step, insert_step, same_saga};
use crate::orders::{order_columns, order_with_saga};
use crate::sagas::joined_saga_columns;
use crate::unit_of_work::{PgOrderTx, updated_one, version};

/// One statement for a step that changed the order and its saga: the order (`$20`…`$23`: its
/// delivery, version, update time and expected version; status and cancellation are the
/// step's), then the saga only if the order was at its expected version, then the step only if
/// the saga was. Nothing counted: a conflict on either.
const UPDATE_ORDER_AND_SAGA_WITH_STEP: &str = concat!(
    "WITH o AS (UPDATE orders.orders SET status = $7, delivery_id = $20, cancellation_kind = $8, \
     cancellation_detail = $9, version = $21, updated_at = $22 WHERE id = $1 AND version = $23 RETURNING id), \
     saga AS (UPDATE orders.sagas SET state = $10, attempts = $11, deadline = $16, failure_reason = $12, \
     version = $17, updated_at = $18 WHERE order_id = (SELECT id FROM o) AND version = $19 RETURNING order_id) ",
    insert_step!(),
    " SELECT order_id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 FROM saga"
);
/// The saga and its order, both locked: when a step held them, the newest versions of both are
/// returned once it committed (a row read without a lock would be the one seen before the
/// wait). Saga first, as every step locks them.
const LOCK_SAGA_WITH_ORDER: &str = concat!(
    "SELECT ",
    order_columns!("o."),
    ", ",
    joined_saga_columns!(),
    " FROM orders.sagas s JOIN orders.orders o ON o.id = s.order_id WHERE s.order_id = $1 FOR UPDATE OF s, o"
);

#[async_trait]
impl OrderTransaction for PgOrderTx {
    fn orders(&mut self) -> &mut dyn OrderRepository {
        self
    }
    fn sagas(&mut self) -> &mut dyn SagaRepository {
        self
    }
    fn idempotency_keys(&mut self) -> &mut dyn IdempotencyStore {
        self
    }

    async fn lock_saga_with_order(
        &mut self,
        order_id: OrderId,
    ) -> Result<Option<(FulfilmentSaga, Order)>, StoreError> {
        let found = order_with_saga(
            self,
            LOCK_SAGA_WITH_ORDER,
            order_id,
            "steps::lock_saga_with_order",
        )
        .await?;
        found
            .map(|(order, saga)| {
                let saga =
                    saga.ok_or_else(|| corrupt("saga", "a locked saga read without its columns"))?;
                Ok((saga, order))
            })
            .transpose()
    }

    async fn update_order_and_saga_with_step(
        &mut self,
        order: &Order,
        expected_order_version: u64,
        saga: &FulfilmentSaga,
        expected_saga_version: u64,
        step: &SagaStepRecord,
    ) -> Result<(), StoreError> {
        same_saga(saga, step)?;
        if step.order_status != order.status()
            || step.cancellation.as_ref() != order.cancellation_reason()
        {
            return Err(StoreError::Unexpected(
                "a saga step recorded with an order it does not describe".into(),
            ));
        }
        let done = bind_step(sqlx::query(UPDATE_ORDER_AND_SAGA_WITH_STEP), step)?
            .bind(saga.deadline())
            .bind(version(saga.version())?)
            .bind(saga.updated_at())
            .bind(version(expected_saga_version)?)
            .bind(order.delivery_id().map(|d| *d.as_uuid()))
            .bind(version(order.version())?)
            .bind(order.updated_at())
            .bind(version(expected_order_version)?)
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("steps::update_order_and_saga_with_step", e))?;
        updated_one(&done)
    }
}
