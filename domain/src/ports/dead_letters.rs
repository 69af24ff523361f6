//! The index of dead letters: every message a consumer gave up on, kept in the consuming
//! service's store with why and after how many attempts, so operators can list, show, re-drive
//! and purge them. (The broker's dead-letter topic keeps a copy too, but Kafka cannot delete or
//! mark single records.)

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::message::Message;

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The index's own sequence: the order messages died in.
    pub id: i64,
    /// The consumer (group) that gave up on it.
    pub consumer: String,
    pub message: Message,
    pub reason: String,
    pub attempts: u32,
    pub dead_at: DateTime<Utc>,
    /// When it was sent back to its topic; `None` while it lies dead.
    pub redriven_at: Option<DateTime<Utc>>,
}

/// Which dead letters an action takes (always only those still dead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterSelection {
    Ids(Vec<i64>),
    /// Died at or after `from` and before `to`.
    Between {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    All,
}

/// A page of dead letters, by ascending id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterQuery {
    pub consumer: Option<String>,
    /// Also those already re-driven.
    pub include_redriven: bool,
    /// Only ids greater than this (the cursor).
    pub after: Option<i64>,
    pub limit: u32,
}

#[async_trait::async_trait]
pub trait DeadLetters: Send {
    /// Records a message `consumer` gave up on. A message that lies dead for this consumer
    /// already is not recorded twice (a transport may dead-letter a redelivery of it again).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn record(
        &mut self,
        consumer: &str,
        message: &Message,
        reason: &str,
        attempts: u32,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn list(&mut self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError>;

    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn get(&mut self, id: i64) -> Result<Option<DeadLetter>, StoreError>;

    /// Marks the selected dead letters (of `consumer`, if given) re-driven at `at` and returns
    /// them, by ascending id, locked until the transaction ends.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn take_for_redrive(
        &mut self,
        consumer: Option<&str>,
        selection: &DeadLetterSelection,
        at: DateTime<Utc>,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// Deletes the selected dead letters (of `consumer`, if given); how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn purge(
        &mut self,
        consumer: Option<&str>,
        selection: &DeadLetterSelection,
    ) -> Result<u64, StoreError>;
}
