//! The order service's use cases: place, read, list and cancel orders, with HTTP-agnostic
//! idempotency keys.

use std::collections::HashMap;
use std::sync::Arc;

use ordership_domain::ports::{
    BoxError, Clock, IdGenerator, OrderQuery, OrderTransaction, StockTake, StoreError,
    StoredResponse, UnitOfWork,
};
use ordership_domain::saga::{CustomerCancelError, Outgoing, SagaStepRecord, StepCause, decide};
use ordership_domain::{
    AdmissionRef, CustomerId, FulfilmentSaga, Order, OrderId, OrderStatus, PlaceOrder, SagaPolicy,
};

use crate::error::from_store_error;
use crate::idempotency::{IdempotentRequest, KeyCheck, claim_key, store_response};
use crate::saga::{Loaded, SOURCE, StepToSave, encode, save_step};
use crate::stamp::Stamps;
use crate::waiting_room::{GateRefusal, WaitingRoomService};

/// An order as the API shows it: the aggregate and its saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub order: Order,
    pub saga: Option<FulfilmentSaga>,
}

/// Whose orders a caller may read and cancel. An order the caller may not see is reported as not
/// found, so its existence is not given away either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderAccess {
    /// Everyone's orders (an operator).
    All,
    /// The orders this customer placed.
    Own(CustomerId),
}

impl OrderAccess {
    #[must_use]
    pub fn permits(&self, order: &Order) -> bool {
        match self {
            Self::All => true,
            Self::Own(customer) => order.customer_id() == customer,
        }
    }
}

/// Turns the result into the response to store under the idempotency key.
pub type Render<'a> = &'a (dyn Fn(&OrderView) -> StoredResponse + Send + Sync);

/// What an idempotent command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Executed now.
    Done(Box<OrderView>),
    /// The key was used before with the same request: the stored response, to send again as is.
    Replayed(StoredResponse),
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
    #[error("the idempotency key was already used for a different request")]
    KeyReused,
    /// A product of the order is sold through a waiting room, and the order has no valid
    /// admission for it.
    #[error(transparent)]
    NotAdmitted(GateRefusal),
    /// The admission bought an order already (or the buyer ordered in this sale before).
    #[error("the admission has been used")]
    AdmissionUsed,
    /// The room's stock has fewer units left than the order's lines of its SKUs.
    #[error("sold out: {left} units of this sale are left")]
    SoldOut { left: u32 },
    #[error("the order was changed concurrently")]
    Conflict,
    #[error("storage is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("unexpected error")]
    Unexpected(#[source] BoxError),
}
from_store_error!(PlaceOrderError);

#[derive(Debug, thiserror::Error)]
pub enum CancelOrderError {
    #[error("order not found")]
    NotFound,
    #[error("an order that is {status} can no longer be cancelled")]
    NotCancellable { status: OrderStatus },
    #[error("the idempotency key was already used for a different request")]
    KeyReused,
    #[error("the order was changed concurrently")]
    Conflict,
    #[error("storage is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("unexpected error")]
    Unexpected(#[source] BoxError),
}
from_store_error!(CancelOrderError);

#[derive(Debug, thiserror::Error)]
pub enum GetOrderError {
    #[error("order not found")]
    NotFound,
    #[error("storage is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("unexpected error")]
    Unexpected(#[source] BoxError),
}
from_store_error!(GetOrderError, without_conflict);

/// How often a command is tried again after losing an optimistic-concurrency race.
const CONFLICT_RETRIES: usize = 3;

/// Reads an order `access` covers, with its saga: one read, so a unit of work of
/// [`UnitOfWork::begin_single_read`] serves it.
pub(crate) async fn read_order(
    tx: &mut dyn OrderTransaction,
    id: OrderId,
    access: &OrderAccess,
) -> Result<OrderView, GetOrderError> {
    let (order, saga) = tx
        .orders()
        .get_with_saga(id)
        .await?
        .filter(|(order, _)| access.permits(order))
        .ok_or(GetOrderError::NotFound)?;
    Ok(OrderView { order, saga })
}

/// Takes the admission's units from its room's stock, in the order's transaction: the order
/// holds them from its commit on. A room that counts no stock gives none (and the order holds
/// none to give back).
async fn take_units(
    tx: &mut dyn OrderTransaction,
    rooms: &WaitingRoomService,
    admission: AdmissionRef,
    buyer: &CustomerId,
) -> Result<AdmissionRef, PlaceOrderError> {
    if ordership_domain::planted::active(ordership_domain::planted::Bug::StockNotTaken) {
        return Ok(admission);
    }
    match tx
        .orders()
        .take_stock(&admission.room, admission.units)
        .await?
    {
        StockTake::Taken => Ok(admission),
        StockTake::Uncounted => Ok(AdmissionRef {
            units: 0,
            ..admission
        }),
        StockTake::SoldOut { left } => {
            // This instance's rooms say "sold out" at once, not at their next refresh.
            rooms.release(&admission.room, buyer).await;
            Err(PlaceOrderError::SoldOut { left })
        }
    }
}

/// The order service's use cases.
#[derive(Clone)]
pub struct OrderService {
    uow: Arc<dyn UnitOfWork<dyn OrderTransaction>>,
    stamps: Stamps,
    policy: SagaPolicy,
    waiting_rooms: Option<WaitingRoomService>,
}

impl OrderService {
    #[must_use]
    pub fn new(
        uow: Arc<dyn UnitOfWork<dyn OrderTransaction>>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        policy: SagaPolicy,
    ) -> Self {
        Self {
            uow,
            stamps: Stamps::new(SOURCE, clock, ids),
            policy,
            waiting_rooms: None,
        }
    }

