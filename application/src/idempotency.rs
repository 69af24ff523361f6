//! Idempotency keys of the order service's commands: claimed at the start of the command's
//! transaction, completed with its response at the end of it.

use ordership_domain::ports::{Claim, OrderTransaction, StoreError, StoredResponse};

use crate::stamp::Stamps;

/// A client's idempotency key for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRequest {
    /// The operation the key belongs to (`POST /orders`); keys of different scopes never clash.
    pub scope: String,
    pub key: String,
    /// Digest of the request; the same key with another fingerprint is refused.
    pub fingerprint: String,
}

pub(crate) enum KeyCheck {
    Proceed,
    Replay(StoredResponse),
    Reused,
}

pub(crate) async fn claim_key(
    tx: &mut dyn OrderTransaction,
    request: Option<&IdempotentRequest>,
    stamps: &Stamps,
) -> Result<KeyCheck, StoreError> {
    let Some(r) = request else {
        return Ok(KeyCheck::Proceed);
    };
    let claim = tx
        .idempotency_keys()
        .claim(&r.scope, &r.key, &r.fingerprint, stamps.now())
        .await?;
    Ok(match claim {
        Claim::Claimed => KeyCheck::Proceed,
        Claim::Existing(record) if record.fingerprint != r.fingerprint => KeyCheck::Reused,
        // The key is claimed and completed in one transaction, and a concurrent claim waits for
        // it: a key without its response cannot be seen.
        Claim::Existing(record) => record.response.map_or_else(
            || {
                Err(StoreError::Unexpected(
                    format!(
                        "idempotency key {:?} was stored without its response",
                        r.key
                    )
                    .into(),
                ))
            },
            |response| Ok(KeyCheck::Replay(response)),
        )?,
    })
}

/// Completes the key with the response the command rendered (nothing without a key).
pub(crate) async fn store_response(
    tx: &mut dyn OrderTransaction,
    request: Option<&IdempotentRequest>,
    render: impl FnOnce() -> StoredResponse,
) -> Result<(), StoreError> {
    if let Some(r) = request {
        tx.idempotency_keys()
            .complete(&r.scope, &r.key, &render())
            .await?;
    }
    Ok(())
}
