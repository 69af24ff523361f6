//! Every decision of the fulfilment saga, as pure functions.
//!
//! Each function takes the order and its saga as they were loaded, changes them in place through
//! their own commands, and returns what leaves the order service afterwards — order events and
//! commands to the delivery service — in the order they must be sent. A refused transition is an
//! error and leaves nothing half-done that the caller would save: callers drop both on error.

use chrono::{DateTime, Utc};

use super::{FulfilmentSaga, SagaPolicy, SagaState};
use crate::error::InvalidTransition;
use crate::ids::{DeliveryId, OrderId};
use crate::jitter::Jitter;
use crate::order::{CancellationReason, Order, OrderEvent, OrderStatus};

/// A reply or progress event of the delivery service, as the saga sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryReply {
    Scheduled(DeliveryId),
    Rejected(String),
    Cancelled,
    /// The delivery is past cancelling (`status`: shipped, delivered).
    CancellationRefused {
        delivery_id: DeliveryId,
        status: String,
    },
    Shipped,
    Delivered,
}

/// A command of the saga to the delivery service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaCommand {
    /// Schedule a delivery of the order (idempotent by order id, so it may be sent again).
    ScheduleDelivery,
    /// Cancel the order's delivery, if it has one.
    CancelDelivery,
}

/// What leaves the order service after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// An order event, for whoever follows orders.
    Event(OrderEvent),
    /// A command to the delivery service.
    Command(SagaCommand),
}

/// What a reply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The order and/or the saga changed: save them and send these, in this order.
    Changed(Vec<Outgoing>),
    /// Stale or irrelevant (a reply to a step that is over): acknowledged without effect.
    Ignored(&'static str),
}

/// What a passed deadline did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineAction {
    /// The command of the current step was sent again, with a longer wait.
    Retried,
    /// No reply to any `ScheduleDelivery`: the order is cancelled and its delivery undone.
    Compensating,
    /// No confirmation of the cancellation: the saga needs a human.
    Failed,
}

/// Why a customer's cancel was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerCancelError {
    #[error("an order that is {status} can no longer be cancelled")]
    NotCancellable { status: OrderStatus },
    #[error(transparent)]
    Invalid(#[from] InvalidTransition),
}

/// A new saga for a freshly placed order, and its first command.
#[must_use]
pub fn start(
    policy: &SagaPolicy,
    order_id: OrderId,
    now: DateTime<Utc>,
) -> (FulfilmentSaga, SagaCommand) {
    // The first wait is the reply timeout: there is nothing to spread yet.
    let saga = FulfilmentSaga::start(order_id, policy.deadline(1, now, Jitter::NONE), now);
    (saga, SagaCommand::ScheduleDelivery)
}

/// A reply of the delivery service.
///
/// # Errors
/// [`InvalidTransition`] when the order and the saga disagree (a broken invariant).
pub fn on_reply(
    policy: &SagaPolicy,
    order: &mut Order,
    saga: &mut FulfilmentSaga,
    reply: DeliveryReply,
    now: DateTime<Utc>,
) -> Result<Step, InvalidTransition> {
    let event = |e: OrderEvent| Step::Changed(vec![Outgoing::Event(e)]);
    Ok(match (reply, saga.state()) {
        (DeliveryReply::Scheduled(delivery_id), SagaState::AwaitingDelivery) => {
            let confirmed = order.confirm(delivery_id, now)?;
            saga.complete(now)?;
            event(confirmed)
        }
        (DeliveryReply::Rejected(reason), SagaState::AwaitingDelivery) => {
            let cancelled = order.cancel(CancellationReason::DeliveryRejected { reason }, now)?;
            if saga.attempts() > 1 {
                // `ScheduleDelivery` went out more than once, and another send may still be
                // scheduled (capacity freed meanwhile): undo whatever the sends did. Sent after
                // them under the order's key, `CancelDelivery` reaches the delivery service last.
                saga.begin_compensation(policy.deadline(1, now, Jitter::NONE), now)?;
                Step::Changed(vec![
                    Outgoing::Event(cancelled),
                    Outgoing::Command(SagaCommand::CancelDelivery),
                ])
            } else {
                saga.compensated(now)?;
                event(cancelled)
            }
        }
        // A saga that gave up waiting for the cancellation's confirmation ends compensated
        // when the confirmation comes after all: the delivery is cancelled, so is the order.
        (DeliveryReply::Cancelled, SagaState::Cancelling | SagaState::Failed) => {
            let mut out = Vec::new();
            if order.is_cancellable() {
                out.push(Outgoing::Event(
                    order.cancel(CancellationReason::CustomerRequested, now)?,
                ));
            }
            saga.compensated(now)?;
            Step::Changed(out)
        }
        (
            DeliveryReply::CancellationRefused {
                delivery_id,
                status,
            },
            SagaState::Cancelling,
        ) => {
            if order.status() == OrderStatus::Cancelled {
                saga.fail(
                    format!(
                        "delivery {delivery_id} was already {status} when the order was cancelled"
                    ),
                    now,
                )?;
            } else {
                // The customer asked too late: the parcel is on its way, the order follows it.
                saga.complete(now)?;
            }
            Step::Changed(Vec::new())
        }
        (DeliveryReply::Scheduled(_), SagaState::Cancelling)
            if crate::planted::active(crate::planted::Bug::StaleReply) =>
        {
            // Planted: a confirmation meant for the step before taken as the saga's end.
            saga.complete(now)?;
            Step::Changed(Vec::new())
        }
        (DeliveryReply::Shipped, _) => match order.ship(now) {
            Ok(shipped) => event(shipped),
            Err(_) => Step::Ignored("order is not confirmed"),
        },
        (DeliveryReply::Delivered, _) => match order.deliver(now) {
            Ok(delivered) => event(delivered),
            Err(_) => Step::Ignored("order is not shipped"),
        },
        _ => Step::Ignored("the saga is no longer waiting for this reply"),
    })
}

