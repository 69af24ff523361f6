//! Messaging: the publisher the relays send through, and the handler a transport calls for
//! each message it receives.

use super::{BoxError, StoreError};
use crate::ids::MessageId;
use crate::message::Message;

/// Why a batch was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The broker cannot be reached now; publish the batch again later.
    #[error("the message broker is unavailable")]
    Unavailable(#[source] BoxError),
    /// The broker refused this message for good (too large, say). Messages before it in the
    /// batch were published.
    #[error("message {message_id} was refused: {reason}")]
    Refused {
        message_id: MessageId,
        reason: String,
    },
}

/// Sends messages to the broker (driven port of the outbox relay).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait MessagePublisher: Send + Sync {
    /// Publishes the batch and returns once the broker acknowledged every message, keeping the
    /// batch's order per key.
    ///
    /// # Errors
    /// [`PublishError::Unavailable`] if any message may not have been acknowledged;
    /// [`PublishError::Refused`] for a message the broker will never accept.
    async fn publish(&self, batch: &[Message]) -> Result<(), PublishError>;
}

/// What handling a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleOutcome {
    /// The effect was applied and committed.
    Applied,
    /// The inbox had it: acknowledged without effect.
    Duplicate,
    /// Stale or irrelevant (a reply to a saga step that is over): acknowledged without effect.
    Ignored,
}

/// Why a message was not handled. The transport decides what follows through a
/// [`crate::retry::RetryPolicy`], the same for every transport.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// A dependency is down (the database): the message is fine, so it is tried again, with
    /// backoff, for as long as it takes, without moving on. Never dead-lettered.
    #[error("a dependency is unavailable")]
    Unavailable(#[source] BoxError),
    /// This attempt failed and another may succeed (a version conflict, a race). Tried again with
    /// backoff a bounded number of times; a message that keeps failing breaks an invariant and
    /// is dead-lettered.
    #[error("transient failure")]
    Transient(#[source] BoxError),
    /// Will never succeed: undecodable, unknown type. Dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
}

impl From<StoreError> for HandleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable(Box::new(e)),
            StoreError::Conflict | StoreError::Duplicate | StoreError::Unexpected(_) => {
                Self::Transient(Box::new(e))
            }
        }
    }
}

/// A consumer of messages (driving port): what a transport calls for each message it receives.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait MessageHandler: Send + Sync {
    /// # Errors
    /// [`HandleError::Unavailable`] or [`HandleError::Transient`] to be called again with the
    /// same message later; [`HandleError::Permanent`] to have it dead-lettered.
    async fn handle(&self, message: &Message) -> Result<HandleOutcome, HandleError>;
}
