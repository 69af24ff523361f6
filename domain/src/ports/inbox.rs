//! The inbox: which consumer handled which message, recorded in the effect's transaction.

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::ids::MessageId;

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait Inbox: Send {
    /// Records that `consumer` handled `message_id`, in the same transaction as the effect.
    /// Returns `false` if it was recorded before: the message is a duplicate and the caller MUST
    /// NOT apply its effect again. Implementations insert-or-ignore; they never
    /// select-then-insert.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn record(
        &mut self,
        consumer: &str,
        message_id: MessageId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Forgets entries recorded before `before`; returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn purge(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}