/// The saga's deadline passed: send the step's command again (with a longer wait, spread by
/// `jitter`), or after the last attempt compensate (`AwaitingDelivery`) or give up
/// (`Cancelling` → `Failed`). `None` for a saga that waits for nothing.
///
/// # Errors
/// [`InvalidTransition`] when the order and the saga disagree (a broken invariant).
pub fn on_deadline(
    policy: &SagaPolicy,
    order: &mut Order,
    saga: &mut FulfilmentSaga,
    now: DateTime<Utc>,
    jitter: Jitter,
) -> Result<Option<(DeadlineAction, Vec<Outgoing>)>, InvalidTransition> {
    let attempts = saga.attempts();
    let next_deadline = policy.deadline(attempts.saturating_add(1), now, jitter);
    Ok(Some(match saga.state() {
        SagaState::AwaitingDelivery if attempts < policy.max_schedule_attempts => {
            saga.retry(next_deadline, now)?;
            (
                DeadlineAction::Retried,
                vec![Outgoing::Command(SagaCommand::ScheduleDelivery)],
            )
        }
        SagaState::AwaitingDelivery => {
            let cancelled = order.cancel(CancellationReason::DeliveryTimedOut, now)?;
            saga.begin_compensation(policy.deadline(1, now, Jitter::NONE), now)?;
            (
                DeadlineAction::Compensating,
                vec![
                    Outgoing::Event(cancelled),
                    Outgoing::Command(SagaCommand::CancelDelivery),
                ],
            )
        }
        SagaState::Cancelling if attempts < policy.max_cancel_attempts => {
            saga.retry(next_deadline, now)?;
            (
                DeadlineAction::Retried,
                vec![Outgoing::Command(SagaCommand::CancelDelivery)],
            )
        }
        SagaState::Cancelling => {
            saga.fail(
                format!(
                    "the delivery service did not confirm the cancellation after {attempts} attempts"
                ),
                now,
            )?;
            (DeadlineAction::Failed, Vec::new())
        }
        SagaState::Completed | SagaState::Compensated | SagaState::Failed => return Ok(None),
    }))
}

/// The customer asks to cancel. A `pending` order is cancelled at once and `CancelDelivery` is
/// still sent, since a schedule may be in flight. A `confirmed` order stays confirmed while the
/// saga cancels its delivery (`cancelling`). Cancelling a cancelled order, or one already being
/// cancelled, changes nothing.
///
/// # Errors
/// [`CustomerCancelError::NotCancellable`] once shipped or delivered.
pub fn on_customer_cancel(
    policy: &SagaPolicy,
    order: &mut Order,
    saga: Option<&mut FulfilmentSaga>,
    now: DateTime<Utc>,
) -> Result<Vec<Outgoing>, CustomerCancelError> {
    let mut out = Vec::new();
    match order.status() {
        status @ (OrderStatus::Shipped | OrderStatus::Delivered) => {
            return Err(CustomerCancelError::NotCancellable { status });
        }
        OrderStatus::Pending => {
            out.push(Outgoing::Event(
                order.cancel(CancellationReason::CustomerRequested, now)?,
            ));
        }
        OrderStatus::Cancelled | OrderStatus::Confirmed => {}
    }
    // Undo the delivery unless the saga is already doing so (or done).
    if let Some(saga) = saga
        && matches!(
            saga.state(),
            SagaState::AwaitingDelivery | SagaState::Completed
        )
    {
        saga.begin_compensation(policy.deadline(1, now, Jitter::NONE), now)?;
        out.push(Outgoing::Command(SagaCommand::CancelDelivery));
    }
    Ok(out)
}

