//! The fulfilment saga, orchestrated: its persisted state ([`FulfilmentSaga`]), how long it waits
//! ([`SagaPolicy`]), and every decision it takes ([`decide`]) as pure functions that change an
//! order and its saga in place and return what to send. The application only loads, locks, saves
//! and encodes; nothing here knows a store or a message format.
//!
//! ```text
//! place ─▶ order pending, saga awaiting_delivery ─▶ ScheduleDelivery
//! DeliveryScheduled ─▶ order confirmed, saga completed
//! DeliveryRejected  ─▶ order cancelled (reason), saga compensated
//! deadline          ─▶ ScheduleDelivery again … then order cancelled (timed out), CancelDelivery
//! customer cancel   ─▶ pending: cancelled at once + CancelDelivery; confirmed: CancelDelivery
//! DeliveryCancelled ─▶ order cancelled, saga compensated
//! CancellationRefused ─▶ saga completed (the order follows the parcel), or failed
//! DeliveryShipped / DeliveryDelivered ─▶ order shipped / delivered
//! ```

pub mod decide;
mod history;
mod policy;
mod state;

pub use decide::{
    CustomerCancelError, DeadlineAction, DeliveryReply, OperatorAction, OperatorError, Outgoing,
    SagaCommand, Step,
};
pub use history::{SagaStepRecord, StepCause, step_seq};
pub use policy::SagaPolicy;
pub use state::{FulfilmentSaga, SagaEvent, SagaSnapshot, SagaState};
