//! A saga's history: one record per step, each holding what moved it and the state of the order
//! and its saga after the step. Written in the step's own transaction, so the history is exactly
//! the sequence of committed states; clients follow it (event streams) and operators read it.

use chrono::{DateTime, Utc};

use super::{FulfilmentSaga, OperatorAction, SagaState};
use crate::ids::{MessageId, OrderId};
use crate::order::{CancellationReason, Order, OrderStatus};

/// What moved a saga one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepCause {
    /// The order was placed and its saga started.
    Placed,
    /// A reply of the delivery service.
    Reply {
        message_id: MessageId,
        message_type: String,
    },
    /// The saga's deadline passed.
    Deadline,
    /// The customer asked to cancel.
    CustomerCancel,
    /// An operator acted: who (the token's subject) and why.
    Operator {
        action: OperatorAction,
        actor: String,
        reason: String,
    },
}

impl StepCause {
    /// Stable machine-readable kind.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Reply { .. } => "reply",
            Self::Deadline => "deadline",
            Self::CustomerCancel => "customer_cancel",
            Self::Operator {
                action: OperatorAction::Retry,
                ..
            } => "operator_retry",
            Self::Operator {
                action: OperatorAction::ForceCompensation,
                ..
            } => "operator_force_compensation",
        }
    }
}

/// One step of a saga: its cause, when, what it sent, and the state it left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaStepRecord {
    pub order_id: OrderId,
    /// Grows with every step of the order ([`step_seq`]): an order's steps in commit order.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub cause: StepCause,
    pub order_status: OrderStatus,
    pub cancellation: Option<CancellationReason>,
    pub saga_state: SagaState,
    /// The saga's attempt after the step (how often its command was sent).
    pub attempts: u32,
    pub failure_reason: Option<String>,
    /// The messages the step sent.
    pub sent: Vec<MessageId>,
}

/// The sequence number of the state an order and its saga are in: the sum of their versions.
/// Each step bumps at least one of them, so the number grows with every step of the order.
#[must_use]
pub fn step_seq(order: &Order, saga: Option<&FulfilmentSaga>) -> u64 {
    order.version() + saga.map_or(0, FulfilmentSaga::version)
}

impl SagaStepRecord {
    /// The record of a step that left `order` and `saga` as they are now.
    #[must_use]
    pub fn of(
        order: &Order,
        saga: &FulfilmentSaga,
        cause: StepCause,
        at: DateTime<Utc>,
        sent: Vec<MessageId>,
    ) -> Self {
        Self {
            order_id: order.id(),
            seq: step_seq(order, Some(saga)),
            at,
            cause,
            order_status: order.status(),
            cancellation: order.cancellation_reason().cloned(),
            saga_state: saga.state(),
            attempts: saga.attempts(),
            failure_reason: saga.failure_reason().map(str::to_owned),
            sent,
        }
    }

    /// Whether the saga has ended with this step (completed, compensated or failed): no reply
    /// or deadline moves it any more.
    #[must_use]
    pub const fn saga_ended(&self) -> bool {
        !self.saga_state.is_waiting()
    }
}
