//! The persisted state of one fulfilment saga (saga id = order id): which transitions are legal.
//! What the saga does on a reply, a deadline or a customer's cancel is decided in
//! [`super::decide`].
//!
//! ```text
//! AwaitingDelivery ──scheduled──▶ Completed ──customer cancel──▶ Cancelling
//!    │  │  ▲ retry (deadline)                                       │  ▲ retry (deadline)
//!    │  └──┘                                                        │  └──┘
//!    ├──rejected──────────────────────▶ Compensated ◀──cancelled────┤
//!    └──timeout / customer cancel──▶ Cancelling     Failed ◀──gave up / cannot undo
//!                                         ▲             │
//!                                         └──operator retry (reopen)
//! ```

use std::fmt;

use chrono::{DateTime, Utc};

use crate::error::{InvalidTransition, ValidationError};
use crate::ids::OrderId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SagaState {
    /// `ScheduleDelivery` sent, waiting for the reply.
    AwaitingDelivery,
    /// `CancelDelivery` sent, waiting for `DeliveryCancelled`.
    Cancelling,
    /// Delivery scheduled; the order follows the delivery's progress.
    Completed,
    /// Undone: the order is cancelled and no delivery is live.
    Compensated,
    /// Could not finish; needs a human. Visible in metrics and the API.
    Failed,
}

impl SagaState {
    pub const ALL: [Self; 5] = [
        Self::AwaitingDelivery,
        Self::Cancelling,
        Self::Completed,
        Self::Compensated,
        Self::Failed,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingDelivery => "awaiting_delivery",
            Self::Cancelling => "cancelling",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
            Self::Failed => "failed",
        }
    }

    /// # Errors
    /// [`ValidationError`] for anything but the snake-case names.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| ValidationError::new("state", "unknown saga state"))
    }

    /// The saga waits for a reply and has a deadline.
    #[must_use]
    pub const fn is_waiting(self) -> bool {
        matches!(self, Self::AwaitingDelivery | Self::Cancelling)
    }
}

impl fmt::Display for SagaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a saga: each of its commands decides one, and [`FulfilmentSaga::apply`]
/// folds it into the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaEvent {
    /// The step's command was sent again; the saga waits until `deadline`.
    Retried { deadline: DateTime<Utc> },
    /// Delivery is scheduled, or could not be called back: the saga's work is done.
    Completed,
    /// `CancelDelivery` was sent; the saga waits until `deadline` for its answer.
    CompensationBegun { deadline: DateTime<Utc> },
    /// Nothing is left to undo.
    Compensated,
    /// The saga gave up and needs a human.
    Failed { reason: String },
    /// An operator took a failed saga up again: `CancelDelivery` was sent anew; the saga waits
    /// until `deadline`, with its attempts counted from one.
    Reopened { deadline: DateTime<Utc> },
}

/// The persisted state of one order's fulfilment saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FulfilmentSaga {
    order_id: OrderId,
    state: SagaState,
    attempts: u32,
    deadline: Option<DateTime<Utc>>,
    failure_reason: Option<String>,
    version: u64,
    updated_at: DateTime<Utc>,
}

/// Everything an adapter needs to rebuild a saga it stored.
#[derive(Debug, Clone)]
pub struct SagaSnapshot {
    pub order_id: OrderId,
    pub state: SagaState,
    pub attempts: u32,
    pub deadline: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

impl FulfilmentSaga {
    /// A new saga that has just sent its first `ScheduleDelivery`.
    #[must_use]
    pub const fn start(order_id: OrderId, deadline: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        Self {
            order_id,
            state: SagaState::AwaitingDelivery,
            attempts: 1,
            deadline: Some(deadline),
            failure_reason: None,
            version: 1,
            updated_at: now,
        }
    }

    #[must_use]
    pub fn restore(s: SagaSnapshot) -> Self {
        Self {
            order_id: s.order_id,
            state: s.state,
            attempts: s.attempts,
            deadline: s.deadline,
            failure_reason: s.failure_reason,
            version: s.version,
            updated_at: s.updated_at,
        }
    }

