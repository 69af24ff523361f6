//! Idempotency keys of the driving side (HTTP): claimed with the command, completed with its
//! response, replayed on retries.

use chrono::{DateTime, Utc};

use super::StoreError;

/// A response to replay byte for byte. Opaque to the application: the driving adapter that made
/// it (HTTP) knows what `status` and `body` mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What was stored under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Digest of the request that first used the key.
    pub fingerprint: String,
    /// The first request's response. A store saves the key and its response in the request's one
    /// transaction, and a concurrent claim waits for it (see [`IdempotencyStore::claim`]), so a
    /// reader never sees `None`; an adapter that returned it would break that contract.
    pub response: Option<StoredResponse>,
    pub created_at: DateTime<Utc>,
}

/// The outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new; this transaction owns it.
    Claimed,
    /// The key was used before.
    Existing(IdempotencyRecord),
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait IdempotencyStore: Send {
    /// Claims `key` in `scope` for a request with `fingerprint`. A concurrent claim of the same
    /// key MUST wait for (or fail against) this one, never both succeed: the database decides,
    /// not a process-local lock.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn claim(
        &mut self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        at: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;

    /// Stores the response of the request that claimed `key`.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] if the key was not claimed.
    async fn complete(
        &mut self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;

    /// Forgets keys created before `before`; returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`] only.
    async fn purge(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}