/// What an operator may do to a saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAction {
    /// A failed saga: send its last command (`CancelDelivery`) again and wait for the reply.
    Retry,
    /// A saga that waits for its delivery, or completed before the parcel left: cancel the order
    /// and undo its delivery.
    ForceCompensation,
}

impl OperatorAction {
    /// Stable machine-readable name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::ForceCompensation => "force_compensation",
        }
    }
}

/// Why an operator's action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    #[error("a saga that is {state} cannot be retried: only a failed saga can")]
    NotRetryable { state: SagaState },
    #[error("a saga that is {state} cannot be forced to compensate")]
    NotCompensable { state: SagaState },
    #[error("an order that is {status} can no longer be cancelled")]
    OrderNotCancellable { status: OrderStatus },
    #[error(transparent)]
    Invalid(#[from] InvalidTransition),
}

/// An operator acts on a saga. **Retry** takes a failed saga up again: `CancelDelivery` is sent
/// anew and the saga waits in `cancelling`, its attempts counted from one. **Force compensation**
/// cancels the order (if it still can be) and undoes its delivery, from `awaiting_delivery` or
/// `completed`, unless the parcel has left.
///
/// # Errors
/// [`OperatorError`] when the saga's state (or the order's) does not allow the action; nothing
/// is changed then.
pub fn on_operator(
    policy: &SagaPolicy,
    order: &mut Order,
    saga: &mut FulfilmentSaga,
    action: OperatorAction,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Outgoing>, OperatorError> {
    let state = saga.state();
    let deadline = policy.deadline(1, now, Jitter::NONE);
    match action {
        OperatorAction::Retry => {
            if state != SagaState::Failed {
                return Err(OperatorError::NotRetryable { state });
            }
            saga.reopen(deadline, now)?;
            Ok(vec![Outgoing::Command(SagaCommand::CancelDelivery)])
        }
        OperatorAction::ForceCompensation => {
            if !matches!(state, SagaState::AwaitingDelivery | SagaState::Completed) {
                return Err(OperatorError::NotCompensable { state });
            }
            let mut out = Vec::new();
            match order.status() {
                status @ (OrderStatus::Shipped | OrderStatus::Delivered) => {
                    return Err(OperatorError::OrderNotCancellable { status });
                }
                OrderStatus::Pending | OrderStatus::Confirmed => {
                    let reason = CancellationReason::OperatorRequested {
                        reason: reason.to_owned(),
                    };
                    out.push(Outgoing::Event(order.cancel(reason, now)?));
                }
                OrderStatus::Cancelled => {}
            }
            saga.begin_compensation(deadline, now)?;
            out.push(Outgoing::Command(SagaCommand::CancelDelivery));
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    //! Given an order and its saga, when something happens, then these transitions and messages.

    use super::*;
    use crate::address::ShippingAddress;
    use crate::order::{CustomerId, PlaceOrder, parse_order_line};

    fn policy() -> SagaPolicy {
        SagaPolicy {
            max_schedule_attempts: 2,
            max_cancel_attempts: 2,
            ..SagaPolicy::default()
        }
    }

    /// Given: a placed order and its new saga.
    fn placed() -> (Order, FulfilmentSaga, DateTime<Utc>) {
        let now = Utc::now();
        let line = parse_order_line(0, "ABC-123", 1, 100, "EUR").expect("line");
        let address =
            ShippingAddress::new("Kim", "1 Main St", "Seoul", "04524", "KR").expect("address");
        let command = PlaceOrder::new(CustomerId::parse("c-1").expect("id"), vec![line], address)
            .expect("command");
        let id = OrderId::from_uuid(uuid::Uuid::now_v7());
        let (order, _) = Order::place(id, command, now);
        let (saga, first) = start(&policy(), id, now);
        assert_eq!(first, SagaCommand::ScheduleDelivery);
        (order, saga, now)
    }

    /// When: the delivery service answers with `reply`.
    fn answer(
        order: &mut Order,
        saga: &mut FulfilmentSaga,
        reply: DeliveryReply,
        now: DateTime<Utc>,
    ) -> Result<Step, InvalidTransition> {
        on_reply(&policy(), order, saga, reply, now)
    }

    fn delivery() -> DeliveryId {
        DeliveryId::from_uuid(uuid::Uuid::now_v7())
    }

    /// Given: an order whose delivery was scheduled.
    fn confirmed() -> (Order, FulfilmentSaga, DateTime<Utc>) {
        let (mut order, mut saga, now) = placed();
        answer(
            &mut order,
            &mut saga,
            DeliveryReply::Scheduled(delivery()),
            now,
        )
        .expect("ok");
        (order, saga, now)
    }

    #[test]
    fn a_scheduled_delivery_confirms_the_order_and_completes_the_saga() {
        let (mut order, mut saga, now) = placed();
        let id = delivery();
        let step = answer(&mut order, &mut saga, DeliveryReply::Scheduled(id), now).expect("ok");
        assert_eq!(
            step,
            Step::Changed(vec![Outgoing::Event(OrderEvent::Confirmed {
                delivery_id: id
            })])
        );
        assert_eq!(
            (order.status(), saga.state()),
            (OrderStatus::Confirmed, SagaState::Completed)
        );
    }

    #[test]
    fn a_rejection_cancels_the_order_with_its_reason_and_compensates() {
        let (mut order, mut saga, now) = placed();
        let reply = DeliveryReply::Rejected("country BR is not served".into());
        let step = answer(&mut order, &mut saga, reply, now).expect("ok");
        let reason = CancellationReason::DeliveryRejected {
            reason: "country BR is not served".into(),
        };
        assert_eq!(
            step,
            Step::Changed(vec![Outgoing::Event(OrderEvent::Cancelled {
                reason: reason.clone()
            })])
        );
        assert_eq!(order.cancellation_reason(), Some(&reason));
        assert_eq!(saga.state(), SagaState::Compensated);
    }

    #[test]
    fn a_reply_to_a_step_that_is_over_is_ignored_and_changes_nothing() {
        let (mut order, mut saga, now) = confirmed();
        let (order_before, saga_before) = (order.clone(), saga.clone());
        let late = DeliveryReply::Rejected("late".into());
        let step = answer(&mut order, &mut saga, late, now).expect("ok");
        assert!(matches!(step, Step::Ignored(_)));
        assert_eq!((order, saga), (order_before, saga_before));
    }

    #[test]
    fn progress_moves_a_confirmed_order_and_is_ignored_before() {
        let (mut order, mut saga, now) = placed();
        let early = answer(&mut order, &mut saga, DeliveryReply::Shipped, now).expect("ok");
        assert!(matches!(early, Step::Ignored(_)));
        answer(
            &mut order,
            &mut saga,
            DeliveryReply::Scheduled(delivery()),
            now,
        )
        .expect("ok");
        let shipped = answer(&mut order, &mut saga, DeliveryReply::Shipped, now).expect("ok");
        assert_eq!(
            shipped,
            Step::Changed(vec![Outgoing::Event(OrderEvent::Shipped)])
        );
        answer(&mut order, &mut saga, DeliveryReply::Delivered, now).expect("ok");
        assert_eq!(order.status(), OrderStatus::Delivered);
    }

    #[test]
    fn a_passed_deadline_resends_then_cancels_the_order_and_undoes_the_delivery() {
        let (mut order, mut saga, now) = placed();
        let (action, out) = on_deadline(&policy(), &mut order, &mut saga, now, Jitter::NONE)
            .expect("ok")
            .expect("waiting");
        assert_eq!(action, DeadlineAction::Retried);
        assert_eq!(out, [Outgoing::Command(SagaCommand::ScheduleDelivery)]);
        assert_eq!(saga.attempts(), 2);

        let (action, out) = on_deadline(&policy(), &mut order, &mut saga, now, Jitter::NONE)
            .expect("ok")
            .expect("waiting");
        assert_eq!(action, DeadlineAction::Compensating);
        assert_eq!(
            out,
            [
                Outgoing::Event(OrderEvent::Cancelled {
                    reason: CancellationReason::DeliveryTimedOut
                }),
                Outgoing::Command(SagaCommand::CancelDelivery),
            ]
        );
        assert_eq!(
            (order.status(), saga.state(), saga.attempts()),
            (OrderStatus::Cancelled, SagaState::Cancelling, 1)
        );
    }

    #[test]
    fn an_unconfirmed_cancellation_is_resent_then_the_saga_fails() {
        let (mut order, mut saga, now) = placed();
        on_customer_cancel(&policy(), &mut order, Some(&mut saga), now).expect("cancel");
        let (action, _) = on_deadline(&policy(), &mut order, &mut saga, now, Jitter::NONE)
            .expect("ok")
            .expect("waiting");
        assert_eq!(action, DeadlineAction::Retried);
        let (action, out) = on_deadline(&policy(), &mut order, &mut saga, now, Jitter::NONE)
            .expect("ok")
            .expect("waiting");
        assert_eq!((action, out), (DeadlineAction::Failed, Vec::new()));
        assert_eq!(saga.state(), SagaState::Failed);
        assert!(
            saga.failure_reason()
                .is_some_and(|r| r.contains("2 attempts"))
        );
        let finished =
            on_deadline(&policy(), &mut order, &mut saga, now, Jitter::NONE).expect("ok");
        assert_eq!(finished, None, "a failed saga waits for nothing");
    }

    #[test]
    fn a_rejection_after_a_resend_undoes_what_another_send_may_schedule() {
        // Found by the simulator: the first send was rejected (no capacity), the saga
        // compensated, and the re-send, handled once capacity was freed, scheduled a delivery
        // for the cancelled order.
        let (mut order, mut saga, now) = placed();
        on_deadline(&policy(), &mut order, &mut saga, now, Jitter::NONE).expect("resent");
        let reply = DeliveryReply::Rejected("no capacity left".into());
        let step = answer(&mut order, &mut saga, reply, now).expect("ok");
        assert!(matches!(
            step,
            Step::Changed(ref out) if out.last() == Some(&Outgoing::Command(SagaCommand::CancelDelivery))
        ));
        assert_eq!(
            (order.status(), saga.state()),
            (OrderStatus::Cancelled, SagaState::Cancelling)
        );
        let step = answer(&mut order, &mut saga, DeliveryReply::Cancelled, now);
        assert_eq!(step.expect("ok"), Step::Changed(Vec::new()));
        assert_eq!(saga.state(), SagaState::Compensated);
    }

    #[test]
    fn a_cancellation_confirmed_after_the_saga_gave_up_compensates_it() {
        // Found by the simulator: the confirmation of a cancellation that came after the
        // saga's last deadline was ignored, leaving a confirmed order with a cancelled delivery.
        let (mut order, mut saga, now) = confirmed();
        on_customer_cancel(&policy(), &mut order, Some(&mut saga), now).expect("cancel");
        for _ in 0..2 {
            on_deadline(&policy(), &mut order, &mut saga, now, Jitter::NONE).expect("ok");
        }
        assert_eq!(
            (order.status(), saga.state()),
            (OrderStatus::Confirmed, SagaState::Failed)
        );
        let step = answer(&mut order, &mut saga, DeliveryReply::Cancelled, now).expect("ok");
        assert_eq!(
            step,
            Step::Changed(vec![Outgoing::Event(OrderEvent::Cancelled {
                reason: CancellationReason::CustomerRequested
            })])
        );
        assert_eq!(
            (order.status(), saga.state()),
            (OrderStatus::Cancelled, SagaState::Compensated)
        );
    }

    #[test]
    fn cancelling_a_pending_order_cancels_it_at_once_and_still_undoes_the_delivery() {
        let (mut order, mut saga, now) = placed();
        let out = on_customer_cancel(&policy(), &mut order, Some(&mut saga), now).expect("ok");
        assert_eq!(
            out,
            [
                Outgoing::Event(OrderEvent::Cancelled {
                    reason: CancellationReason::CustomerRequested
                }),
                Outgoing::Command(SagaCommand::CancelDelivery),
            ]
        );
        assert_eq!(saga.state(), SagaState::Cancelling);
        // Asked again: nothing more to do.
        let again = on_customer_cancel(&policy(), &mut order, Some(&mut saga), now).expect("ok");
        assert!(again.is_empty());
    }

    #[test]
    fn cancelling_a_confirmed_order_waits_for_the_delivery_service() {
        let (mut order, mut saga, now) = confirmed();
        let out = on_customer_cancel(&policy(), &mut order, Some(&mut saga), now).expect("ok");
        assert_eq!(out, [Outgoing::Command(SagaCommand::CancelDelivery)]);
        assert_eq!(order.status(), OrderStatus::Confirmed);
        let step = answer(&mut order, &mut saga, DeliveryReply::Cancelled, now).expect("ok");
        assert!(matches!(step, Step::Changed(ref out) if out.len() == 1));
        assert_eq!(
            (order.status(), saga.state()),
            (OrderStatus::Cancelled, SagaState::Compensated)
        );
    }

    #[test]
    fn a_shipped_order_cannot_be_cancelled() {
        let (mut order, mut saga, now) = confirmed();
        answer(&mut order, &mut saga, DeliveryReply::Shipped, now).expect("ok");
        let refused = on_customer_cancel(&policy(), &mut order, Some(&mut saga), now);
        assert_eq!(
            refused,
            Err(CustomerCancelError::NotCancellable {
                status: OrderStatus::Shipped
            })
        );
        assert_eq!(saga.state(), SagaState::Completed);
    }

    #[test]
    fn a_refused_cancellation_completes_a_live_order_and_fails_a_cancelled_one() {
        let refused = || DeliveryReply::CancellationRefused {
            delivery_id: delivery(),
            status: "shipped".into(),
        };
        let (mut order, mut saga, now) = confirmed();
        on_customer_cancel(&policy(), &mut order, Some(&mut saga), now).expect("ok");
        answer(&mut order, &mut saga, refused(), now).expect("ok");
        assert_eq!(
            saga.state(),
            SagaState::Completed,
            "the order follows the parcel"
        );

        let (mut order, mut saga, now) = placed();
        on_customer_cancel(&policy(), &mut order, Some(&mut saga), now).expect("ok");
        answer(&mut order, &mut saga, refused(), now).expect("ok");
        assert_eq!(saga.state(), SagaState::Failed);
    }

    #[test]
    fn an_operator_retries_only_a_failed_saga_which_sends_its_cancel_again() {
        let (mut order, mut saga, now) = placed();
        let retry = |o: &mut Order, s: &mut FulfilmentSaga| {
            on_operator(
                &policy(),
                o,
                s,
                OperatorAction::Retry,
                "courier called",
                now,
            )
        };
        assert_eq!(
            retry(&mut order, &mut saga),
            Err(OperatorError::NotRetryable {
                state: SagaState::AwaitingDelivery
            })
        );
        on_customer_cancel(&policy(), &mut order, Some(&mut saga), now).expect("ok");
        let refused = DeliveryReply::CancellationRefused {
            delivery_id: delivery(),
            status: "shipped".into(),
        };
        answer(&mut order, &mut saga, refused, now).expect("ok");
        assert_eq!(saga.state(), SagaState::Failed);
        let out = retry(&mut order, &mut saga).expect("retried");
        assert_eq!(out, [Outgoing::Command(SagaCommand::CancelDelivery)]);
        assert_eq!(saga.state(), SagaState::Cancelling);
        assert_eq!((saga.attempts(), saga.failure_reason()), (1, None));
        assert!(saga.deadline().is_some());
        assert_eq!(
            retry(&mut order, &mut saga),
            Err(OperatorError::NotRetryable {
                state: SagaState::Cancelling
            }),
            "once is enough"
        );
    }

    #[test]
    fn a_forced_compensation_cancels_the_order_and_undoes_its_delivery_unless_shipped() {
        let force = |o: &mut Order, s: &mut FulfilmentSaga, now| {
            on_operator(
                &policy(),
                o,
                s,
                OperatorAction::ForceCompensation,
                "fraud",
                now,
            )
        };
        let (mut order, mut saga, now) = placed();
        let out = force(&mut order, &mut saga, now).expect("forced");
        assert_eq!(order.status(), OrderStatus::Cancelled);
        assert_eq!(
            order.cancellation_reason(),
            Some(&CancellationReason::OperatorRequested {
                reason: "fraud".into()
            })
        );
        assert_eq!(saga.state(), SagaState::Cancelling);
        assert!(matches!(
            out.as_slice(),
            [
                Outgoing::Event(_),
                Outgoing::Command(SagaCommand::CancelDelivery)
            ]
        ));
        assert_eq!(
            force(&mut order, &mut saga, now),
            Err(OperatorError::NotCompensable {
                state: SagaState::Cancelling
            })
        );

        let (mut order, mut saga, now) = confirmed();
        order.ship(now).expect("shipped");
        let (before, saga_before) = (order.clone(), saga.clone());
        assert_eq!(
            force(&mut order, &mut saga, now),
            Err(OperatorError::OrderNotCancellable {
                status: OrderStatus::Shipped
            })
        );
        assert_eq!((order, saga), (before, saga_before), "nothing changed");
    }
}
