//! Request extraction that answers with problem details instead of axum's plain-text
//! rejections, and the Idempotency-Key header.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use ordership_application::IdempotentRequest;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::problem::ApiError;

/// A JSON body, with its canonical form (keys sorted, no insignificant white space) for
/// fingerprinting: the same JSON written differently is the same request.
#[derive(Debug)]
pub(crate) struct JsonBody<T> {
    pub(crate) value: T,
    pub(crate) canonical: String,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge
            } else {
                ApiError::MalformedBody(rejection.body_text())
            }
        })?;
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedBody(e.to_string()))?;
        let canonical = json.to_string();
        let value = T::deserialize(json).map_err(|e| ApiError::MalformedBody(e.to_string()))?;
        Ok(Self { value, canonical })
    }
}

/// The name of the header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The client's `Idempotency-Key` for the operation `scope`, if it sent one.
///
/// # Errors
/// [`ApiError::BadIdempotencyKey`] unless 1–255 visible ASCII characters.
pub(crate) fn idempotency(
    headers: &HeaderMap,
    scope: &str,
    canonical_body: &str,
) -> Result<Option<IdempotentRequest>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::BadIdempotencyKey("it must be visible ASCII"))?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadIdempotencyKey(
            "it must be 1 to 255 visible ASCII characters",
        ));
    }
    let mut digest = Sha256::new();
    digest.update(scope.as_bytes());
    digest.update(b"\n");
    digest.update(canonical_body.as_bytes());
    Ok(Some(IdempotentRequest {
        scope: scope.to_owned(),
        key: key.to_owned(),
        fingerprint: format!("{:x}", digest.finalize()),
    }))
}