    /// Orders for SKUs of a flash sale need an admission of its waiting room.
    #[must_use]
    pub fn with_waiting_rooms(self, waiting_rooms: WaitingRoomService) -> Self {
        Self {
            waiting_rooms: Some(waiting_rooms),
            ..self
        }
    }

    /// Places an order and starts its fulfilment saga, in one transaction: the order
    /// (`pending`), the saga (`awaiting_delivery`), `OrderPlaced` and `ScheduleDelivery` in the
    /// outbox, and the idempotency key with its response.
    ///
    /// An order for a flash sale's SKUs passes the waiting rooms' gate with `admission` (the
    /// admission token); the admission is stored with the order, in this transaction and under
    /// unique constraints, so it buys exactly one order however many requests race.
    ///
    /// # Errors
    /// See [`PlaceOrderError`].
    #[tracing::instrument(name = "orders.place", skip_all)]
    pub async fn place_order(
        &self,
        command: PlaceOrder,
        admission: Option<&str>,
        idempotency: Option<&IdempotentRequest>,
        render: Render<'_>,
    ) -> Result<Outcome, PlaceOrderError> {
        let mut tx = self.uow.begin().await?;
        match claim_key(tx.as_mut(), idempotency, &self.stamps).await? {
            KeyCheck::Proceed => {}
            KeyCheck::Replay(response) => return Ok(Outcome::Replayed(response)),
            KeyCheck::Reused => return Err(PlaceOrderError::KeyReused),
        }
        // After the key: a retry of a placed order is answered even once its admission expired.
        let command = match &self.waiting_rooms {
            Some(rooms) => match rooms.gate(&command, admission).await {
                Ok(Some(admission)) => {
                    let buyer = command.customer_id();
                    let admission = take_units(tx.as_mut(), rooms, admission, buyer).await?;
                    command.with_admission(admission)
                }
                Ok(None) => command,
                Err(refusal) => return Err(PlaceOrderError::NotAdmitted(refusal)),
            },
            None => command,
        };
        let now = self.stamps.now();
        let id = OrderId::from_uuid(self.stamps.new_id());
        let admitted = command.admission().is_some();
        let (order, placed) = Order::place(id, command, now);
        let (saga, first) = decide::start(&self.policy, id, now);
        match tx.orders().insert(&order).await {
            // Order ids are new: a duplicate is the admission's.
            Err(StoreError::Duplicate) if admitted => return Err(PlaceOrderError::AdmissionUsed),
            result => result?,
        }
        let outgoing = vec![Outgoing::Event(placed), Outgoing::Command(first)];
        let messages =
            encode(&self.stamps, &order, outgoing, None).map_err(PlaceOrderError::Unexpected)?;
        let sent = messages.iter().map(|m| m.id).collect();
        let step = SagaStepRecord::of(&order, &saga, StepCause::Placed, now, sent);
        tx.sagas().insert_with_step(&saga, &step).await?;
        crate::outbox::append(tx.outbox(), &messages).await?;
        let view = OrderView {
            order,
            saga: Some(saga),
        };
        store_response(tx.as_mut(), idempotency, || render(&view)).await?;
        tx.commit().await?;
        tracing::info!(order_id = %id, "order placed");
        if let (Some(rooms), Some(admission)) = (&self.waiting_rooms, view.order.admission()) {
            rooms
                .release(&admission.room, view.order.customer_id())
                .await;
        }
        Ok(Outcome::Done(Box::new(view)))
    }