    /// The command of the current step was sent again; wait until `deadline`.
    ///
    /// # Errors
    /// [`InvalidTransition`] unless waiting for a reply.
    pub fn retry(
        &mut self,
        deadline: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<SagaEvent, InvalidTransition> {
        self.require(self.state.is_waiting(), "retry")?;
        Ok(self.record(SagaEvent::Retried { deadline }, now))
    }

    /// Delivery is scheduled (or could not be called back): the saga's work is done.
    ///
    /// # Errors
    /// [`InvalidTransition`] unless waiting for a reply.
    pub fn complete(&mut self, now: DateTime<Utc>) -> Result<SagaEvent, InvalidTransition> {
        self.require(self.state.is_waiting(), "complete")?;
        Ok(self.record(SagaEvent::Completed, now))
    }

    /// `CancelDelivery` was sent: undo the delivery, wait until `deadline`.
    ///
    /// # Errors
    /// [`InvalidTransition`] unless awaiting delivery or completed.
    pub fn begin_compensation(
        &mut self,
        deadline: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<SagaEvent, InvalidTransition> {
        self.require(
            matches!(
                self.state,
                SagaState::AwaitingDelivery | SagaState::Completed
            ),
            "begin compensation",
        )?;
        Ok(self.record(SagaEvent::CompensationBegun { deadline }, now))
    }

    /// Nothing is left to undo (also for a saga that had given up waiting to hear so).
    ///
    /// # Errors
    /// [`InvalidTransition`] unless waiting for a reply or failed.
    pub fn compensated(&mut self, now: DateTime<Utc>) -> Result<SagaEvent, InvalidTransition> {
        self.require(
            self.state.is_waiting() || self.state == SagaState::Failed,
            "finish compensation",
        )?;
        Ok(self.record(SagaEvent::Compensated, now))
    }

    /// Gives up: the saga needs a human.
    ///
    /// # Errors
    /// [`InvalidTransition`] once compensated or failed.
    pub fn fail(
        &mut self,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<SagaEvent, InvalidTransition> {
        self.require(
            !matches!(self.state, SagaState::Compensated | SagaState::Failed),
            "fail",
        )?;
        Ok(self.record(SagaEvent::Failed { reason }, now))
    }

    /// Takes a failed saga up again (an operator's retry): its last command, `CancelDelivery`,
    /// was sent anew; wait until `deadline`.
    ///
    /// # Errors
    /// [`InvalidTransition`] unless failed.
    pub fn reopen(
        &mut self,
        deadline: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<SagaEvent, InvalidTransition> {
        self.require(self.state == SagaState::Failed, "retry")?;
        Ok(self.record(SagaEvent::Reopened { deadline }, now))
    }

    fn require(&self, allowed: bool, action: &'static str) -> Result<(), InvalidTransition> {
        InvalidTransition::unless(allowed, action, self.state.as_str())
    }

    fn record(&mut self, event: SagaEvent, now: DateTime<Utc>) -> SagaEvent {
        self.apply(&event, now);
        event
    }

    /// Evolves the state by one event (decided earlier by a command). Bumps the version.
    pub fn apply(&mut self, event: &SagaEvent, at: DateTime<Utc>) {
        match event {
            SagaEvent::Retried { deadline } => {
                self.attempts = self.attempts.saturating_add(1);
                self.deadline = Some(*deadline);
            }
            SagaEvent::Completed => {
                self.state = SagaState::Completed;
                self.deadline = None;
            }
            SagaEvent::CompensationBegun { deadline } => {
                self.state = SagaState::Cancelling;
                self.attempts = 1;
                self.deadline = Some(*deadline);
            }
            SagaEvent::Compensated => {
                self.state = SagaState::Compensated;
                self.deadline = None;
                self.failure_reason = None;
            }
            SagaEvent::Failed { reason } => {
                self.state = SagaState::Failed;
                self.deadline = None;
                self.failure_reason = Some(reason.clone());
            }
            SagaEvent::Reopened { deadline } => {
                self.state = SagaState::Cancelling;
                self.attempts = 1;
                self.deadline = Some(*deadline);
                self.failure_reason = None;
            }
        }
        self.version += 1;
        self.updated_at = at;
    }

    #[must_use]
    pub const fn order_id(&self) -> OrderId {
        self.order_id
    }
    #[must_use]
    pub const fn state(&self) -> SagaState {
        self.state
    }
    /// Commands sent in the current step (1 after the first send).
    #[must_use]
    pub const fn attempts(&self) -> u32 {
        self.attempts
    }
    #[must_use]
    pub const fn deadline(&self) -> Option<DateTime<Utc>> {
        self.deadline
    }
    #[must_use]
    pub fn failure_reason(&self) -> Option<&str> {
        self.failure_reason.as_deref()
    }
    #[must_use]
    pub const fn version(&self) -> u64 {
        self.version
    }
    #[must_use]
    pub const fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saga() -> FulfilmentSaga {
        let now = Utc::now();
        FulfilmentSaga::start(OrderId::from_uuid(uuid::Uuid::now_v7()), now, now)
    }

    #[test]
    fn retries_count_attempts_and_move_the_deadline() {
        let mut s = saga();
        let later = Utc::now() + chrono::Duration::seconds(10);
        s.retry(later, Utc::now()).expect("retry");
        assert_eq!(
            (s.attempts(), s.deadline(), s.version()),
            (2, Some(later), 2)
        );
    }

    #[test]
    fn a_completed_saga_can_still_be_compensated_but_not_retried() {
        let mut s = saga();
        s.complete(Utc::now()).expect("complete");
        assert_eq!(s.deadline(), None);
        assert!(s.retry(Utc::now(), Utc::now()).is_err());
        s.begin_compensation(Utc::now(), Utc::now())
            .expect("compensate");
        assert_eq!((s.state(), s.attempts()), (SagaState::Cancelling, 1));
        s.compensated(Utc::now()).expect("compensated");
        assert_eq!(s.state(), SagaState::Compensated);
    }

    #[test]
    fn compensated_and_failed_sagas_are_final() {
        let mut s = saga();
        s.compensated(Utc::now()).expect("compensated");
        let before = s.clone();
        assert!(s.complete(Utc::now()).is_err());
        assert!(s.fail("x".into(), Utc::now()).is_err());
        assert!(s.begin_compensation(Utc::now(), Utc::now()).is_err());
        assert_eq!(s, before);
        let mut f = saga();
        f.fail("gave up".into(), Utc::now()).expect("fail");
        assert_eq!(f.failure_reason(), Some("gave up"));
        assert!(f.complete(Utc::now()).is_err());
        assert!(f.retry(Utc::now(), Utc::now()).is_err());
        // A failed saga still hears that the delivery was cancelled after all.
        f.compensated(Utc::now()).expect("compensated late");
        assert_eq!(
            (f.state(), f.failure_reason()),
            (SagaState::Compensated, None)
        );
    }
}