    /// Cancels an order on the customer's request.
    ///
    /// A `pending` order is cancelled at once and `CancelDelivery` is still sent, since a
    /// schedule may be in flight. A `confirmed` order stays confirmed while the saga cancels its
    /// delivery (`cancelling`), and becomes `cancelled` when the delivery service confirms.
    /// Cancelling a cancelled order, or one already being cancelled, changes nothing.
    ///
    /// # Errors
    /// See [`CancelOrderError`]; `NotCancellable` once shipped.
    #[tracing::instrument(name = "orders.cancel", skip_all, fields(order_id = %id))]
    pub async fn cancel_order(
        &self,
        id: OrderId,
        access: &OrderAccess,
        idempotency: Option<&IdempotentRequest>,
        render: Render<'_>,
    ) -> Result<Outcome, CancelOrderError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_cancel(id, access, idempotency, render).await {
                Err(CancelOrderError::Conflict) if attempt < CONFLICT_RETRIES => {}
                result => return result,
            }
        }
    }

    async fn try_cancel(
        &self,
        id: OrderId,
        access: &OrderAccess,
        idempotency: Option<&IdempotentRequest>,
        render: Render<'_>,
    ) -> Result<Outcome, CancelOrderError> {
        let mut tx = self.uow.begin().await?;
        match claim_key(tx.as_mut(), idempotency, &self.stamps).await? {
            KeyCheck::Proceed => {}
            KeyCheck::Replay(response) => return Ok(Outcome::Replayed(response)),
            KeyCheck::Reused => return Err(CancelOrderError::KeyReused),
        }
        // Lock the saga before reading the order, as every saga step does.
        let mut saga = tx.sagas().get_for_update(id).await?;
        let mut order = tx
            .orders()
            .get(id)
            .await?
            .filter(|order| access.permits(order))
            .ok_or(CancelOrderError::NotFound)?;
        let loaded = Loaded::of(&order, saga.as_ref());
        let now = self.stamps.now();
        let outgoing = decide::on_customer_cancel(&self.policy, &mut order, saga.as_mut(), now)
            .map_err(|e| match e {
                CustomerCancelError::NotCancellable { status } => {
                    CancelOrderError::NotCancellable { status }
                }
                CustomerCancelError::Invalid(e) => CancelOrderError::Unexpected(Box::new(e)),
            })?;
        let messages =
            encode(&self.stamps, &order, outgoing, None).map_err(CancelOrderError::Unexpected)?;
        let step = StepToSave {
            loaded,
            order: &order,
            saga: saga.as_ref(),
            cause: StepCause::CustomerCancel,
            messages: &messages,
        };
        save_step(tx.as_mut(), step, now).await?;
        let view = OrderView { order, saga };
        store_response(tx.as_mut(), idempotency, || render(&view)).await?;
        tx.commit().await?;
        Ok(Outcome::Done(Box::new(view)))
    }

    /// # Errors
    /// `NotFound` (also for an order `access` does not cover), or the store's failure.
    pub async fn get_order(
        &self,
        id: OrderId,
        access: &OrderAccess,
    ) -> Result<OrderView, GetOrderError> {
        let mut tx = self.uow.begin_single_read().await?;
        read_order(tx.as_mut(), id, access).await
    }

    /// A page of the orders `access` covers, by ascending id; pass the last id as `after` for
    /// the next page. A customer's query is narrowed to their own orders whatever it asks for.
    ///
    /// # Errors
    /// The store's failure (`NotFound` is never returned).
    pub async fn list_orders(
        &self,
        access: &OrderAccess,
        query: OrderQuery,
    ) -> Result<Vec<OrderView>, GetOrderError> {
        let query = match access {
            OrderAccess::All => query,
            OrderAccess::Own(customer) => OrderQuery {
                customer: Some(customer.clone()),
                ..query
            },
        };
        let mut tx = self.uow.begin_read_only().await?;
        let orders = tx.orders().list(&query).await?;
        // One query for the page's sagas, not one per order.
        let ids: Vec<OrderId> = orders.iter().map(Order::id).collect();
        let mut sagas: HashMap<OrderId, FulfilmentSaga> = tx
            .sagas()
            .get_many(&ids)
            .await?
            .into_iter()
            .map(|saga| (saga.order_id(), saga))
            .collect();
        Ok(orders
            .into_iter()
            .map(|order| {
                let saga = sagas.remove(&order.id());
                OrderView { order, saga }
            })
            .collect())
    }
}
